// One director's Workspace: everything a run keeps to do the next one faster, in one value its owner
// holds and passes in (the daemon's worker for its own set, the agent's session for what it stages,
// a CLI run for itself). The pure core's part is CheckMemory; here are the reading's and the real
// validators'. Two owners never share one, and nothing of it lives in a module.

import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import path from 'node:path';
import type { LocatedMark } from '../core/cross-check.js';
import type { IncludeRef } from '../core/keepalived/evaluate.js';
import { collectFindings, type KnownFile, knownFindingsOf, primeFindings } from '../core/known-findings.js';
import { CheckMemory } from '../core/memory.js';
import type { Snapshot } from '../core/snapshot.js';
import { VERSION } from '../version.js';
import { which } from './exec.js';
import { readJsonFile, replaceCacheFile } from './fs-atomic.js';
import { type FermRun, readKeepalivedVersion, type ToolRun } from './tools.js';

/**
 * The last verdict of each real validator with the exact input it judged (every file's path, mode
 * and text, the config-id). Both also depend on the host (interfaces, resolvable names), so a verdict
 * is reused only for `ttlMs` (default 5 minutes): long enough for a burst of edits, short enough that
 * a changed host is noticed. With a `file` (in the state directory) the verdicts outlive the process:
 * a new agent or command after a daemon's idle release skips ferm when ferm's files did not change.
 * A verdict is kept with the validator program's identity (path, size, mtime) and lvssync's version:
 * an upgrade of either drops it.
 */
export class ToolCache {
  /** The installed keepalived's version, asked once for this cache's owner. */
  private version: string | null | undefined;
  keepalivedVersion(): string | undefined {
    if (this.version === undefined) this.version = readKeepalivedVersion() ?? null;
    return this.version ?? undefined;
  }

  private entries: Map<string, CachedVerdict> | undefined;
  private readonly digests = new Map<string, { text: string; sha: string }>();
  constructor(
    private readonly ttlMs = 300_000,
    private readonly now: () => number = Date.now,
    /** Where the verdicts are kept between processes (none: this process only). */
    private readonly file?: string,
  ) {}

  /** sha256 of a file's text, computed again only when the text changed (keyed by path). */
  readonly digest = (file: string, text: string): string => {
    const known = this.digests.get(file);
    if (known && known.text === text) return known.sha;
    const sha = createHash('sha256').update(text, 'utf8').digest('hex');
    this.digests.set(file, { text, sha });
    return sha;
  };

  private load(): Map<string, CachedVerdict> {
    if (this.entries) return this.entries;
    this.entries = new Map();
    const kept = this.file ? readJsonFile<Record<string, CachedVerdict>>(this.file) : undefined;
    if (kept && typeof kept === 'object')
      for (const [tool, e] of Object.entries(kept)) {
        if (
          e &&
          typeof e.key === 'string' &&
          typeof e.at === 'number' &&
          e.run &&
          e.by === VERSION &&
          e.program === programId(tool)
        )
          this.entries.set(tool, e);
      }
    return this.entries;
  }

  async get<T extends FermRun | ToolRun>(tool: string, key: string, run: () => Promise<T>): Promise<T> {
    const entries = this.load();
    const e = entries.get(tool);
    if (e && e.key === key && this.now() - e.at < this.ttlMs && this.now() >= e.at)
      return { ...(e.run as T), cached: true };
    const r = await run();
    const { cached: _, ...verdict } = r;
    entries.set(tool, { key, at: this.now(), run: verdict, program: programId(tool), by: VERSION });
    if (this.file && r.available) {
      // a run of a program that is not installed is this process's only
      const kept = [...entries].filter(([, v]) => v.run.available);
      try {
        replaceCacheFile(this.file, JSON.stringify(Object.fromEntries(kept)));
      } catch {}
    }
    return r;
  }
}

/** The validators' kept verdicts, in the state directory. */
export const VERDICTS_FILE = 'verdicts.json';
/** lvssync's own findings per file digest, in the state directory. */
export const FINDINGS_FILE = 'findings.json';

/** At most this many files' findings are kept (the set's own first, then the most recent others). */
const MAX_KNOWN_FILES = 50_000;

/**
 * lvssync's findings in each self-contained file by its digest (core/known-findings.ts), kept in
 * `file` between processes: a worker started after the idle release, a new agent session or a CLI
 * run lints only the files it has not seen judged. Kept with lvssync's version: another one's lints
 * may find otherwise. A torn or foreign file is read as none.
 */
export class FindingsCache {
  private known: Map<string, KnownFile> | undefined;
  /** What was last written (or read): nothing new, nothing written. */
  private written = '';
  constructor(private readonly file?: string) {}

  private load(): Map<string, KnownFile> {
    if (this.known) return this.known;
    const kept = this.file ? readJsonFile<{ by?: unknown; files?: unknown }>(this.file) : undefined;
    this.known = kept?.by === VERSION ? knownFindingsOf(kept.files) : new Map();
    this.written = signature(this.known);
    return this.known;
  }

  /** Before the lints: the kept findings of the files read and not linted yet. Returns how many. */
  prime(memory: CheckMemory, digest: (file: string, text: string) => string): number {
    if (!this.file) return 0;
    return primeFindings(memory, this.load(), digest);
  }

  /** After a check, off the path of a push: what the memory holds now, with the other files kept. */
  save(memory: CheckMemory, digest: (file: string, text: string) => string): void {
    if (!this.file) return;
    const known = this.load();
    const fresh = collectFindings(memory, digest);
    for (const [f, e] of known) {
      if (fresh.size >= MAX_KNOWN_FILES) break;
      if (!fresh.has(f)) fresh.set(f, e);
    }
    this.known = fresh;
    const sig = signature(fresh);
    if (sig === this.written) return;
    try {
      replaceCacheFile(this.file, JSON.stringify({ by: VERSION, files: Object.fromEntries(fresh) }));
      this.written = sig;
    } catch {}
  }
}

const signature = (m: ReadonlyMap<string, KnownFile>) =>
  [...m].map(([f, e]) => `${f}\0${e.sha}\0${e.configId}`).join('\n');

interface CachedVerdict {
  key: string;
  at: number;
  run: FermRun | ToolRun;
  /** The validator program's identity when it judged. */
  program: string | undefined;
  /** The lvssync that asked (another runs the validators its own way). */
  by: string;
}

/** The installed program's path, size and mtime: a verdict of another build is not reused. */
function programId(tool: string): string | undefined {
  const bin = which(tool);
  if (!bin) return undefined;
  try {
    const st = statSync(bin);
    return `${bin}:${st.size}:${st.mtimeMs}`;
  } catch {
    return undefined;
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
    {
      version: number;
      keysVersion: number;
      dirsSize: number;
      confPath: string;
      configId: string | undefined;
      /** What keepalived reads and its include lines then (keepalived -t may start before the lints). */
      files: readonly string[];
      includes: readonly IncludeRef[];
    }
  >();
  /** A set's renderings for each peer (by node name), kept with the set so that a re-check redoes only what changed. */
  readonly rendered = new WeakMap<Snapshot, Map<string, Snapshot>>();
  /** Each ferm run's marks with their ferm.conf locations (a reused verdict shares its marks array). */
  readonly located = new WeakMap<readonly unknown[], LocatedMark[]>();

  /** lvssync's findings per file digest (kept between processes by Workspace.kept). */
  readonly findings: FindingsCache;

  /** A Workspace whose validator verdicts and own findings are kept in `stateDir` between processes. */
  static kept(stateDir: string): Workspace {
    return new Workspace(
      new ToolCache(undefined, undefined, path.join(stateDir, VERDICTS_FILE)),
      new FindingsCache(path.join(stateDir, FINDINGS_FILE)),
    );
  }

  constructor(tools: ToolCache = new ToolCache(), findings: FindingsCache = new FindingsCache()) {
    super();
    this.tools = tools;
    this.findings = findings;
  }

  /** The kept findings of the files read and not linted yet: the lints take them as computed. */
  primeFindings(): number {
    return this.findings.prime(this, this.tools.digest);
  }

  /** Keeps what the lints found for the next process (call it once a push or check is over). */
  saveFindings(): void {
    this.findings.save(this, this.tools.digest);
  }
}
