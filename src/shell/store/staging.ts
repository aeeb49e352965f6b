// The staging tree: a mirror of the managed files, kept up to date between pushes and between agent
// sessions, where a transaction stages its changes and the peer validates them with --root.
// Each path's entry is its identity (inode, size, mtime, mode) when it was copied, or 'dirty' for a
// path a transaction touched that did not commit; a push re-copies only what changed since the last
// one. Between transactions the map is also in staging/mirror.json under a generation that changes
// with every write: an agent whose map is not the file's (another session pushed since) takes the
// file's; a transaction removes the file while it changes the tree, so after a crash the tree is
// built anew.

import { randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import { chmodSync, copyFileSync, lstatSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { readJsonFile, replaceCacheFile } from '../fs-atomic.js';
import type { ManagedPaths } from './paths.js';

/** A file's identity in the staging mirror: inode, size, mtime and mode. */
export function mirrorId(st: Stats): string {
  return `${st.ino}:${st.size}:${st.mtimeMs}:${st.mode}`;
}

export class StagingMirror {
  private mirror: Map<string, string> | undefined;
  private generation: string | undefined;
  /** Paths changed since takeChanges() last asked (all: the tree was made anew). */
  private changes: { all: boolean; paths: Set<string> } = { all: true, paths: new Set() };

  constructor(
    private readonly stateDir: string,
    private readonly paths: ManagedPaths,
  ) {}

  get root(): string {
    return path.join(this.stateDir, 'staging', 'tree');
  }

  private get dir(): string {
    return path.join(this.stateDir, 'staging');
  }

  private get mirrorFile(): string {
    return path.join(this.dir, 'mirror.json');
  }

  /** The kept map's generation alone (a small file of its own: read on every begin). */
  private get generationFile(): string {
    return path.join(this.dir, 'generation');
  }

  takeChanges(): { all: boolean; paths: string[] } {
    const s = this.changes;
    this.changes = { all: false, paths: new Set() };
    return { all: s.all, paths: [...s.paths] };
  }

  private keptGeneration(): string | undefined {
    try {
      return readFileSync(this.generationFile, 'utf8').trim() || undefined;
    } catch {
      return undefined;
    }
  }

  /** The map kept with the staging tree, its entries whose copy is missing or of another size left out. */
  private load(generation: string): Map<string, string> | undefined {
    const saved = readJsonFile<{ generation?: unknown; entries?: unknown }>(this.mirrorFile);
    if (!saved || saved.generation !== generation || !Array.isArray(saved.entries)) return undefined;
    const map = new Map<string, string>();
    for (const e of saved.entries as unknown[]) {
      if (!Array.isArray(e) || typeof e[0] !== 'string' || typeof e[1] !== 'string') return undefined;
      const [p, id] = e as [string, string];
      try {
        // by the path alone: the staging tree's copies are lstat'ed here, the live files when written
        if (!this.paths.covers(p)) continue;
        const st = lstatSync(path.join(this.root, p));
        if (st.isFile() && `${st.size}` === id.split(':')[1]) map.set(p, id);
        // a copy the map cannot vouch for (staged by a transaction that did not commit): dropped,
        // so that update() copies the live file again or leaves nothing where there is none
        else rmSync(path.join(this.root, p), { force: true });
      } catch {}
    }
    return map;
  }

  /** Keeps the map (then its generation: a record without one is not trusted). */
  save(): void {
    if (!this.mirror) return;
    const generation = randomBytes(8).toString('hex');
    try {
      replaceCacheFile(this.mirrorFile, JSON.stringify({ generation, entries: [...this.mirror] }));
      replaceCacheFile(this.generationFile, `${generation}\n`);
      this.generation = generation;
    } catch {
      this.generation = undefined;
    }
  }

  /**
   * Brings the tree up to date with the live files (`live`: their identities and modes) for a
   * transaction, which changes it from here until it ends.
   */
  update(live: ReadonlyMap<string, { id: string; mode: number }>): void {
    const root = this.root;
    const kept = this.keptGeneration();
    if (!this.mirror || kept === undefined || kept !== this.generation) {
      const saved = kept === undefined ? undefined : this.load(kept);
      if (saved) {
        // the tree as the last transaction (of this session or another) left it
        this.mirror = saved;
      } else {
        // no tree, or one a transaction was changing when it stopped: built anew
        rmSync(this.dir, { recursive: true, force: true });
        mkdirSync(root, { recursive: true, mode: 0o700 });
        this.mirror = new Map();
      }
      for (const r of this.paths.roots) mkdirSync(path.join(root, r), { recursive: true });
      this.changes.all = true;
    }
    rmSync(this.generationFile, { force: true });
    rmSync(this.mirrorFile, { force: true });
    this.generation = undefined;
    const mirror = this.mirror;
    for (const p of mirror.keys()) {
      if (!live.has(p)) {
        rmSync(path.join(root, p), { force: true });
        mirror.delete(p);
        this.changes.paths.add(p);
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
      // chmodSync follows symlinks; the file was just created here, so it is not one
      chmodSync(to, f.mode);
      mirror.set(p, f.id);
      this.changes.paths.add(p);
    }
  }

  /** A path a transaction staged (put or removed): not a copy of the live file until it commits. */
  touched(p: string): void {
    this.mirror?.set(p, 'dirty');
    this.changes.paths.add(p);
  }

  /** What a transaction that did not commit staged leaves the tree: the next update copies the live files again. */
  forget(paths: readonly string[]): void {
    for (const p of paths) {
      rmSync(path.join(this.root, p), { force: true });
      this.mirror?.delete(p);
      this.changes.paths.add(p);
    }
  }

  /** After a transaction was discarded: the map kept, or (none) the tree removed for the next one to build. */
  afterDiscard(): void {
    if (this.mirror) {
      this.save();
      return;
    }
    rmSync(this.dir, { recursive: true, force: true });
    this.changes.all = true;
  }

  /** After a commit, the staged copies are the live files: only their new identities are recorded. */
  committed(puts: readonly string[], removes: readonly string[], stat: (p: string) => Stats): void {
    for (const p of puts) this.mirror?.set(p, mirrorId(stat(p)));
    for (const p of removes) this.mirror?.delete(p);
  }

  /** Removes the tree (the next transaction builds it anew). */
  drop(): void {
    this.mirror = undefined;
    this.generation = undefined;
    this.changes.all = true;
    rmSync(this.dir, { recursive: true, force: true });
  }
}
