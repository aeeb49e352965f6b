// The push pipeline: validate here, render for the peer, plan against the peer's manifest, stage and
// validate there, then commit and reload in order (the director without the VIPs first), verifying
// each step; a failure on the peer restores its previous files and reloads them, and the primary is
// then left alone. Used by `lvssync push`, `lvssync diff` and the watch daemon.
// Composition of shell modules; decisions come from the core (render, plan, apply-plan).

import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import picomatch from 'picomatch';
import { canonicalIP } from '../core/address.js';
import {
  type ApplyNode,
  describeOrder,
  type InstanceVips,
  planApply,
  undoAfter,
} from '../core/apply-plan.js';
import { checkKeepalived } from '../core/check.js';
import { isEditorTemp } from '../core/coalesce.js';
import type { Config } from '../core/config.js';
import { type Diagnostic, hasErrors } from '../core/diagnostic.js';
import { type Change, type DesiredFile, type Plan, planPush, type RemoteFile } from '../core/plan.js';
import { compareClaims, describeClaim } from '../core/primary.js';
import type {
  AddressInfo,
  HistoryEntry,
  ReloadResult,
  ServiceState,
  VerifyResult,
} from '../core/protocol.js';
import { renderForNode, renderTargetOf } from '../core/render.js';
import {
  describeChangedDuring,
  type ReloadCandidate,
  serviceGlobs,
  servicesToReload,
  setDigest,
} from '../core/service-set.js';
import { emptySnapshot, putFile, retainFiles, type Snapshot } from '../core/snapshot.js';
import { type PushResult, resultOfError, type Step } from '../core/worker-ipc.js';
import { LvssyncError } from '../errors.js';
import { checkSelf, type DirectorCheck, readSelf } from './check-director.js';
import { withLock } from './lock.js';
import { type PeerKeeper, PeerSession, type PeerTarget, peerOf, peersOf } from './peer.js';
import { adoptClaim, readClaim } from './primary.js';
import { guardFor, readLoaded, reloadTiming, reloadValidated } from './reload.js';
import { readAddresses, readServiceStates, verifyService } from './services.js';
import { Store } from './store.js';
import { Workspace } from './workspace.js';

/** One other director's part of a push, as the report gives it. */
export interface NodeReport {
  /** Its name in lvssync.yaml. */
  node: string;
  /** It could not be asked (connection, host key, authentication, its agent's start): nothing was sent. */
  unreachable?: LvssyncError;
  plan?: Plan;
  /** Its text of every changed file (null: absent there), for diffs. */
  before: Map<string, string | null>;
  /**
   * For each file in conflict (edited there since lvssync last synced it): what lvssync last synced
   * there (null: nothing), the base of a three-way difference. Absent where the director keeps none.
   */
  base: Map<string, string | null>;
  /** Its per-director lines (router_id, hostLines), as rendered for it. */
  rewrites: { file: string; line: number; what: string }[];
  /** The text it must have, per path. */
  rendered?: Map<string, string>;
  /** The history version there that holds what this push's commit replaced. */
  version?: string;
  /** An interrupted push its agent rolled back before this one. */
  recovered?: string;
  /** Its validation: ms from its start to `read` and `checked` (lvssync's own), `done`; keepalived -t's and ferm's durations (0: verdict reused). */
  peerTimings?: Record<string, number>;
}

export interface PushReport {
  result: PushResult;
  /** Every other director the push went to (one with --peer), in lvssync.yaml's order. */
  peers: NodeReport[];
  /** Diagnostics that stopped the push (here or on a peer), or warnings of a good push. */
  diagnostics: Diagnostic[];
  /** The directors in the order they were committed and reloaded (apply-plan.ts). */
  order?: string[];
  steps: Step[];
  error?: LvssyncError;
  /** The local check, for printing diagnostics with their source lines. */
  local?: DirectorCheck;
  /** Milliseconds from the start to each stage: checked, connected, planned, uploaded, validated, committed, done. */
  timings: Record<string, number>;
  /** A reload not done because the service's files changed after they validated (result superseded). */
  superseded?: { host: string; service: string; changed: string[] };
  /** Services found not running (result service-down). */
  servicesDown?: (ServiceState & { host: string })[];
  /** Services whose files here or on a peer were not what they last loaded (reloaded, or to reload). */
  pendingReloads?: { host: string; services: string[] }[];
}

export interface PushOptions {
  config: Config;
  self: string;
  /** Only this director (default: every other node in lvssync.yaml). */
  peer?: string;
  dryRun?: boolean;
  force?: boolean;
  /** Asked after the plan is known (terminal confirmation); false stops the push. */
  confirm?: (report: PushReport) => Promise<boolean>;
  /**
   * Asked once the set is validated on every director, right before the first commit (the daemon's
   * early pushes: has the set stayed unchanged for its quiet window?); false abandons the push.
   */
  gate?: () => Promise<boolean>;
  progress?: (msg: string) => void;
  /** Skip the real ferm / keepalived -t here (the peers always run them). */
  external?: boolean;
  /** Skip reloads (tests of the transfer alone). */
  reload?: boolean;
  /**
   * What this director's checks keep between runs (parsed files, the last check, validator verdicts,
   * the renderings for the peers): the daemon's worker keeps one; without it, one for this push.
   */
  workspace?: Workspace;
  /** This director's set as last read, kept between runs with `workspace` (the daemon keeps one). */
  snapshot?: Snapshot;
  /** Sessions kept open between runs, per peer (the daemon keeps them); otherwise one per push. */
  keepers?: (target: PeerTarget) => PeerKeeper | undefined;
  /** lvssync.yaml's path, rewritten when a peer tells of a later handover of the primary role. */
  configPath?: string;
}

/** The globs of peer paths lvssync owns: what keepalived includes, ferm's directory, extra files. */
export function managedGlobs(config: Config, local: DirectorCheck): string[] {
  const globs = new Set<string>([config.files.keepalived, `${path.posix.dirname(config.files.ferm)}/**`]);
  for (const inc of local.evaluation.includes) globs.add(inc.pattern);
  for (const e of config.files.extra) globs.add(e);
  return [...globs];
}

/** The files the peers must have (before rendering): keepalived's set, ferm's directory, extra. */
function desiredFiles(config: Config, local: DirectorCheck): DesiredFile[] {
  const fermDir = path.posix.dirname(config.files.ferm);
  const isExtra = config.files.extra.length ? picomatch(config.files.extra, { posix: true }) : () => false;
  const want = new Set(local.evaluation.files);
  const out: DesiredFile[] = [];
  for (const f of local.snapshot.files.values()) {
    if (isEditorTemp(f.path) && !want.has(f.path)) continue;
    if (want.has(f.path) || f.path.startsWith(`${fermDir}/`) || isExtra(f.path)) {
      out.push({ path: f.path, text: f.text, mode: f.mode & 0o7777 });
    }
  }
  return out;
}

/** Each VRRP instance with the addresses that mark its holder. */
function instancesOf(local: Pick<DirectorCheck, 'model'>): InstanceVips[] {
  return local.model.instances.map((inst) => ({
    name: inst.name,
    vips: [...inst.vips, ...inst.excludedVips].map((v) => canonicalIP(v.address)),
  }));
}

function vipsOf(local: Pick<DirectorCheck, 'model'>): string[] {
  return [...new Set(instancesOf(local).flatMap((i) => i.vips))];
}

function holds(addrs: AddressInfo, vips: readonly string[]): string[] {
  const mine = new Set(Object.values(addrs).flat().map(canonicalIP));
  return vips.filter((v) => mine.has(v));
}

const newTxid = () => randomBytes(8).toString('hex');

/** One peer's part of a push while it runs. */
interface Leg {
  target: PeerTarget;
  node: NodeReport;
  keeper: PeerKeeper | undefined;
  connecting?: Promise<{ session: PeerSession } | { error: unknown }>;
  manifest?: Promise<{ files: RemoteFile[] } | { error: unknown }>;
  session?: PeerSession;
  /** The transaction opened ahead of the plan (see speculate), and whether the push went on to use it. */
  begun?: Promise<unknown>;
  used: boolean;
  /** A transaction is open there: a kept session is not reused after a failure in between. */
  txOpen: boolean;
  /** What its services last loaded through lvssync (asked with the manifest). */
  loaded?: Promise<Record<string, { digest: string; at: number }>>;
  wanted?: DesiredFile[];
  renderedSnap?: Snapshot;
  peerCheck?: ReturnType<typeof checkKeepalived>;
  readBefore?: Promise<void>;
  /** Its services that did not load its files as they are (a reload owed). */
  pending: string[];
  /** What this push does there: commit its changed files, only reload what it has, or nothing. */
  work: 'commit' | 'reload' | 'none';
}

export async function runPush(opts: PushOptions): Promise<PushReport> {
  const { config, self } = opts;
  const say = opts.progress ?? (() => {});
  const ws = opts.workspace ?? new Workspace();
  const targets = peersOf(config, self, opts.peer);
  const report: PushReport = {
    result: 'in-sync',
    peers: targets.map((t) => ({ node: t.name, before: new Map(), base: new Map(), rewrites: [] })),
    diagnostics: [],
    steps: [],
    timings: {},
  };
  const legs: Leg[] = targets.map((target, i) => {
    const keeper = opts.keepers?.(target);
    return {
      target,
      node: report.peers[i]!,
      keeper: keeper?.serves(target) ? keeper : undefined,
      used: false,
      txOpen: false,
      pending: [],
      work: 'none',
    };
  });
  const started = performance.now();
  const mark = (stage: string) => {
    report.timings[stage] = Math.round((performance.now() - started) * 10) / 10;
  };
  let release: (() => void) | undefined;
  const txid = newTxid();
  /** A peer committed this push's set (a failure after this is not 'nothing changed'). */
  let committedAny = false;
  /** Directors that could not be asked: the push goes on for the others, and its result says so. */
  const partial = (r: PushResult): PushResult =>
    legs.some((l) => l.node.unreachable) && ['pushed', 'reloaded', 'in-sync', 'dry-run'].includes(r)
      ? 'partial'
      : r;
  try {
    const claim = readClaim(config);
    if (!opts.dryRun && claim.primary !== self)
      throw new LvssyncError(
        'E_NOT_PRIMARY',
        `${self} is not the primary: ${describeClaim(claim)} is, and pushes from there; edit there, or take the role with lvssync primary ${self}`,
      );
    // A dry run (diff, status) only reads, here and on the peers: it answers while a push runs,
    // which may change what it says at once, as with any look at a live system.
    if (!opts.dryRun) release = await withLock(config.stateDir, 'push', 2000);
    // 1. The set here must be valid: an invalid set never leaves this host.
    // Connecting to the peers while the set is checked here saves a round of waiting; nothing is
    // sent to them before the check has passed.
    // What each peer has, and (for a push that asks nobody) its transaction opened, are asked for
    // while the set is checked here: neither tells a peer anything of the new set. A transaction
    // opened for nothing (the set is invalid, or the peer already has it) is aborted at the end.
    const speculate = !opts.dryRun && !opts.confirm;
    for (const leg of legs) {
      const t = leg.target;
      say(`connecting to ${t.name} (${t.host}:${t.port})`);
      // The questions go right behind the hello (written as the session opens, whatever this
      // thread is busy with): the peer answers them while the set is checked here.
      let asked: Promise<RemoteFile[]> | undefined;
      const ask = (s: PeerSession) => {
        asked = s.manifest();
        void asked.catch(() => undefined);
        leg.loaded = s.request({ op: 'loaded' });
        void leg.loaded.catch(() => undefined);
        if (speculate) {
          leg.txOpen = true;
          leg.begun = s.request({ op: 'begin', txid });
          void leg.begun.catch(() => undefined);
        }
      };
      leg.connecting = (
        leg.keeper ? leg.keeper.get(ask) : PeerSession.open(config, t, self, undefined, ask)
      ).then(
        (s) => ({ session: s }),
        (error: unknown) => ({ error }),
      );
      leg.manifest = leg.connecting.then(async (c) => {
        if ('error' in c) return c;
        leg.session = c.session;
        return asked!.then(
          (files) => ({ files }),
          (error: unknown) => ({ error }),
        );
      });
    }
    // keepalived -t's second opinion on this set runs while the peers validate their staged copies:
    // the set leaves this host only after lvssync's own checks and ferm --noexec passed here, and no
    // peer commits before keepalived -t has passed here too (settle()).
    // (started once the set is on its way to the peers: the directors' keepalived -t then run side
    // by side, and nothing here competes with reading, planning and sending the set)
    let startKeepalivedTest: () => void = () => {};
    const keepalivedTestAfter = new Promise<void>((resolve) => {
      startKeepalivedTest = resolve;
    });
    let local = await checkSelf(config, self, opts.external !== false, {
      workspace: ws,
      ...(opts.snapshot ? { snapshot: opts.snapshot } : {}),
      deferKeepalivedTest: true,
      keepalivedTestAfter,
    });
    const pendingCheck = local.complete;
    // awaited by settle(); a push that stops earlier must not leave its failure unhandled
    void pendingCheck?.catch(() => undefined);
    report.local = local;
    mark('checked');
    if (hasErrors(local.diagnostics)) {
      report.result = 'invalid-here';
      report.diagnostics = local.diagnostics;
      return report;
    }
    /** The complete check here (keepalived -t included); false when it found an error. */
    const settle = async (): Promise<boolean> => {
      startKeepalivedTest();
      if (pendingCheck) {
        local = await pendingCheck;
        report.local = local;
        mark('checked-here');
      }
      report.diagnostics = local.diagnostics;
      if (!hasErrors(local.diagnostics)) return true;
      report.result = 'invalid-here';
      return false;
    };
    // 2. Render each peer's copy and check it as that peer will read it.
    const desired = desiredFiles(config, local);
    const texts = new Map(desired.map((d) => [d.path, d.text]));
    let kept = opts.snapshot ? ws.rendered.get(opts.snapshot) : undefined;
    if (!kept) {
      kept = new Map();
      if (opts.snapshot) ws.rendered.set(opts.snapshot, kept);
    }
    for (const leg of legs) {
      const name = leg.target.name;
      const peerNode = config.nodes[name]!;
      const rendered = renderForNode(texts, local.evaluation.files, renderTargetOf(config, name));
      leg.node.rewrites = rendered.rewrites;
      leg.node.rendered = rendered.files;
      // each rendering, like the set, is kept between pushes and updated in place (a re-check of it
      // redoes only what changed)
      let snap = kept.get(name);
      if (!snap) {
        snap = emptySnapshot();
        kept.set(name, snap);
      }
      for (const d of desired) putFile(snap, d.path, rendered.files.get(d.path)!, 0o100000 | d.mode);
      retainFiles(snap, new Set(desired.map((d) => d.path)));
      for (const dir of local.snapshot.dirs) snap.dirs.add(dir);
      leg.renderedSnap = snap;
      leg.peerCheck = checkKeepalived(snap, config.files.keepalived, {
        ...(peerNode.configId ? { configId: peerNode.configId } : {}),
        memory: ws,
      });
      const problems = [
        ...rendered.diagnostics,
        ...leg.peerCheck.diagnostics.filter((d) => d.severity === 'error'),
      ];
      if (hasErrors(problems)) {
        report.result = 'invalid-here';
        report.diagnostics = problems;
        return report;
      }
      leg.wanted = desired.map((d) => ({ ...d, text: rendered.files.get(d.path)! }));
    }
    report.diagnostics = local.diagnostics;

    // 3. Ask each peer what it has, and plan. A peer that cannot be asked does not hold up the others.
    const reachable: Leg[] = [];
    /** What this director last synced (written.json): a deletion there of one of these is a conflict. */
    let synced: Set<string> | undefined;
    const syncedHere = () => {
      if (!synced) {
        try {
          synced = new Set(Object.keys(new Store(config).lastWritten()));
        } catch {
          synced = new Set();
        }
      }
      return synced;
    };
    for (const leg of legs) {
      const m = await leg.manifest!;
      if ('error' in m) {
        if (!(m.error instanceof LvssyncError)) throw m.error;
        leg.node.unreachable = m.error;
        say(`${leg.target.name} cannot be asked: ${m.error.message}`);
        continue;
      }
      const session = leg.session!;
      // a peer that learnt of a later handover: this director adopts it, and pushes nothing
      const hello = session.hello;
      if (hello?.primary !== undefined && hello.epoch !== undefined) {
        const theirs = { primary: hello.primary, epoch: hello.epoch };
        const order = compareClaims(claim, theirs);
        if (order === 'theirs-newer' && config.nodes[theirs.primary]) {
          const changed = adoptClaim(config, opts.configPath, theirs, leg.target.name);
          if (changed) say(changed);
          if (!opts.dryRun)
            throw new LvssyncError(
              'E_NOT_PRIMARY',
              `${leg.target.name} follows ${describeClaim(theirs)}, a later handover than this director knew of: ${self}'s lvssync.yaml now says so, and nothing was pushed${theirs.primary === self ? '' : `; edit on ${theirs.primary}`}`,
            );
        } else if (order === 'conflict' && !opts.dryRun)
          throw new LvssyncError(
            'E_NOT_PRIMARY',
            `${leg.target.name} follows ${describeClaim(theirs)}, this director ${describeClaim(claim)}: the same handover names two primaries; hand over once more with lvssync primary NAME`,
          );
      }
      if (session.hello?.recovered) {
        leg.node.recovered = session.hello.recovered;
        say(
          `${leg.target.name} rolled back an interrupted push (${session.hello.recovered}) before this one`,
        );
      }
      // Editors' temporary and backup files on the peer are neither pushed nor deleted.
      const plan = planPush(
        leg.wanted!,
        m.files.filter((r) => !isEditorTemp(r.path)),
        managedGlobs(config, local),
        ws.tools.digest,
        { gone: session.gone, synced: syncedHere() },
      );
      leg.node.plan = plan;
      // its current text of what changes (for the report's diffs): asked now, awaited before
      // anything is committed
      const readBefore = plan.changes.filter((c) => c.kind === 'update' || c.kind === 'delete');
      leg.readBefore = Promise.all([
        ...readBefore.map(async (c) => {
          const r = await session.request({ op: 'read', path: c.path });
          leg.node.before.set(c.path, r.exists ? r.text : null);
        }),
        // a file edited there: what lvssync last synced there, for a three-way difference
        ...plan.conflicts.map(async (c) => {
          const b = await session.request({ op: 'base', path: c.path }).catch(() => undefined);
          if (b) leg.node.base.set(c.path, b.exists ? b.text : null);
        }),
      ]).then(() => undefined);
      void leg.readBefore.catch(() => undefined);
      for (const c of plan.changes) if (c.kind === 'add') leg.node.before.set(c.path, null);
      reachable.push(leg);
    }
    mark('manifest');
    if (reachable.length === 0) throw legs[0]!.node.unreachable!;
    mark('planned');
    const needBefore = async () => {
      for (const leg of reachable) await leg.readBefore;
      mark('read');
    };
    const conflicted = reachable.filter((l) => l.node.plan!.conflicts.length > 0);
    if ((conflicted.length > 0 && !opts.force) || opts.dryRun || opts.confirm) await needBefore();
    if (conflicted.length > 0 && !opts.force) {
      if (!(await settle())) return report;
      report.result = 'conflict';
      report.error = new LvssyncError(
        'E_CONFLICT',
        `${conflicted
          .map(
            (l) =>
              `${l.node.plan!.conflicts.length} file(s) on ${l.target.name} were changed there since lvssync last wrote them: ${l.node
                .plan!.conflicts.map((c) => c.path)
                .join(', ')}`,
          )
          .join(
            '; ',
          )}; nothing was written anywhere (review the diff, then push --force to overwrite, or copy the change to ${self})`,
      );
      return report;
    }
    if (opts.dryRun) {
      if (!(await settle())) return report;
      report.result = partial(reachable.some((l) => l.node.plan!.changes.length) ? 'dry-run' : 'in-sync');
      return report;
    }
    const services = config.services.map((x) => x.name);
    /** Each service of a set, as servicesToReload weighs it against what it last loaded. */
    const candidates = (
      set: Parameters<typeof guardFor>[2],
      loaded: Record<string, { digest: string } | undefined>,
    ): ReloadCandidate[] =>
      services.map((name) => {
        const globs = serviceGlobs(
          config,
          name,
          set.evaluation.includes.map((i) => i.pattern),
        );
        const had = loaded[name]?.digest;
        return {
          name,
          globs,
          digest: () => setDigest(guardFor(config, name, set).validated),
          ...(had ? { loaded: had } : {}),
        };
      });
    // Each director reloads the services whose files this push changes there, and those that did
    // not last load this set (a reload that did not happen, a file put back by hand).
    for (const leg of reachable) {
      const there = (await leg.loaded?.catch(() => undefined)) ?? {};
      const peerSet = {
        snapshot: leg.renderedSnap!,
        evaluation: leg.peerCheck!.evaluation,
        model: leg.peerCheck!.model,
      };
      const changes = leg.node.plan!.changes;
      leg.pending = servicesToReload(
        candidates(peerSet, there),
        changes.map((c) => c.path),
      );
      leg.work = changes.length ? 'commit' : leg.pending.length ? 'reload' : 'none';
    }
    const anyCommit = reachable.some((l) => l.work === 'commit');
    /** This director's services that did not load its files as they are (its edits, a reload that did not happen). */
    const selfPending = servicesToReload(candidates(local, readLoaded(config.stateDir)), []);
    /** Services not running on any director: a push neither commits nor reloads while one is down. */
    const down = async (): Promise<boolean> => {
      const [mine, ...theirs] = await Promise.all([
        readServiceStates(config),
        ...reachable.map((l) =>
          l.session!.request({ op: 'services' }).then((s) => s.map((x) => ({ ...x, host: l.target.name }))),
        ),
      ]);
      const found = [...mine.map((x) => ({ ...x, host: self })), ...theirs.flat()].filter(
        (x) => x.up === false,
      );
      if (!found.length) return false;
      report.servicesDown = found;
      report.result = 'service-down';
      const iso = (ms?: number) => (ms ? new Date(ms).toISOString() : 'unknown');
      report.error = new LvssyncError(
        'E_SERVICE_DOWN',
        `${found.map((x) => `${x.service} is not running on ${x.host} (down since ${iso(x.since)}; last reload by lvssync ${iso(x.lastReload)})`).join('; ')}: nothing was committed or reloaded; start it (systemctl start ${found[0]!.service} on ${found[0]!.host}), then push again`,
      );
      return true;
    };
    /** What the primary reloads: what did not load its set as it is (its own edits, mostly). */
    const selfServices = selfPending;
    if (!anyCommit) {
      if (!(await settle())) return report;
      if (await down()) return report;
      const pending = [
        ...reachable
          .filter((l) => l.pending.length)
          .map((l) => ({ host: l.target.name, services: l.pending })),
        ...(selfPending.length ? [{ host: self, services: selfPending }] : []),
      ];
      if (pending.length) report.pendingReloads = pending;
      if (!pending.length || opts.reload === false) {
        report.result = partial('in-sync');
        recordBaseHere(config, desired, ws);
        return report;
      }
      say(
        `files in sync; reload pending: ${pending.map((x) => `${x.services.join(', ')} on ${x.host}`).join('; ')}`,
      );
    }
    if (opts.confirm) {
      // a person is asked: show the complete verdict first
      if (!(await settle())) return report;
      if (!(await opts.confirm(report))) {
        report.result = 'declined';
        return report;
      }
    }

    // 4. Stage on each peer and validate there, with the real tools, on its own interfaces. An
    // agent answers requests in order: the files and the request to validate them go out together,
    // without a round trip between them. Every peer validates before any commits.
    const active = reachable.filter((l) => l.work !== 'none');
    const t0 = performance.now();
    const validations = active.map((leg) => {
      const s = leg.session!;
      leg.used = true;
      leg.txOpen = true;
      const begin = leg.begun ?? s.request({ op: 'begin', txid });
      const plan = leg.node.plan!;
      if (plan.changes.length) say(`uploading ${plan.changes.length} change(s) to ${leg.target.name}`);
      const uploads = begin.then(() =>
        Promise.all(
          plan.changes.map((c: Change) => {
            if (c.kind === 'delete') return s.request({ op: 'remove', txid, path: c.path });
            const text = c.kind === 'chmod' ? leg.node.rendered!.get(c.path)! : c.text;
            return s.request({
              op: 'put',
              txid,
              path: c.path,
              mode: c.mode,
              data: Buffer.from(text).toString('base64'),
            });
          }),
        ),
      );
      // sent right behind the files (the agent answers in order); its answer is awaited below
      const validation = begin.then(() =>
        s.request({ op: 'validate', txid }).then((r) => ({ ...r, at: performance.now() })),
      );
      void validation.catch(() => undefined);
      return { leg, uploads, validation };
    });
    startKeepalivedTest();
    for (const v of validations) {
      await v.uploads;
      if (v.leg.node.plan!.changes.length)
        report.steps.push({
          host: v.leg.target.name,
          step: 'upload',
          ok: true,
          durationMs: performance.now() - t0,
        });
    }
    mark('uploaded');
    say(`validating the staged set on ${active.map((l) => l.target.name).join(', ')}`);
    const invalid: Leg[] = [];
    const t1 = performance.now();
    for (const v of validations) {
      const r = await v.validation;
      report.steps.push({
        host: v.leg.target.name,
        step: 'validate',
        ok: r.ok,
        // the peers validate side by side: each one's time from the end of the uploads to its answer
        durationMs: Math.max(0, r.at - t1),
      });
      if (r.timings) v.leg.node.peerTimings = r.timings;
      if (!r.ok) {
        invalid.push(v.leg);
        report.diagnostics = [...(invalid.length > 1 ? report.diagnostics : []), ...r.diagnostics];
      }
    }
    mark('validated');
    await needBefore();
    /** Throws every staged copy away: nothing was committed anywhere. */
    const abortAll = async () => {
      for (const leg of active) {
        await leg.session!.request({ op: 'abort', txid, reload: false });
        leg.txOpen = false;
      }
    };
    if (invalid.length) {
      await abortAll();
      report.result = 'invalid-on-peer';
      report.error = new LvssyncError(
        'E_PEER_INVALID',
        `the set does not validate on ${invalid.map((l) => l.target.name).join(', ')}; nothing was changed on any director`,
      );
      return report;
    }
    if (!(await settle())) {
      // keepalived -t found errors in the set here: the staged copies are thrown away
      await abortAll();
      return report;
    }
    if (opts.gate && !(await opts.gate())) {
      mark('gated');
      await abortAll();
      report.result = 'superseded';
      return report;
    }
    if (opts.gate) mark('gated');
    if (anyCommit && opts.reload !== false && (await down())) {
      await abortAll();
      return report;
    }
    if (opts.reload === false && anyCommit) {
      for (const leg of active) {
        if (leg.work === 'commit') {
          const c = await leg.session!.request({ op: 'commit', txid });
          leg.node.version = c.version;
          committedAny = true;
        }
        mark('committed');
        await leg.session!.request({ op: 'finish', txid });
        leg.txOpen = false;
      }
      report.result = partial('pushed');
      recordBaseHere(config, desired, ws);
      return report;
    }

    // 5. Plan the apply (who holds which VRRP instance decides the order), then carry it out.
    const vips = vipsOf(local);
    const addresses = await Promise.all([
      readAddresses(),
      ...reachable.map((l) => l.session!.request({ op: 'addresses' })),
    ]);
    const found = new Map<string, ApplyNode>([
      [
        self,
        {
          name: self,
          primary: true,
          addresses: Object.values(addresses[0]!).flat(),
          commit: false,
          services: selfServices,
        },
      ],
    ]);
    const placed = new Map<string, string[]>([[self, holds(addresses[0]!, vips)]]);
    reachable.forEach((leg, i) => {
      const a = addresses[i + 1]!;
      placed.set(leg.target.name, holds(a, vips));
      if (leg.work === 'none') return;
      found.set(leg.target.name, {
        name: leg.target.name,
        primary: false,
        addresses: Object.values(a).flat(),
        commit: leg.work === 'commit',
        services: leg.pending,
      });
    });
    // lvssync.yaml's order breaks ties
    const applyPlan = planApply(
      Object.keys(config.nodes)
        .map((n) => found.get(n))
        .filter((n) => n !== undefined),
      instancesOf(local),
    );
    report.order = applyPlan.steps.map((st) => st.node);
    say(`reload order: ${describeOrder(applyPlan)}`);
    const byName = new Map(active.map((l) => [l.target.name, l]));
    /** Every director that answered, for the VIP checks (exactly one holder among all). */
    const everyone = new Map(reachable.map((l) => [l.target.name, l.session!]));
    const vipCheck = (node: string) => checkVips(self, everyone, vips, placed, node);
    /** Peers whose commit is done: a push that stops finishes them; the others are aborted. */
    const committedOn = new Set<string>();
    /** Peers whose transaction already ended (aborted by a failure, restored by an undo). */
    const ended = new Set<string>();
    // every director ends its transaction at once (each one records what it was sent meanwhile)
    const close = async () => {
      await Promise.all(
        active
          .filter((leg) => !ended.has(leg.target.name))
          .map(async (leg) => {
            const done = committedOn.has(leg.target.name) || leg.work === 'reload';
            const ok = await leg
              .session!.request(done ? { op: 'finish', txid } : { op: 'abort', txid, reload: false })
              .then(
                () => true,
                () => false,
              );
            if (ok) leg.txOpen = false;
          }),
      );
    };
    /** A reload that was not done: the files changed since they validated. The push stops there. */
    const supersede = async (host: string, service: string, changed: string[]) => {
      report.superseded = { host, service, changed };
      report.result = 'superseded';
      const ahead = [...committedOn];
      report.error = new LvssyncError(
        'E_RELOAD',
        `${service} was not reloaded on ${host}: ${changed.join(', ')} changed after the set validated; the next push validates what is there now${ahead.length && host === self ? ` (${ahead.join(', ')} already run${ahead.length > 1 ? '' : 's'} the set that validated)` : ''}`,
      );
      await close();
      return report;
    };
    /** Puts back what this push committed on `nodes` (the last changed first) after a later step failed. */
    const undo = async (nodes: readonly string[]) => {
      for (const name of nodes) {
        say(`restoring ${name}'s previous files`);
        const r = await restore(byName.get(name)!.session!, txid, name);
        committedOn.delete(name);
        if (r.aborted) {
          ended.add(name);
          byName.get(name)!.txOpen = false;
        }
        report.steps.push(r.step);
      }
    };
    /** The primary's services reloaded and verified; the report when the push ends there. */
    const reloadHere = async (names: readonly string[]): Promise<PushReport | undefined> => {
      for (const svc of config.services) {
        if (!names.includes(svc.name)) continue;
        say(`reloading ${svc.name} on ${self}`);
        // only the set that validated is loaded; a save meanwhile is validated before it is loaded
        const rv = await reloadValidated(
          config,
          svc.name,
          guardFor(config, svc.name, local),
          reloadTiming(config),
          async () => {
            const again = await checkSelf(config, self, opts.external !== false, {
              workspace: ws,
              ...(opts.snapshot ? { snapshot: opts.snapshot } : {}),
            });
            const errors = again.diagnostics.filter((d) => d.severity === 'error');
            if (errors.length) return { diagnostics: errors };
            local = again;
            report.local = again;
            return { guard: guardFor(config, svc.name, again) };
          },
        );
        const o = rv.outcome;
        if (o.kind === 'superseded') return await supersede(self, svc.name, o.changed);
        const loaded = o.kind === 'loaded';
        let verify: VerifyResult = loaded
          ? await verifyService(config, svc.name)
          : { ok: false, problems: [] };
        if (loaded && svc.name === 'keepalived') verify = merge(verify, await vipCheck(self));
        const during =
          o.kind === 'changed-during'
            ? describeChangedDuring(svc.name, o.changed, rv.invalid !== undefined)
            : '';
        report.steps.push({
          host: self,
          step: `reload ${svc.name}${rv.rounds > 1 ? ` (${rv.rounds} rounds: files changed while it read them)` : ''}`,
          ok: loaded && verify.ok,
          durationMs: 'durationMs' in o ? o.durationMs : 0,
          detail: [o.output, during, ...verify.problems].filter(Boolean).join('\n'),
        });
        if (!loaded || !verify.ok) {
          const ahead = [...committedOn];
          await close();
          report.result = 'primary-failed';
          if (rv.invalid) report.diagnostics = rv.invalid;
          report.error = new LvssyncError(
            'E_RELOAD',
            o.kind === 'changed-during'
              ? `CRITICAL: ${during} on ${self}; check ${svc.name} there now${rv.invalid ? ' and fix the findings below' : ''}`
              : `${svc.name} failed to reload on ${self}${ahead.length ? ` (${ahead.join(', ')} already run${ahead.length > 1 ? '' : 's'} the new set, which validated)` : `; ${active.map((l) => l.target.name).join(', ') || 'no other director'} ${active.length > 1 ? 'were' : 'was'} not changed`}`,
          );
          return report;
        }
      }
      return undefined;
    };
    for (const [i, step] of applyPlan.steps.entries()) {
      // each director's part of the apply, for --json's timings: its reload phase is applied - start
      // (or - committed, when it commits)
      mark(`${step.node} start`);
      if (step.primary) {
        const stopped = await reloadHere(step.services);
        if (stopped) return stopped;
        mark(`${step.node} applied`);
        continue;
      }
      const leg = byName.get(step.node)!;
      const r = await commitOnPeer({
        config,
        target: leg.target,
        self,
        session: leg.session!,
        txid,
        steps: report.steps,
        say,
        commit: step.commit,
        services: step.services,
        vipCheck: () => vipCheck(step.node),
        committed: (version) => {
          leg.node.version = version;
          committedOn.add(step.node);
          committedAny = true;
          mark('committed');
          mark(`${step.node} committed`);
        },
      });
      if (!r.ok && r.superseded) return await supersede(step.node, r.service, r.superseded);
      if (!r.ok) {
        committedOn.delete(step.node);
        if (r.aborted) {
          ended.add(step.node);
          leg.txOpen = false;
        }
        // the failed director restored itself; those changed before it are put back, the primary is never reached
        const back = undoAfter(applyPlan, i);
        await undo(back);
        await close();
        report.result = 'rolled-back';
        if (r.diagnostics) report.diagnostics = r.diagnostics;
        report.error = new LvssyncError(
          'E_RELOAD',
          `${r.service} failed on ${step.node} after the push; ${[step.node, ...back].join(', ')} ${back.length ? 'were' : 'was'} rolled back and ${self} was not touched`,
        );
        return report;
      }
      mark(`${step.node} applied`);
    }
    // this director's record of the set is written while the others write theirs
    const closing = close();
    recordBaseHere(config, desired, ws);
    await closing;
    report.result = partial(anyCommit ? 'pushed' : 'reloaded');
    mark('done');
    return report;
  } catch (e) {
    if (e instanceof LvssyncError) {
      report.error = e;
      // decided here once, from the code and whether a peer had committed (worker-ipc.ts)
      if (report.result === 'in-sync') report.result = resultOfError(e.code, committedAny);
      return report;
    }
    throw e;
  } finally {
    for (const leg of legs) {
      if (leg.manifest && !leg.used) {
        // A transaction opened ahead for a push that did not happen there. On a kept session it is
        // aborted, so the session stays usable; a session of its own is closed below, which ends it too.
        await leg.manifest;
        const opened = leg.begun
          ? await leg.begun.then(
              () => true,
              () => false,
            )
          : false;
        if (!opened) leg.txOpen = false;
        else if (leg.keeper && leg.session && !leg.session.isClosed) {
          const closed = await leg.session.request({ op: 'abort', txid, reload: false }).then(
            () => true,
            () => false,
          );
          if (closed) leg.txOpen = false;
        }
      }
      if (!leg.keeper) {
        leg.session?.close();
        // the check here failed before the connection was used: close it when it is made
        void leg.connecting?.then((c) => ('session' in c ? c.session.close() : undefined));
      } else if (leg.txOpen || leg.session?.isClosed) leg.keeper.reset();
    }
    if (!opts.dryRun && release) recordPush(config, report);
    release?.();
  }
}

/** How the peer's part of a push ended (commitOnPeer). */
export type PeerOutcome =
  | { ok: true; version?: string }
  | {
      ok: false;
      service: string;
      /** The agent restored and reloaded what ran before (false: the connection was lost). */
      aborted: boolean;
      /** The peer's files changed after they validated: not reloaded, not rolled back. */
      superseded?: string[];
      /** What the peer found in its files after they changed during the reload. */
      diagnostics?: Diagnostic[];
    };

/**
 * Commits the open transaction on the peer (unless `commit` is false: a reload of what it already
 * has), then reloads its services in order and verifies each (a ferm reload guarded like
 * `ferm --interactive`: a new SSH connection must still get through). The agent reloads only the set
 * the transaction validated: a service whose files changed since is not reloaded, and the push ends
 * superseded without undoing the commit. When a reload or its verification fails, the agent restores
 * the files the commit replaced and reloads them. Steps are appended to `steps`. Used by push and
 * rollback.
 */
export async function commitOnPeer(a: {
  config: Config;
  target: PeerTarget;
  self: string;
  session: PeerSession;
  txid: string;
  steps: Step[];
  say: (m: string) => void;
  /** The services to reload (default: all, in lvssync.yaml's order). */
  services?: readonly string[];
  /** false: nothing to commit, only reloads (a reload the peer's files are still waiting for). */
  commit?: boolean;
  /** Run after keepalived's reload (the VIPs where they should be). */
  vipCheck?: () => Promise<VerifyResult>;
  /** Told the history version that holds what the commit replaced. */
  committed?: (version: string) => void;
}): Promise<PeerOutcome> {
  const { config, target, self, session, txid, steps, say } = a;
  let version: string | undefined;
  if (a.commit !== false) {
    const tc = performance.now();
    const c = await session.request({ op: 'commit', txid });
    version = c.version;
    a.committed?.(c.version);
    steps.push({
      host: target.name,
      step: `commit ${c.paths.length} file(s), backup ${c.version}`,
      ok: true,
      durationMs: performance.now() - tc,
    });
  }
  for (const svc of config.services) {
    if (a.services && !a.services.includes(svc.name)) continue;
    const guard = svc.name === 'ferm' && a.commit !== false ? config.push.fermGuardSeconds : undefined;
    say(`reloading ${svc.name} on ${target.name}`);
    const r = await session.request({
      op: 'reload',
      txid,
      service: svc.name,
      ...(guard ? { guardSeconds: guard } : {}),
    });
    if (r.outcome === 'superseded') {
      steps.push({
        host: target.name,
        step: `reload ${svc.name}`,
        ok: false,
        durationMs: 0,
        detail: r.output,
      });
      return { ok: false, service: svc.name, aborted: false, superseded: r.changed ?? [] };
    }
    let ok = r.ok;
    let detail = r.output;
    if (ok && guard) {
      // Like ferm --interactive: prove that a new connection still gets through (a kept master's
      // established one would pass a firewall that refuses new ones).
      try {
        const probe = await PeerSession.open(config, target, self, undefined, undefined, 'fresh');
        await probe.request({ op: 'confirm', txid });
        probe.close();
      } catch (e) {
        ok = false;
        detail = `no new SSH connection to ${target.name} after the ferm reload (${(e as Error).message}); its guard restores the previous firewall`;
      }
    }
    let verify: VerifyResult = { ok: true, problems: [] };
    if (ok) {
      verify = await session.request({ op: 'verify', service: svc.name });
      if (svc.name === 'keepalived' && a.vipCheck) verify = merge(verify, await a.vipCheck());
    }
    steps.push({
      host: target.name,
      step: `reload ${svc.name}`,
      ok: ok && verify.ok,
      durationMs: r.durationMs,
      detail: [detail, ...verify.problems].filter(Boolean).join('\n'),
    });
    if (!ok || !verify.ok) {
      say(`${svc.name} failed on ${target.name}: restoring its previous files`);
      const back = await restore(session, txid, target.name);
      steps.push(back.step);
      return {
        ok: false,
        service: svc.name,
        aborted: back.aborted,
        ...(r.diagnostics ? { diagnostics: r.diagnostics } : {}),
      };
    }
  }
  return version ? { ok: true, version } : { ok: true };
}

export interface RollbackReport {
  peer: string;
  result: 'rolled-back' | 'declined' | 'invalid-on-peer' | 'failed';
  /** The version put back. */
  version?: string;
  /** The history version that now holds what the rollback replaced. */
  backup?: string;
  paths: string[];
  steps: Step[];
  diagnostics: Diagnostic[];
  error?: LvssyncError;
}

/**
 * Puts a history version of the peer's files back (default: what the last push replaced) as a push
 * does: staged from the peer's own history, validated there, committed with a backup of what it
 * replaces, each service reloaded and verified, and the peer restored and reloaded again if one
 * fails. The primary's files are not touched.
 */
export async function runRollback(opts: {
  config: Config;
  self: string;
  peer?: string;
  to?: string;
  /** The version of this push (its transaction) instead of the newest commit. */
  txid?: string;
  /** Asked before anything changes (a terminal); false declines. */
  confirm?: (v: HistoryEntry) => Promise<boolean>;
  progress?: (m: string) => void;
}): Promise<RollbackReport> {
  const { config, self } = opts;
  const target = peerOf(config, self, opts.peer);
  const say = opts.progress ?? (() => {});
  const report: RollbackReport = {
    peer: target.name,
    result: 'failed',
    paths: [],
    steps: [],
    diagnostics: [],
  };
  const session = await PeerSession.open(config, target, self);
  const txid = newTxid();
  let open = false;
  let committed = false;
  try {
    const { versions } = await session.request({ op: 'history' });
    const v = opts.to
      ? versions.find((x) => x.version === opts.to)
      : versions
          .filter((x) => x.reason === 'commit' && (opts.txid === undefined || x.txid === opts.txid))
          .at(-1);
    if (!v)
      throw new LvssyncError(
        'E_USAGE',
        opts.to
          ? `no version ${opts.to} on ${target.name}`
          : `${target.name} has no previous version to restore`,
      );
    report.version = v.version;
    if (opts.confirm && !(await opts.confirm(v))) {
      report.result = 'declined';
      return report;
    }
    await session.request({ op: 'begin', txid });
    open = true;
    say(`staging version ${v.version} on ${target.name}`);
    report.paths = (await session.request({ op: 'stage-version', txid, version: v.version })).paths;
    say(`validating it on ${target.name}`);
    const t0 = performance.now();
    const checked = await session.request({ op: 'validate', txid });
    report.steps.push({
      host: target.name,
      step: 'validate',
      ok: checked.ok,
      durationMs: performance.now() - t0,
    });
    if (!checked.ok) {
      report.diagnostics = checked.diagnostics;
      report.result = 'invalid-on-peer';
      report.error = new LvssyncError(
        'E_PEER_INVALID',
        `version ${v.version} does not validate on ${target.name} any more; nothing was changed`,
      );
      return report;
    }
    const vips = vipsOf(await readSelf(config, self));
    const placed = new Map<string, string[]>([
      [target.name, holds(await session.request({ op: 'addresses' }), vips)],
      [self, holds(await readAddresses(), vips)],
    ]);
    const r = await commitOnPeer({
      config,
      target,
      self,
      session,
      txid,
      steps: report.steps,
      say,
      vipCheck: () => checkVips(self, new Map([[target.name, session]]), vips, placed, target.name),
      committed: (backup) => {
        report.backup = backup;
        committed = true;
      },
    });
    if (!r.ok) {
      if (r.aborted) open = false;
      report.error = new LvssyncError(
        'E_RELOAD',
        `${r.service} failed on ${target.name} after the rollback; ${target.name} was restored to what it ran before`,
      );
      return report;
    }
    await session.request({ op: 'finish', txid });
    open = false;
    report.result = 'rolled-back';
    return report;
  } finally {
    // a transaction that committed and was not finished is the agent's to roll back when the
    // session ends, as for a push; one that did not commit is thrown away here
    if (open && !committed && !session.isClosed)
      await session.request({ op: 'abort', txid, reload: false }).catch(() => undefined);
    session.close();
  }
}

/**
 * Asks a peer's agent to put back what transaction `txid` committed there and reload it (the way
 * back for a failed reload there, and for the peers a later failure undoes); its step for the report.
 */
async function restore(
  session: PeerSession,
  txid: string,
  host: string,
): Promise<{ aborted: boolean; step: Step }> {
  const ab = session.isClosed
    ? undefined
    : await session.request({ op: 'abort', txid, reload: true }).catch(() => undefined);
  return {
    aborted: ab !== undefined,
    step: {
      host,
      step: 'roll back',
      ok: ab?.reloaded.every((x: ReloadResult) => x.ok) ?? false,
      durationMs: 0,
      detail: ab
        ? `restored ${ab.restored.length} file(s), reloaded ${ab.reloaded.length} service(s)`
        : 'left to the agent (connection lost)',
    },
  };
}

function merge(a: VerifyResult, b: VerifyResult): VerifyResult {
  return { ok: a.ok && b.ok, problems: [...a.problems, ...b.problems] };
}

/**
 * After `reloaded`'s keepalived reload: each VIP still on exactly the directors that held it before,
 * and on no two at once (asked of every director; the primary's own addresses read here).
 */
async function checkVips(
  self: string,
  sessions: ReadonlyMap<string, PeerSession>,
  vips: readonly string[],
  before: ReadonlyMap<string, readonly string[]>,
  reloaded: string,
): Promise<VerifyResult> {
  let problems: string[] = [];
  const who = (n: string) => (n === self ? `${n} (the primary)` : n);
  for (let attempt = 0; attempt < 10; attempt++) {
    const live = [...sessions].filter(([, s]) => !s.isClosed);
    const read = await Promise.all([
      readAddresses().then((a) => [self, a] as const),
      ...live.map(([n, s]) => s.request({ op: 'addresses' }).then((a) => [n, a] as const)),
    ]);
    const now = new Map(read.map(([n, a]) => [n, new Set(holds(a, vips))]));
    problems = [];
    for (const v of vips) {
      const on = [...now].filter(([, h]) => h.has(v)).map(([n]) => n);
      if (on.length > 1)
        problems.push(`${v} is on ${on.join(' and ')} after ${reloaded}'s keepalived reload (split brain)`);
      for (const [n, had] of before)
        if (had.includes(v) && now.has(n) && !now.get(n)!.has(v))
          problems.push(`${v} left ${who(n)} after ${reloaded}'s keepalived reload`);
    }
    if (problems.length === 0) return { ok: true, problems };
    await new Promise((r) => setTimeout(r, 500));
  }
  return { ok: false, problems };
}

/**
 * After a push that left the directors it reached with this set: the set is also the last one synced
 * on this director (written.json and the base copies, as an agent records what it was sent), so that
 * when this director is a push's target later (after a handover) an edit made here since is told from
 * what it pushed, and shown against it. Only what changed since the last record is written.
 */
function recordBaseHere(config: Config, desired: readonly DesiredFile[], ws: Workspace): void {
  try {
    const store = new Store(config);
    const known = store.lastWritten();
    const sums = new Map(desired.map((d) => [d.path, ws.tools.digest(d.path, d.text)]));
    const changed = desired.filter((d) => known[d.path] !== sums.get(d.path));
    // a file no longer in the set (deleted here) is no longer one lvssync synced from here
    const dropped = Object.keys(known).filter((p) => !sums.has(p) && store.covers(p) && !existsSync(p));
    if (!changed.length && !dropped.length) return;
    const paths = changed.map((d) => d.path);
    store.recordWritten([...paths, ...dropped], Object.fromEntries(paths.map((p) => [p, sums.get(p)!])));
    store.recordBase([...paths, ...dropped], new Map(changed.map((d) => [d.path, d.text])));
  } catch {
    // a record for later: the push itself is done
  }
}

function recordPush(config: Config, report: PushReport): void {
  try {
    mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
    writeFileSync(
      path.join(config.stateDir, 'last-push.json'),
      `${JSON.stringify(
        {
          time: new Date().toISOString(),
          result: report.result,
          peers: report.peers.map((p) => ({
            node: p.node,
            ...(p.unreachable ? { unreachable: p.unreachable.message } : {}),
            version: p.version,
            changes: p.plan?.changes.map((c) => ({ kind: c.kind, path: c.path })) ?? [],
          })),
          error: report.error ? { code: report.error.code, message: report.error.message } : undefined,
        },
        null,
        1,
      )}\n`,
    );
  } catch {}
}
