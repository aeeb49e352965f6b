// The peer side of a push: the managed files on this director, staged changes, atomic commit with a
// backup of every file replaced, the journal that lets an interrupted push be rolled back, and the
// history used by `lvssync rollback`. Shell: the only module that writes managed files. Composed of
// its parts in store/: the paths policy, checksums, the staging mirror, history, the journal.
//
// Safety rules, whatever the primary asks: only regular files under the managed roots are read or
// written; a path with a symlink anywhere below a managed root is refused; every replaced or deleted
// file is copied to the history first; a file is replaced by rename(2) of a fsync'ed temporary file.

import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import type { Config } from '../core/config.js';
import type { RemoteFile } from '../core/plan.js';
import type { HistoryEntry, ReloadResult } from '../core/protocol.js';
import { LvssyncError } from '../errors.js';
import { fsyncDir, linkTemp, replaceCacheFile, sameFile, syncAll, writeTemp } from './fs-atomic.js';
import { Checksums, sha256Hex, WrittenDigests } from './store/checksums.js';
import { History } from './store/history.js';
import { checkTxid, type Journal, TxRecords } from './store/journal.js';
import { ManagedPaths } from './store/paths.js';
import { mirrorId, StagingMirror } from './store/staging.js';

export type { Journal } from './store/journal.js';

const MAX_FILE = 16 * 1024 * 1024;
/** A temporary file older than this was left by a process that died (a commit takes far less). */
const LEFTOVER_AGE_MS = 60_000;
/** What one transaction may stage: files, and bytes in all (the agent's documented limits). */
export const MAX_TX_FILES = 20_000;
export const MAX_TX_BYTES = 256 * 1024 * 1024;

/** What a transaction put and removed in the staging tree, and why (its backup's reason). */
interface Transaction {
  txid: string;
  puts: string[];
  removes: string[];
  /** sha256 of each put's data. */
  shas?: Map<string, string>;
  /** Bytes staged so far. */
  bytes?: number;
  /** 'restore' when the transaction puts a history version back (lvssync rollback). */
  reason?: HistoryEntry['reason'];
}

export class Store {
  readonly roots: string[];
  readonly extra: string[];
  readonly stateDir: string;
  private readonly paths: ManagedPaths;
  private readonly checksums: Checksums;
  private readonly writtenDigests: WrittenDigests;
  private readonly staging: StagingMirror;
  private readonly history: History;
  private readonly records: TxRecords;
  /** The open transaction: what was put and removed in the staging tree. */
  private current: Transaction | undefined;
  /** lvssync temporary files seen by the last walk of the managed tree. */
  private leftovers: string[] = [];
  /**
   * The identities the last manifest saw, for a transaction begun right after it (the primary asks
   * for both at once): the staging mirror is brought up to date without walking the tree again.
   */
  private lastWalk: { at: number; ids: Map<string, { id: string; mode: number }> } | undefined;

  constructor(config: Config, opts: { prefix?: string } = {}) {
    const prefix = opts.prefix ?? '';
    this.roots = [
      ...new Set([path.posix.dirname(config.files.keepalived), path.posix.dirname(config.files.ferm)]),
    ].map((r) => prefix + r);
    this.extra = config.files.extra.map((e) => prefix + e);
    this.stateDir = prefix + config.stateDir;
    this.paths = new ManagedPaths(this.roots, this.extra);
    this.checksums = new Checksums(this.stateDir);
    this.writtenDigests = new WrittenDigests(this.stateDir);
    this.staging = new StagingMirror(this.stateDir, this.paths);
    this.history = new History(this.stateDir, config.history);
    this.records = new TxRecords(this.stateDir);
  }

  /** The managed roots and extra paths, as the agent reports them. */
  managed(): string[] {
    return this.paths.globs();
  }

  /** Throws E_PROTOCOL unless `p` is a plain absolute path inside a managed root or an extra path. */
  check(p: string): void {
    this.paths.check(p);
  }

  /** Every regular file under the managed roots (symlinks are reported as errors, never followed). */
  manifest(base = ''): RemoteFile[] {
    return this.manifestWithTimes(base).files;
  }

  /**
   * manifest(), with each file's mtime (ms) as the same walk saw it (the audit's pending-reload
   * check), and the managed files lvssync wrote here that are not here any more (`gone`).
   */
  manifestWithTimes(base = ''): {
    files: RemoteFile[];
    mtimes: Map<string, number>;
    gone: { path: string; written: string }[];
  } {
    const out: RemoteFile[] = [];
    const mtimes = new Map<string, number>();
    const ids = new Map<string, { id: string; mode: number }>();
    const written = base === '' ? this.writtenDigests.read() : {};
    if (base === '') {
      this.checksums.load();
      this.leftovers = [];
    }
    this.paths.each(
      base,
      (host, p, st) => {
        ids.set(host, { id: mirrorId(st), mode: st.mode & 0o7777 });
        const f: RemoteFile = {
          path: p,
          sha256: this.checksums.of(host, st),
          mode: st.mode & 0o7777,
          size: st.size,
        };
        if (written[p] !== undefined) f.written = written[p];
        out.push(f);
        mtimes.set(p, st.mtimeMs);
      },
      base === '' ? (p) => this.leftovers.push(p) : undefined,
    );
    if (base === '') {
      this.lastWalk = { at: Date.now(), ids };
      this.checksums.save(ids);
    }
    const gone = Object.entries(written)
      .filter(([p]) => !mtimes.has(p) && this.paths.covers(p))
      .map(([p, w]) => ({ path: p, written: w }))
      .sort((a, b) => (a.path < b.path ? -1 : 1));
    return { files: out, mtimes, gone };
  }

  /** Whether `p` names a managed file by its text alone (check() also looks at what is on disk). */
  covers(p: string): boolean {
    return this.paths.covers(p);
  }

  read(p: string): { exists: boolean; text: string; mode: number } {
    this.check(p);
    try {
      const st = lstatSync(p);
      if (!st.isFile()) return { exists: false, text: '', mode: 0 };
      return { exists: true, text: readFileSync(p, 'utf8'), mode: st.mode & 0o7777 };
    } catch {
      return { exists: false, text: '', mode: 0 };
    }
  }

  stagingRoot(txid: string): string {
    checkTxid(txid);
    return this.staging.root;
  }

  /**
   * The staging tree's paths changed since this last asked (all: the tree was made anew): the
   * agent updates its reading of the staged set with just these.
   */
  takeStagedChanges(): { all: boolean; paths: string[] } {
    return this.staging.takeChanges();
  }

  /** A staging tree holding a copy of every managed file, laid out like / (for `--root`). */
  begin(txid: string): string {
    const root = this.stagingRoot(txid);
    const recent = this.lastWalk && Date.now() - this.lastWalk.at < 1000 ? this.lastWalk.ids : undefined;
    this.lastWalk = undefined;
    const live = recent ?? this.manifestStats();
    this.removeLeftovers();
    this.staging.update(live);
    this.current = { txid, puts: [], removes: [] };
    return root;
  }

  /** The managed files' identities and modes (no file is read). */
  private manifestStats(): Map<string, { id: string; mode: number }> {
    const out = new Map<string, { id: string; mode: number }>();
    this.leftovers = [];
    this.paths.each(
      '',
      (host, _p, st) => out.set(host, { id: mirrorId(st), mode: st.mode & 0o7777 }),
      (p) => this.leftovers.push(p),
    );
    return out;
  }

  /** Removes the temporary files a commit or restore that died left in the managed tree. */
  removeLeftovers(now = Date.now()): string[] {
    const removed: string[] = [];
    for (const p of this.leftovers) {
      try {
        if (now - lstatSync(p).mtimeMs < LEFTOVER_AGE_MS) continue;
        rmSync(p, { force: true });
        removed.push(p);
      } catch {}
    }
    this.leftovers = [];
    return removed;
  }

  private tx(txid: string): Transaction {
    if (!this.current || this.current.txid !== txid) {
      throw new LvssyncError('E_PROTOCOL', `no staged transaction ${txid} (begin it first)`);
    }
    return this.current;
  }

  put(txid: string, p: string, mode: number, data: Buffer): string {
    this.check(p);
    if (data.length > MAX_FILE)
      throw new LvssyncError('E_PROTOCOL', `refused ${p}: larger than ${MAX_FILE} bytes`);
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777 || mode & 0o7000) {
      throw new LvssyncError(
        'E_PROTOCOL',
        `refused ${p}: mode ${mode.toString(8)} (no setuid/setgid/sticky)`,
      );
    }
    const t = this.tx(txid);
    if (!t.puts.includes(p) && t.puts.length + t.removes.length >= MAX_TX_FILES)
      throw new LvssyncError(
        'E_PROTOCOL',
        `refused ${p}: a transaction stages at most ${MAX_TX_FILES} files`,
      );
    t.bytes = (t.bytes ?? 0) + data.length;
    if (t.bytes > MAX_TX_BYTES)
      throw new LvssyncError(
        'E_PROTOCOL',
        `refused ${p}: a transaction stages at most ${MAX_TX_BYTES} bytes`,
      );
    const to = path.join(this.stagingRoot(txid), p);
    mkdirSync(path.dirname(to), { recursive: true });
    rmSync(to, { force: true });
    writeFileSync(to, data, { mode });
    // chmodSync follows symlinks; the file was just created here, so it is not one
    chmodSync(to, mode);
    this.staging.touched(p);
    if (!t.puts.includes(p)) t.puts.push(p);
    t.removes = t.removes.filter((x) => x !== p);
    const sha = sha256Hex(data);
    t.shas ??= new Map();
    t.shas.set(p, sha);
    return sha;
  }

  remove(txid: string, p: string): boolean {
    this.check(p);
    const t = this.tx(txid);
    const at = path.join(this.stagingRoot(txid), p);
    const existed = existsSync(at);
    rmSync(at, { force: true });
    this.staging.touched(p);
    if (!t.removes.includes(p)) t.removes.push(p);
    t.puts = t.puts.filter((x) => x !== p);
    return existed;
  }

  /** Removes the staging mirror (the next transaction builds it anew). */
  dropStaging(): void {
    this.current = undefined;
    this.staging.drop();
  }

  /** Ends a transaction without committing: the paths it touched are copied again by the next begin(). */
  discard(txid: string): void {
    const t = this.current?.txid === txid ? this.current : undefined;
    if (t) {
      // what the transaction staged leaves the kept tree: the next begin() copies the live files again
      this.staging.forget([...t.puts, ...t.removes]);
      this.current = undefined;
    }
    this.staging.afterDiscard();
  }

  journal(): Journal | undefined {
    return this.records.journal();
  }

  saveJournal(j: Journal | undefined): void {
    this.records.saveJournal(j);
  }

  /**
   * Backs up every file the transaction touches, then replaces them atomically. The journal written
   * before the first rename lets a rollback (abort, the next agent start) restore the backup.
   */
  async commit(txid: string): Promise<{ version: string; paths: string[] }> {
    this.lastWalk = undefined;
    const t = this.tx(txid);
    const stage = this.stagingRoot(txid);
    const paths = [...t.puts, ...t.removes].sort();
    for (const p of paths) this.check(p);
    const version = this.history.backup(paths, txid, t.reason ?? 'commit');
    const written: Record<string, string> = {};
    for (const p of t.puts) {
      const sha = t.shas?.get(p);
      if (sha) written[p] = sha;
    }
    const j: Journal = { txid, version, state: 'committing', reloaded: [], paths, written };
    this.saveJournal(j);
    // Write every new file next to its target first, all of them durable (the slow part), then
    // rename them all. A failure before the renames leaves the live files untouched and no
    // temporary file behind.
    const made = new Set<string>();
    const temps: string[] = [];
    try {
      for (const p of t.puts) {
        const src = path.join(stage, p);
        const st = statSync(src);
        // a directory the peer lacks (a new conf.d/, ferm.d/) is made, inside a managed root only
        const dir = path.dirname(p);
        if (!made.has(dir)) {
          mkdirSync(dir, { recursive: true, mode: 0o755 });
          made.add(dir);
        }
        this.check(p);
        // the staged file itself under a second name when it can be (one file system), else a copy
        const owner = ownerOf(p);
        const mode = st.mode & 0o7777;
        temps.push(linkTemp(p, src, mode, owner) ?? writeTemp(p, readFileSync(src), mode, owner, false));
      }
      await syncAll(temps);
    } catch (e) {
      for (const tmp of temps) rmSync(tmp, { force: true });
      throw e;
    }
    for (const [i, tmp] of temps.entries()) renameSync(tmp, t.puts[i]!);
    for (const p of t.removes) rmSync(p, { force: true });
    for (const d of new Set(paths.map((p) => path.dirname(p)))) fsyncDir(d);
    j.state = 'committed';
    this.saveJournal(j);
    // written.json learns the new files when the transaction is finished (recordWritten): until
    // then it may still be rolled back to what written.json says.
    this.staging.committed(t.puts, t.removes, statSync);
    this.current = undefined;
    this.staging.save();
    return { version, paths };
  }

  /**
   * A finished transaction's files are what lvssync last wrote there (removed ones: nothing): the
   * committed content, not what is there now (a hand edit since stays a conflict for the next push).
   */
  recordWritten(paths: readonly string[], committed: Record<string, string> = {}): void {
    const w = this.writtenDigests.read();
    for (const p of paths) {
      this.check(p);
      const sha = committed[p];
      if (sha) {
        w[p] = sha;
        continue;
      }
      try {
        w[p] = sha256Hex(readFileSync(p));
      } catch {
        delete w[p];
      }
    }
    this.writtenDigests.save(w);
  }

  private basePath(p: string): string {
    this.check(p);
    return path.join(this.stateDir, 'base', p);
  }

  /**
   * Keeps a copy of what `paths` hold now as the last set lvssync synced on this director (written
   * here by a push, or pushed from here): the base of a three-way difference when this director is
   * later found edited. A path that is gone loses its copy.
   */
  recordBase(paths: readonly string[], texts?: ReadonlyMap<string, string>): void {
    for (const p of paths) {
      const to = this.basePath(p);
      let data: Buffer | undefined;
      const text = texts?.get(p);
      if (text !== undefined) data = Buffer.from(text);
      else
        try {
          if (lstatSync(p).isFile()) data = readFileSync(p);
        } catch {}
      if (data === undefined) rmSync(to, { force: true });
      else if (!sameFile(to, data, 0o600)) {
        // a cache for the three-way display (conflicts are found by written.json): no fsync
        mkdirSync(path.dirname(to), { recursive: true, mode: 0o700 });
        replaceCacheFile(to, data);
      }
    }
  }

  /** sha256 of what lvssync last wrote (or pushed from) each path here: written.json. */
  lastWritten(): Record<string, string> {
    return this.writtenDigests.read();
  }

  /** What lvssync last synced to `p` here (recordBase), if anything. */
  base(p: string): { exists: boolean; text: string } {
    try {
      return { exists: true, text: readFileSync(this.basePath(p), 'utf8') };
    } catch {
      return { exists: false, text: '' };
    }
  }

  /** Copies the current state of `paths` into a new history version. */
  backup(paths: readonly string[], txid: string, reason: HistoryEntry['reason']): string {
    return this.history.backup(paths, txid, reason);
  }

  /**
   * Stages a history version in the open transaction (lvssync rollback): its files put, the ones it
   * did not have removed. The transaction is then validated, committed and reloaded like a push, and
   * its backup is marked 'restore'.
   */
  stageVersion(txid: string, version: string): string[] {
    const t = this.tx(txid);
    const v = this.history.open(version);
    for (const e of v.entries) {
      if (e.existed) this.put(txid, e.path, e.mode, v.data(e.path));
      else this.remove(txid, e.path);
    }
    t.reason = 'restore';
    return v.entries.map((e) => e.path);
  }

  /** Puts the files of a history version back (backing up what is there now first). */
  restoreVersion(
    version: string,
    reason: HistoryEntry['reason'] = 'restore',
  ): { backup: string; paths: string[] } {
    this.lastWalk = undefined;
    const v = this.history.open(version);
    for (const e of v.entries) this.check(e.path);
    const backup = this.history.backup(
      v.entries.map((e) => e.path),
      randomBytes(4).toString('hex'),
      reason,
    );
    const w = this.writtenDigests.read();
    for (const e of v.entries) {
      if (e.existed) {
        const data = v.data(e.path);
        w[e.path] = sha256Hex(data);
        // a file that already is what the version holds is left alone: a commit that stopped before
        // its renames (a full disk) is undone without writing anything
        if (sameFile(e.path, data, e.mode)) continue;
        mkdirSync(path.dirname(e.path), { recursive: true });
        renameSync(writeTemp(e.path, data, e.mode, { uid: e.uid, gid: e.gid }), e.path);
      } else {
        rmSync(e.path, { force: true });
        delete w[e.path];
      }
      fsyncDir(path.dirname(e.path));
    }
    this.writtenDigests.save(w);
    return { backup, paths: v.entries.map((e) => e.path) };
  }

  versions(): HistoryEntry[] {
    return this.history.versions();
  }

  /** Keeps the newest versions (lvssync.yaml's history). */
  trimHistory(): void {
    this.history.trim();
  }

  confirmPath(txid: string): string {
    return this.records.confirmPath(txid);
  }

  pruneConfirmations(olderThanMs: number, now = Date.now()): number {
    return this.records.pruneConfirmations(olderThanMs, now);
  }

  /**
   * Rolls the committed transaction in the journal back: puts back the history version its commit
   * made (what already is back is left alone), reloads every service (with `reload`) when it may
   * have loaded the new files, and only then forgets the journal (a rollback cut short is done
   * again by whoever comes next). The one way back for an abort, a session's recovery, the ferm
   * guard and the watcher. Throws E_WRITE, with what to do, when the files cannot be put back.
   */
  async rollback(
    j: Journal,
    reload: (() => Promise<ReloadResult[]>) | undefined,
  ): Promise<{ restored: string[]; reloaded: ReloadResult[] }> {
    let restored: string[];
    try {
      restored = this.restoreVersion(j.version, 'restore').paths;
    } catch (e) {
      throw new LvssyncError(
        'E_WRITE',
        `cannot roll back the interrupted push ${j.txid} (putting back version ${j.version}): ${(e as Error).message}; fix that (free space, a directory where a file belongs), then any lvssync command retries the rollback`,
        { cause: e },
      );
    }
    const reloaded = reload ? await reload() : [];
    this.saveJournal(undefined);
    return { restored, reloaded };
  }
}

function ownerOf(p: string): { uid: number; gid: number } | undefined {
  try {
    const st = lstatSync(p);
    return { uid: st.uid, gid: st.gid };
  } catch {
    return undefined;
  }
}
