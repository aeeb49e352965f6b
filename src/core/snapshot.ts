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

export function emptySnapshot(): Snapshot {
  return { files: new Map(), dirs: new Set() };
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
export function globSnapshot(snapshot: Snapshot, pattern: string): GlobResult {
  const norm = path.normalize(pattern);
  if (!hasGlob(norm)) {
    if (snapshot.files.has(norm)) return { kind: 'matched', paths: [norm] };
    const dir = path.dirname(norm);
    if (isListed(snapshot, dir)) return { kind: 'matched', paths: [] };
    return { kind: 'unknown', dir };
  }
  const base = globBase(norm);
  if (!isListed(snapshot, base)) return { kind: 'unknown', dir: base };
  let isMatch = matchers.get(norm);
  if (!isMatch) {
    isMatch = picomatch(norm, { dot: false, nobrace: false, noextglob: true, posix: true });
    if (matchers.size > 1000) matchers.clear();
    matchers.set(norm, isMatch);
  }
  const paths: string[] = [];
  const prefix = base === '/' ? '/' : `${base}/`;
  for (const p of snapshot.files.keys()) {
    if (p.startsWith(prefix) && isMatch(p)) paths.push(p);
  }
  paths.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return { kind: 'matched', paths };
}

/** Compiled patterns: a set is re-checked after every edit with the same include lines. */
const matchers = new Map<string, (p: string) => boolean>();

function isListed(snapshot: Snapshot, dir: string): boolean {
  let d = dir;
  for (;;) {
    if (snapshot.dirs.has(d)) return true;
    const up = path.dirname(d);
    if (up === d) return false;
    d = up;
  }
}
