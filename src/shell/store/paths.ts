// The Store's paths policy: which paths on this director lvssync may read and write (regular files
// under the managed roots, and the extra files), whatever the primary asks; symlinks are refused
// anywhere below a root, never followed.

import type { Stats } from 'node:fs';
import { existsSync, lstatSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { LvssyncError } from '../../errors.js';

/** The temporary files writeTemp makes: `.NAME.lvssync-tmp-XXXXXXXX`. */
export const TEMP_NAME = /^\..+\.lvssync-tmp-[0-9a-f]{8}$/;

export class ManagedPaths {
  constructor(
    readonly roots: readonly string[],
    readonly extra: readonly string[],
  ) {}

  /** The managed roots and extra paths, as the agent reports them. */
  globs(): string[] {
    return [...this.roots.map((r) => `${r}/**`), ...this.extra];
  }

  /**
   * Whether `p` names a managed file by its text alone: a normalised absolute path inside a root or
   * an extra path (what is on disk there is check()'s matter).
   */
  covers(p: string): boolean {
    if (typeof p !== 'string' || !p.startsWith('/') || path.posix.normalize(p) !== p || p.includes('\0'))
      return false;
    return this.roots.some((r) => p.startsWith(`${r}/`)) || this.extra.includes(p);
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
        `refused path '${p}': outside the managed paths (${this.globs().join(', ')})`,
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

  /**
   * Every regular file under the managed roots (below `base`, a staging tree) and every extra file,
   * in order, with its lstat: (host path, director path, stats). A symlink is refused, never
   * followed. lvssync's own temporary files are not managed files: `temp` is told of each.
   */
  each(base: string, visit: (host: string, p: string, st: Stats) => void, temp?: (p: string) => void): void {
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
          temp?.(p);
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
}
