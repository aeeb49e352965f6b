// The escape hatches of a check, as mature linters have them: a comment that silences one finding
// on its line (`# lvssync: ignore KA_CODE [reason]`, or on a comment line right above), and
// per-code severities from lvssync.yaml (`check.severity: {KA_CODE: warning|off}`). What guards the
// peer's boundary can never be silenced. Pure.

import type { Diagnostic, Severity } from './diagnostic.js';

/** Findings that protect a director from what a set would make it read or run: never silenced. */
export const UNSUPPRESSIBLE: ReadonlySet<string> = new Set([
  'FERM_COMMAND_REFUSED',
  'FERM_INCLUDE_OUTSIDE',
  'KA_INCLUDE_OUTSIDE',
  'KA_SCRIPT_NOT_ALLOWED',
  'KA_TOO_DEEP',
]);

export type SeverityOverride = Severity | 'off';

export interface Suppressed {
  diagnostic: Diagnostic;
  /** 'comment' (with the reason written there, if any) or 'config' (check.severity: off). */
  by: 'comment' | 'config';
  reason?: string;
}

const IGNORE = /[#!]\s*lvssync:\s*ignore\s+([A-Z][A-Z0-9_]*(?:\s*,\s*[A-Z][A-Z0-9_]*)*)(?:\s+(.*?))?\s*$/;

/** The codes a line's `lvssync: ignore` comment names, with its reason. */
function ignoresOn(line: string | undefined): { codes: string[]; reason?: string } | undefined {
  if (line === undefined) return undefined;
  const m = IGNORE.exec(line);
  if (!m) return undefined;
  const codes = m[1]!.split(',').map((c) => c.trim());
  return m[2] ? { codes, reason: m[2] } : { codes };
}

/**
 * Applies the comments and the configured severities: what stays, and what was silenced (reported
 * as "suppressed: N" so that nothing disappears unseen). `linesOf` gives a file's lines (split once).
 * A comment counts on the finding's own line, or alone on the line right above it.
 */
export function applySuppressions(
  diagnostics: readonly Diagnostic[],
  linesOf: (file: string) => readonly string[] | undefined,
  severity: Readonly<Record<string, SeverityOverride>> = {},
): { diagnostics: Diagnostic[]; suppressed: Suppressed[] } {
  const kept: Diagnostic[] = [];
  const suppressed: Suppressed[] = [];
  for (const d of diagnostics) {
    if (UNSUPPRESSIBLE.has(d.code)) {
      kept.push(d);
      continue;
    }
    const lines = linesOf(d.file);
    const own = ignoresOn(lines?.[d.line - 1]);
    const above = lines?.[d.line - 2];
    const prev = above !== undefined && /^\s*[#!]/.test(above) ? ignoresOn(above) : undefined;
    const hit = [own, prev].find((x) => x?.codes.includes(d.code));
    if (hit) {
      suppressed.push({ diagnostic: d, by: 'comment', ...(hit.reason ? { reason: hit.reason } : {}) });
      continue;
    }
    const o = severity[d.code];
    if (o === 'off') suppressed.push({ diagnostic: d, by: 'config' });
    else if (o) kept.push({ ...d, severity: o });
    else kept.push(d);
  }
  return { diagnostics: kept, suppressed };
}
