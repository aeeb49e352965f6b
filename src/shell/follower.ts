// `lvssync status` on a director that is not the primary: how its files stand against what the
// primary would push to it (the primary's files, rendered for this director), not a push from here.
// The primary's agent is asked for its manifest and the texts of the files that differ; this
// director's own files are read here. Nothing is written on either side.

import path from 'node:path';
import picomatch from 'picomatch';
import { isEditorTemp } from '../core/coalesce.js';
import type { Config } from '../core/config.js';
import { type DesiredFile, type Plan, planPush, sha256 } from '../core/plan.js';
import { renderForNode, renderTargetOf } from '../core/render.js';
import type { DirectorCheck } from './check-director.js';
import type { PeerSession } from './peer.js';
import { managedGlobs } from './push.js';
import { Store } from './store.js';

/**
 * What the primary's next push would change here (plan.changes) and the files edited or deleted here
 * since lvssync wrote them (plan.conflicts: a push would refuse them until `take` or --force).
 */
export async function planFromPrimary(
  config: Config,
  self: string,
  primary: PeerSession,
  local: DirectorCheck,
): Promise<Plan> {
  const globs = managedGlobs(config, local);
  const isManaged = picomatch(globs, { dot: false, posix: true });
  const theirs = (await primary.manifest()).filter((f) => !isEditorTemp(f.path) && isManaged(f.path));
  const mine = new Store(config).manifestWithTimes();
  const here = new Map(mine.files.map((f) => [f.path, f.sha256]));
  // a file with the same text on both needs no rendering: only keepalived's files with this
  // director's own lines (router_id, per-host lines) differ, and only those are read there
  const differ = theirs.filter((f) => here.get(f.path) !== f.sha256);
  const texts = new Map<string, string>();
  await Promise.all(
    differ.map(async (f) => {
      const r = await primary.request({ op: 'read', path: f.path });
      if (r.exists) texts.set(f.path, r.text);
    }),
  );
  const kaDir = path.posix.dirname(config.files.keepalived);
  const keepalivedFiles = [...texts.keys()].filter(
    (p) => local.evaluation.files.includes(p) || p.startsWith(`${kaDir}/`),
  );
  const rendered = renderForNode(texts, keepalivedFiles, renderTargetOf(config, self));
  const sums = new Map(theirs.map((f) => [f.path, f.sha256]));
  for (const [p, text] of rendered.files) sums.set(p, sha256(text));
  // (the plan counts and names changes; the texts themselves are not needed for that)
  const wanted: DesiredFile[] = theirs
    .filter((f) => sums.has(f.path))
    .map((f) => ({ path: f.path, mode: f.mode, text: '' }));
  return planPush(
    wanted,
    mine.files.filter((f) => !isEditorTemp(f.path)),
    globs,
    (p) => sums.get(p)!,
    { gone: mine.gone, synced: new Set(wanted.map((w) => w.path)) },
  );
}
