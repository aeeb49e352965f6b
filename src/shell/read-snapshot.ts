// Reads a director's configuration files from disk into a Snapshot, under a root prefix (`--root DIR`
// treats DIR as /). Shell: the only module of the check path that reads the file tree.

// Synchronous reads on purpose: thousands of small files read several times faster than with
// fs/promises, and a director's set is read in well under a second.
import { lstatSync, readdirSync, readFileSync, realpathSync, type Stats } from 'node:fs';
import path from 'node:path';
import { type EvaluateOptions, evaluateKeepalived, type IncludeRef } from '../core/keepalived/evaluate.js';
import { FileMap, putFile, retainFiles, type Snapshot, type SnapshotFile } from '../core/snapshot.js';
import { LvssyncError } from '../errors.js';
import type { Workspace } from './workspace.js';

const MAX_FILES_PER_DIR = 100_000;
const YIELD_EVERY = 128;

export function hostPath(root: string, directorPath: string): string {
  return root === '/' ? directorPath : path.join(root, directorPath);
}

export function directorPath(root: string, host: string): string {
  if (root === '/') return host;
  const rel = path.relative(root, host);
  return rel.startsWith('..') ? host : `/${rel}`;
}

/** A file's identity for the caches: inode, size and mtime. */
const identity = (st: Stats) => `${st.ino}:${st.size}:${st.mtimeMs}`;

function readText(host: string, st: Stats, ws: Workspace): string {
  const known = ws.texts;
  const id = identity(st);
  const k = known.get(host);
  if (k && k.id === id) return k.text;
  const text = readFileSync(host, 'utf8');
  if (Date.now() - st.mtimeMs > 2000) known.set(host, { id, text });
  else known.delete(host);
  return text;
}

/**
 * The first file of the snapshot that is no longer what was read (changed, replaced or gone), or
 * undefined. A watcher may drop a second change that comes right after a first (chokidar keeps one
 * change event per file in 50 ms): a push started on the first looks again before it commits.
 */
export function changedSinceRead(snapshot: Snapshot, root: string, ws: Workspace): string | undefined {
  const ids = ws.readAs.get(snapshot);
  for (const p of snapshot.files.keys()) {
    const was = ids?.get(p);
    if (was === undefined) return p;
    try {
      const host = hostPath(root, p);
      let st = lstatSync(host);
      if (st.isSymbolicLink()) st = lstatSync(realpathSync(host));
      if (identity(st) !== was) return p;
    } catch {
      return p;
    }
  }
  return undefined;
}

/**
 * Reads a snapshot kept between reads again: what `read` finds replaces what changed (an unchanged
 * file keeps its object, so the snapshot's FileMap records only real changes and a re-check redoes
 * only those), and a file no longer found is removed.
 */
export async function rereadSnapshot(
  snapshot: Snapshot,
  ws: Workspace,
  read: () => Promise<void>,
): Promise<void> {
  const seen = new Set<string>();
  ws.rereads.set(snapshot, seen);
  try {
    await read();
  } finally {
    ws.rereads.delete(snapshot);
  }
  retainFiles(snapshot, seen);
}

/**
 * While a snapshot is being read again, the paths read so far (a file not among them may be gone:
 * it is removed from the snapshot only when the reading ends); undefined at any other time.
 */
export function readSoFar(snapshot: Snapshot, ws: Workspace): ReadonlySet<string> | undefined {
  return ws.rereads.get(snapshot);
}

/** Adds one file; a missing file is simply absent from the snapshot. Symlinks are followed inside root only. */
export async function addFile(
  snapshot: Snapshot,
  root: string,
  p: string,
  ws: Workspace,
): Promise<SnapshotFile | undefined> {
  const host = hostPath(root, p);
  try {
    let st = lstatSync(host);
    if (st.isSymbolicLink()) {
      const target = realpathSync(host);
      if (root !== '/' && !target.startsWith(path.resolve(root) + path.sep)) {
        throw new LvssyncError(
          'E_INVALID',
          `${p} is a symlink that points outside ${root} (to ${target}): lvssync checks only what is under the root; copy the file in or drop the link`,
        );
      }
      st = lstatSync(target);
    }
    const mode = st.mode;
    if ((mode & 0o170000) !== 0o100000) return undefined;
    const text = readText(host, st, ws);
    ws.rereads.get(snapshot)?.add(p);
    let ids = ws.readAs.get(snapshot);
    if (!ids) {
      ids = new Map();
      ws.readAs.set(snapshot, ids);
    }
    ids.set(p, identity(st));
    return putFile(snapshot, p, text, mode);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if (e instanceof LvssyncError) throw e;
    throw new LvssyncError('E_READ', `could not read ${host}: ${(e as Error).message}`, { cause: e });
  }
}

/** Lists a directory recursively into the snapshot (regular files only) and marks it as listed. */
export async function addDir(snapshot: Snapshot, root: string, dir: string, ws: Workspace): Promise<void> {
  snapshot.dirs.add(dir);
  let count = 0;
  const walk = async (d: string, depth: number): Promise<void> => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = readdirSync(hostPath(root, d), { withFileTypes: true });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw new LvssyncError('E_READ', `could not list ${hostPath(root, d)}: ${(e as Error).message}`, {
        cause: e,
      });
    }
    for (const ent of entries) {
      const p = path.posix.join(d, ent.name);
      if (ent.isDirectory()) {
        if (depth < 8) await walk(p, depth + 1);
      } else if (ent.isFile() || ent.isSymbolicLink()) {
        if (++count > MAX_FILES_PER_DIR) {
          throw new LvssyncError(
            'E_READ',
            `${hostPath(root, dir)} holds more than ${MAX_FILES_PER_DIR} files`,
          );
        }
        await addFile(snapshot, root, p, ws);
        // a long reading lets what came in meanwhile be answered (the agent's puts while it reads ahead)
        if (count % YIELD_EVERY === 0) await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
  };
  await walk(dir, 0);
}

/**
 * Reads keepalived.conf and everything it includes: evaluates (no lints), reads the directories the
 * includes search, and evaluates again until nothing new is needed.
 */
export async function readKeepalivedSnapshot(
  snapshot: Snapshot,
  root: string,
  confPath: string,
  configId: string | undefined,
  ws: Workspace,
  /** The directories includes may be read from (the managed ones); others are left unread. */
  inside?: (dir: string) => boolean,
): Promise<Resolved | undefined> {
  await addDir(snapshot, root, path.posix.dirname(confPath), ws);
  return resolveIncludes(snapshot, root, confPath, configId, ws, inside);
}

/** What a resolution found: the files keepalived reads and its include lines (known before any lint). */
export interface Resolved {
  files: readonly string[];
  includes: readonly IncludeRef[];
}

/** Reads the directories keepalived's includes search that the snapshot has not listed yet. */
export async function resolveIncludes(
  snapshot: Snapshot,
  root: string,
  confPath: string,
  configId: string | undefined,
  ws: Workspace,
  inside?: (dir: string) => boolean,
): Promise<Resolved | undefined> {
  const opts: EvaluateOptions = configId === undefined ? { memory: ws } : { configId, memory: ws };
  if (includesUnchanged(snapshot, confPath, configId, ws)) return ws.resolved.get(snapshot);
  for (let round = 0; round < 16; round++) {
    const ev = evaluateKeepalived(snapshot, confPath, opts);
    const missing = ev.unknownDirs.filter((d) => !snapshot.dirs.has(d));
    if (missing.length === 0) {
      if (snapshot.files instanceof FileMap) {
        const files = snapshot.files;
        ws.resolved.set(snapshot, {
          version: files.version,
          keysVersion: files.keysVersion,
          dirsSize: snapshot.dirs.size,
          confPath,
          configId,
          files: ev.files,
          includes: ev.includes,
        });
        return { files: ev.files, includes: ev.includes };
      }
      return undefined;
    }
    for (const d of missing) {
      // an include outside the managed directories is an error of its own: its tree is never read
      if (inside && !inside(d)) snapshot.dirs.add(d);
      else await addDir(snapshot, root, d, ws);
    }
  }
  return undefined;
}

/**
 * Whether the includes of a kept snapshot cannot have changed since they were last resolved: the
 * same files (none added or removed, the same directories listed), and every file changed since is
 * self-contained (no include, definition or `$` of its own; each is parsed alone to know). Then what
 * the includes name is what it was, and the set needs no full evaluation to be read.
 */
function includesUnchanged(
  snapshot: Snapshot,
  confPath: string,
  configId: string | undefined,
  ws: Workspace,
): boolean {
  const last = ws.resolved.get(snapshot);
  const files = snapshot.files;
  if (!last || !(files instanceof FileMap)) return false;
  if (
    last.confPath !== confPath ||
    last.configId !== configId ||
    last.keysVersion !== files.keysVersion ||
    last.dirsSize !== snapshot.dirs.size
  )
    return false;
  const touched = files.changedSince(last.version);
  if (!touched || touched.length > 64) return false;
  for (const p of new Set(touched)) {
    const f = files.get(p);
    if (!f || p === confPath) return false;
    const one = evaluateKeepalived({ files: new Map([[p, f]]), dirs: new Set() }, p, {
      memory: ws,
      ...(configId === undefined ? {} : { configId }),
    });
    if (one.includes.length || one.unknownDirs.length || ws.parse.get(p)?.selfContained !== true)
      return false;
  }
  return true;
}

/** Reads again just these paths of a kept snapshot (what is gone leaves it). */
export async function updateSnapshot(
  snapshot: Snapshot,
  root: string,
  paths: readonly string[],
  ws: Workspace,
): Promise<void> {
  for (const p of paths) {
    if (!(await addFile(snapshot, root, p, ws))) snapshot.files.delete(p);
  }
}
