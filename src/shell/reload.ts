// Reloads a service only with the set that validated, on either director: its files are read and
// compared right before the reload, keepalived's reload_file tells when keepalived has read them,
// and they are compared again after; what each service loaded is recorded by content (loaded.json).
// Shell: the file tree, the service's commands, the state directory.

import { lstatSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import picomatch from 'picomatch';
import { isEditorTemp } from '../core/coalesce.js';
import type { Config } from '../core/config.js';
import type { Diagnostic } from '../core/diagnostic.js';
import type { Evaluation } from '../core/keepalived/evaluate.js';
import type { KeepalivedModel } from '../core/keepalived/model.js';
import {
  diffReadings,
  diffSets,
  type ReloadOutcome,
  type SetDigests,
  type SetReading,
  serviceGlobs,
  setDigest,
  sha256,
} from '../core/service-set.js';
import type { Snapshot } from '../core/snapshot.js';
import { atomicWrite, readJsonFile, unlinkQuiet } from './fs-atomic.js';
import { reloadService } from './services.js';

/** How a guarded reload of one service reads its files and learns that they were read. */
export interface ReloadGuard {
  /** The files the service reads (serviceGlobs). */
  globs: string[];
  /** The set that validated: every file the globs match, with its digest. */
  validated: SetDigests;
  /** keepalived's reload_file: created before the reload, removed by keepalived once it has read. */
  reloadFile?: string;
}

const MAX_WALK = 20_000;

/** The files under `root` (a director's `/`, or a staging tree) that match the globs. */
/** One matcher for all the globs; a glob that does not compile matches nothing (as glob(3) would). */
function matcherOf(globs: readonly string[]): (p: string) => boolean {
  const each = globs.map((g) => {
    try {
      return picomatch(g, { posix: true });
    } catch {
      return () => false;
    }
  });
  return (p) => each.some((m) => m(p));
}

export function readSet(globs: readonly string[], root = '/'): SetReading {
  const match = matcherOf(globs);
  const digests = new Map<string, string>();
  const identities = new Map<string, string>();
  const host = (p: string) => (root === '/' ? p : path.join(root, p));
  const take = (p: string) => {
    if (digests.has(p) || isEditorTemp(p) || !match(p)) return;
    try {
      const st = statSync(host(p), { bigint: true });
      if (!st.isFile()) return;
      digests.set(p, sha256(readFileSync(host(p), 'utf8')));
      identities.set(p, `${st.ino}:${st.ctimeNs}:${st.size}`);
    } catch {
      // gone between the listing and the reading: absent
    }
  };
  let seen = 0;
  const walk = (dir: string) => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = readdirSync(host(dir), { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (++seen > MAX_WALK) return;
      const p = path.posix.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() || e.isSymbolicLink()) take(p);
    }
  };
  for (const g of globs) {
    const scan = picomatch.scan(g);
    if (!scan.isGlob) take(g);
    else walk(scan.base || '/');
  }
  return { digests, identities };
}

/** The digests of the snapshot's files that the globs match (what lvssync's checks and the validators read). */
export function snapshotSet(snapshot: Snapshot, globs: readonly string[]): Map<string, string> {
  const match = matcherOf(globs);
  const out = new Map<string, string>();
  for (const f of snapshot.files.values()) {
    if (match(f.path) && !isEditorTemp(f.path)) out.set(f.path, sha256(f.text));
  }
  return out;
}

export interface ReloadTiming {
  /** Without a reload file: how long keepalived is given to read its files after the signal. */
  settleMs: number;
  /** How long keepalived may take to read its files before the reload counts as failed. */
  timeoutMs: number;
  sleep?: (ms: number) => Promise<void>;
}

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Reloads `service` if, and only if, its files are the set that validated; then checks that they
 * stayed so while the service read them. Never throws for the service's own failures (the outcome
 * says); throws only for a service this director's lvssync.yaml does not have.
 */
export async function reloadGuarded(
  config: Config,
  service: string,
  guard: ReloadGuard,
  timing: ReloadTiming,
): Promise<ReloadOutcome> {
  const sleep = timing.sleep ?? defaultSleep;
  const before = readSet(guard.globs);
  const changed = diffSets(guard.validated, before.digests);
  if (changed.length > 0) return { kind: 'superseded', changed, output: '' };
  const file = guard.reloadFile;
  if (file) {
    // non-empty: keepalived truncates it when it starts reading, and removes it when done
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, `lvssync ${process.pid}\n`);
  }
  const t0 = performance.now();
  const r = await reloadService(config, service);
  let failure: string | undefined = r.ok ? undefined : r.output;
  if (file && r.ok) {
    const until = performance.now() + timing.timeoutMs;
    while (exists(file) && performance.now() < until) await sleep(10);
    if (exists(file))
      failure = `${r.output}${r.output ? '\n' : ''}${service} did not read its configuration within ${Math.round(timing.timeoutMs / 1000)} s of the reload (its reload_file ${file} is still there): is it running?`;
  } else if (r.ok && service === 'keepalived') await sleep(timing.settleMs);
  if (file) unlinkQuiet(file);
  // files that changed while the service read them explain a failure too: what it loaded is unknown
  const after = readSet(guard.globs);
  const during = diffReadings(before, after);
  const durationMs = performance.now() - t0;
  if (during.length > 0) return { kind: 'changed-during', changed: during, durationMs, output: r.output };
  if (failure !== undefined) return { kind: 'failed', durationMs, output: failure };
  const digest = setDigest(guard.validated);
  recordLoaded(config.stateDir, service, digest, guard.validated, guard.globs);
  return { kind: 'loaded', digest, durationMs, output: r.output };
}

function exists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/** What lvssync last saw each service load on this director, by content. */
export interface LoadedRecord {
  digest: string;
  /** ms since the epoch. */
  at: number;
  files: Record<string, string>;
  /** The globs the set was read with (serviceGlobs). */
  globs?: string[];
}

export function readLoaded(stateDir: string): Record<string, LoadedRecord> {
  return readJsonFile<Record<string, LoadedRecord>>(path.join(stateDir, 'loaded.json')) ?? {};
}

function recordLoaded(
  stateDir: string,
  service: string,
  digest: string,
  files: SetDigests,
  globs: readonly string[],
): void {
  updateLoaded(stateDir, (all) => {
    all[service] = { digest, at: Date.now(), files: Object.fromEntries(files), globs: [...globs] };
    return true;
  });
}

/** loaded.json changed by `change` (written when it says so). */
function updateLoaded(stateDir: string, change: (all: Record<string, LoadedRecord>) => boolean): void {
  try {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const all = readLoaded(stateDir);
    if (change(all)) atomicWrite(path.join(stateDir, 'loaded.json'), `${JSON.stringify(all)}\n`, 0o600);
  } catch {
    // the record serves the audit's pending-reload check; a full state directory is reported there
  }
}

/**
 * Forgets what `services` loaded: they were reloaded with files lvssync did not validate as a set
 * (a rollback's), so what they run is not known (no pending reload is claimed, the next push reloads them).
 */
export function forgetLoaded(stateDir: string, services: readonly string[]): void {
  updateLoaded(stateDir, (all) => {
    const had = services.filter((s) => s in all);
    for (const s of had) delete all[s];
    return had.length > 0;
  });
}

/** What a validation of the files on disk says, for a reload whose files changed while they were read. */
export type Revalidation = { guard: ReloadGuard } | { diagnostics: Diagnostic[] };

export interface ValidatedReload {
  outcome: ReloadOutcome;
  /** How many reloads it took (more than one: the files changed while the service read them). */
  rounds: number;
  /** What the last validation of the files on disk found, when they did not validate. */
  invalid?: Diagnostic[];
}

/**
 * A guarded reload that recovers from a save during the reload: when the files changed while the
 * service read them, what it loaded is unknown, so the files on disk now are validated and, if
 * valid, loaded the same way (at most `rounds` times); if invalid, that is the answer at once.
 */
export async function reloadValidated(
  config: Config,
  service: string,
  guard: ReloadGuard,
  timing: ReloadTiming,
  revalidate: () => Promise<Revalidation>,
  rounds = 3,
): Promise<ValidatedReload> {
  let g = guard;
  for (let round = 1; ; round++) {
    const outcome = await reloadGuarded(config, service, g, timing);
    // after a reload that read changing files, a set that moved again still leaves it unknown
    const unknown = outcome.kind === 'changed-during' || (round > 1 && outcome.kind === 'superseded');
    if (!unknown || round >= rounds) {
      if (round > 1 && outcome.kind === 'superseded')
        return { outcome: { ...outcome, kind: 'changed-during', durationMs: 0 }, rounds: round };
      return { outcome, rounds: round };
    }
    const r = await revalidate();
    if ('diagnostics' in r) return { outcome, rounds: round, invalid: r.diagnostics };
    g = r.guard;
  }
}

/** The guard of one service's reload from a check of its set (this director's, or a staged one). */
export function guardFor(
  config: Config,
  service: string,
  check: { snapshot: Snapshot; evaluation: Evaluation; model: KeepalivedModel },
): ReloadGuard {
  const globs = serviceGlobs(
    config,
    service,
    check.evaluation.includes.map((i) => i.pattern),
  );
  const file = check.model.reload.file?.value;
  return {
    globs,
    validated: snapshotSet(check.snapshot, globs),
    ...(service === 'keepalived' && file ? { reloadFile: file } : {}),
  };
}

/** The timing of guarded reloads from lvssync.yaml. */
export function reloadTiming(config: Config): ReloadTiming {
  return { settleMs: config.push.reloadSettleMs, timeoutMs: config.push.reloadTimeoutSeconds * 1000 };
}

/**
 * Per service, the files whose content differs from what it last loaded through lvssync. A service
 * restarted since (keepalived's start time after the record) read whatever was there: not known.
 */
export function readPending(
  stateDir: string,
  startedAt: Record<string, number | undefined> = {},
): Record<string, { at: number; changed: string[] }> {
  const out: Record<string, { at: number; changed: string[] }> = {};
  for (const [service, rec] of Object.entries(readLoaded(stateDir))) {
    if (!rec.globs) continue;
    const started = startedAt[service];
    if (started !== undefined && started > rec.at + 1000) continue;
    out[service] = {
      at: rec.at,
      changed: diffSets(new Map(Object.entries(rec.files)), readSet(rec.globs).digests),
    };
  }
  return out;
}
