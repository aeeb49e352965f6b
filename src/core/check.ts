// The validation pipeline for one director's configuration set, over an in-memory snapshot:
// keepalived.conf with its includes (parse, evaluate, model, lint) plus the cross-check against the
// ferm MARK rules. Pure: the results of the real `ferm` and `keepalived -t` are passed in.

import { type Diagnostic, diag, sortDiagnostics } from './diagnostic.js';
import {
  type Directive,
  type EvaluateOptions,
  type Evaluation,
  evaluateKeepalived,
} from './keepalived/evaluate.js';
import { validateKeepalived, virtualServerIdentity, virtualServerIsClean } from './keepalived/lint.js';
import { buildModel, type KeepalivedModel, type VirtualServer } from './keepalived/model.js';
import type { CheckMemory } from './memory.js';
import { FileMap, type Snapshot } from './snapshot.js';

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
  const memory = opts.memory;
  const memo = memory?.checks.get(snapshot) as CheckMemo | undefined;
  if (memory && memo) {
    const r = recheck(memo, memory, snapshot, rootPath, opts);
    if (r) return r;
  }
  const slices: NonNullable<EvaluateOptions['slices']> | undefined =
    memory && snapshot.files instanceof FileMap ? new Map() : undefined;
  const evaluation = evaluateKeepalived(snapshot, rootPath, slices ? { ...opts, slices } : opts);
  const model = buildModel(evaluation.directives, memory);
  // lint: false reads the set for its model only (the audit); the evaluation's own findings stay
  const diagnostics =
    opts.lint === false
      ? evaluation.diagnostics
      : [...evaluation.diagnostics, ...validateKeepalived(evaluation.directives, model, memory)];
  const result = { evaluation, model, diagnostics };
  if (memory && slices) memory.checks.set(snapshot, remember(result, snapshot, rootPath, opts, slices));
  return result;
}

// Incremental re-check. After a full check of a snapshot (with a parse cache, on a FileMap), what is
// needed to redo it cheaply when only leaf files changed (a conf.d file: self-contained, read once,
// straight into the top level) is kept; the next check of the same snapshot asks the FileMap which
// files changed since, and when each changed file held only virtual servers with no finding of
// their own, and still does, and no duplicate is made or undone, the result is the previous one with
// those files' directives and virtual servers replaced: every other finding is exactly what a full
// check would find again. Anything else is checked in full.

/** What CheckMemory.checks holds for a snapshot. */
interface CheckMemo {
  version: number;
  keysVersion: number;
  dirsSize: number;
  rootPath: string;
  configId: string | undefined;
  lint: boolean;
  result: KeepalivedCheck;
  slices: Map<string, { start: number; count: number } | null>;
  /** Files with findings of the evaluation (parse errors and the like): always checked in full. */
  flagged: Set<string>;
  modes: Map<string, number>;
  /** Where each virtual server's directive is in model.virtualServers. */
  serverAt: Map<Directive, number>;
  /** How many virtual servers have each identity (virtualServerIdentity). */
  identities: Map<string, number>;
}

function remember(
  result: KeepalivedCheck,
  snapshot: Snapshot,
  rootPath: string,
  opts: EvaluateOptions & { lint?: boolean },
  slices: NonNullable<EvaluateOptions['slices']>,
): CheckMemo {
  const files = snapshot.files as FileMap;
  const modes = new Map<string, number>();
  for (const [p, s] of slices) if (s) modes.set(p, files.get(p)?.mode ?? -1);
  const serverAt = new Map<Directive, number>();
  const identities = new Map<string, number>();
  result.model.virtualServers.forEach((vs, i) => {
    serverAt.set(vs.directive, i);
    const id = virtualServerIdentity(vs);
    identities.set(id, (identities.get(id) ?? 0) + 1);
  });
  return {
    version: files.version,
    keysVersion: files.keysVersion,
    dirsSize: snapshot.dirs.size,
    rootPath,
    configId: opts.configId,
    lint: opts.lint !== false,
    result,
    slices,
    flagged: new Set(result.evaluation.diagnostics.map((d) => d.file)),
    modes,
    serverAt,
    identities,
  };
}

function recheck(
  memo: CheckMemo,
  memory: CheckMemory,
  snapshot: Snapshot,
  rootPath: string,
  opts: EvaluateOptions & { lint?: boolean },
): KeepalivedCheck | undefined {
  const files = snapshot.files;
  if (
    !(files instanceof FileMap) ||
    memo.rootPath !== rootPath ||
    memo.configId !== opts.configId ||
    memo.lint !== (opts.lint !== false) ||
    memo.keysVersion !== files.keysVersion ||
    memo.dirsSize !== snapshot.dirs.size ||
    opts.direct === false
  )
    return undefined;
  const touched = files.changedSince(memo.version);
  if (!touched) return undefined;
  const paths = [...new Set(touched)];
  if (paths.length > 64) return undefined;
  const prev = memo.result;
  const replace: {
    slice: { start: number; count: number };
    at: number;
    ds: Directive[];
    vs: VirtualServer[];
  }[] = [];
  const delta = new Map<string, number>();
  for (const p of paths) {
    const slice = memo.slices.get(p);
    const f = files.get(p);
    if (!slice || !f || f.mode !== memo.modes.get(p) || memo.flagged.has(p)) return undefined;
    const one = evaluateKeepalived(
      { files: new Map([[p, f]]), dirs: new Set() },
      p,
      opts.configId === undefined ? { memory } : { memory, configId: opts.configId },
    );
    if (one.diagnostics.length || one.includes.length || one.unknownDirs.length) return undefined;
    if (memory.parse.get(p)?.selfContained !== true) return undefined;
    const ds = one.directives;
    if (ds.length !== slice.count || ds.length === 0) return undefined;
    const first = prev.evaluation.directives[slice.start]!;
    const at = memo.serverAt.get(first);
    if (at === undefined) return undefined;
    const vs = buildModel(ds, memory).virtualServers;
    if (vs.length !== ds.length) return undefined;
    for (let k = 0; k < ds.length; k++) {
      const oldD = prev.evaluation.directives[slice.start + k]!;
      const oldVs = prev.model.virtualServers[at + k];
      if (!oldVs || oldVs.directive !== oldD || oldD.name !== 'virtual_server') return undefined;
      if (oldVs.key.kind === 'group' || vs[k]!.key.kind === 'group') return undefined;
      if (
        memo.lint &&
        (!virtualServerIsClean(oldD, oldVs, memory) || !virtualServerIsClean(ds[k]!, vs[k]!, memory))
      )
        return undefined;
      const was = virtualServerIdentity(oldVs);
      const is = virtualServerIdentity(vs[k]!);
      delta.set(was, (delta.get(was) ?? 0) - 1);
      delta.set(is, (delta.get(is) ?? 0) + 1);
    }
    replace.push({ slice, at, ds, vs });
  }
  // no duplicate found before may go, and none may appear
  for (const [id, d] of delta) {
    const before = memo.identities.get(id) ?? 0;
    if (before > 1 || before + d > 1) return undefined;
  }
  const directives = prev.evaluation.directives.slice();
  const servers = prev.model.virtualServers.slice();
  for (const r of replace) {
    for (let k = 0; k < r.ds.length; k++) {
      memo.serverAt.delete(directives[r.slice.start + k]!);
      directives[r.slice.start + k] = r.ds[k]!;
      servers[r.at + k] = r.vs[k]!;
      memo.serverAt.set(r.ds[k]!, r.at + k);
    }
  }
  for (const [id, d] of delta) {
    const n = (memo.identities.get(id) ?? 0) + d;
    if (n === 0) memo.identities.delete(id);
    else memo.identities.set(id, n);
  }
  const result: KeepalivedCheck = {
    evaluation: { ...prev.evaluation, directives },
    model: { ...prev.model, virtualServers: servers },
    diagnostics: prev.diagnostics.slice(),
  };
  memo.result = result;
  memo.version = files.version;
  return result;
}

/**
 * Folds the second opinion of `keepalived -t` in: a message on a line where lvssync already reports
 * something at least as severe is dropped (ours names the column and the fix), and so is a message
 * that restates a finding of ours (keepalived often prints those without a position); everything
 * else is kept: an error of keepalived's is never hidden behind a warning of ours.
 */
export function mergeSecondOpinion(ours: readonly Diagnostic[], theirs: readonly Diagnostic[]): Diagnostic[] {
  const rank = (d: Diagnostic) => (d.severity === 'error' ? 2 : d.severity === 'warning' ? 1 : 0);
  const lines = new Map<string, number>();
  for (const d of ours) {
    const k = `${d.file}:${d.line}`;
    lines.set(k, Math.max(lines.get(k) ?? 0, rank(d)));
  }
  const codes = new Set(ours.map((d) => d.code));
  const restated = (d: Diagnostic) => equivalentCodes(d.message).some((c) => codes.has(c));
  const covered = (d: Diagnostic) => (lines.get(`${d.file}:${d.line}`) ?? -1) >= rank(d);
  return [...ours, ...theirs.filter((d) => !covered(d) && !restated(d))];
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

/** This director's findings: keepalived's, the mark cross-check's, and the real tools' second opinions. */
/**
 * With reload_check_config, keepalived reloads only a configuration its config test passes without
 * a single message (vrrp_daemon.c, main.c: any reported config error, a deprecated keyword or a
 * truncated auth_pass included): keepalived -t's exit status says whether it would.
 */
export function reloadRefusal(model: KeepalivedModel, keepalivedTestExit: number | undefined): Diagnostic[] {
  const at = model.reload.checkConfig;
  if (!at || keepalivedTestExit === undefined || keepalivedTestExit === 0) return [];
  return [
    diag(
      'error',
      'KA_RELOAD_REFUSED',
      at,
      `keepalived -t reports messages for this configuration (exit ${keepalivedTestExit}): with reload_check_config, keepalived refuses to load it and keeps running the old one; clear every message keepalived -t prints (deprecated keywords and warnings count too)`,
    ),
  ];
}

export function combineFindings(
  keepalived: KeepalivedCheck,
  cross: readonly Diagnostic[],
  external: readonly Diagnostic[],
): Diagnostic[] {
  return sortDiagnostics(mergeSecondOpinion([...keepalived.diagnostics, ...cross], external));
}
