// One director's Workspace: everything a run keeps to do the next one faster, in one value its owner
// holds and passes in (the daemon's worker for its own set, the agent's session for what it stages,
// a CLI run for itself). The pure core's part is CheckMemory; here are the reading's and the real
// validators'. Two owners never share one, and nothing of it lives in a module.

import { createHash } from 'node:crypto';
import type { LocatedMark } from '../core/cross-check.js';
import { CheckMemory } from '../core/memory.js';
import type { Snapshot } from '../core/snapshot.js';
import { type FermRun, readKeepalivedVersion, type ToolRun } from './tools.js';

/**
 * The last verdict of each real validator with the exact input it judged (every file's path, mode
 * and text, the config-id). Both also depend on the host (interfaces, resolvable names), so a verdict
 * is reused only for `ttlMs` (default 5 minutes): long enough for a burst of edits, short enough that
 * a changed host is noticed.
 */
export class ToolCache {
  /** The installed keepalived's version, asked once for this cache's owner. */
  private version: string | null | undefined;
  keepalivedVersion(): string | undefined {
    if (this.version === undefined) this.version = readKeepalivedVersion() ?? null;
    return this.version ?? undefined;
  }

  private readonly entries = new Map<string, { key: string; at: number; run: FermRun | ToolRun }>();
  private readonly digests = new Map<string, { text: string; sha: string }>();
  constructor(
    private readonly ttlMs = 300_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** sha256 of a file's text, computed again only when the text changed (keyed by path). */
  readonly digest = (file: string, text: string): string => {
    const known = this.digests.get(file);
    if (known && known.text === text) return known.sha;
    const sha = createHash('sha256').update(text, 'utf8').digest('hex');
    this.digests.set(file, { text, sha });
    return sha;
  };

  async get<T extends FermRun | ToolRun>(tool: string, key: string, run: () => Promise<T>): Promise<T> {
    const e = this.entries.get(tool);
    if (e && e.key === key && this.now() - e.at < this.ttlMs) return { ...(e.run as T), cached: true };
    const r = await run();
    this.entries.set(tool, { key, at: this.now(), run: r });
    return r;
  }
}

export class Workspace extends CheckMemory {
  /** The real validators' verdicts on unchanged inputs, and the installed keepalived's version. */
  readonly tools: ToolCache;
  /**
   * Texts read before, by host path with the file's identity (inode, size, mtime): an unchanged file
   * is not read again. A file modified in the two seconds before it was read is read every time (the
   * clock is coarse: git's "racy clean").
   */
  readonly texts = new Map<string, { id: string; text: string }>();
  /** Each snapshot's files as they were when read: inode, size and mtime (changedSinceRead). */
  readonly readAs = new WeakMap<Snapshot, Map<string, string>>();
  /** Snapshots being read again (rereadSnapshot): the paths found on disk this time. */
  readonly rereads = new WeakMap<Snapshot, Set<string>>();
  /**
   * When each kept snapshot's includes were last resolved (its FileMap's versions then): a reading
   * after edits to self-contained files only needs no full evaluation (read-snapshot.ts).
   */
  readonly resolved = new WeakMap<
    Snapshot,
    { version: number; keysVersion: number; dirsSize: number; confPath: string; configId: string | undefined }
  >();
  /** A set's renderings for each peer (by node name), kept with the set so that a re-check redoes only what changed. */
  readonly rendered = new WeakMap<Snapshot, Map<string, Snapshot>>();
  /** Each ferm run's marks with their ferm.conf locations (a reused verdict shares its marks array). */
  readonly located = new WeakMap<readonly unknown[], LocatedMark[]>();

  constructor(tools: ToolCache = new ToolCache()) {
    super();
    this.tools = tools;
  }
}
