// Turns the CSTs of keepalived.conf and the files it includes into the tree keepalived itself reads:
// includes spliced in place, @id/@^id lines applied for a config-id, $NAME definitions substituted,
// multi-line definitions and ~SEQ blocks expanded. Pure; never throws.

import path from 'node:path/posix';
import { type Diagnostic, diag, type Position } from '../diagnostic.js';
import type { CheckMemory } from '../memory.js';
import { globSnapshot, type Snapshot } from '../snapshot.js';
import { type CstFile, type CstNode, type CstStatement, parseKeepalived } from './cst.js';
import { type Token, tokenValue } from './lexer.js';
import { scanDirectives } from './scan.js';

/** One keyword line as keepalived sees it, with its block if it has one. */
export interface Directive {
  name: string;
  args: string[];
  pos: Position;
  argPos: Position[];
  children?: Directive[];
}

/** Where argument `i` of a directive is (the directive's own position when it has no such argument). */
export function argAt(d: Directive, i: number): Position {
  const lazy = (d as { argAt?: (i: number) => Position | undefined }).argAt;
  return (lazy ? lazy.call(d, i) : d.argPos[i]) ?? d.pos;
}

export interface IncludeRef {
  /** Where the include line is. */
  pos: Position;
  /** The pattern as resolved against the including file's directory. */
  pattern: string;
  matched: string[];
}

export interface Evaluation {
  directives: Directive[];
  /** Every file read, in the order keepalived reads them (the root first). */
  files: string[];
  includes: IncludeRef[];
  /** Directories the snapshot does not list but an include needs: read them and evaluate again. */
  unknownDirs: string[];
  diagnostics: Diagnostic[];
}

export interface EvaluateOptions {
  /** keepalived's -i/--config-id; undefined means keepalived's default (none matches @id lines). */
  configId?: string;
  /**
   * What the owner keeps between runs: its parsed files (an entry is used only while the text is
   * unchanged) and compiled include patterns. Without it, everything is computed afresh.
   */
  memory?: CheckMemory;
  /** Read simple files by the direct scanner (scan.ts); false forces the lossless path everywhere. */
  direct?: boolean;
  /**
   * Filled with where each leaf file's directives are in the result's top-level list: a
   * self-contained file read once, straight into the top level (null: read more than once). The
   * incremental re-check (check.ts) replaces such a slice when only that file changed.
   */
  slices?: Map<string, { start: number; count: number } | null>;
}

export interface ParseCacheEntry {
  text: string;
  /** Dropped once a self-contained file is evaluated (re-parsed from `text` if needed again). */
  cst: CstFile | undefined;
  diagnostics: Diagnostic[];
  /** The file's directives need nothing from outside it: no definitions, ~SEQ, `$` or include. */
  selfContained?: boolean;
  /**
   * For a self-contained file: what it evaluated to, for the config-id it was evaluated with (for any
   * config-id when `anyConfigId`: the file has no `@id` lines).
   */
  evaluated?: {
    configId: string | undefined;
    anyConfigId?: boolean;
    directives: Directive[];
    diagnostics: Diagnostic[];
  };
}

/** True when evaluating the file cannot depend on definitions or on other files. */
function isSelfContained(nodes: readonly CstNode[]): boolean {
  for (const node of nodes) {
    if (node.kind === 'definition' || node.kind === 'seq') return false;
    if (node.kind !== 'statement') continue;
    if (node.words[0] && /^include[rmwba]?$/.test(tokenValue(node.words[0]))) return false;
    for (const w of node.words) if (w.text.indexOf('$') !== -1) return false;
    if (node.block && !isSelfContained(node.block.children)) return false;
  }
  return true;
}

interface Def {
  value: string;
  multiline: boolean;
}

const MAX_DEPTH = 32;

export function evaluateKeepalived(
  snapshot: Snapshot,
  rootPath: string,
  opts: EvaluateOptions = {},
): Evaluation {
  const out: Evaluation = { directives: [], files: [], includes: [], unknownDirs: [], diagnostics: [] };
  const defs = new Map<string, Def>();
  const seenFiles = new Set<string>();
  const includeStack: string[] = [];

  const parsed = (p: string): ParseCacheEntry | undefined => {
    const f = snapshot.files.get(p);
    if (!f) return undefined;
    const cached = opts.memory?.parse.get(p);
    if (cached && cached.text === f.text) {
      if (cached.diagnostics.length > 0 && !seenFiles.has(p)) out.diagnostics.push(...cached.diagnostics);
      return cached;
    }
    const direct = opts.direct === false ? undefined : scanDirectives(f.text, p);
    if (direct) {
      const entry: ParseCacheEntry = {
        text: f.text,
        cst: undefined,
        diagnostics: [],
        selfContained: true,
        evaluated: { configId: undefined, anyConfigId: true, directives: direct, diagnostics: [] },
      };
      opts.memory?.parse.set(p, entry);
      return entry;
    }
    const r = parseKeepalived(f.text, p);
    const entry: ParseCacheEntry = { text: f.text, cst: r.cst, diagnostics: r.diagnostics };
    opts.memory?.parse.set(p, entry);
    if (r.diagnostics.length > 0 && !seenFiles.has(p)) out.diagnostics.push(...r.diagnostics);
    return entry;
  };

  const conditionHolds = (c: CstStatement['condition']): boolean => {
    if (!c) return true;
    const matches = opts.configId !== undefined && c.id === opts.configId;
    return matches !== c.negate;
  };

  const substitute = (text: string, depth = 0): string => {
    if (defs.size === 0 || text.indexOf('$') === -1 || depth > MAX_DEPTH) return text;
    let changed = false;
    const result = text.replace(
      /\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)(?=[\s,)]|$)/g,
      (m, a, b) => {
        const name = (a ?? b) as string;
        const d = defs.get(name) ?? builtin(name);
        if (!d || d.multiline) return m;
        changed = true;
        return d.value;
      },
    );
    return changed ? substitute(result, depth + 1) : result;
  };

  const builtin = (name: string): Def | undefined => {
    if (name === '_INSTANCE' && opts.configId !== undefined)
      return { value: opts.configId, multiline: false };
    return undefined;
  };

  // Expands a statement's words: definitions substituted, values containing spaces split into words.
  const expandWords = (words: Token[], file: string): { values: string[]; pos: Position[] } => {
    const values: string[] = [];
    const pos: Position[] = [];
    for (const w of words) {
      const p = { file, line: w.line, col: w.col };
      if (w.kind === 'word' && w.text.indexOf('${') !== -1) {
        // keepalived leaves an undefined ${NAME} as written and then reads its braces as a block's
        // (as written in the file: a definition whose value holds one is read differently by keepalived)
        for (const m of tokenValue(w).matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)) {
          const name = m[1]!;
          if (defs.has(name) || KEEPALIVED_DEFINES.has(name)) continue;
          out.diagnostics.push(
            diag(
              'error',
              'KA_UNDEFINED_DEFINITION',
              p,
              `\${${name}} is not defined here${opts.configId === undefined ? '' : ` (config-id ${opts.configId})`}: keepalived leaves it as written and reads its '{' and '}' as a block, which ends the enclosing block early; define $${name} for every config-id, or write $${name} without braces`,
            ),
          );
        }
      }
      if (w.kind === 'word' && w.text.indexOf('$') !== -1 && defs.size > 0) {
        const v = substitute(tokenValue(w));
        for (const part of v.split(/[ \t]+/)) {
          if (part === '') continue;
          values.push(part);
          pos.push(p);
        }
      } else {
        values.push(tokenValue(w));
        pos.push(p);
      }
    }
    return { values, pos };
  };

  const walk = (
    nodes: readonly CstNode[],
    file: string,
    sink: Directive[],
    depth: number,
    at?: Position,
  ): void => {
    for (const node of nodes) {
      if (node.kind === 'trivia' || node.kind === 'stray') continue;
      if (node.kind === 'definition') {
        if (!conditionHolds(node.condition)) continue;
        const value = node.value ?? '';
        defs.set(node.name!, { value, multiline: value.includes('\n') });
        continue;
      }
      if (node.kind === 'seq') {
        if (!conditionHolds(node.condition)) continue;
        expandSeq(node.tokens, file, sink, depth, at);
        continue;
      }
      if (node.kind !== 'statement') continue;
      const stmt = node;
      if (!conditionHolds(stmt.condition)) {
        if (stmt.block && stmt.condition) {
          out.diagnostics.push(
            diag(
              'warning',
              'KA_CONDITIONAL_BLOCK',
              { file, line: stmt.condition.token.line, col: stmt.condition.token.col },
              `conditional line opens a block: where '${stmt.condition.token.text}' does not apply keepalived ` +
                `drops only this line and reads the block's contents in the enclosing block; put the ` +
                `condition on each line inside instead`,
            ),
          );
        }
        continue;
      }
      if (stmt.words.length === 0) {
        if (stmt.block) walk(stmt.block.children, file, sink, depth, at);
        continue;
      }
      const { values, pos } = expandWords(stmt.words, file);
      const mapped = at ? pos.map(() => at) : pos;
      if (values.length === 0) continue;
      // A line that is exactly a multi-line definition expands to the lines of its value.
      const first = values[0]!;
      const ml = /^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$/.exec(first);
      if (ml && values.length === 1 && defs.get(ml[1]!)?.multiline && depth < MAX_DEPTH) {
        const text = defs.get(ml[1]!)!.value;
        const r = parseKeepalived(text, file);
        walk(r.cst.children, file, sink, depth + 1, at ?? mapped[0]);
        continue;
      }
      if (/^include[rmwba]?$/.test(first) && values.length === 2 && !stmt.block) {
        include(values[1]!, file, mapped[0]!, sink, depth);
        continue;
      }
      const d: Directive = { name: first, args: values.slice(1), pos: mapped[0]!, argPos: mapped.slice(1) };
      if (stmt.block) {
        d.children = [];
        walk(stmt.block.children, file, d.children, depth, at);
      }
      sink.push(d);
    }
  };

  const expandSeq = (tokens: Token[], file: string, sink: Directive[], depth: number, at?: Position) => {
    const text = tokens
      .filter((t) => t.kind !== 'comment' && t.kind !== 'newline')
      .map((t) => t.text)
      .join('');
    const first = tokens[0]!;
    const p = at ?? { file, line: first.line, col: first.col };
    const lst = /^(?:@\^?\S+\s+)?~LST\s*\(/.exec(text.trim());
    if (lst) {
      const parsed = parseLst(text.trim().slice(lst[0].length));
      if (!parsed) {
        out.diagnostics.push(diag('error', 'KA_BAD_SEQ', p, `invalid ~LST specification '${text.trim()}'`));
        return;
      }
      for (const set of parsed.sets.slice(0, 100_000)) {
        parsed.vars.forEach((v, k) => {
          defs.set(v, { value: set[k] ?? '', multiline: false });
        });
        const r = parseKeepalived(parsed.body, file);
        walk(r.cst.children, file, sink, depth + 1, p);
      }
      return;
    }
    const m = /^(?:@\^?\S+\s+)?~SEQ(x?)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,([^)]*)\)\s*(.*)$/.exec(
      text.trim(),
    );
    const nums = m ? m[3]!.split(',').map((s) => Number(substitute(s.trim()))) : [];
    if (!m || nums.length < 1 || nums.length > 3 || nums.some((x) => Number.isNaN(x))) {
      out.diagnostics.push(diag('error', 'KA_BAD_SEQ', p, `invalid ~SEQ specification '${text.trim()}'`));
      return;
    }
    const [start, step, end] =
      nums.length === 1
        ? [1, 1, nums[0]!]
        : nums.length === 2
          ? [nums[0]!, nums[0]! <= nums[1]! ? 1 : -1, nums[1]!]
          : [nums[0]!, nums[1]!, nums[2]!];
    if (step === 0 || (start < end && step < 0) || (start > end && step > 0)) {
      out.diagnostics.push(diag('error', 'KA_BAD_SEQ', p, `invalid ~SEQ values in '${text.trim()}'`));
      return;
    }
    const name = m[2]!;
    const body = m[4]!;
    let count = 0;
    for (let v = start; step > 0 ? v <= end : v >= end; v += step) {
      if (++count > 100_000) break;
      defs.set(name, { value: m[1] ? v.toString(16) : String(v), multiline: false });
      const r = parseKeepalived(body, file);
      walk(r.cst.children, file, sink, depth + 1, p);
    }
  };

  const include = (raw: string, from: string, pos: Position, sink: Directive[], depth: number) => {
    const pattern = raw.startsWith('/') ? raw : path.join(path.dirname(from), raw);
    const g = globSnapshot(snapshot, pattern, opts.memory?.matchers);
    if (g.kind === 'unknown') {
      if (!out.unknownDirs.includes(g.dir)) out.unknownDirs.push(g.dir);
      out.includes.push({ pos, pattern, matched: [] });
      return;
    }
    const matched: string[] = [];
    for (const p of g.paths) {
      const f = snapshot.files.get(p)!;
      if ((f.mode & 0o170000) !== 0o100000 && f.mode !== 0) continue;
      if (f.mode & 0o111) {
        out.diagnostics.push(
          diag(
            'warning',
            'KA_INCLUDE_EXECUTABLE',
            pos,
            `${p} matches '${raw}' but is executable, so keepalived skips it; chmod a-x it if it should be read`,
          ),
        );
        continue;
      }
      matched.push(p);
    }
    out.includes.push({ pos, pattern, matched });
    if (matched.length === 0) {
      out.diagnostics.push(
        diag(
          'warning',
          'KA_INCLUDE_NO_MATCH',
          pos,
          `include '${raw}' matches no file (keepalived reads nothing here)`,
        ),
      );
      return;
    }
    for (const p of matched) readFile(p, sink, depth + 1, pos);
  };

  const readFile = (p: string, sink: Directive[], depth: number, from?: Position) => {
    if (depth > MAX_DEPTH || includeStack.includes(p)) {
      out.diagnostics.push(
        diag(
          'error',
          'KA_INCLUDE_CYCLE',
          from ?? { file: p, line: 1, col: 1 },
          `include cycle: ${[...includeStack, p].join(' -> ')}`,
        ),
      );
      return;
    }
    const entry = parsed(p);
    if (!entry) return;
    if (!seenFiles.has(p)) {
      seenFiles.add(p);
      out.files.push(p);
    }
    const slices = opts.slices;
    const leaf = (start: number) => {
      if (!slices) return;
      slices.set(p, slices.has(p) || sink !== out.directives ? null : { start, count: sink.length - start });
    };
    const ev = entry.evaluated;
    if (ev && (ev.anyConfigId || ev.configId === opts.configId)) {
      const start = sink.length;
      const ds = ev.directives;
      for (let i = 0; i < ds.length; i++) sink.push(ds[i]!);
      if (ev.diagnostics.length > 0) out.diagnostics.push(...ev.diagnostics);
      leaf(start);
      return;
    }
    entry.cst ??= parseKeepalived(entry.text, p).cst;
    entry.selfContained ??= isSelfContained(entry.cst.children);
    // A self-contained file's directives are kept (below); any other file's go straight to the
    // sink, so the files it includes land where they are in the result (their slices hold).
    const own: Directive[] = entry.selfContained ? [] : sink;
    const diagFrom = out.diagnostics.length;
    const start = sink.length;
    includeStack.push(p);
    walk(entry.cst.children, p, own, depth);
    includeStack.pop();
    if (own !== sink) for (const d of own) sink.push(d);
    if (entry.selfContained) leaf(start);
    else slices?.set(p, null);
    if (entry.selfContained && opts.memory) {
      entry.evaluated = {
        configId: opts.configId,
        directives: own,
        diagnostics: out.diagnostics.slice(diagFrom),
      };
      // The directives are all a self-contained file is needed for from now on: let its tokens go
      // (millions of small objects in a large set, which the collector would otherwise keep marking).
      entry.cst = undefined;
    }
  };

  if (!snapshot.files.has(rootPath)) {
    const dir = path.dirname(rootPath);
    if (![...snapshot.dirs].some((d) => dir === d || dir.startsWith(`${d}/`))) out.unknownDirs.push(dir);
    else
      out.diagnostics.push(
        diag('error', 'KA_MISSING_ROOT', { file: rootPath, line: 1, col: 1 }, `${rootPath} does not exist`),
      );
    return out;
  }
  readFile(rootPath, out.directives, 0);
  return out;
}

/**
 * `~LST(var, v1, v2, ...) text` and `~LST({a,b}, {1,2}, {3,4}) text` after the `(` (add_lst in
 * keepalived's parser.c): the variables, one set of values for each repetition (missing ones blank),
 * and the text repeated. undefined when keepalived would reject it.
 */
export function parseLst(s: string): { vars: string[]; sets: string[][]; body: string } | undefined {
  let i = 0;
  const ws = () => {
    while (s[i] === ' ' || s[i] === '\t') i++;
  };
  const group = (stop: RegExp): string[] | undefined => {
    ws();
    const braced = s[i] === '{';
    if (braced) i++;
    const out: string[] = [];
    for (;;) {
      ws();
      const from = i;
      while (i < s.length && !/[ \t,})]/.test(s[i]!)) i++;
      out.push(s.slice(from, i));
      ws();
      if (braced && s[i] === '}') {
        i++;
        return out;
      }
      if (!braced && (s[i] === ',' || s[i] === ')' || stop.test(s[i] ?? ''))) return out;
      if (s[i] !== ',') return undefined;
      i++;
    }
  };
  const vars = group(/,/);
  if (!vars || vars.some((v) => !/^[A-Za-z_][A-Za-z0-9_]*$/.test(v))) return undefined;
  ws();
  if (s[i] !== ',') return undefined;
  i++;
  const sets: string[][] = [];
  for (;;) {
    const values = group(/[,)]/);
    if (!values || values.length > vars.length) return undefined;
    sets.push(values);
    ws();
    if (s[i] === ')') {
      i++;
      break;
    }
    if (s[i] !== ',') return undefined;
    i++;
  }
  return { vars, sets, body: s.slice(i).trim() };
}

/** What keepalived defines by itself (set_std_definitions in its parser.c). */
const KEEPALIVED_DEFINES: ReadonlySet<string> = new Set(['_PWD', '_INSTANCE', '_RANDOM', '_HASH', '_BANG']);
