// The peer side of a push: the managed files on this director, staged changes, atomic commit with a
// backup of every file replaced, the journal that lets an interrupted push be rolled back, and the
// history used by `lvssync rollback`. Shell: the only module that writes managed files.
//
// Safety rules, whatever the primary asks: only regular files under the managed roots are read or
// written; a path with a symlink anywhere below a managed root is refused; every replaced or deleted
// file is copied to the history first; a file is replaced by rename(2) of a fsync'ed temporary file.

import { createHash, randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import type { Config } from '../core/config.js';
import type { RemoteFile } from '../core/plan.js';
import type { HistoryEntry } from '../core/protocol.js';
import { LvssyncError } from '../errors.js';
import { atomicWrite, fsyncDir, readJsonFile, replaceCacheFile, sameFile, writeTemp } from './fs-atomic.js';

export interface Journal {
  txid: string;
  version: string;
  state: 'committing' | 'committed' | 'reloaded';
  reloaded: string[];
  paths: string[];
  /** sha256 of what the commit wrote to each put path: what lvssync wrote, whatever is there later. */
  written?: Record<string, string>;
}

interface Meta extends HistoryEntry {
  entries: { path: string; existed: boolean; mode: number; uid: number; gid: number }[];
}

const MAX_FILE = 16 * 1024 * 1024;
/** The temporary files writeTemp makes: `.NAME.lvssync-tmp-XXXXXXXX`. */
const TEMP_NAME = /^\..+\.lvssync-tmp-[0-9a-f]{8}$/;
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
  private readonly history: number;
  /** The open transaction: what was put and removed in the staging tree. */
  private current: Transaction | undefined;
  /** lvssync temporary files seen by the last walk of the managed tree. */
  private leftovers: string[] = [];

  constructor(config: Config, opts: { prefix?: string } = {}) {
    const prefix = opts.prefix ?? '';
    this.roots = [
      ...new Set([path.posix.dirname(config.files.keepalived), path.posix.dirname(config.files.ferm)]),
    ].map((r) => prefix + r);
    this.extra = config.files.extra.map((e) => prefix + e);
    this.stateDir = prefix + config.stateDir;
    this.history = config.history;
  }

  /** The managed roots and extra paths, as the agent reports them. */
  managed(): string[] {
    return [...this.roots.map((r) => `${r}/**`), ...this.extra];
  }

  /** Throws E_PROTOCOL unless `p` is a plain absolute path inside a managed root or an extra path. */
  check(p: string): void {
    if (typeof p !== 'string' || !p.startsWith('/') || path.posix.normalize(p) !== p || p.includes('\0')) {
      throw new LvssyncError('E_PROTOCOL', `refused path '${String(p)}': not a normalised absolute path`);
    }
    const root = this.roots.find((r) => p.startsWith(`${r}/`));
    const extra = this.extra.includes(p);
    if (!root && !extra) {
      throw new LvssyncError(
        'E_PROTOCOL',
        `refused path '${p}': outside the managed paths (${this.managed().join(', ')})`,
      );
    }
    // No symlink from the managed root down to the file (the root itself included).
    const start = root ?? path.posix.dirname(p);
    const parts = path.posix.relative(start, p).split('/');
    let cur = start;
    for (let i = -1; i < parts.length; i++) {
      if (i >= 0) cur = path.posix.join(cur, parts[i]!);
      let st: Stats;
      try {
        st = lstatSync(cur);
      } catch {
        return; // the rest does not exist yet
      }
      if (st.isSymbolicLink()) {
        throw new LvssyncError(
          'E_PROTOCOL',
          `refused path '${p}': ${cur} is a symlink (lvssync never follows them)`,
        );
      }
      if (i < parts.length - 1 && !st.isDirectory()) {
        throw new LvssyncError('E_PROTOCOL', `refused path '${p}': ${cur} is not a directory`);
      }
      if (i === parts.length - 1 && i >= 0 && st.isDirectory()) {
        throw new LvssyncError(
          'E_PROTOCOL',
          `refused path '${p}': it is a directory on this director, where the primary has a file; remove or rename it there`,
        );
      }
    }
  }

  private written(): Record<string, string> {
    return readJsonFile<Record<string, string>>(path.join(this.stateDir, 'written.json')) ?? {};
  }

  private saveWritten(w: Record<string, string>): void {
    atomicWrite(path.join(this.stateDir, 'written.json'), `${JSON.stringify(w, null, 1)}\n`, 0o600);
  }

  /** Every regular file under the managed roots (symlinks are reported as errors, never followed). */
  manifest(base = ''): RemoteFile[] {
    return this.manifestWithTimes(base).files;
  }

  /** manifest(), with each file's mtime (ms) as the same walk saw it (the audit's pending-reload check). */
  manifestWithTimes(base = ''): { files: RemoteFile[]; mtimes: Map<string, number> } {
    const out: RemoteFile[] = [];
    const mtimes = new Map<string, number>();
    const ids = new Map<string, { id: string; mode: number }>();
    const written = base === '' ? this.written() : {};
    if (base === '') {
      this.loadChecksums();
      this.leftovers = [];
    }
    this.eachManaged(base, (host, p, st) => {
      ids.set(host, { id: mirrorId(st), mode: st.mode & 0o7777 });
      const f: RemoteFile = {
        path: p,
        sha256: this.sha256Of(host, st),
        mode: st.mode & 0o7777,
        size: st.size,
      };
      if (written[p] !== undefined) f.written = written[p];
      out.push(f);
      mtimes.set(p, st.mtimeMs);
    });
    if (base === '') {
      this.lastWalk = { at: Date.now(), ids };
      this.saveChecksums(ids);
    }
    return { files: out, mtimes };
  }

  /**
   * The identities the last manifest saw, for a transaction begun right after it (the primary asks
   * for both at once): the staging mirror is brought up to date without walking the tree again.
   */
  private lastWalk: { at: number; ids: Map<string, { id: string; mode: number }> } | undefined;

  /**
   * Checksums by file identity (inode, size, mtime), kept while the agent runs, so a manifest of an
   * unchanged tree reads no file (rsync's quick check, plus the inode: a file replaced by rename is
   * always read). ctime is left out because staging links the files, which touches it. The clock
   * ticks coarsely, so a file modified in the last two seconds is read every time (git's "racy
   * clean" rule). They are kept in the state directory too (checksums.json, like git's index), so
   * the first manifest of a new agent session does not read every file again.
   */
  private readonly shas = new Map<string, { id: string; sha: string }>();
  private shasLoaded = false;
  private shasChanged = false;

  private sha256Of(host: string, st: Stats): string {
    const id = `${st.ino}:${st.size}:${st.mtimeMs}`;
    const known = this.shas.get(host);
    if (known && known.id === id) return known.sha;
    const sha = createHash('sha256').update(readFileSync(host)).digest('hex');
    if (Date.now() - st.mtimeMs > 2000) this.shas.set(host, { id, sha });
    else this.shas.delete(host);
    this.shasChanged = true;
    return sha;
  }

  private get checksumsPath(): string {
    return path.join(this.stateDir, 'checksums.json');
  }

  /** The checksums kept by earlier sessions (a missing or unreadable file is an empty cache). */
  private loadChecksums(): void {
    if (this.shasLoaded) return;
    this.shasLoaded = true;
    const saved = readJsonFile<[string, string, string][]>(this.checksumsPath);
    if (!Array.isArray(saved)) return;
    for (const e of saved) {
      if (Array.isArray(e) && e.length === 3 && e.every((x) => typeof x === 'string') && !this.shas.has(e[0]))
        this.shas.set(e[0], { id: e[1], sha: e[2] });
    }
  }

  /** Keeps the checksums of the files a full manifest saw (a cache: no fsync; a torn file is ignored). */
  private saveChecksums(seen: ReadonlyMap<string, unknown>): void {
    if (!this.shasChanged) return;
    this.shasChanged = false;
    const out: [string, string, string][] = [];
    for (const [host, k] of this.shas) if (seen.has(host)) out.push([host, k.id, k.sha]);
    try {
      mkdirSync(this.stateDir, { recursive: true, mode: 0o700 });
      replaceCacheFile(this.checksumsPath, JSON.stringify(out));
    } catch {
      // a cache: the next session reads the files again
    }
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
    return path.join(this.stateDir, 'staging', 'tree');
  }

  /**
   * The staging tree is a mirror of the managed files, kept up to date between pushes and between
   * agent sessions: each file's identity (inode, size, mtime) when it was copied, or 'dirty' for a
   * path a transaction touched that did not commit. A push re-copies only what changed since the
   * last one. Between transactions the map is also in staging/mirror.json under a generation that
   * changes with every write: an agent whose map is not the file's (another session pushed since)
   * takes the file's; a transaction removes the file while it changes the tree, so after a crash
   * the tree is built anew.
   */
  private mirror: Map<string, string> | undefined;
  private mirrorGeneration: string | undefined;

  private get mirrorFile(): string {
    return path.join(this.stateDir, 'staging', 'mirror.json');
  }

  /** The kept map's generation alone (a small file of its own: read on every begin). */
  private get generationFile(): string {
    return path.join(this.stateDir, 'staging', 'generation');
  }

  private keptGeneration(): string | undefined {
    try {
      return readFileSync(this.generationFile, 'utf8').trim() || undefined;
    } catch {
      return undefined;
    }
  }

  /** The map kept with the staging tree, its entries whose copy is missing or of another size left out. */
  private loadMirror(root: string, generation: string): Map<string, string> | undefined {
    const saved = readJsonFile<{ generation?: unknown; entries?: unknown }>(this.mirrorFile);
    if (!saved || saved.generation !== generation || !Array.isArray(saved.entries)) return undefined;
    const map = new Map<string, string>();
    for (const e of saved.entries as unknown[]) {
      if (!Array.isArray(e) || typeof e[0] !== 'string' || typeof e[1] !== 'string') return undefined;
      const [p, id] = e as [string, string];
      try {
        if (!this.isManaged(p)) continue;
        const st = lstatSync(path.join(root, p));
        if (st.isFile() && `${st.size}` === id.split(':')[1]) map.set(p, id);
        // a copy the map cannot vouch for (staged by a transaction that did not commit): dropped,
        // so that begin() copies the live file again or leaves nothing where there is none
        else rmSync(path.join(root, p), { force: true });
      } catch {}
    }
    return map;
  }

  /** Keeps the map (then its generation: a record without one is not trusted). */
  private saveMirror(): void {
    if (!this.mirror) return;
    const generation = randomBytes(8).toString('hex');
    try {
      replaceCacheFile(this.mirrorFile, JSON.stringify({ generation, entries: [...this.mirror] }));
      replaceCacheFile(this.generationFile, `${generation}\n`);
      this.mirrorGeneration = generation;
    } catch {
      this.mirrorGeneration = undefined;
    }
  }

  private isManaged(p: string): boolean {
    try {
      this.check(p);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * The staging tree's paths changed since takeStagedChanges() last asked (all: the tree was made
   * anew): the agent updates its reading of the staged set with just these.
   */
  private staged: { all: boolean; paths: Set<string> } = { all: true, paths: new Set() };

  takeStagedChanges(): { all: boolean; paths: string[] } {
    const s = this.staged;
    this.staged = { all: false, paths: new Set() };
    return { all: s.all, paths: [...s.paths] };
  }

  /** A staging tree holding a copy of every managed file, laid out like / (for `--root`). */
  begin(txid: string): string {
    const root = this.stagingRoot(txid);
    const recent = this.lastWalk && Date.now() - this.lastWalk.at < 1000 ? this.lastWalk.ids : undefined;
    this.lastWalk = undefined;
    const live = recent ?? this.manifestStats();
    this.removeLeftovers();
    const kept = this.keptGeneration();
    if (!this.mirror || kept === undefined || kept !== this.mirrorGeneration) {
      const saved = kept === undefined ? undefined : this.loadMirror(root, kept);
      if (saved) {
        // the tree as the last transaction (of this session or another) left it
        this.mirror = saved;
      } else {
        // no tree, or one a transaction was changing when it stopped: built anew
        rmSync(path.join(this.stateDir, 'staging'), { recursive: true, force: true });
        mkdirSync(root, { recursive: true, mode: 0o700 });
        this.mirror = new Map();
      }
      for (const r of this.roots) mkdirSync(path.join(root, r), { recursive: true });
      this.staged.all = true;
    }
    // the tree changes from here until the transaction ends
    rmSync(this.generationFile, { force: true });
    rmSync(this.mirrorFile, { force: true });
    this.mirrorGeneration = undefined;
    const mirror = this.mirror;
    for (const p of mirror.keys()) {
      if (!live.has(p)) {
        rmSync(path.join(root, p), { force: true });
        mirror.delete(p);
        this.staged.paths.add(p);
      }
    }
    const made = new Set<string>();
    for (const [p, f] of live) {
      if (mirror.get(p) === f.id) continue;
      const to = path.join(root, p);
      const dir = path.dirname(to);
      if (!made.has(dir)) {
        mkdirSync(dir, { recursive: true });
        made.add(dir);
      }
      rmSync(to, { force: true });
      copyFileSync(p, to);
      chmod(to, f.mode);
      mirror.set(p, f.id);
      this.staged.paths.add(p);
    }
    this.current = { txid, puts: [], removes: [] };
    return root;
  }

  /** The managed files' identities and modes (no file is read). */
  private manifestStats(): Map<string, { id: string; mode: number }> {
    const out = new Map<string, { id: string; mode: number }>();
    this.leftovers = [];
    this.eachManaged('', (host, _p, st) => out.set(host, { id: mirrorId(st), mode: st.mode & 0o7777 }));
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

  /**
   * Every regular file under the managed roots (below `base`, a staging tree) and every extra file,
   * in order, with its lstat: (host path, director path, stats). A symlink is refused, never followed.
   */
  private eachManaged(base: string, visit: (host: string, p: string, st: Stats) => void): void {
    const add = (p: string, known?: Stats) => {
      const st = known ?? lstatSync(base + p);
      if (st.isSymbolicLink()) {
        throw new LvssyncError(
          'E_PROTOCOL',
          `${p} is a symlink on this director: lvssync manages regular files only; replace it with a file or remove it`,
        );
      }
      if (st.isFile()) visit(base + p, p, st);
    };
    const walk = (dir: string, depth: number) => {
      let entries: string[];
      try {
        entries = readdirSync(base + dir);
      } catch {
        return;
      }
      for (const e of entries.sort()) {
        const p = `${dir}/${e}`;
        if (TEMP_NAME.test(e)) {
          // lvssync's own temporary file: never a managed file; one a crash left is removed later
          if (base === '') this.leftovers.push(p);
          continue;
        }
        const st = lstatSync(base + p);
        if (st.isDirectory() && !st.isSymbolicLink()) {
          if (depth < 8) walk(p, depth + 1);
        } else add(p, st);
      }
    };
    for (const r of this.roots) {
      if (existsSync(base + r) && lstatSync(base + r).isSymbolicLink()) {
        throw new LvssyncError('E_PROTOCOL', `managed directory ${r} is a symlink: refused`);
      }
      walk(r, 0);
    }
    for (const e of this.extra) if (existsSync(base + e)) add(e);
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
    chmod(to, mode);
    this.mirror?.set(p, 'dirty');
    this.staged.paths.add(p);
    if (!t.puts.includes(p)) t.puts.push(p);
    t.removes = t.removes.filter((x) => x !== p);
    const sha = createHash('sha256').update(data).digest('hex');
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
    this.mirror?.set(p, 'dirty');
    this.staged.paths.add(p);
    if (!t.removes.includes(p)) t.removes.push(p);
    t.puts = t.puts.filter((x) => x !== p);
    return existed;
  }

  /** Removes the staging mirror (the next transaction builds it anew). */
  dropStaging(): void {
    this.mirror = undefined;
    this.mirrorGeneration = undefined;
    this.staged.all = true;
    this.current = undefined;
    rmSync(path.join(this.stateDir, 'staging'), { recursive: true, force: true });
  }

  /** Ends a transaction without committing: the paths it touched are copied again by the next begin(). */
  discard(txid: string): void {
    const t = this.current?.txid === txid ? this.current : undefined;
    if (t) {
      // what the transaction staged leaves the kept tree: the next begin() copies the live files again
      const root = this.stagingRoot(txid);
      for (const p of [...t.puts, ...t.removes]) {
        rmSync(path.join(root, p), { force: true });
        this.mirror?.delete(p);
        this.staged.paths.add(p);
      }
    }
    if (this.current?.txid === txid) this.current = undefined;
    if (!this.mirror) {
      rmSync(path.join(this.stateDir, 'staging'), { recursive: true, force: true });
      this.staged.all = true;
    } else this.saveMirror();
  }

  journal(): Journal | undefined {
    return readJsonFile<Journal>(path.join(this.stateDir, 'journal.json'));
  }

  saveJournal(j: Journal | undefined): void {
    const p = path.join(this.stateDir, 'journal.json');
    if (j === undefined) rmSync(p, { force: true });
    else atomicWrite(p, JSON.stringify(j), 0o600);
  }

  /**
   * Backs up every file the transaction touches, then replaces them atomically. The journal written
   * before the first rename lets abort() (or the next agent start) restore the backup.
   */
  commit(txid: string): { version: string; paths: string[] } {
    this.lastWalk = undefined;
    const t = this.tx(txid);
    const stage = this.stagingRoot(txid);
    const paths = [...t.puts, ...t.removes].sort();
    for (const p of paths) this.check(p);
    const version = this.backup(paths, txid, t.reason ?? 'commit');
    const written: Record<string, string> = {};
    for (const p of t.puts) {
      const sha = t.shas?.get(p);
      if (sha) written[p] = sha;
    }
    const j: Journal = { txid, version, state: 'committing', reloaded: [], paths, written };
    this.saveJournal(j);
    // Write every new file next to its target first (the slow part), then rename them all.
    const temps: [string, string][] = [];
    try {
      for (const p of t.puts) {
        const src = path.join(stage, p);
        const st = statSync(src);
        // a directory the peer lacks (a new conf.d/, ferm.d/) is made, inside a managed root only
        mkdirSync(path.dirname(p), { recursive: true, mode: 0o755 });
        this.check(p);
        temps.push([writeTemp(p, readFileSync(src), st.mode & 0o7777, ownerOf(p)), p]);
      }
    } catch (e) {
      // nothing was renamed yet: the live files are untouched; no temporary file stays
      for (const [tmp] of temps) rmSync(tmp, { force: true });
      throw e;
    }
    for (const [tmp, p] of temps) renameSync(tmp, p);
    for (const p of t.removes) rmSync(p, { force: true });
    for (const d of new Set(paths.map((p) => path.dirname(p)))) fsyncDir(d);
    j.state = 'committed';
    this.saveJournal(j);
    // written.json learns the new files when the transaction is finished (recordWritten): until
    // then it may still be rolled back to what written.json says.
    // the staged copies are now the live files: only their new identities need recording
    for (const p of t.puts) {
      const st = statSync(p);
      this.mirror?.set(p, mirrorId(st));
    }
    for (const p of t.removes) this.mirror?.delete(p);
    this.current = undefined;
    this.saveMirror();
    return { version, paths };
  }

  /**
   * A finished transaction's files are what lvssync last wrote there (removed ones: nothing): the
   * committed content, not what is there now (a hand edit since stays a conflict for the next push).
   */
  recordWritten(paths: readonly string[], committed: Record<string, string> = {}): void {
    const w = this.written();
    for (const p of paths) {
      this.check(p);
      const sha = committed[p];
      if (sha) {
        w[p] = sha;
        continue;
      }
      try {
        w[p] = createHash('sha256').update(readFileSync(p)).digest('hex');
      } catch {
        delete w[p];
      }
    }
    this.saveWritten(w);
  }

  /** Copies the current state of `paths` into a new history version. */
  backup(paths: readonly string[], txid: string, reason: HistoryEntry['reason']): string {
    const version = `${new Date()
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d+Z$/, 'Z')}-${txid.slice(0, 8)}`;
    const dir = path.join(this.stateDir, 'history', version);
    mkdirSync(path.join(dir, 'files'), { recursive: true, mode: 0o700 });
    const entries: Meta['entries'] = [];
    for (const p of paths) {
      let st: Stats | undefined;
      try {
        st = lstatSync(p);
      } catch {}
      if (st?.isFile()) {
        const to = path.join(dir, 'files', p);
        mkdirSync(path.dirname(to), { recursive: true });
        copyFileSync(p, to);
        const fd = openSync(to, 'r');
        fsyncSync(fd);
        closeSync(fd);
        entries.push({ path: p, existed: true, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid });
      } else entries.push({ path: p, existed: false, mode: 0, uid: 0, gid: 0 });
    }
    const meta: Meta = { version, time: new Date().toISOString(), txid, reason, paths: [...paths], entries };
    atomicWrite(path.join(dir, 'meta.json'), `${JSON.stringify(meta, null, 1)}\n`, 0o600);
    return version;
  }

  /** A history version's record (its files are under files/ beside it). */
  private versionMeta(version: string): { dir: string; meta: Meta } {
    if (!/^[0-9TZ]+-[0-9a-f]{1,8}$/.test(version))
      throw new LvssyncError('E_PROTOCOL', `bad version '${version}'`);
    const dir = path.join(this.stateDir, 'history', version);
    try {
      return { dir, meta: JSON.parse(readFileSync(path.join(dir, 'meta.json'), 'utf8')) as Meta };
    } catch {
      throw new LvssyncError('E_USAGE', `no version ${version} in ${path.join(this.stateDir, 'history')}`);
    }
  }

  /**
   * Stages a history version in the open transaction (lvssync rollback): its files put, the ones it
   * did not have removed. The transaction is then validated, committed and reloaded like a push, and
   * its backup is marked 'restore'.
   */
  stageVersion(txid: string, version: string): string[] {
    const t = this.tx(txid);
    const { dir, meta } = this.versionMeta(version);
    for (const e of meta.entries) {
      if (e.existed) this.put(txid, e.path, e.mode, readFileSync(path.join(dir, 'files', e.path)));
      else this.remove(txid, e.path);
    }
    t.reason = 'restore';
    return meta.entries.map((e) => e.path);
  }

  /** Puts the files of a history version back (backing up what is there now first). */
  restoreVersion(
    version: string,
    reason: HistoryEntry['reason'] = 'restore',
  ): { backup: string; paths: string[] } {
    this.lastWalk = undefined;
    const { dir, meta } = this.versionMeta(version);
    for (const e of meta.entries) this.check(e.path);
    const backup = this.backup(
      meta.entries.map((e) => e.path),
      randomBytes(4).toString('hex'),
      reason,
    );
    const w = this.written();
    for (const e of meta.entries) {
      if (e.existed) {
        const data = readFileSync(path.join(dir, 'files', e.path));
        w[e.path] = createHash('sha256').update(data).digest('hex');
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
    this.saveWritten(w);
    return { backup, paths: meta.entries.map((e) => e.path) };
  }

  versions(): HistoryEntry[] {
    const dir = path.join(this.stateDir, 'history');
    let names: string[] = [];
    try {
      names = readdirSync(dir).sort();
    } catch {}
    const out: HistoryEntry[] = [];
    for (const n of names) {
      try {
        const m = JSON.parse(readFileSync(path.join(dir, n, 'meta.json'), 'utf8')) as Meta;
        out.push({ version: m.version, time: m.time, txid: m.txid, paths: m.paths, reason: m.reason });
      } catch {}
    }
    return out;
  }

  /** Keeps the newest `history` versions. */
  trimHistory(): void {
    const all = this.versions();
    for (const v of all.slice(0, Math.max(0, all.length - this.history))) {
      rmSync(path.join(this.stateDir, 'history', v.version), { recursive: true, force: true });
    }
  }

  confirmPath(txid: string): string {
    checkTxid(txid);
    return path.join(this.stateDir, `confirm-${txid}`);
  }

  /**
   * Removes the confirmation records of transactions that ended more than `olderThanMs` ago (a ferm
   * guard reads its record only while it waits): one is written per push, and they would pile up.
   */
  pruneConfirmations(olderThanMs: number, now = Date.now()): number {
    let removed = 0;
    for (const name of readdirSync(this.stateDir)) {
      if (!/^confirm-[0-9a-f]{8,64}$/.test(name)) continue;
      const p = path.join(this.stateDir, name);
      try {
        if (now - statSync(p).mtimeMs > olderThanMs) {
          rmSync(p, { force: true });
          removed++;
        }
      } catch {}
    }
    return removed;
  }
}

function checkTxid(txid: string): void {
  if (!/^[0-9a-f]{8,64}$/.test(txid)) throw new LvssyncError('E_PROTOCOL', `bad transaction id '${txid}'`);
}

function chmod(p: string, mode: number): void {
  // chmodSync follows symlinks; the file was just created by us, so it is not one.
  chmodSync(p, mode);
}

function ownerOf(p: string): { uid: number; gid: number } | undefined {
  try {
    const st = lstatSync(p);
    return { uid: st.uid, gid: st.gid };
  } catch {
    return undefined;
  }
}

/** A file's identity in the staging mirror: inode, size, mtime and mode. */
function mirrorId(st: Stats): string {
  return `${st.ino}:${st.size}:${st.mtimeMs}:${st.mode}`;
}
