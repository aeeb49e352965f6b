// An in-memory picture of the files a director's configuration is made of. Pure.
// The shell fills it from disk (or from the peer); the core only ever reads from it.

import path from 'node:path/posix';
import picomatch from 'picomatch';

export interface SnapshotFile {
  /** Absolute path as the director sees it (e.g. /etc/keepalived/conf.d/fwm-100.conf). */
  path: string;
  text: string;
  /** Permission bits and file type bits as from stat(2). */
  mode: number;
}

export interface Snapshot {
  files: Map<string, SnapshotFile>;
  /** Directories whose complete listing (recursively) is in `files`. */
  dirs: Set<string>;
}

/**
 * The files of a snapshot, with a record of what changed: a version counted up by every set and
 * delete, and the paths touched since a version (while the record reaches back that far). An
 * incremental re-check asks it which files changed instead of comparing every file.
 */
export class FileMap extends Map<string, SnapshotFile> {
  /** Counted up by every set (of a different object) and delete. */
  version = 0;
  /** Counted up when a path is added or deleted (not when a file is replaced). */
  keysVersion = 0;
  private log: string[] = [];
  /** The version before log[0]'s change. */
  private logBase = 0;

  override set(key: string, value: SnapshotFile): this {
    if (this.log === undefined) return super.set(key, value); // during Map's own constructor
    const had = super.get(key);
    if (had === value) return this;
    super.set(key, value);
    this.touch(key, had === undefined);
    return this;
  }

  override delete(key: string): boolean {
    const r = super.delete(key);
    if (r) this.touch(key, true);
    return r;
  }

  override clear(): void {
    super.clear();
    this.version++;
    this.keysVersion++;
    this.log = [];
    this.logBase = this.version;
  }

  /** The paths set or deleted since `version` (repeats possible), or undefined when not known. */
  changedSince(version: number): string[] | undefined {
    if (version < this.logBase || version > this.version) return undefined;
    return this.log.slice(version - this.logBase);
  }

  private touch(key: string, keys: boolean): void {
    this.version++;
    if (keys) this.keysVersion++;
    this.log.push(key);
    if (this.log.length > 4096) {
      this.log = this.log.slice(2048);
      this.logBase += 2048;
    }
  }
}

/**
 * Sets a file, keeping the object already there when its text and mode are the same: a snapshot
 * kept between reads (a FileMap) then records only real changes.
 */
export function putFile(snapshot: Snapshot, p: string, text: string, mode: number): SnapshotFile {
  const known = snapshot.files.get(p);
  if (known && known.text === text && known.mode === mode) return known;
  const f: SnapshotFile = { path: p, text, mode };
  snapshot.files.set(p, f);
  return f;
}

/** Removes every file but those in `keep`. */
export function retainFiles(snapshot: Snapshot, keep: ReadonlySet<string>): void {
  for (const p of [...snapshot.files.keys()]) if (!keep.has(p)) snapshot.files.delete(p);
}

export function emptySnapshot(): Snapshot {
  return { files: new FileMap(), dirs: new Set() };
}

export function snapshotOf(entries: Record<string, string> | SnapshotFile[], dirs: string[] = []): Snapshot {
  const s = emptySnapshot();
  const list = Array.isArray(entries)
    ? entries
    : Object.entries(entries).map(([p, text]) => ({ path: p, text, mode: 0o100644 }));
  for (const f of list) s.files.set(f.path, f);
  for (const d of dirs) s.dirs.add(d);
  return s;
}

/** The longest leading directory of a glob pattern that has no glob characters. */
export function globBase(pattern: string): string {
  const parts = pattern.split('/');
  const fixed: string[] = [];
  for (const p of parts) {
    if (/[*?[\]{}]/.test(p)) break;
    fixed.push(p);
  }
  if (fixed.length === parts.length) fixed.pop();
  const base = fixed.join('/');
  return base === '' ? '/' : base;
}

export function hasGlob(pattern: string): boolean {
  return /[*?[\]{}]/.test(pattern);
}

export type GlobResult = { kind: 'matched'; paths: string[] } | { kind: 'unknown'; dir: string };

/**
 * glob(3) with GLOB_BRACE over the snapshot, as keepalived's include does: `*` and `?` do not match
 * '/' or a leading '.', results sorted bytewise. `unknown` when the snapshot has not listed the
 * directory the pattern searches, so the shell can read it and ask again.
 */
export function globSnapshot(
  snapshot: Snapshot,
  pattern: string,
  matchers?: Map<string, (p: string) => boolean>,
): GlobResult {
  const norm = path.normalize(pattern);
  if (!hasGlob(norm)) {
    if (snapshot.files.has(norm)) return { kind: 'matched', paths: [norm] };
    const dir = path.dirname(norm);
    if (isListed(snapshot, dir)) return { kind: 'matched', paths: [] };
    return { kind: 'unknown', dir };
  }
  const base = globBase(norm);
  if (!isListed(snapshot, base)) return { kind: 'unknown', dir: base };
  let isMatch = matchers?.get(norm);
  if (!isMatch) {
    try {
      // longer than PATH_MAX, glob(3) matches nothing either; a pattern too large to compile likewise
      isMatch =
        norm.length > 4096
          ? () => false
          : picomatch(norm, { dot: false, nobrace: false, noextglob: true, posix: true });
    } catch {
      isMatch = () => false;
    }
    if (matchers && matchers.size > 1000) matchers.clear();
    matchers?.set(norm, isMatch);
  }
  const paths: string[] = [];
  const prefix = base === '/' ? '/' : `${base}/`;
  for (const p of snapshot.files.keys()) {
    if (p.startsWith(prefix) && isMatch(p)) paths.push(p);
  }
  paths.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return { kind: 'matched', paths };
}

function isListed(snapshot: Snapshot, dir: string): boolean {
  let d = dir;
  for (;;) {
    if (snapshot.dirs.has(d)) return true;
    const up = path.dirname(d);
    if (up === d) return false;
    d = up;
  }
}
