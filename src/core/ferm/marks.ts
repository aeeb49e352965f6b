// Reads what `ferm --noexec --lines` prints (iptables-save or iptables command lines) and ferm's error
// messages. Pure; never throws.

import { type Diagnostic, diag } from '../diagnostic.js';

export interface MarkRule {
  family: 'ip' | 'ip6';
  table: string;
  chain: string;
  destination?: string;
  protocol?: string;
  dports: string[];
  /** The mark as a number, read the way iptables reads it (C base 0: 0x.. hex, 0.. octal). */
  mark: number;
  mask?: number;
  /** The mark exactly as ferm passed it on (e.g. `0x0064`). */
  markText: string;
  /** The iptables rule, for messages. */
  rule: string;
}

/** strtoul(s, NULL, 0) as iptables uses for marks; NaN when not a number. */
export function parseCNumber(s: string): number {
  if (/^0x[0-9a-f]+$/i.test(s)) return Number.parseInt(s.slice(2), 16);
  if (/^0[0-7]+$/.test(s)) return Number.parseInt(s.slice(1), 8);
  if (/^\d+$/.test(s)) return Number(s);
  return Number.NaN;
}

function splitArgs(line: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) out.push(m[1] ?? m[2] ?? m[3]!);
  return out;
}

/** Extracts the MARK rules from ferm's `--noexec --lines` output (fast iptables-save or --slow mode). */
export function parseFermLines(output: string): MarkRule[] {
  const rules: MarkRule[] = [];
  let family: 'ip' | 'ip6' = 'ip';
  let table = 'filter';
  for (const raw of output.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    if (line.startsWith('#')) {
      if (/ip6tables/.test(line)) family = 'ip6';
      else if (/iptables/.test(line)) family = 'ip';
      continue;
    }
    if (line.startsWith('*')) {
      table = line.slice(1);
      continue;
    }
    let args = splitArgs(line);
    let fam = family;
    let tbl = table;
    if (args[0] && /(^|\/)ip6?tables(-legacy|-nft)?$/.test(args[0])) {
      fam = /ip6tables/.test(args[0]) ? 'ip6' : 'ip';
      args = args.slice(1);
      tbl = 'filter';
      const t = args.indexOf('-t');
      if (t !== -1 && args[t + 1]) {
        tbl = args[t + 1]!;
        args.splice(t, 2);
      }
    }
    const a = args.indexOf('-A') !== -1 ? args.indexOf('-A') : args.indexOf('--append');
    if (a === -1) continue;
    const chain = args[a + 1] ?? '';
    const target = optionValue(args, ['-j', '--jump']);
    if (target !== 'MARK') continue;
    const setMark = optionValue(args, ['--set-mark']);
    const setXmark = optionValue(args, ['--set-xmark']);
    const text = setMark ?? setXmark;
    if (text === undefined) continue;
    const [markText, maskText] = text.split('/') as [string, string | undefined];
    const r: MarkRule = {
      family: fam,
      table: tbl,
      chain,
      dports: [],
      mark: parseCNumber(markText),
      markText,
      rule: args.join(' '),
    };
    if (maskText !== undefined) r.mask = parseCNumber(maskText);
    const dst = optionValue(args, ['-d', '--destination']);
    if (dst) r.destination = dst;
    const proto = optionValue(args, ['-p', '--protocol']);
    if (proto) r.protocol = proto;
    const dport = optionValue(args, ['--dport', '--destination-port', '--dports', '--destination-ports']);
    if (dport) r.dports = dport.split(',');
    rules.push(r);
  }
  return rules;
}

function optionValue(args: string[], names: string[]): string | undefined {
  for (let i = 0; i < args.length - 1; i++) if (names.includes(args[i]!)) return args[i + 1];
  return undefined;
}

/**
 * Turns ferm's error report into a Diagnostic. ferm prints `Error in FILE line N:`, the statement up
 * to the offending word followed by `<--`, and the message on the last line.
 * `toDirectorPath` maps the path ferm printed back to the path the director uses.
 */
export function parseFermError(
  stderr: string,
  fallbackFile: string,
  sourceOf: (file: string) => string | undefined,
  toDirectorPath: (p: string) => string = (p) => p,
): Diagnostic[] {
  const lines = stderr.split('\n').map((l) => l.replace(/\s+$/, ''));
  const out: Diagnostic[] = [];
  const head = lines.findIndex((l) => /^Error in .* line \d+:$/.test(l));
  if (head === -1) {
    const msg =
      lines
        .filter((l) => l !== '')
        .join(' ')
        .trim() || 'ferm failed without a message';
    out.push({
      ...diag('error', 'FERM_ERROR', { file: fallbackFile, line: 1, col: 1 }, `ferm: ${msg}`),
      source: 'ferm',
    });
    return out;
  }
  const m = /^Error in (.*) line (\d+):$/.exec(lines[head]!)!;
  const file = toDirectorPath(m[1]!);
  const lineNo = Number(m[2]);
  const rest = lines.slice(head + 1).filter((l) => l.trim() !== '');
  const message = rest[rest.length - 1]?.trim() ?? 'syntax error';
  const marker = rest.find((l) => l.includes('<--'));
  let col = 1;
  const offending = marker?.replace('<--', '').trim().split(/\s+/).pop();
  const src = sourceOf(file)?.split('\n')[lineNo - 1];
  if (offending && src) {
    const idx = src.indexOf(offending);
    if (idx !== -1) col = idx + 1;
  }
  out.push({
    ...diag('error', 'FERM_ERROR', { file, line: lineNo, col }, `ferm: ${message}`),
    source: 'ferm',
  });
  return out;
}

export interface FermSourcePos {
  file: string;
  line: number;
  col: number;
}

/**
 * Finds the line of ferm source that most likely sets a mark: first the literal text ferm passed on
 * (`0x0064`), then any number of the same value on a line that mentions a mark or calls a function.
 * ferm's --lines output does not carry source lines, so this is a best effort; falls back to line 1.
 */
export function locateMark(
  rule: Pick<MarkRule, 'mark' | 'markText'>,
  sources: ReadonlyArray<{ file: string; text: string }>,
): FermSourcePos {
  return markLocator(sources)(rule);
}

/**
 * locateMark for many rules over the same sources: the sources are indexed once (every word and
 * every number on the lines that mention a mark, first occurrence kept), so a set with thousands of
 * marks is located in one pass instead of one pass per mark.
 */
export function markLocator(
  sources: ReadonlyArray<{ file: string; text: string }>,
): (rule: Pick<MarkRule, 'mark' | 'markText'>) => FermSourcePos {
  const words = new Map<string, FermSourcePos>();
  const numbers = new Map<number, FermSourcePos>();
  for (const s of sources) {
    const lines = s.text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const l = stripComment(lines[i]!);
      if (!/mark|&/i.test(l)) continue;
      // the literal: a whole word (letters, digits, underscore) equal to ferm's text of the mark
      const word = /[0-9A-Za-z_]+/g;
      for (let m = word.exec(l); m; m = word.exec(l)) {
        if (!words.has(m[0])) words.set(m[0], { file: s.file, line: i + 1, col: m.index + 1 });
      }
      const re = /(^|[^0-9A-Za-z_$])(0x[0-9a-fA-F]+|\d+)(?![0-9A-Za-z_.])/g;
      for (let m = re.exec(l); m; m = re.exec(l)) {
        const v = parseCNumber(m[2]!);
        if (!numbers.has(v)) numbers.set(v, { file: s.file, line: i + 1, col: m.index + m[1]!.length + 1 });
      }
    }
  }
  const fallback: FermSourcePos = { file: sources[0]?.file ?? 'ferm.conf', line: 1, col: 1 };
  return (rule) => words.get(rule.markText) ?? numbers.get(rule.mark) ?? fallback;
}

function stripComment(l: string): string {
  const i = l.indexOf('#');
  return i === -1 ? l : l.slice(0, i);
}
