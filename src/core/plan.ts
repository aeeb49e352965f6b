// Plans a push with rsync semantics: from what the peer must have (the rendered set) and what it has
// (the agent's manifest), the files to add, update, chmod and delete, and the conflicts: peer files
// changed (or deleted) since lvssync last wrote them. Pure (the order of the apply is apply-plan.ts's).

import { createHash } from 'node:crypto';
import picomatch from 'picomatch';

export interface DesiredFile {
  path: string;
  text: string;
  /** Permission bits (e.g. 0o640). */
  mode: number;
}

/** One file as the peer's agent reports it. */
export interface RemoteFile {
  path: string;
  sha256: string;
  mode: number;
  size: number;
  /** sha256 of what lvssync last wrote there (absent if lvssync never wrote it). */
  written?: string;
}

export type Change =
  | { kind: 'add'; path: string; mode: number; text: string; sha256: string }
  | { kind: 'update'; path: string; mode: number; text: string; sha256: string; before: string }
  | { kind: 'chmod'; path: string; mode: number; before: number }
  | { kind: 'delete'; path: string; before: string };

export interface Conflict {
  path: string;
  /**
   * What the peer has now (null: deleted there since lvssync wrote it), what lvssync last wrote,
   * what the primary wants (sha256, or null).
   */
  peer: string | null;
  written: string;
  wanted: string | null;
}

export interface Plan {
  changes: Change[];
  unchanged: string[];
  conflicts: Conflict[];
}

export function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/**
 * `managed`: globs of the paths lvssync owns on the peer (a peer file matching one that the primary
 * no longer has is deleted). Never throws.
 */
export function planPush(
  desired: readonly DesiredFile[],
  remote: readonly RemoteFile[],
  managed: readonly string[],
  /** sha256 of a file's text (a caller that keeps digests between plans passes its own). */
  digest: (path: string, text: string) => string = (_p, text) => sha256(text),
  /**
   * Files lvssync wrote on the peer that were deleted there since (the manifest's gone), and the
   * paths the primary itself last synced: a deletion there of a file the primary still syncs is a
   * conflict, like an edit (one of a file the primary stopped syncing since is not).
   */
  deleted: { gone: readonly { path: string; written: string }[]; synced: ReadonlySet<string> } = {
    gone: [],
    synced: new Set(),
  },
): Plan {
  const gone = new Map(deleted.gone.map((g) => [g.path, g.written]));
  const have = new Map(remote.map((r) => [r.path, r]));
  const want = new Map(desired.map((d) => [d.path, d]));
  const isManaged = picomatch([...managed], { dot: false, posix: true });
  const changes: Change[] = [];
  const unchanged: string[] = [];
  const conflicts: Conflict[] = [];
  const perm = (m: number) => m & 0o7777;
  for (const d of [...desired].sort((a, b) => cmp(a.path, b.path))) {
    const r = have.get(d.path);
    const sum = digest(d.path, d.text);
    if (!r) {
      const written = gone.get(d.path);
      if (written !== undefined && deleted.synced.has(d.path))
        conflicts.push({ path: d.path, peer: null, written, wanted: sum });
      changes.push({ kind: 'add', path: d.path, mode: perm(d.mode), text: d.text, sha256: sum });
      continue;
    }
    if (r.sha256 !== sum) {
      if (r.written !== undefined && r.written !== r.sha256) {
        conflicts.push({ path: d.path, peer: r.sha256, written: r.written, wanted: sum });
      }
      changes.push({
        kind: 'update',
        path: d.path,
        mode: perm(d.mode),
        text: d.text,
        sha256: sum,
        before: r.sha256,
      });
    } else if (perm(r.mode) !== perm(d.mode)) {
      changes.push({ kind: 'chmod', path: d.path, mode: perm(d.mode), before: perm(r.mode) });
    } else unchanged.push(d.path);
  }
  for (const r of [...remote].sort((a, b) => cmp(a.path, b.path))) {
    if (want.has(r.path) || !isManaged(r.path)) continue;
    if (r.written !== undefined && r.written !== r.sha256) {
      conflicts.push({ path: r.path, peer: r.sha256, written: r.written, wanted: null });
    }
    changes.push({ kind: 'delete', path: r.path, before: r.sha256 });
  }
  return { changes, unchanged, conflicts };
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

export function summarizePlan(plan: Plan): string {
  const count = (k: Change['kind']) => plan.changes.filter((c) => c.kind === k).length;
  const parts = [
    `${count('add')} added`,
    `${count('update')} changed`,
    `${count('delete')} deleted`,
    `${count('chmod')} mode changes`,
    `${plan.unchanged.length} unchanged`,
  ];
  return parts.join(', ');
}
