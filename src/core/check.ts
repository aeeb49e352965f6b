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
  opts: EvaluateOptions & { lint?: boolean } = {},
): KeepalivedCheck {
  const evaluation = evaluateKeepalived(snapshot, rootPath, opts);
  const model = buildModel(evaluation.directives);
  // lint: false reads the set for its model only (the audit); the evaluation's own findings stay
  const diagnostics =
    opts.lint === false
      ? evaluation.diagnostics
      : [...evaluation.diagnostics, ...validateKeepalived(evaluation.directives, model)];
  return { evaluation, model, diagnostics };
}

/**
 * Folds the second opinion of `keepalived -t` in: a message on a line where lvssync already reports
 * something is dropped (ours names the column and the fix), and so is a message that restates a
 * finding of ours (keepalived often prints those without a position); everything else is kept.
 */
export function mergeSecondOpinion(ours: readonly Diagnostic[], theirs: readonly Diagnostic[]): Diagnostic[] {
  const lines = new Set(ours.map((d) => `${d.file}:${d.line}`));
  const codes = new Set(ours.map((d) => d.code));
  const restated = (d: Diagnostic) => equivalentCodes(d.message).some((c) => codes.has(c));
  return [...ours, ...theirs.filter((d) => !lines.has(`${d.file}:${d.line}`) && !restated(d))];
}

/** keepalived -t messages and the lvssync findings that say the same thing. */
export const KEEPALIVED_T_EQUIVALENTS: ReadonlyArray<readonly [RegExp, readonly string[]]> = [
  [/protocol specified for fwmark/, ['KA_PROTOCOL_ON_FWMARK']],
  [/missing '}'s or extra '{'s/, ['KA_UNCLOSED_BLOCK']],
  [/Unknown keyword '}'|Extra '}' found|missing '}'|Missing '{'/i, ['KA_EXTRA_BRACE', 'KA_UNEXPECTED_BRACE']],
  [/Unknown keyword/, ['KA_UNKNOWN_KEYWORD']],
  [/deprecated/, ['KA_DEPRECATED']],
  [/Truncating auth_pass/, ['KA_AUTH_PASS_TRUNCATED']],
  [/No config files matched|Config files missing/, ['KA_INCLUDE_NO_MATCH']],
  [/no protocol set - defaulting to UDP/, ['KA_NO_PROTOCOL', 'KA_INVALID_VALUE']],
  [/no forwarding method set/, ['KA_NO_LVS_METHOD', 'KA_INVALID_VALUE']],
  [/No VIP specified/, ['KA_NO_VIP']],
  [/no scheduler set, setting default/, ['KA_INVALID_SCHEDULER']],
  [/Sync group \S+ has only 1 virtual router/, ['KA_SYNC_GROUP_SINGLE', 'KA_UNKNOWN_INSTANCE']],
  [/Virtual router \S+ specified in sync group \S+ doesn't exist/, ['KA_UNKNOWN_INSTANCE']],
  [/is duplicated - removing second rs/, ['KA_DUPLICATE_REAL_SERVER']],
  [/has no real servers/, ['KA_NO_REAL_SERVER', 'KA_OUT_OF_RANGE', 'KA_BAD_ADDRESS']],
  [/the virtual router id must be set/, ['KA_MISSING_VRID', 'KA_OUT_OF_RANGE']],
  [/No script set for vrrp_script/, ['KA_SCRIPT_NO_COMMAND']],
  [/track script \S+ not found/, ['KA_UNKNOWN_SCRIPT', 'KA_SCRIPT_NO_COMMAND']],
  [/Initial state master is incompatible with AH/, ['KA_AH_MASTER']],
  [/real server \S+ has port specified - clearing/, ['KA_FWMARK_RS_PORT']],
];

export function equivalentCodes(message: string): readonly string[] {
  return KEEPALIVED_T_EQUIVALENTS.find(([re]) => re.test(message))?.[1] ?? [];
}

export function checkSet(
  keepalived: KeepalivedCheck,
  marks: readonly LocatedMark[] | undefined,
  external: readonly Diagnostic[],
): Diagnostic[] {
  const cross = marks ? validateMarks(keepalived.model, marks) : [];
  return combineFindings(keepalived, cross, external);
}

/** checkSet with the mark cross-check already done (a caller that merges twice does it once). */
export function combineFindings(
  keepalived: KeepalivedCheck,
  cross: readonly Diagnostic[],
  external: readonly Diagnostic[],
): Diagnostic[] {
  return sortDiagnostics(mergeSecondOpinion([...keepalived.diagnostics, ...cross], external));
}
