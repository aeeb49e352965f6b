// Writing state and managed files so that a crash, a full disk or a second writer never leaves a
// half-written file: a temporary beside the target (fsync'ed, with mode and owner), renamed over it.
// Every writer of lvssync's state and of the managed configuration goes through here.

import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  closeSync,
  fsyncSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { execTool } from './exec.js';

/**
 * Writes data to a temporary file beside `target`, fsync'ed (unless `sync` is false: the caller
 * syncs it, syncAll), with mode and owner; returns its path.
 */
export function writeTemp(
  target: string,
  data: Buffer,
  mode: number,
  owner?: { uid: number; gid: number },
  sync = true,
): string {
  const tmp = tempBeside(target);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    try {
      let off = 0;
      while (off < data.length) off += writeSync(fd, data, off, data.length - off);
      if (sync) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    ownAndMode(tmp, mode, owner);
  } catch (e) {
    // a full disk (or any failure) leaves no temporary file behind
    rmSync(tmp, { force: true });
    throw e;
  }
  return tmp;
}

/** Gives a temporary its owner (as root) and mode. */
function ownAndMode(tmp: string, mode: number, owner?: { uid: number; gid: number }): void {
  if (owner && process.getuid?.() === 0) chownSync(tmp, owner.uid, owner.gid);
  chmodSync(tmp, mode);
}

const tempBeside = (target: string) =>
  path.join(path.dirname(target), `.${path.basename(target)}.lvssync-tmp-${randomBytes(4).toString('hex')}`);

/**
 * A temporary beside `target` that is `staged` itself, a second name for the same file (no copy of
 * its data: making 1,000 new files here costs 25 ms linked, 740 ms copied), with mode and owner; its
 * data is not synced (syncAll). Undefined when the two are not on one file system: the caller copies
 * (writeTemp). Whoever writes `staged` afterwards must make a new file there, never write in place:
 * the staging mirror always unlinks before it writes.
 */
export function linkTemp(
  target: string,
  staged: string,
  mode: number,
  owner?: { uid: number; gid: number },
): string | undefined {
  const tmp = tempBeside(target);
  try {
    linkSync(staged, tmp);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // another file system, or one without hard links
    if (code === 'EXDEV' || code === 'EPERM' || code === 'EMLINK' || code === 'ENOTSUP') return undefined;
    throw e;
  }
  try {
    ownAndMode(tmp, mode, owner);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  return tmp;
}

/** From this many files on, one syncfs per file system instead of an fsync each (see syncAll). */
export const SYNCFS_FROM = 16;

/**
 * Makes the files durable. Many files: one syncfs(2) of each file system they are on (coreutils'
 * `sync -f`; 1,000 new files: 30-45 ms here, against 300-500 for an fsync each; like git's batched
 * fsync); should it fail, or for a few files, an fsync each, several at a time on the thread pool
 * (the journal takes side-by-side fsyncs in one commit).
 */
export async function syncAll(paths: readonly string[], concurrency = 16): Promise<void> {
  if (paths.length >= SYNCFS_FROM && (await syncFileSystems(paths))) return;
  await fsyncEach(paths, concurrency);
}

/** syncfs of the file systems `paths` are on; false when it could not be done (then fsync each). */
export async function syncFileSystems(paths: readonly string[]): Promise<boolean> {
  const byDevice = new Map<number, string>();
  try {
    for (const p of paths) {
      const dev = statSync(p).dev;
      if (!byDevice.has(dev)) byDevice.set(dev, p);
    }
    const runs = await Promise.all(
      [...byDevice.values()].map((p) => execTool(['sync', '-f', p], { timeoutMs: 120_000 })),
    );
    return runs.every((r) => r.code === 0);
  } catch {
    return false;
  }
}

async function fsyncEach(paths: readonly string[], concurrency: number): Promise<void> {
  let next = 0;
  const one = async (): Promise<void> => {
    while (next < paths.length) {
      const fh = await open(paths[next++]!, 'r');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, paths.length) }, one));
}

/** Whether `p` is a regular file with exactly these bytes and this mode. */
export function sameFile(p: string, data: Buffer, mode: number): boolean {
  try {
    const st = lstatSync(p);
    return (
      st.isFile() && (st.mode & 0o7777) === mode && st.size === data.length && readFileSync(p).equals(data)
    );
  } catch {
    return false;
  }
}

/** A JSON state file, or undefined when it is missing or unreadable. */
export function readJsonFile<T>(p: string): T | undefined {
  try {
    return JSON.parse(readFileSync(p, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

/**
 * Replaces a cache file (a temporary renamed over it, mode 0600, no fsync: a torn or lost cache is
 * read as none).
 */
export function replaceCacheFile(file: string, text: string | Buffer): void {
  const tmp = `${file}.${process.pid}.lvssync-tmp`;
  writeFileSync(tmp, text, { mode: 0o600 });
  renameSync(tmp, file);
}

export function atomicWrite(p: string, text: string, mode: number): void {
  mkdirSync(path.dirname(p), { recursive: true, mode: 0o700 });
  renameSync(writeTemp(p, Buffer.from(text), mode), p);
}

export function fsyncDir(d: string): void {
  try {
    const fd = openSync(d, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {}
}

export function unlinkQuiet(p: string): void {
  try {
    unlinkSync(p);
  } catch {}
}
