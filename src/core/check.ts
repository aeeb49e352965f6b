// The validation pipeline for one director's configuration set, over an in-memory snapshot:
// keepalived.conf with its includes (parse, evaluate, model, lint) plus the cross-check against the
// ferm MARK rules. Pure: the results of the real `ferm` and `keepalived -t` are passed in.

import { type LocatedMark, validateMarks } from './cross-check.js';
import { type Diagnostic, sortDiagnostics } from './diagnostic.js';
import { type EvaluateOptions, type Evaluation, evaluateKeepalived } from './keepalived/evaluate.js';
import { validateKeepalived } from './keepalived/lint.js';
import { buildModel, type KeepalivedModel } from './keepalived/model.js';
import type { Snapshot } from './snapshot.js';

export interface CheckResultCore {
  evaluation: Evaluation;
  model: KeepalivedModel;
  diagnostics: Diagnostic[];
  /** Every file of the set, keepalived's in reading order, then ferm's. */
  files: string[];
}

export interface KeepalivedCheck {
  evaluation: Evaluation;
  model: KeepalivedModel;
  diagnostics: Diagnostic[];
}

export function checkKeepalived(
  snapshot: Snapshot,
  rootPath: string,
  opts: EvaluateOptions = {},
): KeepalivedCheck {
  const evaluation = evaluateKeepalived(snapshot, rootPath, opts);
  const model = buildModel(evaluation.directives);
  const diagnostics = [...evaluation.diagnostics, ...validateKeepalived(evaluation.directives, model)];
  return { evaluation, model, diagnostics };
}

/**
 * Folds the second opinion of `keepalived -t` in: a message on a line where lvssync already reports
 * something is dropped (ours names the column and the fix), everything else is kept.
 */
export function mergeSecondOpinion(ours: readonly Diagnostic[], theirs: readonly Diagnostic[]): Diagnostic[] {
  const lines = new Set(ours.map((d) => `${d.file}:${d.line}`));
  const codes = new Set(ours.map((d) => d.code));
  const restated = (d: Diagnostic) =>
    SAME_FINDING.some(([re, code]) => re.test(d.message) && codes.has(code));
  return [...ours, ...theirs.filter((d) => !lines.has(`${d.file}:${d.line}`) && !restated(d))];
}

/** keepalived -t messages that restate a finding of ours reported elsewhere (often without a line). */
const SAME_FINDING: ReadonlyArray<readonly [RegExp, string]> = [
  [/protocol specified for fwmark/, 'KA_PROTOCOL_ON_FWMARK'],
  [/Unknown keyword/, 'KA_UNKNOWN_KEYWORD'],
  [/deprecated/, 'KA_DEPRECATED'],
  [/Truncating auth_pass/, 'KA_AUTH_PASS_TRUNCATED'],
  [/No config files matched/, 'KA_INCLUDE_NO_MATCH'],
  [/Extra '}'|missing '}'|Missing '{'/i, 'KA_EXTRA_BRACE'],
  [/missing '}'s or extra '{'s/, 'KA_UNCLOSED_BLOCK'],
];

export function checkSet(
  keepalived: KeepalivedCheck,
  marks: readonly LocatedMark[] | undefined,
  external: readonly Diagnostic[],
): Diagnostic[] {
  const cross = marks ? validateMarks(keepalived.model, marks) : [];
  return sortDiagnostics(mergeSecondOpinion([...keepalived.diagnostics, ...cross], external));
}
