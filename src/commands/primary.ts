// `lvssync primary NODE`: hands the primary role (where people edit, where every push starts) to
// another director, on every director through the agents; and `lvssync take NODE`: keeps a
// director's version of files edited there, which the next push then sends everywhere.

import { randomBytes } from 'node:crypto';
import { lstatSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { isEditorTemp } from '../core/coalesce.js';
import type { Config } from '../core/config.js';
import { describeClaim, type PrimaryClaim, settleClaims } from '../core/primary.js';
import { renderForNode, renderTargetOf } from '../core/render.js';
import { EXIT, LvssyncError } from '../errors.js';
import type { Io } from '../io.js';
import { writeTemp } from '../shell/fs-atomic.js';
import { loadConfig, requireSelfNode } from '../shell/load-config.js';
import { withLock } from '../shell/lock.js';
import { PeerSession, peerOf, peersOf } from '../shell/peer.js';
import { adoptClaim, readClaim } from '../shell/primary.js';
import { Store } from '../shell/store.js';

/** One director's managed files: their checksums, and a file's text on demand. */
interface Side {
  files(): Promise<Map<string, string>>;
  read(p: string): Promise<string | null>;
}

function localSide(config: Config): Side {
  const store = new Store(config);
  return {
    files: async () => new Map(store.manifest().map((f) => [f.path, f.sha256])),
    read: async (p) => {
      const r = store.read(p);
      return r.exists ? r.text : null;
    },
  };
}

function peerSide(s: PeerSession): Side {
  return {
    files: async () => new Map((await s.manifest()).map((f) => [f.path, f.sha256])),
    read: async (p) => {
      const r = await s.request({ op: 'read', path: p });
      return r.exists ? r.text : null;
    },
  };
}

/** `text` of a file as `node` must have it (its router_id and per-director lines). */
function renderFor(config: Config, node: string, p: string, text: string): string {
  const keepalived = p.startsWith(`${path.posix.dirname(config.files.keepalived)}/`) ? [p] : [];
  return renderForNode(new Map([[p, text]]), keepalived, renderTargetOf(config, node)).files.get(p) ?? text;
}

/** The files of `from` that `to` does not have as `from` would push them: what `from` has not pushed to `to`. */
async function notPushed(config: Config, from: Side, to: Side, toName: string): Promise<string[]> {
  const [a, b] = await Promise.all([from.files(), to.files()]);
  const out: string[] = [];
  for (const p of [...new Set([...a.keys(), ...b.keys()])].sort()) {
    if (isEditorTemp(p) || a.get(p) === b.get(p)) continue;
    const [ta, tb] = await Promise.all([from.read(p), to.read(p)]);
    if (ta === null || tb === null || renderFor(config, toName, p, ta) !== tb) out.push(p);
  }
  return out;
}

export interface PrimaryOptions {
  config?: string;
  node?: string;
  force?: boolean;
  json?: boolean;
}

export async function runPrimaryCommand(node: string, opts: PrimaryOptions, io: Io): Promise<number> {
  const { config, path: configPath } = await loadConfig(opts.config);
  const self = requireSelfNode(config, opts.node);
  if (!config.nodes[node])
    throw new LvssyncError(
      'E_USAGE',
      `${node} is not one of the nodes (${Object.keys(config.nodes).join(', ')})`,
    );
  const release = await withLock(config.stateDir, 'primary', 2000);
  const sessions = new Map<string, PeerSession>();
  try {
    // every other director, asked at once: its view of the primary comes with its hello
    const unreachable = new Map<string, string>();
    await Promise.all(
      peersOf(config, self).map(async (t) => {
        try {
          sessions.set(t.name, await PeerSession.open(config, t, self));
        } catch (e) {
          unreachable.set(t.name, (e as Error).message);
        }
      }),
    );
    const claims = new Map<string, PrimaryClaim>([[self, readClaim(config)]]);
    for (const [n, s] of sessions)
      if (s.hello?.primary !== undefined)
        claims.set(n, { primary: s.hello.primary, epoch: s.hello.epoch ?? 0 });
    const settled = settleClaims(claims);
    const current = 'claim' in settled ? settled.claim : undefined;
    const epoch = Math.max(...[...claims.values()].map((c) => c.epoch)) + 1;
    const say = (m: string) => {
      if (!opts.json) io.stdout(`${m}\n`);
    };
    if (
      current?.primary === node &&
      !unreachable.size &&
      [...claims.values()].every((c) => c.primary === node)
    ) {
      say(`${describeClaim(current)} is already the primary on every director`);
      if (opts.json)
        io.stdout(`${JSON.stringify({ ok: true, primary: node, epoch: current.epoch, changed: [] })}\n`);
      return EXIT.OK;
    }
    // What the current primary has not pushed to the new one would be lost to it: asked first.
    let unpushed: string[] | undefined;
    let why = '';
    if (!current) why = 'conflict' in settled ? settled.conflict : 'no director answered';
    else if (current.primary === node) unpushed = [];
    else {
      const sideOf = (n: string): Side | undefined => {
        if (n === self) return localSide(config);
        const s = sessions.get(n);
        return s ? peerSide(s) : undefined;
      };
      const from = sideOf(current.primary);
      const to = sideOf(node);
      if (!from)
        why = `${current.primary}, the primary, cannot be asked: ${unreachable.get(current.primary)}`;
      else if (!to) why = `${node} cannot be asked: ${unreachable.get(node)}`;
      else unpushed = await notPushed(config, from, to, node);
    }
    if (unpushed === undefined && !opts.force)
      throw new LvssyncError(
        'E_SSH_CONNECT',
        `${why}; lvssync cannot tell whether it has changes not pushed to ${node}. --force hands the role over anyway: when it is back, a push from ${node} shows its edits against what was last synced there and overwrites nothing without push --force (which keeps them in its history), or lvssync take`,
      );
    if (unpushed?.length && !opts.force)
      throw new LvssyncError(
        'E_CONFLICT',
        `${current!.primary}, the primary, has changes not pushed to ${node}: ${unpushed.join(', ')}; push them first (lvssync push on ${current!.primary}), or hand over with --force (${current!.primary} keeps them in its history)`,
      );
    // The handover: every director that answers takes `node` from the new handover on; the others
    // learn it from the first director they talk to.
    const claim: PrimaryClaim = { primary: node, epoch };
    const keepOn = unpushed?.length && current ? current.primary : undefined;
    const told: { node: string; changed: string; kept?: string }[] = [];
    const failed = new Map(unreachable);
    for (const [n, s] of sessions) {
      try {
        const r = await s.request({
          op: 'set-primary',
          primary: node,
          epoch,
          ...(keepOn === n ? { keep: true } : {}),
        });
        told.push({ node: n, changed: r.changed, ...(r.kept ? { kept: r.kept } : {}) });
      } catch (e) {
        failed.set(n, (e as Error).message);
      }
    }
    let keptHere: string | undefined;
    if (keepOn === self) {
      const store = new Store(config);
      const paths = store.manifest().map((f) => f.path);
      if (paths.length) keptHere = store.backup(paths, randomBytes(4).toString('hex'), 'handover');
    }
    const changedHere = adoptClaim(config, configPath, claim, self);
    told.unshift({ node: self, changed: changedHere, ...(keptHere ? { kept: keptHere } : {}) });
    if (opts.json)
      io.stdout(
        `${JSON.stringify({
          ok: failed.size === 0,
          primary: node,
          epoch,
          ...(current ? { from: current.primary } : {}),
          ...(unpushed?.length ? { notPushed: unpushed } : {}),
          told,
          notTold: [...failed].map(([n, error]) => ({ node: n, error })),
        })}\n`,
      );
    say(`${node} is the primary from handover ${epoch} on${current ? ` (it was ${current.primary})` : ''}`);
    for (const t of told)
      say(
        `  ${t.node}: ${t.changed || 'already knew'}${t.kept ? `; its files kept in its history as ${t.kept}` : ''}`,
      );
    for (const [n, e] of failed)
      say(`  ${n}: NOT TOLD (${e}); it learns of the handover from the first director it talks to`);
    if (node !== self) say(`edit on ${node} from now on; its daemon pushes, the others watch`);
    return failed.size ? EXIT.PEER : EXIT.OK;
  } finally {
    for (const s of sessions.values()) s.close();
    release();
  }
}

export interface TakeOptions {
  config?: string;
  node?: string;
  json?: boolean;
}

/**
 * Keeps `from`'s version of `paths` (default: every file in conflict on it): each is copied here
 * rendered for this director (its router_id and per-director lines), this director's own version
 * kept in its history first (reason take). The next push sends them to every director.
 */
export async function runTakeCommand(
  from: string,
  paths: string[],
  opts: TakeOptions,
  io: Io,
): Promise<number> {
  const { config, path: configPath } = await loadConfig(opts.config);
  const self = requireSelfNode(config, opts.node);
  const claim = readClaim(config);
  if (claim.primary !== self)
    throw new LvssyncError(
      'E_NOT_PRIMARY',
      `${self} is not the primary (${describeClaim(claim)} is): take files on the primary, which pushes them`,
    );
  const target = peerOf(config, self, from);
  let wanted = paths;
  if (!wanted.length) {
    const { runPush } = await import('../shell/push.js');
    const r = await runPush({
      config,
      self,
      peer: from,
      dryRun: true,
      external: false,
      ...(configPath ? { configPath } : {}),
    });
    if (r.error && r.result !== 'conflict') throw r.error;
    wanted = r.peers[0]?.plan?.conflicts.map((c) => c.path) ?? [];
    if (!wanted.length) {
      if (opts.json) io.stdout(`${JSON.stringify({ ok: true, taken: [] })}\n`);
      else io.stdout(`nothing on ${from} is in conflict with ${self}: nothing to take\n`);
      return EXIT.OK;
    }
  }
  const release = await withLock(config.stateDir, 'take', 2000);
  const session = await PeerSession.open(config, target, self);
  try {
    const store = new Store(config);
    for (const p of wanted) store.check(p);
    const theirs = await Promise.all(wanted.map((p) => session.request({ op: 'read', path: p })));
    // this director's versions first, in its own history (what `take` replaced)
    const kept = store.backup(wanted, randomBytes(4).toString('hex'), 'take');
    const taken: { path: string; deleted: boolean }[] = [];
    for (const [i, p] of wanted.entries()) {
      const t = theirs[i]!;
      if (!t.exists) {
        rmSync(p, { force: true });
        taken.push({ path: p, deleted: true });
        continue;
      }
      let mode = t.mode;
      try {
        mode = lstatSync(p).mode & 0o7777;
      } catch {}
      const text = renderFor(config, self, p, t.text);
      if (readFileSyncOr(p) !== text) renameSync(writeTemp(p, Buffer.from(text), mode), p);
      taken.push({ path: p, deleted: false });
    }
    if (opts.json) io.stdout(`${JSON.stringify({ ok: true, from, taken, kept })}\n`);
    else {
      for (const t of taken) io.stdout(`${t.deleted ? 'removed' : 'took'} ${t.path} (${from}'s version)\n`);
      io.stdout(
        `${self}'s previous versions are kept in ${path.join(config.stateDir, 'history', kept)}; lvssync push sends the files to every director\n`,
      );
    }
    return EXIT.OK;
  } finally {
    session.close();
    release();
  }
}

function readFileSyncOr(p: string): string | undefined {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return undefined;
  }
}
