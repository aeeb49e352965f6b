// Diagnostics: findings about a user's configuration, returned as data. Pure.

export type Severity = 'error' | 'warning';

/** One finding. `file` is the path as the director sees it; `line` and `col` are 1-based. */
export interface Diagnostic {
  severity: Severity;
  code: string;
  file: string;
  line: number;
  col: number;
  message: string;
  /** Where else the finding points (the other half of a duplicate, the opening of a block). */
  related?: { file: string; line: number; col: number; message: string }[];
  /** Which checker produced it: our own lint, `ferm --noexec`, or `keepalived -t`. */
  source?: 'lvssync' | 'ferm' | 'keepalived';
}

export interface Position {
  file: string;
  line: number;
  col: number;
}

import { redactMessage } from './secrets.js';

export function diag(
  severity: Severity,
  code: string,
  at: Position,
  message: string,
  related?: Diagnostic['related'],
): Diagnostic {
  const d: Diagnostic = {
    severity,
    code,
    file: at.file,
    line: at.line,
    col: at.col,
    // a message quotes the words it is about: a secret's value never goes to a terminal or a log
    message: redactMessage(message),
    source: 'lvssync',
  };
  if (related && related.length > 0) d.related = related;
  return d;
}

/** Stable order: file, line, column, code. */
export function sortDiagnostics(diags: readonly Diagnostic[]): Diagnostic[] {
  return [...diags].sort(
    (a, b) =>
      (a.file < b.file ? -1 : a.file > b.file ? 1 : 0) ||
      a.line - b.line ||
      a.col - b.col ||
      (a.code < b.code ? -1 : a.code > b.code ? 1 : 0),
  );
}

export function hasErrors(diags: readonly Diagnostic[]): boolean {
  return diags.some((d) => d.severity === 'error');
}

/** The JSON shape of a Diagnostic in lvssync's --json outputs. */
export function diagnosticJson(d: Diagnostic): Record<string, unknown> {
  return {
    severity: d.severity,
    code: d.code,
    file: d.file,
    line: d.line,
    col: d.col,
    message: d.message,
    ...(d.related ? { related: d.related } : {}),
  };
}
