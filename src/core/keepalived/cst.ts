// Concrete syntax tree for one keepalived.conf(5) file: lossless, so renderKeepalived(parse(text)) === text.
// Pure; parseKeepalived never throws, problems come back as Diagnostics.

import { type Diagnostic, diag } from '../diagnostic.js';
import { lexKeepalived, type Token, tokenValue } from './lexer.js';

/** Blank space, newlines and comments between statements. */
export interface CstTrivia {
  kind: 'trivia';
  tokens: Token[];
}

/** `keyword arg...` optionally followed (on this or a later line) by a `{ ... }` block. */
export interface CstStatement {
  kind: 'statement';
  /** `@id` / `@^id` prefix (keepalived -i/--config-id): the line only applies when the id matches. */
  condition?: { token: Token; id: string; negate: boolean };
  /** Keyword and arguments, in order (word and string tokens). */
  words: Token[];
  /** Every token of the head line, including the condition and inner spacing. */
  head: Token[];
  block?: CstBlock;
}

export interface CstBlock {
  /** Trivia between the head and the `{` (a block opened on the next line). */
  between: Token[];
  open: Token;
  children: CstNode[];
  /** Missing when the file ends inside the block (an error is reported). */
  close?: Token;
}

/** `$NAME=value` (possibly continued with a trailing backslash) or a `~SEQ(...)` line: kept opaque. */
export interface CstRaw {
  kind: 'definition' | 'seq' | 'stray';
  condition?: { token: Token; id: string; negate: boolean };
  tokens: Token[];
  /** For definitions: the name and the value text (continuation lines joined with '\n'). */
  name?: string;
  value?: string;
}

export type CstNode = CstTrivia | CstStatement | CstRaw;

export interface CstFile {
  kind: 'file';
  path: string;
  children: CstNode[];
}

const DEF_RE = /^\$([A-Za-z_][A-Za-z0-9_]*)[ \t]*=/;

function isTrivia(t: Token): boolean {
  return t.kind === 'ws' || t.kind === 'newline' || t.kind === 'comment';
}

/**
 * Whether a line continues a definition: it ends with '\\' once keepalived has taken its comment off
 * (decomment() in keepalived's parser.c keeps a '\\' that ends the line even inside a comment).
 */
function lastWordEndsWithBackslash(tokens: Token[], from: number, to: number): boolean {
  for (let k = to - 1; k >= from; k--) {
    const t = tokens[k]!;
    if (t.kind === 'ws') continue;
    if (t.kind === 'comment') {
      if (k === to - 1 || tokens.slice(k + 1, to).every((x) => x.kind === 'ws'))
        if (/\\\s*$/.test(t.text)) return true;
      continue;
    }
    return t.kind === 'word' && t.text.endsWith('\\');
  }
  return false;
}

/** A line with nothing but blanks and a comment: keepalived drops it, inside a definition too. */
function onlyTrivia(tokens: Token[], from: number, to: number): boolean {
  for (let k = from; k < to; k++) if (tokens[k]!.kind !== 'ws' && tokens[k]!.kind !== 'comment') return false;
  return true;
}

interface Frame {
  children: CstNode[];
  block?: CstBlock;
  owner?: CstStatement;
}

/** Far deeper than any keepalived block (virtual_server > real_server > HTTP_GET > url is 4). */
const MAX_NESTING = 64;

export function parseKeepalived(text: string, path: string): { cst: CstFile; diagnostics: Diagnostic[] } {
  const tokens = lexKeepalived(text);
  const diagnostics: Diagnostic[] = [];
  const file: CstFile = { kind: 'file', path, children: [] };
  const stack: Frame[] = [{ children: file.children }];
  let trivia: Token[] = [];
  const at = (t: Token) => ({ file: path, line: t.line, col: t.col });
  const top = () => stack[stack.length - 1]!;
  const flush = () => {
    if (trivia.length > 0) {
      top().children.push({ kind: 'trivia', tokens: trivia });
      trivia = [];
    }
  };
  const n = tokens.length;
  let i = 0;
  /** Braces past MAX_NESTING: kept as stray tokens (the text round-trips), the tree stays shallow. */
  let overflow = 0;
  while (i < n) {
    const t = tokens[i]!;
    if (isTrivia(t)) {
      if (t.kind === 'comment' && t.flag === 'glued') {
        diagnostics.push(
          diag(
            'warning',
            'KA_GLUED_COMMENT',
            at(t),
            `'${t.text[0]}' starts a comment here although it follows text without a space: keepalived ` +
              `ignores '${t.text}'; escape it as '\\${t.text[0]}' if it is part of the value`,
          ),
        );
      }
      trivia.push(t);
      i++;
      continue;
    }
    if (t.kind === 'lbrace' && (overflow > 0 || stack.length > MAX_NESTING)) {
      flush();
      if (overflow === 0)
        diagnostics.push(
          diag(
            'error',
            'KA_TOO_DEEP',
            at(t),
            `blocks nested more than ${MAX_NESTING} deep: no keepalived keyword nests like this; lvssync reads no deeper`,
          ),
        );
      overflow++;
      top().children.push({ kind: 'stray', tokens: [t] });
      i++;
      continue;
    }
    if (t.kind === 'rbrace' && overflow > 0) {
      flush();
      overflow--;
      top().children.push({ kind: 'stray', tokens: [t] });
      i++;
      continue;
    }
    if (t.kind === 'lbrace') {
      const frame = top();
      const prev = frame.children[frame.children.length - 1];
      if (prev && prev.kind === 'statement' && !prev.block) {
        const block: CstBlock = { between: trivia, open: t, children: [] };
        trivia = [];
        prev.block = block;
        stack.push({ children: block.children, block, owner: prev });
      } else {
        flush();
        diagnostics.push(
          diag(
            'error',
            'KA_UNEXPECTED_BRACE',
            at(t),
            `unexpected '{' with no keyword before it (keepalived ignores it)`,
          ),
        );
        const anon: CstStatement = { kind: 'statement', words: [], head: [] };
        const block: CstBlock = { between: [], open: t, children: [] };
        anon.block = block;
        frame.children.push(anon);
        stack.push({ children: block.children, block, owner: anon });
      }
      i++;
      continue;
    }
    if (t.kind === 'rbrace') {
      flush();
      if (stack.length > 1) {
        const frame = stack.pop()!;
        frame.block!.close = t;
      } else {
        diagnostics.push(diag('error', 'KA_EXTRA_BRACE', at(t), `extra '}' with no block open in this file`));
        top().children.push({ kind: 'stray', tokens: [t] });
      }
      i++;
      continue;
    }
    // A word or string: the start of a statement, definition or ~SEQ line.
    flush();
    let j = i;
    let condition: CstStatement['condition'];
    if (t.kind === 'word' && t.text.startsWith('@')) {
      const negate = t.text.startsWith('@^');
      condition = { token: t, id: t.text.slice(negate ? 2 : 1), negate };
      j++;
      while (j < n && tokens[j]!.kind === 'ws') j++;
    }
    const first = tokens[j];
    if (
      first &&
      first.kind === 'word' &&
      ((first.text.charCodeAt(0) === 36 && DEF_RE.test(text.slice(first.offset, first.offset + 256))) ||
        first.text.startsWith('~SEQ') ||
        first.text.startsWith('~LST'))
    ) {
      const isDef = first.text.startsWith('$');
      // Opaque to the end of the line; definitions continue while a line ends with '\'.
      let k = j;
      let lineStart = j;
      const lines: string[] = [];
      for (;;) {
        while (k < n && tokens[k]!.kind !== 'newline') k++;
        if (lines.length > 0 && onlyTrivia(tokens, lineStart, k)) {
          // inside a continuation: an empty line ends the definition (before it); a line of blanks or
          // a comment is dropped and the definition goes on (keepalived's read_line and decomment)
          if (k === lineStart) {
            k = lineStart - 1;
            break;
          }
          if (k < n) {
            k++;
            lineStart = k;
            continue;
          }
          break;
        }
        const lineText = tokens
          .slice(lineStart, k)
          .filter((x) => x.kind !== 'comment')
          .map((x) => x.text)
          .join('')
          .trimEnd();
        lines.push(lineText);
        if (isDef && lastWordEndsWithBackslash(tokens, lineStart, k) && k < n) {
          k++; // the newline belongs to the definition
          lineStart = k;
          continue;
        }
        break;
      }
      const raw: CstRaw = { kind: isDef ? 'definition' : 'seq', tokens: tokens.slice(i, k) };
      if (condition) raw.condition = condition;
      if (isDef) {
        const m = DEF_RE.exec(lines[0]!)!;
        raw.name = m[1]!;
        const joined = lines
          .map((l, idx) => (idx === 0 ? l.slice(m[0].length) : l).replace(/[ \t]*\\$/, '').trim())
          .filter((l, idx) => idx === 0 || l.length > 0);
        raw.value = joined.join('\n');
      }
      top().children.push(raw);
      i = k;
      continue;
    }
    let k = j;
    while (k < n) {
      const kind = tokens[k]!.kind;
      if (kind !== 'word' && kind !== 'string' && kind !== 'ws') break;
      k++;
    }
    // Trailing spaces of the head are trivia.
    let end = k;
    while (end > j && tokens[end - 1]!.kind === 'ws') end--;
    const head = tokens.slice(i, end);
    const words = tokens.slice(j, end).filter((x) => x.kind === 'word' || x.kind === 'string');
    for (const w of words) {
      if (w.kind === 'string' && w.flag === 'unterminated') {
        diagnostics.push(diag('error', 'KA_UNTERMINATED_STRING', at(w), `missing closing '"' on this line`));
      }
    }
    const stmt: CstStatement = { kind: 'statement', words, head };
    if (condition) stmt.condition = condition;
    top().children.push(stmt);
    trivia = tokens.slice(end, k);
    i = k;
  }
  flush();
  while (stack.length > 1) {
    const frame = stack.pop()!;
    const owner = frame.owner!;
    const name = owner.words.length > 0 ? owner.words.map(tokenValue).join(' ') : '{';
    diagnostics.push(
      diag(
        'error',
        'KA_UNCLOSED_BLOCK',
        at(frame.block!.open),
        `block '${name}' opened here is never closed: missing '}' before the end of ${path}`,
      ),
    );
  }
  return { cst: file, diagnostics };
}

/** Gives back the exact text the CST was parsed from (after any edits to its tokens). */
export function renderKeepalived(file: CstFile): string {
  const out: string[] = [];
  const emit = (tokens: readonly Token[]) => {
    for (const t of tokens) out.push(t.text);
  };
  const walk = (nodes: readonly CstNode[]) => {
    for (const node of nodes) {
      if (node.kind !== 'statement') {
        emit(node.tokens);
      } else {
        emit(node.head);
        if (node.block) {
          emit(node.block.between);
          out.push(node.block.open.text);
          walk(node.block.children);
          if (node.block.close) out.push(node.block.close.text);
        }
      }
    }
  };
  walk(file.children);
  return out.join('');
}
