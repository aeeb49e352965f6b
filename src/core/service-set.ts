// Which files each service reads, and how two readings of them compare: what a reload checks right
// before it runs and right after the service has read its files, against the set that validated.
// Pure.

import { createHash } from 'node:crypto';
import path from 'node:path';
import picomatch from 'picomatch';
import type { Config } from './config.js';

/** path -> sha256 of the file's bytes, for every file of one service's set. */
export type SetDigests = ReadonlyMap<string, string>;

/** A reading of a service's files with their identities (a rewrite with the same bytes shows in ctime). */
export interface SetReading {
  digests: SetDigests;
  /** path -> `ino:ctimeNs:size`: a file rewritten between two readings differs here. */
  identities: ReadonlyMap<string, string>;
}

export const sha256 = (data: string | Uint8Array): string => createHash('sha256').update(data).digest('hex');

/**
 * The globs of the files `service` reads on a director: keepalived its configuration with what its
 * includes name (patterns included, so that a file that appears and matches counts) and files.extra
 * (scripts it runs); ferm its directory and files.extra; any other service all of them.
 */
export function serviceGlobs(config: Config, service: string, includePatterns: readonly string[]): string[] {
  const keepalived = [config.files.keepalived, ...includePatterns];
  const ferm = [`${path.posix.dirname(config.files.ferm)}/**`];
  const own = service === 'keepalived' ? keepalived : service === 'ferm' ? ferm : [...keepalived, ...ferm];
  return [...new Set([...own, ...config.files.extra])];
}

/** A service as a push's reload decision sees it on one director. */
export interface ReloadCandidate {
  name: string;
  /** The globs of the files it reads in the set being pushed (serviceGlobs). */
  globs: readonly string[];
  /** setDigest of its files in that set (asked only when no changed path is among them). */
  digest: () => string;
  /** The digest it last loaded through lvssync there, if that is known. */
  loaded?: string;
}

/**
 * The services a director reloads after a push (as Ansible's handlers: those whose files changed):
 * each one whose files the push changes there (a path changed, added or removed among the globs it
 * reads), and each one that did not last load this very set through lvssync (no record of it, or
 * another set's digest). A record can be wrong (a service reloaded by hand after an edit put back;
 * a rollback's reload forgets it): the changed paths decide on their own as well.
 */
export function servicesToReload(services: readonly ReloadCandidate[], changed: readonly string[]): string[] {
  return services
    .filter((s) => {
      const reads = picomatch([...s.globs], { dot: true, posix: true });
      return changed.some((p) => reads(p)) || s.loaded !== s.digest();
    })
    .map((s) => s.name);
}

/** One digest for a whole set (its paths and contents). */
export function setDigest(files: SetDigests): string {
  const h = createHash('sha256');
  for (const p of [...files.keys()].sort()) h.update(`${p}\0${files.get(p)}\n`);
  return h.digest('hex');
}

/** The paths that differ between two sets: changed, added or gone, sorted. */
export function diffSets(want: SetDigests, have: SetDigests): string[] {
  const out = new Set<string>();
  for (const [p, sha] of want) if (have.get(p) !== sha) out.add(p);
  for (const p of have.keys()) if (!want.has(p)) out.add(p);
  return [...out].sort();
}

/** The paths rewritten (or added, or gone) between two readings, even with the same bytes. */
export function diffReadings(a: SetReading, b: SetReading): string[] {
  const out = new Set(diffSets(a.digests, b.digests));
  for (const [p, id] of a.identities) if (b.identities.get(p) !== id) out.add(p);
  for (const p of b.identities.keys()) if (!a.identities.has(p)) out.add(p);
  return [...out].sort();
}

/** How one guarded reload ended (see shell/reload.ts). */
export type ReloadOutcome =
  /** The service read exactly the set that validated. */
  | { kind: 'loaded'; digest: string; durationMs: number; output: string }
  /** The files differ from what validated before the reload: it was not done. */
  | { kind: 'superseded'; changed: string[]; output: string }
  /** The files changed while the service read them: what it loaded is unknown. */
  | { kind: 'changed-during'; changed: string[]; durationMs: number; output: string }
  /** The reload command failed, or the service did not read its files in time, or is not running. */
  | { kind: 'failed'; durationMs: number; output: string };

/** What a reload whose files changed while the service read them leaves: said the same on both directors. */
export function describeChangedDuring(service: string, changed: readonly string[], invalid: boolean): string {
  return `${service} read its files while they changed (${changed.join(', ')}); ${invalid ? 'what is on disk now does not validate' : 'they kept changing'}: what it loaded is unknown`;
}
