// The push pipeline: validate here, render for the peer, plan against the peer's manifest, stage and
// validate there, then commit and reload in order (the director without the VIPs first), verifying
// each step; a failure on the peer restores its previous files and reloads them, and the primary is
// then left alone. Used by `lvssync push`, `lvssync diff` and the watch daemon.
// Composition of shell modules; decisions come from the core (render, plan, apply-plan).

import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
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
import type {
  AddressInfo,
  HistoryEntry,
  ReloadResult,
  ServiceState,
  VerifyResult,
} from '../core/protocol.js';
import { renderForNode } from '../core/render.js';
import { describeChangedDuring, setDigest } from '../core/service-set.js';
import { emptySnapshot, putFile, retainFiles, type Snapshot } from '../core/snapshot.js';
import { type PushResult, resultOfError, type Step } from '../core/worker-ipc.js';
import { LvssyncError } from '../errors.js';
import { checkSelf, type DirectorCheck, readSelf } from './check-director.js';
import { withLock } from './lock.js';
import { type PeerKeeper, PeerSession, type PeerTarget, peerOf } from './peer.js';
import { guardFor, readLoaded, reloadTiming, reloadValidated } from './reload.js';
import { readAddresses, readServiceStates, verifyService } from './services.js';
import { Workspace } from './workspace.js';

export interface PushReport {
  result: PushResult;
  peer: string;
  /** Diagnostics that stopped the push (here or on the peer), or warnings of a good push. */
  diagnostics: Diagnostic[];
  plan?: Plan;
  /** Peer text of every changed file (null: absent there) for diffs, and the wanted text. */
  before: Map<string, string | null>;
  rewrites: { file: string; line: number; what: string }[];
  /** The directors in the order they were committed and reloaded (apply-plan.ts). */
  order?: string[];
  steps: Step[];
  version?: string;
  recovered?: string;
  error?: LvssyncError;
  /** The local check, for printing diagnostics with their source lines. */
  local?: DirectorCheck;
  rendered?: Map<string, string>;
  /** Milliseconds from the start to each stage: checked, connected, planned, uploaded, validated, committed, done. */
  timings: Record<string, number>;
  /** The peer's validation: ms from its start to `read` and `checked` (lvssync's own), `done`; the durations of keepalived -t and ferm (0: verdict reused). */
  peerTimings?: Record<string, number>;
  /** A reload not done because the service's files changed after they validated (result superseded). */
  superseded?: { host: string; service: string; changed: string[] };
  /** Services found not running (result service-down). */
  servicesDown?: (ServiceState & { host: string })[];
  /** Services whose files here or on the peer were not what they last loaded (reloaded, or to reload). */
  pendingReloads?: { host: string; services: string[] }[];
}

export interface PushOptions {
  config: Config;
  self: string;
  peer?: string;
  dryRun?: boolean;
  force?: boolean;
  /** Asked after the plan is known (terminal confirmation); false stops the push. */
  confirm?: (report: PushReport) => Promise<boolean>;
  /**
   * Asked once the set is validated on both directors, right before the peer's commit (the daemon's
   * early pushes: has the set stayed unchanged for its quiet window?); false abandons the push.
   */
  gate?: () => Promise<boolean>;
  progress?: (msg: string) => void;
  /** Skip the real ferm / keepalived -t here (the peer always runs them). */
  external?: boolean;
  /** Skip reloads (tests of the transfer alone). */
  reload?: boolean;
  /**
   * What this director's checks keep between runs (parsed files, the last check, validator verdicts,
   * the rendering for the peer): the daemon's worker keeps one; without it, one for this push.
   */
  workspace?: Workspace;
  /** This director's set as last read, kept between runs with `workspace` (the daemon keeps one). */
  snapshot?: Snapshot;
  /** A session to the peer kept open between runs (the daemon keeps one); otherwise one per push. */
  keeper?: PeerKeeper;
}

/** The globs of peer paths lvssync owns: what keepalived includes, ferm's directory, extra files. */
export function managedGlobs(config: Config, local: DirectorCheck): string[] {
  const globs = new Set<string>([config.files.keepalived, `${path.posix.dirname(config.files.ferm)}/**`]);
  for (const inc of local.evaluation.includes) globs.add(inc.pattern);
  for (const e of config.files.extra) globs.add(e);
  return [...globs];
}

/** The files the peer must have (before rendering): keepalived's set, ferm's directory, extra. */
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

export async function runPush(opts: PushOptions): Promise<PushReport> {
  const { config, self } = opts;
  const say = opts.progress ?? (() => {});
  const ws = opts.workspace ?? new Workspace();
  const target = peerOf(config, self, opts.peer);
  const report: PushReport = {
    result: 'in-sync',
    peer: target.name,
    diagnostics: [],
    before: new Map(),
    rewrites: [],
    steps: [],
    timings: {},
  };
  const started = performance.now();
  const mark = (stage: string) => {
    report.timings[stage] = Math.round((performance.now() - started) * 10) / 10;
  };
  let release: (() => void) | undefined;
  let session: PeerSession | undefined;
  let connecting: Promise<{ session: PeerSession } | { error: unknown }> | undefined;
  let manifest:
    | Promise<{ session: PeerSession; files: RemoteFile[] } | { session?: PeerSession; error: unknown }>
    | undefined;
  const txid = newTxid();
  /** The transaction opened ahead of the plan (see speculate), and whether the push went on to use it. */
  let begun: Promise<unknown> | undefined;
  let used = false;
  const keeper = opts.keeper?.serves(target) ? opts.keeper : undefined;
  /** A transaction is open on the peer: a kept session is not reused after a failure in between. */
  let txOpen = false;
  /** The peer committed this push's set (a failure after this is not 'nothing changed'). */
  let peerCommitted = false;
  /** What the peer's services last loaded through lvssync (asked with the manifest). */
  let peerLoaded: Promise<Record<string, { digest: string; at: number }>> | undefined;
  try {
    release = await withLock(config.stateDir, opts.dryRun ? 'diff' : 'push', 2000);
    // 1. The set here must be valid: an invalid set never leaves this host.
    // Connecting to the peer while the set is checked here saves a round of waiting; nothing is sent
    // to it before the check has passed.
    say(`connecting to ${target.name} (${target.host}:${target.port})`);
    connecting = (keeper ? keeper.get() : PeerSession.open(config, target, self)).then(
      (s) => ({ session: s }),
      (error: unknown) => ({ error }),
    );
    // What the peer has, and (for a push that asks nobody) its transaction opened, are asked for
    // while the set is checked here: neither tells the peer anything of the new set. A transaction
    // opened for nothing (the set is invalid, or the peer already has it) is aborted at the end.
    const speculate = !opts.dryRun && !opts.confirm;
    manifest = connecting.then(async (c) => {
      if ('error' in c) return c;
      const m = c.session.manifest();
      peerLoaded = c.session.request({ op: 'loaded' });
      void peerLoaded.catch(() => undefined);
      if (speculate) {
        txOpen = true;
        begun = c.session.request({ op: 'begin', txid });
        void begun.catch(() => undefined);
      }
      return m.then(
        (files) => ({ session: c.session, files }),
        (error: unknown) => ({ session: c.session, error }),
      );
    });
    // keepalived -t's second opinion on this set runs while the peer validates its staged copy: the
    // set leaves this host only after lvssync's own checks and ferm --noexec passed here, and the peer
    // commits nothing before keepalived -t has passed here too (settle()).
    // (started once the set is on its way to the peer: the two directors' keepalived -t then run
    // side by side, and nothing here competes with reading, planning and sending the set)
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
    const pending = local.complete;
    // awaited by settle(); a push that stops earlier must not leave its failure unhandled
    void pending?.catch(() => undefined);
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
      if (pending) {
        local = await pending;
        report.local = local;
        mark('checked-here');
      }
      report.diagnostics = local.diagnostics;
      if (!hasErrors(local.diagnostics)) return true;
      report.result = 'invalid-here';
      return false;
    };
    // 2. Render the peer's copy and check it as the peer will read it.
    const desired = desiredFiles(config, local);
    const peerNode = config.nodes[target.name]!;
    const rendered = renderForNode(new Map(desired.map((d) => [d.path, d.text])), local.evaluation.files, {
      node: target.name,
      ...(peerNode.router_id ? { routerId: peerNode.router_id } : {}),
      hostLines: peerNode.hostLines,
    });
    report.rewrites = rendered.rewrites;
    report.rendered = rendered.files;
    // the rendering, like the set, is kept between pushes and updated in place (a re-check of it
    // redoes only what changed)
    let renderedSnap = opts.snapshot ? ws.rendered.get(opts.snapshot) : undefined;
    if (!renderedSnap) {
      renderedSnap = emptySnapshot();
      if (opts.snapshot) ws.rendered.set(opts.snapshot, renderedSnap);
    }
    for (const d of desired) putFile(renderedSnap, d.path, rendered.files.get(d.path)!, 0o100000 | d.mode);
    retainFiles(renderedSnap, new Set(desired.map((d) => d.path)));
    for (const dir of local.snapshot.dirs) renderedSnap.dirs.add(dir);
    const peerCheck = checkKeepalived(renderedSnap, config.files.keepalived, {
      ...(peerNode.configId ? { configId: peerNode.configId } : {}),
      memory: ws,
    });
    const renderProblems = [
      ...rendered.diagnostics,
      ...peerCheck.diagnostics.filter((d) => d.severity === 'error'),
    ];
    if (hasErrors(renderProblems)) {
      report.result = 'invalid-here';
      report.diagnostics = renderProblems;
      return report;
    }
    report.diagnostics = local.diagnostics;
    const wanted: DesiredFile[] = desired.map((d) => ({ ...d, text: rendered.files.get(d.path)! }));

    // 3. Ask the peer what it has, and plan.
    const c = await manifest;
    connecting = undefined;
    if ('error' in c) {
      session = c.session;
      throw c.error;
    }
    session = c.session;
    if (session.hello?.recovered) {
      report.recovered = session.hello.recovered;
      say(`${target.name} rolled back an interrupted push (${session.hello.recovered}) before this one`);
    }
    const remote = c.files;
    mark('manifest');
    // Editors' temporary and backup files on the peer are neither pushed nor deleted.
    const plan = planPush(
      wanted,
      remote.filter((r) => !isEditorTemp(r.path)),
      managedGlobs(config, local),
      ws.tools.digest,
    );
    report.plan = plan;
    const readBefore = plan.changes.filter((c) => c.kind === 'update' || c.kind === 'delete');
    const s = session;
    // the peer's current text of what changes (for the report's diffs): asked now, awaited before
    // anything is committed
    const before = Promise.all(
      readBefore.map(async (c) => {
        const r = await s.request({ op: 'read', path: c.path });
        report.before.set(c.path, r.exists ? r.text : null);
      }),
    );
    void before.catch(() => undefined);
    for (const c of plan.changes) if (c.kind === 'add') report.before.set(c.path, null);
    mark('planned');
    const needBefore = async () => {
      await before;
      mark('read');
    };
    if ((plan.conflicts.length > 0 && !opts.force) || opts.dryRun || opts.confirm) await needBefore();
    if (plan.conflicts.length > 0 && !opts.force) {
      if (!(await settle())) return report;
      report.result = 'conflict';
      report.error = new LvssyncError(
        'E_CONFLICT',
        `${plan.conflicts.length} file(s) on ${target.name} were changed there since lvssync last wrote them: ${plan.conflicts
          .map((c) => c.path)
          .join(
            ', ',
          )}; nothing was written (review the diff, then push --force to overwrite, or copy the change to ${self})`,
      );
      return report;
    }
    if (opts.dryRun) {
      if (!(await settle())) return report;
      report.result = plan.changes.length ? 'dry-run' : 'in-sync';
      return report;
    }
    /** Services whose files are not what they last loaded, here and on the peer (a file put back by hand, a reload that did not happen). */
    const pendingOf = async () => {
      const here = readLoaded(config.stateDir);
      const there = (await peerLoaded?.catch(() => undefined)) ?? {};
      const peerSet = { snapshot: renderedSnap, evaluation: peerCheck.evaluation, model: peerCheck.model };
      const selfPending = config.services
        .map((x) => x.name)
        .filter((n) => here[n]?.digest !== setDigest(guardFor(config, n, local).validated));
      const peerPending = config.services
        .map((x) => x.name)
        .filter((n) => there[n]?.digest !== setDigest(guardFor(config, n, peerSet).validated));
      return { selfPending, peerPending };
    };
    /** Services not running on either director: a push neither commits nor reloads while one is down. */
    const down = async (): Promise<boolean> => {
      const [mine, theirs] = await Promise.all([readServiceStates(config), s.request({ op: 'services' })]);
      const found = [
        ...mine.filter((x) => x.up === false).map((x) => ({ ...x, host: self })),
        ...theirs.filter((x) => x.up === false).map((x) => ({ ...x, host: target.name })),
      ];
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
    let reloadOnly: { selfPending: string[]; peerPending: string[] } | undefined;
    if (plan.changes.length === 0) {
      if (!(await settle())) return report;
      if (!opts.dryRun && (await down())) return report;
      const p = await pendingOf();
      const pending = [
        ...(p.peerPending.length ? [{ host: target.name, services: p.peerPending }] : []),
        ...(p.selfPending.length ? [{ host: self, services: p.selfPending }] : []),
      ];
      if (pending.length) report.pendingReloads = pending;
      if (!pending.length || opts.dryRun || opts.reload === false) {
        report.result = 'in-sync';
        return report;
      }
      reloadOnly = p;
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

    // 4. Stage on the peer and validate there, with the real tools, on the peer's own interfaces.
    // The agent answers requests in order: the files and the request to validate them go out
    // together, without a round trip between them.
    const t0 = performance.now();
    used = true;
    txOpen = true;
    if (begun) await begun;
    else await session.request({ op: 'begin', txid });
    if (plan.changes.length) say(`uploading ${plan.changes.length} change(s) to ${target.name}`);
    const uploads = Promise.all(
      plan.changes.map((c: Change) => {
        if (c.kind === 'delete') return s.request({ op: 'remove', txid, path: c.path });
        const text = c.kind === 'chmod' ? rendered.files.get(c.path)! : c.text;
        return s.request({
          op: 'put',
          txid,
          path: c.path,
          mode: c.mode,
          data: Buffer.from(text).toString('base64'),
        });
      }),
    );
    const validation = session.request({ op: 'validate', txid });
    void validation.catch(() => undefined);
    startKeepalivedTest();
    await uploads;
    if (plan.changes.length)
      report.steps.push({ host: target.name, step: 'upload', ok: true, durationMs: performance.now() - t0 });
    mark('uploaded');
    say(`validating the staged set on ${target.name}`);
    const t1 = performance.now();
    const v = await validation;
    report.steps.push({ host: target.name, step: 'validate', ok: v.ok, durationMs: performance.now() - t1 });
    mark('validated');
    if (v.timings) report.peerTimings = v.timings;
    await needBefore();
    if (!v.ok) {
      await session.request({ op: 'abort', txid, reload: false });
      txOpen = false;
      report.result = 'invalid-on-peer';
      report.diagnostics = v.diagnostics;
      report.error = new LvssyncError(
        'E_PEER_INVALID',
        `the set does not validate on ${target.name}; nothing was changed there`,
      );
      return report;
    }
    if (!(await settle())) {
      // keepalived -t found errors in the set here: the staged copy on the peer is thrown away
      await session.request({ op: 'abort', txid, reload: false });
      txOpen = false;
      return report;
    }
    if (opts.gate && !(await opts.gate())) {
      mark('gated');
      await session.request({ op: 'abort', txid, reload: false });
      txOpen = false;
      report.result = 'superseded';
      return report;
    }
    if (opts.gate) mark('gated');
    if (!reloadOnly && opts.reload !== false && (await down())) {
      await session.request({ op: 'abort', txid, reload: false });
      txOpen = false;
      return report;
    }
    if (opts.reload === false && !reloadOnly) {
      await session.request({ op: 'commit', txid });
      mark('committed');
      await session.request({ op: 'finish', txid });
      txOpen = false;
      report.result = 'pushed';
      return report;
    }

    // 5. Plan the apply (who holds which VRRP instance decides the order), then carry it out.
    const vips = vipsOf(local);
    const [here, there] = await Promise.all([readAddresses(), session.request({ op: 'addresses' })]);
    const services = config.services.map((x) => x.name);
    const found = new Map<string, ApplyNode>([
      [
        self,
        {
          name: self,
          primary: true,
          addresses: Object.values(here).flat(),
          commit: false,
          services: reloadOnly ? reloadOnly.selfPending : services,
        },
      ],
      [
        target.name,
        {
          name: target.name,
          primary: false,
          addresses: Object.values(there).flat(),
          commit: !reloadOnly,
          services: reloadOnly ? reloadOnly.peerPending : services,
        },
      ],
    ]);
    // lvssync.yaml's order breaks ties
    const applyPlan = planApply(
      Object.keys(config.nodes)
        .map((n) => found.get(n))
        .filter((n) => n !== undefined),
      instancesOf(local),
    );
    report.order = applyPlan.steps.map((st) => st.node);
    say(`reload order: ${describeOrder(applyPlan)}`);
    const sessions = new Map<string, PeerSession>([[target.name, session]]);
    const placed = new Map<string, string[]>([
      [self, holds(here, vips)],
      [target.name, holds(there, vips)],
    ]);
    const vipCheck = (node: string) => checkVips(self, sessions, vips, placed, node);
    /** Peers whose commit is done: a push that stops finishes them; the others are aborted. */
    const committedOn = new Set<string>();
    /** Peers whose transaction already ended (aborted by a failure, restored by an undo). */
    const ended = new Set<string>();
    const close = async () => {
      let all = true;
      for (const [name, sess] of sessions) {
        if (ended.has(name)) continue;
        const done = committedOn.has(name) || reloadOnly;
        const ok = await sess
          .request(done ? { op: 'finish', txid } : { op: 'abort', txid, reload: false })
          .then(
            () => true,
            () => false,
          );
        all &&= ok;
      }
      if (all) txOpen = false;
    };
    /** A reload that was not done: the files changed since they validated. The push stops there. */
    const supersede = async (host: string, service: string, changed: string[]) => {
      report.superseded = { host, service, changed };
      report.result = 'superseded';
      report.error = new LvssyncError(
        'E_RELOAD',
        `${service} was not reloaded on ${host}: ${changed.join(', ')} changed after the set validated; the next push validates what is there now${committedOn.size && host === self ? ` (${[...committedOn].join(', ')} already run${committedOn.size > 1 ? '' : 's'} the set that validated)` : ''}`,
      );
      await close();
      return report;
    };
    /** Puts back what this push committed on `nodes` (the last changed first) after a later step failed. */
    const undo = async (nodes: readonly string[]) => {
      for (const name of nodes) {
        const sess = sessions.get(name)!;
        say(`restoring ${name}'s previous files`);
        const ab = sess.isClosed
          ? undefined
          : await sess.request({ op: 'abort', txid, reload: true }).catch(() => undefined);
        committedOn.delete(name);
        if (ab) ended.add(name);
        report.steps.push({
          host: name,
          step: 'roll back',
          ok: ab?.reloaded.every((x: ReloadResult) => x.ok) ?? false,
          durationMs: 0,
          detail: ab
            ? `restored ${ab.restored.length} file(s), reloaded ${ab.reloaded.length} service(s)`
            : 'left to the agent (connection lost)',
        });
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
              : `${svc.name} failed to reload on ${self}${ahead.length ? ` (${ahead.join(', ')} already run${ahead.length > 1 ? '' : 's'} the new set, which validated)` : `; ${[...sessions.keys()].join(', ')} ${sessions.size > 1 ? 'were' : 'was'} not changed`}`,
          );
          return report;
        }
      }
      return undefined;
    };
    for (const [i, step] of applyPlan.steps.entries()) {
      if (step.primary) {
        const stopped = await reloadHere(step.services);
        if (stopped) return stopped;
        continue;
      }
      const sess = sessions.get(step.node)!;
      const r = await commitOnPeer({
        config,
        target: peerOf(config, self, step.node),
        self,
        session: sess,
        txid,
        steps: report.steps,
        say,
        commit: step.commit,
        services: step.services,
        vipCheck: () => vipCheck(step.node),
        committed: (version) => {
          report.version = version;
          committedOn.add(step.node);
          peerCommitted = true;
          mark('committed');
        },
      });
      if (!r.ok && r.superseded) return await supersede(step.node, r.service, r.superseded);
      if (!r.ok) {
        committedOn.delete(step.node);
        // the failed node restored itself; the peers changed before it are put back, the primary is never reached
        if (r.aborted) ended.add(step.node);
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
    }
    await close();
    report.result = reloadOnly ? 'reloaded' : 'pushed';
    mark('done');
    return report;
  } catch (e) {
    if (e instanceof LvssyncError) {
      report.error = e;
      // decided here once, from the code and whether the peer had committed (worker-ipc.ts)
      if (report.result === 'in-sync') report.result = resultOfError(e.code, peerCommitted);
      return report;
    }
    throw e;
  } finally {
    if (manifest && !used) {
      // A transaction opened ahead for a push that did not happen. On a kept session it is aborted,
      // so the session stays usable; a session of its own is closed below, which ends it too.
      const m = await manifest;
      const sess = 'session' in m ? m.session : undefined;
      const opened = begun
        ? await begun.then(
            () => true,
            () => false,
          )
        : false;
      if (!opened) txOpen = false;
      else if (keeper && sess && !sess.isClosed) {
        const closed = await sess.request({ op: 'abort', txid, reload: false }).then(
          () => true,
          () => false,
        );
        if (closed) txOpen = false;
      }
    }
    if (!keeper) {
      session?.close();
      // the check here failed before the connection was used: close it when it is made
      void connecting?.then((c) => ('session' in c ? c.session.close() : undefined));
    } else if (txOpen || session?.isClosed) keeper.reset();
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
      // Like ferm --interactive: prove that a new connection still gets through.
      try {
        const probe = await PeerSession.open(config, target, self);
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
      const ab = session.isClosed
        ? undefined
        : await session.request({ op: 'abort', txid, reload: true }).catch(() => undefined);
      steps.push({
        host: target.name,
        step: 'roll back',
        ok: ab?.reloaded.every((x: ReloadResult) => x.ok) ?? false,
        durationMs: 0,
        detail: ab
          ? `restored ${ab.restored.length} file(s), reloaded ${ab.reloaded.length} service(s)`
          : 'left to the agent (connection lost)',
      });
      return {
        ok: false,
        service: svc.name,
        aborted: ab !== undefined,
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
      : versions.filter((x) => x.reason === 'commit').at(-1);
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

function recordPush(config: Config, report: PushReport): void {
  try {
    mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
    writeFileSync(
      path.join(config.stateDir, 'last-push.json'),
      `${JSON.stringify(
        {
          time: new Date().toISOString(),
          peer: report.peer,
          result: report.result,
          version: report.version,
          changes: report.plan?.changes.map((c) => ({ kind: c.kind, path: c.path })) ?? [],
          error: report.error ? { code: report.error.code, message: report.error.message } : undefined,
        },
        null,
        1,
      )}\n`,
    );
  } catch {}
}
