// Human-readable rendering of Diagnostics: `file:line:col: severity: message [CODE]`, the offending
// line (secrets redacted) and a caret under the column. Pure.

import type { Diagnostic } from './diagnostic.js';
import { redactLine } from './secrets.js';

/** The lines of each file, split once for a whole report (one finding per line of a large file is common). */
type LinesOf = (file: string) => string[] | undefined;

function linesOf(sourceOf: (file: string) => string | undefined): LinesOf {
  const split = new Map<string, string[] | undefined>();
  return (file) => {
    if (!split.has(file)) split.set(file, sourceOf(file)?.split('\n'));
    return split.get(file);
  };
}

/** Shown lines are cut around the column: a 3 MB line is not printed once per finding. */
const SHOWN = 160;

function shownLine(raw: string, col: number): { text: string; caret: number } {
  const text = redactLine(raw).replace(/\t/g, '    ');
  const caret = raw.slice(0, Math.max(0, col - 1)).replace(/\t/g, '    ').length;
  if (text.length <= SHOWN) return { text, caret: Math.min(caret, text.length) };
  const from = Math.max(0, Math.min(caret - SHOWN / 2, text.length - SHOWN));
  const cut = `${from > 0 ? '…' : ''}${text.slice(from, from + SHOWN)}${from + SHOWN < text.length ? '…' : ''}`;
  return { text: cut, caret: caret - from + (from > 0 ? 1 : 0) };
}

export function formatDiagnostic(
  d: Diagnostic,
  sourceOf: (file: string) => string | undefined,
  lines: LinesOf = linesOf(sourceOf),
): string {
  const out = [`${d.file}:${d.line}:${d.col}: ${d.severity}: ${d.message} [${d.code}]`];
  // the offending line is shown with secrets (auth_pass, ...) redacted: findings end up in terminals,
  // CI logs and mails
  const raw = lines(d.file)?.[d.line - 1];
  if (raw !== undefined) {
    const { text, caret } = shownLine(raw, d.col);
    out.push(`    ${text}`);
    out.push(`    ${' '.repeat(caret)}^`);
  }
  for (const r of d.related ?? []) {
    out.push(`  ${r.file}:${r.line}:${r.col}: note: ${r.message}`);
    const rawRelated = lines(r.file)?.[r.line - 1];
    if (rawRelated !== undefined) out.push(`    ${shownLine(rawRelated, r.col).text}`);
  }
  return out.join('\n');
}

export function formatDiagnostics(
  diags: readonly Diagnostic[],
  sourceOf: (file: string) => string | undefined,
): string {
  const lines = linesOf(sourceOf);
  return diags.map((d) => formatDiagnostic(d, sourceOf, lines)).join('\n\n');
}

export function formatSummary(diags: readonly Diagnostic[], fileCount: number): string {
  const errors = diags.filter((d) => d.severity === 'error').length;
  const warnings = diags.length - errors;
  const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? '' : 's'}`;
  return `${plural(fileCount, 'file')} checked: ${plural(errors, 'error')}, ${plural(warnings, 'warning')}`;
}
