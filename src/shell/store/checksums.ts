// What the Store knows of file contents without reading them: checksums by file identity (like
// git's index), and the digest of what lvssync last wrote to each path (written.json), which tells
// a hand edit on this director from a file lvssync put there.

import { createHash } from 'node:crypto';
import type { Stats } from 'node:fs';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { atomicWrite, readJsonFile, replaceCacheFile } from '../fs-atomic.js';

export const sha256Hex = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

/**
 * Checksums by file identity (inode, size, mtime), kept while the agent runs, so a manifest of an
 * unchanged tree reads no file (rsync's quick check, plus the inode: a file replaced by rename is
 * always read). ctime is left out because staging links the files, which touches it. The clock
 * ticks coarsely, so a file modified in the last two seconds is read every time (git's "racy
 * clean" rule). They are kept in the state directory too (checksums.json), so the first manifest
 * of a new agent session does not read every file again.
 */
export class Checksums {
  private readonly shas = new Map<string, { id: string; sha: string }>();
  private loaded = false;
  private changed = false;

  constructor(private readonly stateDir: string) {}

  private get file(): string {
    return path.join(this.stateDir, 'checksums.json');
  }

  of(host: string, st: Stats): string {
    const id = `${st.ino}:${st.size}:${st.mtimeMs}`;
    const known = this.shas.get(host);
    if (known && known.id === id) return known.sha;
    const sha = sha256Hex(readFileSync(host));
    if (Date.now() - st.mtimeMs > 2000) this.shas.set(host, { id, sha });
    else this.shas.delete(host);
    this.changed = true;
    return sha;
  }

  /** The checksums kept by earlier sessions (a missing or unreadable file is an empty cache). */
  load(): void {
    if (this.loaded) return;
    this.loaded = true;
    const saved = readJsonFile<[string, string, string][]>(this.file);
    if (!Array.isArray(saved)) return;
    for (const e of saved) {
      if (Array.isArray(e) && e.length === 3 && e.every((x) => typeof x === 'string') && !this.shas.has(e[0]))
        this.shas.set(e[0], { id: e[1], sha: e[2] });
    }
  }

  /** Keeps the checksums of the files a full walk saw (a cache: no fsync; a torn file is ignored). */
  save(seen: ReadonlyMap<string, unknown>): void {
    if (!this.changed) return;
    this.changed = false;
    const out: [string, string, string][] = [];
    for (const [host, k] of this.shas) if (seen.has(host)) out.push([host, k.id, k.sha]);
    try {
      mkdirSync(this.stateDir, { recursive: true, mode: 0o700 });
      replaceCacheFile(this.file, JSON.stringify(out));
    } catch {
      // a cache: the next session reads the files again
    }
  }
}

/** written.json: the sha256 of what lvssync last wrote to each path. */
export class WrittenDigests {
  constructor(private readonly stateDir: string) {}

  read(): Record<string, string> {
    return readJsonFile<Record<string, string>>(path.join(this.stateDir, 'written.json')) ?? {};
  }

  save(w: Record<string, string>): void {
    atomicWrite(path.join(this.stateDir, 'written.json'), `${JSON.stringify(w, null, 1)}\n`, 0o600);
  }
}
