// The findings of a self-contained file depend on its text alone (and on the config-id when it has
// `@id` lines): what lvssync's lints found in it is kept by the file's digest, so that a new process
// (a worker after the daemon's idle release, a new agent session, a CLI run) lints again only the
// files whose text it has not judged before. The owner keeps the value on disk (the Workspace);
// here is what it holds and how it is read into a CheckMemory and collected from one. Pure.

import type { Diagnostic } from './diagnostic.js';
import type { CheckMemory } from './memory.js';

/** What the lints found in one file, by the file's digest. */
export interface KnownFile {
  /** The digest of the file's text (the owner's function: sha256 in the shell). */
  sha: string;
  /** The config-id its `@id` lines were evaluated with; null: none. */
  configId: string | null;
  /** It has no `@id` lines: the same for any config-id. */
  any: boolean;
  /** Each top-level directive's own findings (keyword table), in the file's order. */
  top: Diagnostic[][];
  /** Each top-level virtual_server's own findings, null for other directives or when not linted. */
  vs: (Diagnostic[] | null)[];
}

export type KnownFindings = ReadonlyMap<string, KnownFile>;

type Digest = (file: string, text: string) => string;

/**
 * Hands the memory the kept findings of every self-contained file it has evaluated and not linted
 * yet whose text is the one judged: the lints then take them as computed. Returns how many files.
 */
export function primeFindings(memory: CheckMemory, known: KnownFindings, digest: Digest): number {
  let primed = 0;
  for (const [file, entry] of memory.parse) {
    const ev = entry.evaluated;
    const k = known.get(file);
    if (!ev || !k || ev.directives.length === 0 || memory.topFindings.has(ev.directives[0]!)) continue;
    if (k.top.length !== ev.directives.length || k.vs.length !== ev.directives.length) continue;
    if (!(k.any ? ev.anyConfigId === true : k.configId === (ev.configId ?? null) && !ev.anyConfigId))
      continue;
    if (digest(file, entry.text) !== k.sha) continue;
    ev.directives.forEach((d, i) => {
      memory.topFindings.set(d, k.top[i]!);
      const v = k.vs[i];
      if (v && d.name === 'virtual_server') memory.virtualServerFindings.set(d, v);
    });
    primed++;
  }
  return primed;
}

/** The findings the memory holds for every self-contained file whose top level was linted. */
export function collectFindings(memory: CheckMemory, digest: Digest): Map<string, KnownFile> {
  const out = new Map<string, KnownFile>();
  for (const [file, entry] of memory.parse) {
    const ev = entry.evaluated;
    if (!ev || ev.directives.length === 0) continue;
    const top: Diagnostic[][] = [];
    for (const d of ev.directives) {
      const own = memory.topFindings.get(d);
      if (!own) break;
      top.push(own);
    }
    if (top.length !== ev.directives.length) continue;
    out.set(file, {
      sha: digest(file, entry.text),
      configId: ev.anyConfigId ? null : (ev.configId ?? null),
      any: ev.anyConfigId === true,
      top,
      vs: ev.directives.map((d) =>
        d.name === 'virtual_server' ? (memory.virtualServerFindings.get(d) ?? null) : null,
      ),
    });
  }
  return out;
}

/** A kept value read back: only entries of the right shape (a torn or foreign file is none). */
export function knownFindingsOf(raw: unknown): Map<string, KnownFile> {
  const out = new Map<string, KnownFile>();
  if (!raw || typeof raw !== 'object') return out;
  const isDiags = (x: unknown): x is Diagnostic[] =>
    Array.isArray(x) &&
    x.every(
      (d) =>
        d &&
        typeof d === 'object' &&
        typeof d.code === 'string' &&
        typeof d.file === 'string' &&
        typeof d.line === 'number' &&
        typeof d.col === 'number' &&
        typeof d.message === 'string' &&
        (d.severity === 'error' || d.severity === 'warning'),
    );
  for (const [file, e] of Object.entries(raw as Record<string, Partial<KnownFile>>)) {
    if (
      e &&
      typeof e.sha === 'string' &&
      (e.configId === null || typeof e.configId === 'string') &&
      typeof e.any === 'boolean' &&
      Array.isArray(e.top) &&
      Array.isArray(e.vs) &&
      e.top.every(isDiags) &&
      e.vs.every((v) => v === null || isDiags(v))
    )
      out.set(file, e as KnownFile);
  }
  return out;
}
