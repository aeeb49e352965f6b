// Validates one director's configuration set as found under a root: reads the files, runs the pure
// checks, the real ferm and keepalived -t, and merges everything. Shell composition; used by
// `lvssync check`, by push before anything leaves the host, and by the peer agent on the staged tree.

import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import {
  type Boundary,
  boundaryOf,
  checkFermFiles,
  checkIncludes,
  checkScripts,
  insideManaged,
  type ManagedPaths,
} from '../core/boundary.js';
import {
  type CheckResultCore,
  checkKeepalived,
  combineFindings,
  type KeepalivedCheck,
  reloadRefusal,
} from '../core/check.js';
import type { Config } from '../core/config.js';
import { type LocatedMark, validateMarks } from '../core/cross-check.js';
import { type Diagnostic, diag } from '../core/diagnostic.js';
import { markLocator } from '../core/ferm/marks.js';
import type { EvaluateOptions, IncludeRef } from '../core/keepalived/evaluate.js';
import { checkVersions, versionedKeywords } from '../core/keepalived/lint.js';
import { emptySnapshot, type Snapshot, type SnapshotFile } from '../core/snapshot.js';
import { applySuppressions, type SeverityOverride, type Suppressed } from '../core/suppress.js';
import {
  addDir,
  addFile,
  hostPath,
  type Resolved,
  readKeepalivedSnapshot,
  readSoFar,
  rereadSnapshot,
  resolveIncludes,
  updateSnapshot,
} from './read-snapshot.js';
import { execFermCheck, execKeepalivedTest, type FermRun, type ToolRun } from './tools.js';
import { Workspace } from './workspace.js';

export interface DirectorCheckOptions {
  root: string;
  keepalivedPath: string;
  fermPath: string;
  configId?: string;
  /** Run the real ferm and keepalived -t (default true). */
  external?: boolean;
  /** Keep keepalived -t's messages about this host (missing interfaces) as errors: set on the director. */
  hostSpecific?: 'drop' | 'error';
  /**
   * What the owner keeps between runs (parsed files, the last check, validator verdicts): the
   * daemon's worker and the agent keep one; without it, a fresh one for this run.
   */
  workspace?: Workspace;
  /**
   * A snapshot kept between runs with the same workspace and root (the daemon's worker, the agent):
   * read again in place, so that a re-check redoes only what changed.
   */
  snapshot?: Snapshot;
  /**
   * With `snapshot`: the only paths that changed on disk since it was last read (the agent knows
   * what it staged); only these are read again.
   */
  changed?: readonly string[];
  /** Extra files of the set (files.extra), read with it. */
  extra?: readonly string[];
  /** Return before keepalived -t has finished, with the complete check in `complete` (push overlaps it). */
  deferKeepalivedTest?: boolean;
  /**
   * The directories keepalived's files can be in (the agent's managed roots, the only ones a staged
   * tree has): keepalived -t then starts at once, beside lvssync's own reading of the set.
   */
  keepalivedDirs?: readonly string[];
  /** Start keepalived -t only once this has resolved (instead of at once or after the check). */
  keepalivedTestAfter?: Promise<unknown>;
  /**
   * The lints wait for this (the agent's check ahead of the same snapshot, still linting when the
   * validation came): the validators start first, and the lints then redo only what it did not see.
   */
  lintsAfter?: Promise<unknown>;
  /**
   * The paths lvssync manages on this director: an include outside them is an error found before any
   * validator runs, and ferm's commands are refused unless `fermCommands` (core/boundary.ts).
   */
  boundary?: Boundary;
  /**
   * The agent validating what the primary sent: no validator runs before the boundary held, and what
   * they say about files outside the managed paths is withheld from the answer.
   */
  untrusted?: boolean;
  /** lvssync.yaml's check.severity (per-code severities, or off). */
  severity?: Readonly<Record<string, SeverityOverride>>;
  /** This director's name, for findings about it (a keyword newer than its keepalived). */
  host?: string;
}

function inputKey(
  parts: readonly string[],
  files: readonly SnapshotFile[],
  digest: (file: string, text: string) => string,
): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(`${p}\0`);
  for (const f of files) h.update(`${f.path}\0${f.mode}\0${digest(f.path, f.text)}\0`);
  return h.digest('hex');
}

export interface DirectorCheck extends CheckResultCore {
  snapshot: Snapshot;
  /** Findings silenced by an `lvssync: ignore` comment or check.severity: off (counted in the output). */
  suppressed: Suppressed[];
  /** ms from the start: `read` (the set read), `checked` (lvssync's own check done). */
  timings: Record<string, number>;
  ferm?: FermRun;
  keepalivedTest?: ToolRun;
  /**
   * With deferKeepalivedTest: these diagnostics lack keepalived -t's, and this is the complete check
   * once keepalived -t has finished.
   */
  complete?: Promise<DirectorCheck>;
}

/**
 * An unknown keyword that the installed keepalived -t accepts on that line never blocks a push on its
 * own: it stays a warning that shows both opinions.
 */
function secondOpinionOnUnknown(diags: Diagnostic[], kt: ToolRun | undefined): Diagnostic[] {
  if (!kt?.available) return diags;
  const theirs = new Set(
    kt.diagnostics.filter((d) => /Unknown keyword/i.test(d.message)).map((d) => `${d.file}:${d.line}`),
  );
  return diags.map((d) =>
    d.code === 'KA_UNKNOWN_KEYWORD' && d.severity === 'error' && !theirs.has(`${d.file}:${d.line}`)
      ? {
          ...d,
          severity: 'warning',
          message: `${d.message}; the installed keepalived -t accepts it here, so it does not block a push`,
        }
      : d,
  );
}

/** A validator's message about a file outside the managed paths: said, but without its content. */
function withheld(d: Diagnostic, managed: ManagedPaths): Diagnostic {
  if (insideManaged(d.file, managed)) return d;
  return {
    ...d,
    message: `${d.source ?? 'a validator'} reported a problem in a file outside the paths lvssync manages (its text is not repeated here)`,
  };
}

/**
 * Reads the set under `root` into `snapshot`, as checkDirector does first: in full, or with `changed`
 * only those paths again. `fermRead` is called once ferm's files are read (ferm may start then).
 * Nothing is judged and nothing is run: the agent reads its staged copy ahead of a validation.
 */
export async function readDirectorSet(
  opts: Pick<
    DirectorCheckOptions,
    'root' | 'keepalivedPath' | 'fermPath' | 'configId' | 'extra' | 'changed' | 'boundary'
  > & { snapshot: Snapshot; workspace: Workspace },
  fermRead: () => void = () => {},
): Promise<Resolved | undefined> {
  const { snapshot, workspace: ws } = opts;
  const managed = opts.boundary?.managed;
  const inside = managed
    ? (d: string) => managed.roots.some((r) => d === r || d.startsWith(`${r}/`))
    : undefined;
  if (opts.changed) {
    // only what a full reading would hold: the set's files and what the listed directories hold
    const dirs = [...snapshot.dirs];
    const held = opts.changed.filter(
      (p) =>
        snapshot.files.has(p) ||
        p === opts.keepalivedPath ||
        p === opts.fermPath ||
        opts.extra?.includes(p) ||
        dirs.some((d) => p.startsWith(`${d}/`)),
    );
    await updateSnapshot(snapshot, opts.root, held, ws);
    return resolveIncludes(snapshot, opts.root, opts.keepalivedPath, opts.configId, ws, inside);
  }
  let resolved: Resolved | undefined;
  const fermDir = path.posix.dirname(opts.fermPath);
  await rereadSnapshot(snapshot, ws, async () => {
    // ferm's files first: ferm starts while keepalived's set is read
    await addDir(snapshot, opts.root, fermDir, ws);
    await addFile(snapshot, opts.root, opts.fermPath, ws);
    fermRead();
    for (const e of opts.extra ?? []) await addFile(snapshot, opts.root, e, ws);
    resolved = await readKeepalivedSnapshot(
      snapshot,
      opts.root,
      opts.keepalivedPath,
      opts.configId,
      ws,
      inside,
    );
  });
  return resolved;
}

/**
 * Reads the set as readDirectorSet does and runs lvssync's own keepalived checks on it, no validator:
 * what they leave in the workspace makes a later checkDirector of the same snapshot, after a few
 * files changed, redo only those (the agent checks its staged copy while the primary uploads).
 */
export async function checkAhead(
  opts: Parameters<typeof readDirectorSet>[0],
  /** The set is read (the lints follow in a later turn: what came in meanwhile is answered first). */
  onRead: () => void = () => {},
): Promise<void> {
  await readDirectorSet(opts);
  onRead();
  await new Promise<void>((resolve) => setImmediate(resolve));
  opts.workspace.primeFindings();
  checkKeepalived(opts.snapshot, opts.keepalivedPath, evaluateOptions(opts.workspace, opts.configId));
}

/** How checkDirector and checkAhead ask the checker: the same, or the memo the one leaves is not the other's. */
function evaluateOptions(ws: Workspace, configId: string | undefined): EvaluateOptions {
  return configId === undefined ? { memory: ws } : { memory: ws, configId };
}

export async function checkDirector(opts: DirectorCheckOptions): Promise<DirectorCheck> {
  // an untrusted set's includes are checked first: keepalived -t then never starts early
  const early =
    opts.external !== false &&
    !opts.untrusted &&
    opts.keepalivedDirs &&
    existsSync(hostPath(opts.root, opts.keepalivedPath))
      ? execKeepalivedTest(
          opts.root,
          opts.keepalivedPath,
          [],
          opts.configId,
          opts.hostSpecific ?? 'drop',
          opts.keepalivedDirs,
        )
      : undefined;
  void early?.catch(() => undefined);
  const t0 = performance.now();
  const snapshot = opts.snapshot ?? emptySnapshot();
  const ws = opts.workspace ?? new Workspace();
  const fermDir = path.posix.dirname(opts.fermPath);
  // ferm runs as soon as its files are read (they are read first, and are few): it takes about as
  // long as keepalived -t, and waiting for keepalived's set to be parsed made it the last to finish.
  const tools = ws.tools;
  let fermRun: Promise<FermRun> | undefined;
  let fermFiles: SnapshotFile[] = [];
  let fermRefusals: Diagnostic[] = [];
  const sourceOf = (p: string) => snapshot.files.get(p)?.text;
  const startFerm = () => {
    const seen = readSoFar(snapshot, ws);
    if (fermRun || opts.external === false || !snapshot.files.has(opts.fermPath)) return;
    if (seen && !seen.has(opts.fermPath)) return;
    // during a reading, a file kept from the last one and not read again may be gone: left out
    fermFiles = [...snapshot.files.values()].filter(
      (f) => (f.path === opts.fermPath || f.path.startsWith(`${fermDir}/`)) && (!seen || seen.has(f.path)),
    );
    const files = fermFiles;
    if (opts.boundary) {
      fermRefusals = checkFermFiles(files, opts.boundary.managed, opts.boundary.fermCommands);
      // ferm runs the commands it reads and reads the files it includes: never on a refused set
      if (fermRefusals.length) return;
    }
    const run = () => execFermCheck(opts.root, opts.fermPath, sourceOf);
    fermRun = tools.get('ferm', inputKey([opts.fermPath], files, tools.digest), run);
    void fermRun.catch(() => undefined);
  };
  // keepalived -t reads what the includes name: never an include outside the managed paths
  const startKeepalivedTest = (
    kaPaths: readonly string[],
    includes: readonly IncludeRef[],
  ): Promise<ToolRun> | undefined => {
    if (opts.external === false || !snapshot.files.has(opts.keepalivedPath)) return undefined;
    if (opts.boundary && checkIncludes(includes, opts.boundary.managed).length > 0) return undefined;
    const run = () =>
      execKeepalivedTest(opts.root, opts.keepalivedPath, kaPaths, opts.configId, opts.hostSpecific ?? 'drop');
    const after = opts.keepalivedTestAfter;
    const kaFiles = kaPaths.map((p) => snapshot.files.get(p)!).filter(Boolean);
    const key = inputKey(
      [opts.keepalivedPath, opts.configId ?? '', opts.hostSpecific ?? 'drop'],
      kaFiles,
      tools.digest,
    );
    const r = after ? after.then(() => tools.get('keepalived', key, run)) : tools.get('keepalived', key, run);
    void r.catch(() => undefined);
    return r;
  };
  const { changed, ...rest } = opts;
  // (`changed` speaks of a snapshot kept from before: a new one is read in full)
  const resolved = await readDirectorSet(
    { ...rest, ...(opts.snapshot && changed ? { changed } : {}), snapshot, workspace: ws },
    startFerm,
  );
  const timings: Record<string, number> = { read: performance.now() - t0 };
  // What keepalived reads is known once the set is read: its keepalived -t runs beside the lints
  // (an include reaching outside the managed paths still keeps it from ever starting).
  let kaRun = early ?? (resolved ? startKeepalivedTest(resolved.files, resolved.includes) : undefined);
  // the check ahead of this snapshot (the agent's) lints first: what it leaves is taken here
  if (opts.lintsAfter) await opts.lintsAfter;
  // what an earlier process found in the files it judged is not looked for again
  ws.primeFindings();
  const ka = checkKeepalived(snapshot, opts.keepalivedPath, evaluateOptions(ws, opts.configId));
  timings.checked = performance.now() - t0;
  const external: Diagnostic[] = [];
  let marks: LocatedMark[] | undefined;
  // (the incremental path, or a ferm.conf that appeared since the last reading, starts it here)
  startFerm();
  if (!fermRun)
    fermFiles = [...snapshot.files.values()].filter(
      (f) => f.path === opts.fermPath || f.path.startsWith(`${fermDir}/`),
    );
  const includeRefusals = opts.boundary ? checkIncludes(ka.evaluation.includes, opts.boundary.managed) : [];
  if (opts.boundary?.scripts) external.push(...checkScripts(ka.evaluation.directives, opts.boundary.scripts));
  external.push(...fermRefusals, ...includeRefusals);
  if (!snapshot.files.has(opts.fermPath)) {
    external.push(
      diag(
        'error',
        'FERM_MISSING',
        { file: opts.fermPath, line: 1, col: 1 },
        `${opts.fermPath} does not exist`,
      ),
    );
  }
  // The two real validators run side by side; each is skipped when its input is unchanged.
  kaRun ??= startKeepalivedTest(ka.evaluation.files, ka.evaluation.includes);
  const ferm = await fermRun;
  if (ferm) {
    external.push(...ferm.diagnostics);
    if (ferm.available && ferm.diagnostics.length === 0) {
      const sources = [
        ...fermFiles.filter((f) => f.path === opts.fermPath),
        ...fermFiles.filter((f) => f.path !== opts.fermPath),
      ].map((f) => ({ file: f.path, text: f.text }));
      // a verdict reused from the ToolCache shares its marks array, whose locations are known
      marks = ws.located.get(ferm.marks);
      if (!marks) {
        const locate = markLocator(sources);
        marks = ferm.marks.map((rule) => ({ rule, pos: locate(rule) }));
        ws.located.set(ferm.marks, marks);
      }
    }
  }
  const files = [
    ...ka.evaluation.files,
    ...fermFiles.map((f) => f.path).filter((p) => !ka.evaluation.files.includes(p)),
  ];
  // a keyword newer than the keepalived this director runs is an error here, where it would be ignored
  // (keepalived is asked its version only for a set that uses such a keyword)
  const versioned = opts.external !== false ? versionedKeywords(ka.evaluation.directives) : [];
  const version = versioned.length ? tools.keepalivedVersion() : undefined;
  const cross = [
    ...(marks ? validateMarks(ka.model, marks) : []),
    ...(version ? checkVersions(versioned, version, opts.host ?? 'this director') : []),
  ];
  const complete = (keepalivedTest: ToolRun | undefined): DirectorCheck => {
    const found = keepalivedTest
      ? [...external, ...keepalivedTest.diagnostics, ...reloadRefusal(ka.model, keepalivedTest.exitCode)]
      : external;
    const all =
      opts.untrusted && opts.boundary ? found.map((d) => withheld(d, opts.boundary!.managed)) : found;
    const combined = secondOpinionOnUnknown(combineFindings(ka, cross, all), keepalivedTest);
    const split = new Map<string, string[] | undefined>();
    const lines = (f: string) => {
      if (!split.has(f)) split.set(f, snapshot.files.get(f)?.text.split('\n'));
      return split.get(f);
    };
    const { diagnostics, suppressed } = applySuppressions(combined, lines, opts.severity);
    const result: DirectorCheck = {
      ...ka,
      diagnostics,
      suppressed,
      files,
      snapshot,
      timings,
    };
    if (ferm) result.ferm = ferm;
    if (keepalivedTest) result.keepalivedTest = keepalivedTest;
    return result;
  };
  if (opts.deferKeepalivedTest && kaRun) {
    // Everything but keepalived -t now; the complete verdict when it has finished.
    const partial = complete(undefined);
    partial.complete = kaRun.then(complete);
    return partial;
  }
  return complete(await kaRun);
}

export interface SelfCheckOptions {
  workspace?: Workspace;
  snapshot?: Snapshot;
  /** Return before keepalived -t has finished (DirectorCheck.complete): a push. */
  deferKeepalivedTest?: boolean;
  /** Start keepalived -t only once this has resolved (a push: once the set is on its way to the peer). */
  keepalivedTestAfter?: Promise<unknown>;
}

/** Checks this director's own set at / with lvssync's configuration (its config-id included). */
export function checkSelf(
  config: Config,
  self: string,
  external: boolean,
  o: SelfCheckOptions = {},
): Promise<DirectorCheck> {
  const configId = config.nodes[self]?.configId;
  return checkDirector({
    boundary: boundaryOf(config),
    severity: config.check.severity,
    host: self,
    ...(o.snapshot ? { snapshot: o.snapshot } : {}),
    ...(config.files.extra.length ? { extra: config.files.extra } : {}),
    root: '/',
    keepalivedPath: config.files.keepalived,
    fermPath: config.files.ferm,
    ...(configId === undefined ? {} : { configId }),
    external,
    ...(o.workspace ? { workspace: o.workspace } : {}),
    deferKeepalivedTest: o.deferKeepalivedTest === true,
    ...(o.keepalivedTestAfter
      ? { keepalivedTestAfter: o.keepalivedTestAfter }
      : o.deferKeepalivedTest
        ? // keepalived -t starts at once, beside lvssync's own reading of the set
          { keepalivedDirs: [path.posix.dirname(config.files.keepalived)] }
        : {}),
  });
}

/**
 * This director's keepalived set, read for its model and file list only: no lints, no external
 * validators (the audit compares what the set says with what runs; `lvssync check` judges it).
 */
export async function readSelf(config: Config, self: string): Promise<KeepalivedCheck> {
  const configId = config.nodes[self]?.configId;
  const snapshot = emptySnapshot();
  const ws = new Workspace();
  await readKeepalivedSnapshot(snapshot, '/', config.files.keepalived, configId, ws);
  return checkKeepalived(snapshot, config.files.keepalived, {
    memory: ws,
    lint: false,
    ...(configId === undefined ? {} : { configId }),
  });
}
