// The direct path from a file's text to its directives, for the common file: no definitions, no ~SEQ,
// no `@id` lines, no include and nothing wrong with its syntax. It reads words exactly as the lexer
// does (scanWord is shared) but creates no token or CST objects: a large conf.d holds thousands of
// such files, and the objects are what made checking them slow. Anything it does not handle makes it
// return undefined, and the caller takes the lossless path (cst.ts + evaluate.ts) instead; the two are
// compared on every fixture and corpus file by the tests. Pure; never throws.

import type { Position } from '../diagnostic.js';
import type { Directive } from './evaluate.js';
import { isSpace, scanWord } from './lexer.js';

const NL = 10;
const QUOTE = 34;
const BANG = 33;
const HASH = 35;
const LBRACE = 123;
const RBRACE = 125;
const AT = 64;

/**
 * A directive read by the direct path. Its position objects are made when asked for: most are never
 * needed (they serve findings), and a set of 10,000 files holds hundreds of thousands of directives.
 */
class ScannedDirective implements Directive {
  children?: Directive[];
  constructor(
    readonly name: string,
    readonly args: string[],
    private readonly file: string,
    private readonly line: number,
    private readonly col: number,
    /** The file's text and the keyword's offset in it, to find the arguments' columns on demand. */
    private readonly src: string,
    private readonly off: number,
  ) {}

  get pos(): Position {
    return { file: this.file, line: this.line, col: this.col };
  }

  get argPos(): Position[] {
    return this.args.map((_, i) => this.argAt(i)!);
  }

  /** The position of argument `i` (0-based), found by reading the keyword's line again. */
  argAt(i: number): Position | undefined {
    if (i < 0 || i >= this.args.length) return undefined;
    const text = this.src;
    const n = text.length;
    let at = this.off;
    for (let k = -1; ; k++) {
      if (k >= 0) {
        while (at < n && isSpace(text.charCodeAt(at))) at++;
        if (k === i) return { file: this.file, line: this.line, col: this.col + (at - this.off) };
      }
      at = text.charCodeAt(at) === QUOTE ? text.indexOf('"', at + 1) + 1 : scanWord(text, at, n);
    }
  }

  toJSON(): Directive {
    const d: Directive = { name: this.name, args: this.args, pos: this.pos, argPos: this.argPos };
    if (this.children) d.children = this.children;
    return d;
  }
}

/** The directives of a simple file, or undefined when the file needs the full path. */
export function scanDirectives(text: string, file: string): Directive[] | undefined {
  if (text.indexOf('$') !== -1 || text.indexOf('~SEQ') !== -1) return undefined;
  const root: Directive[] = [];
  const stack: { sink: Directive[]; last: ScannedDirective | undefined }[] = [];
  let sink = root;
  /** The statement whose line is being read (its arguments follow on the same line). */
  let cur: ScannedDirective | undefined;
  /** The last statement of the current block: a `{` opens its block. */
  let last: ScannedDirective | undefined;
  /** Where the last word or string ended: a comment right there is a glued comment. */
  let wordEnd = -1;
  const n = text.length;
  let i = 0;
  let line = 1;
  let lineStart = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === NL) {
      i++;
      line++;
      lineStart = i;
      cur = undefined;
      continue;
    }
    if (isSpace(c)) {
      i++;
      continue;
    }
    if (c === BANG || c === HASH) {
      if (i === wordEnd) return undefined;
      const e = text.indexOf('\n', i);
      i = e === -1 ? n : e;
      cur = undefined;
      continue;
    }
    if (c === LBRACE) {
      if (!last || last.children) return undefined;
      last.children = [];
      stack.push({ sink, last });
      sink = last.children;
      last = undefined;
      cur = undefined;
      i++;
      continue;
    }
    if (c === RBRACE) {
      const frame = stack.pop();
      if (!frame) return undefined;
      sink = frame.sink;
      last = frame.last;
      cur = undefined;
      i++;
      continue;
    }
    let value: string;
    const start = i;
    if (c === QUOTE) {
      const close = text.indexOf('"', i + 1);
      const eol = text.indexOf('\n', i + 1);
      if (close === -1 || (eol !== -1 && eol < close)) return undefined;
      value = text.slice(i + 1, close);
      i = close + 1;
    } else {
      if (cur === undefined && c === AT) return undefined;
      i = scanWord(text, i, n);
      value = text.slice(start, i);
      if (value.indexOf('\\') !== -1) value = value.replace(/\\([#!])/g, '$1');
    }
    wordEnd = i;
    if (cur === undefined) {
      if (value === 'include') return undefined;
      cur = new ScannedDirective(value, [], file, line, start - lineStart + 1, text, start);
      sink.push(cur);
      last = cur;
    } else {
      cur.args.push(value);
    }
  }
  if (stack.length > 0) return undefined;
  return root;
}
