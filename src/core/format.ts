// Human-readable rendering of Diagnostics: `file:line:col: severity: message [CODE]`, the offending
// line (secrets redacted) and a caret under the column. Pure.

import type { Diagnostic } from './diagnostic.js';
import { redactLine } from './redact.js';

export function formatDiagnostic(d: Diagnostic, sourceOf: (file: string) => string | undefined): string {
  const out = [`${d.file}:${d.line}:${d.col}: ${d.severity}: ${d.message} [${d.code}]`];
  // the offending line is shown with secrets (auth_pass, ...) redacted: findings end up in terminals,
  // CI logs and mails
  const raw = sourceOf(d.file)?.split('\n')[d.line - 1];
  const text = raw === undefined ? undefined : redactLine(raw);
  if (text !== undefined) {
    const expanded = text.replace(/\t/g, '    ');
    const prefix = text.slice(0, Math.max(0, d.col - 1)).replace(/\t/g, '    ');
    out.push(`    ${expanded}`);
    out.push(`    ${' '.repeat(prefix.length)}^`);
  }
  for (const r of d.related ?? []) {
    out.push(`  ${r.file}:${r.line}:${r.col}: note: ${r.message}`);
    const rawRelated = sourceOf(r.file)?.split('\n')[r.line - 1];
    const rt = rawRelated === undefined ? undefined : redactLine(rawRelated);
    if (rt !== undefined) out.push(`    ${rt.replace(/\t/g, '    ')}`);
  }
  return out.join('\n');
}

export function formatDiagnostics(
  diags: readonly Diagnostic[],
  sourceOf: (file: string) => string | undefined,
): string {
  return diags.map((d) => formatDiagnostic(d, sourceOf)).join('\n\n');
}

export function formatSummary(diags: readonly Diagnostic[], fileCount: number): string {
  const errors = diags.filter((d) => d.severity === 'error').length;
  const warnings = diags.length - errors;
  const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? '' : 's'}`;
  return `${plural(fileCount, 'file')} checked: ${plural(errors, 'error')}, ${plural(warnings, 'warning')}`;
}
