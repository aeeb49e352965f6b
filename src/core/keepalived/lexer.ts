// Lossless lexer for keepalived.conf(5) syntax. Pure; never throws.
// Every byte of the input lands in exactly one token, so joining the token texts gives the input back.
// Word rules follow keepalived 2.2's read_line()/decomment()/alloc_strvec(): a comment starts at the
// first unquoted, unescaped '!' or '#' (even mid-word), '{' and '}' are always separate tokens, and a
// double quote starts a string that ends at the next double quote on the same line.

export type TokenKind = 'word' | 'string' | 'lbrace' | 'rbrace' | 'ws' | 'newline' | 'comment';

export interface Token {
  kind: TokenKind;
  text: string;
  /** Offset of the first character in the file. */
  offset: number;
  /** 1-based line and column of the first character. */
  line: number;
  col: number;
  /** For strings: the closing quote is missing. For comments: it started inside a word. */
  flag?: 'unterminated' | 'glued';
}

const NL = 10;
const CR = 13;
const SP = 32;
const TAB = 9;
const VT = 11;
const FF = 12;
const QUOTE = 34;
const BANG = 33;
const HASH = 35;
const LBRACE = 123;
const RBRACE = 125;
const BACKSLASH = 92;
const DOLLAR = 36;

export function isSpace(c: number): boolean {
  return c === SP || c === TAB || c === VT || c === FF || c === CR;
}

export function lexKeepalived(text: string): Token[] {
  const tokens: Token[] = [];
  const n = text.length;
  let i = 0;
  let line = 1;
  let lineStart = 0;
  const push = (kind: TokenKind, start: number, end: number, flag?: Token['flag']): void => {
    const t: Token = { kind, text: text.slice(start, end), offset: start, line, col: start - lineStart + 1 };
    if (flag) t.flag = flag;
    tokens.push(t);
  };
  while (i < n) {
    const c = text.charCodeAt(i);
    const start = i;
    if (c === NL) {
      push('newline', i, i + 1);
      i++;
      line++;
      lineStart = i;
    } else if (c === CR && text.charCodeAt(i + 1) === NL) {
      push('newline', i, i + 2);
      i += 2;
      line++;
      lineStart = i;
    } else if (isSpace(c)) {
      while (
        i < n &&
        isSpace(text.charCodeAt(i)) &&
        !(text.charCodeAt(i) === CR && text.charCodeAt(i + 1) === NL)
      )
        i++;
      push('ws', start, i);
    } else if (c === BANG || c === HASH) {
      while (
        i < n &&
        text.charCodeAt(i) !== NL &&
        !(text.charCodeAt(i) === CR && text.charCodeAt(i + 1) === NL)
      )
        i++;
      const prev = tokens[tokens.length - 1];
      push(
        'comment',
        start,
        i,
        prev && (prev.kind === 'word' || prev.kind === 'string') ? 'glued' : undefined,
      );
    } else if (c === LBRACE) {
      push('lbrace', i, ++i);
    } else if (c === RBRACE) {
      push('rbrace', i, ++i);
    } else if (c === QUOTE) {
      i++;
      while (i < n && text.charCodeAt(i) !== QUOTE && text.charCodeAt(i) !== NL) i++;
      if (i < n && text.charCodeAt(i) === QUOTE) {
        i++;
        push('string', start, i);
      } else {
        if (i > start + 1 && text.charCodeAt(i - 1) === CR && text.charCodeAt(i) === NL) i--;
        push('string', start, i, 'unterminated');
      }
    } else {
      i = scanWord(text, i, n);
      push('word', start, i);
      // keepalived takes the rest of an include line as the path (is_include/check_include in its
      // parser.c): braces there are brace expansion, not blocks
      if (INCLUDE_WORD.test(text.slice(start, i)) && firstWordOfLine(tokens) && isSpace(text.charCodeAt(i))) {
        const ws = i;
        while (i < n && isSpace(text.charCodeAt(i)) && text.charCodeAt(i) !== CR) i++;
        push('ws', ws, i);
        const from = i;
        let quoted = false;
        while (
          i < n &&
          text.charCodeAt(i) !== NL &&
          !(text.charCodeAt(i) === CR && text.charCodeAt(i + 1) === NL)
        ) {
          const ch = text.charCodeAt(i);
          if (ch === QUOTE) quoted = !quoted;
          else if (ch === BACKSLASH) i++;
          else if (!quoted && (ch === BANG || ch === HASH)) break;
          i++;
        }
        let end = i;
        while (end > from && isSpace(text.charCodeAt(end - 1))) end--;
        if (end > from) push('word', from, end);
        if (i > end) push('ws', end, i);
      }
    }
  }
  return tokens;
}

/** `include`, and the variants that ask keepalived to check what they match (includer, includem...). */
const INCLUDE_WORD = /^include[rmwba]?$/;

/** Whether the word just pushed is the first of its line (after blanks, or after an @id condition). */
function firstWordOfLine(tokens: Token[]): boolean {
  let k = tokens.length - 2;
  const skipBlanks = () => {
    while (k >= 0 && tokens[k]!.kind === 'ws') k--;
  };
  skipBlanks();
  if (k >= 0 && tokens[k]!.kind === 'word' && tokens[k]!.text.startsWith('@')) {
    k--;
    skipBlanks();
  }
  return k < 0 || tokens[k]!.kind === 'newline';
}
/**
 * The end of the word that starts at `i`: a backslash escapes the next character (but not a line end),
 * `${NAME}` is one piece, and a space, line end, quote, brace, `!` or `#` ends the word. Shared with the
 * direct scanner (scan.ts) so both read words the same way.
 */
export function scanWord(text: string, i: number, n: number): number {
  while (i < n) {
    const d = text.charCodeAt(i);
    if (d === BACKSLASH && i + 1 < n && text.charCodeAt(i + 1) !== NL && text.charCodeAt(i + 1) !== CR) {
      i += 2;
      continue;
    }
    if (d === DOLLAR && text.charCodeAt(i + 1) === LBRACE) {
      // ${NAME} is a parameter reference, substituted before keepalived looks for braces.
      const close = text.indexOf('}', i + 2);
      if (close !== -1 && /^[A-Za-z_][A-Za-z0-9_]*( [0-9 ]*)?$/.test(text.slice(i + 2, close))) {
        i = close + 1;
        continue;
      }
    }
    if (isSpace(d) || d === NL || d === QUOTE || d === LBRACE || d === RBRACE || d === BANG || d === HASH)
      break;
    i++;
  }
  return i;
}

/** The value a word or string token stands for: quotes removed, `\#` and `\!` unescaped. */
export function tokenValue(t: Token): string {
  if (t.kind === 'string') {
    return t.flag === 'unterminated' ? t.text.slice(1) : t.text.slice(1, -1);
  }
  return t.text.indexOf('\\') === -1 ? t.text : t.text.replace(/\\([#!])/g, '$1');
}
