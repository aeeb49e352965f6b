import { describe, expect, it } from 'vitest';
import { lexKeepalived, tokenValue } from '../../src/core/keepalived/lexer.js';

describe('lexKeepalived', () => {
  it.each([
    ['plain', 'global_defs {\n  router_id LVS1\n}\n'],
    ['crlf', 'global_defs {\r\n  router_id LVS1\r\n}\r\n'],
    ['no final newline', 'router_id LVS1'],
    ['comments', '! bang\n# hash\nweight 1 # trailing\n'],
    ['unterminated string', 'script "/bin/true\nnext 1\n'],
    ['escapes', 'auth_pass ab\\#cd\\!ef\n'],
    ['braces glued', 'a{b}c\n'],
    ['empty', ''],
  ])('accounts for every byte: %s', (_name, text) => {
    const tokens = lexKeepalived(text);
    expect(tokens.map((t) => t.text).join('')).toBe(text);
    let offset = 0;
    for (const t of tokens) {
      expect(t.offset).toBe(offset);
      offset += t.text.length;
    }
  });

  it('splits braces and quoted strings into their own tokens with 1-based positions', () => {
    const tokens = lexKeepalived('vs{ "a b" }\n  x').filter((t) => t.kind !== 'ws');
    expect(tokens.map((t) => [t.kind, t.text, t.line, t.col])).toEqual([
      ['word', 'vs', 1, 1],
      ['lbrace', '{', 1, 3],
      ['string', '"a b"', 1, 5],
      ['rbrace', '}', 1, 11],
      ['newline', '\n', 1, 12],
      ['word', 'x', 2, 3],
    ]);
  });

  it('starts a comment at an unescaped ! or # even inside a word, as keepalived does', () => {
    const tokens = lexKeepalived('auth_pass abc#def\n');
    const comment = tokens.find((t) => t.kind === 'comment');
    expect(comment?.text).toBe('#def');
    expect(comment?.flag).toBe('glued');
    const escaped = lexKeepalived('auth_pass abc\\#def\n').filter((t) => t.kind === 'word');
    expect(escaped.map(tokenValue)).toEqual(['auth_pass', 'abc#def']);
  });

  it('marks an unterminated string and keeps the newline out of it', () => {
    const [, , s] = lexKeepalived('script "/bin/true\nx');
    expect(s?.kind).toBe('string');
    expect(s?.flag).toBe('unterminated');
    expect(tokenValue(s!)).toBe('/bin/true');
  });

  it('survives random input without losing a byte', () => {
    const alphabet = 'ab {}"!#\\\n\r\t$@~=';
    let seed = 42;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let n = 0; n < 500; n++) {
      const len = rnd() % 80;
      let s = '';
      for (let i = 0; i < len; i++) s += alphabet[rnd() % alphabet.length];
      expect(
        lexKeepalived(s)
          .map((t) => t.text)
          .join(''),
      ).toBe(s);
    }
  });
});

describe('parameter references', () => {
  it('keeps ${NAME} inside one word instead of splitting at its braces', () => {
    const words = lexKeepalived('priority ${PRIO}\naddr 10.2.${SUB}.1/32 {\n').filter(
      (t) => t.kind === 'word',
    );
    expect(words.map((t) => t.text)).toEqual(['priority', '${PRIO}', 'addr', '10.2.${SUB}.1/32']);
  });
});
