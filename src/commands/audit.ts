// `lvssync audit` and `lvssync status`: composition roots over shell/audit.ts.
// audit exits like a Nagios/Icinga plugin: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.

import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ServiceState } from '../core/protocol.js';
import { EXIT, LvssyncError } from '../errors.js';
import type { Io } from '../io.js';
import type { DirectorCheck } from '../shell/check-director.js';
import { loadConfig, requireSelfNode } from '../shell/load-config.js';
import { PeerKeeper, peersOf } from '../shell/peer.js';

// Only the configuration and the SSH client are loaded before the audit starts: the connections to
// the peers are opened first, and the rest of the audit loads during its handshake.

export interface AuditOptions {
  config?: string;
  node?: string;
  json?: boolean;
  format?: string;
  output?: string;
  digests?: boolean;
  store?: boolean;
  verbose?: boolean;
  peer?: string;
}

export async function runAuditCommand(opts: AuditOptions, io: Io): Promise<number> {
  let config: Awaited<ReturnType<typeof loadConfig>>['config'];
  try {
    ({ config } = await loadConfig(opts.config));
  } catch (e) {
    io.stderr(`lvssync audit: UNKNOWN: ${(e as Error).message}\n`);
    return 3;
  }
  const format = opts.json ? 'json' : (opts.format ?? 'text');
  if (!['text', 'json', 'markdown'].includes(format))
    throw new LvssyncError('E_USAGE', `--format ${format}: use text, json or markdown`);
  const self = requireSelfNode(config, opts.node);
  const { openForAudit } = await import('../shell/audit-peer.js');
  const peers = openForAudit(config, self, opts.peer);
  const { formatAuditJson, formatAuditMarkdown, formatAuditText, runAudit, storeReport } = await import(
    '../shell/audit.js'
  );
  const report = await runAudit(config, self, { peers, ...(opts.digests ? { digests: true } : {}) });
  const text =
    format === 'json'
      ? formatAuditJson(report)
      : format === 'markdown'
        ? formatAuditMarkdown(report)
        : formatAuditText(report, opts.verbose);
  if (opts.output) writeFileSync(opts.output, text);
  else io.stdout(text);
  if (opts.store) await storeReport(config, report);
  return report.exitCode;
}

export interface StatusOptions {
  config?: string;
  node?: string;
  json?: boolean;
  peer?: string;
}

/** One screen: sync state (F5 ConfigSync's words), last push, VIP holders, last audit. */
export async function runStatusCommand(opts: StatusOptions, io: Io): Promise<number> {
  const { latestReport } = await import('../shell/audit.js');
  const { checkSelf } = await import('../shell/check-director.js');
  const { runPush } = await import('../shell/push.js');
  const { readAddresses, readServiceStates } = await import('../shell/services.js');
  const { readJsonFile } = await import('../shell/fs-atomic.js');
  const { config, path: configPath } = await loadConfig(opts.config);
  const me = requireSelfNode(config, opts.node);
  const targets = peersOf(config, me, opts.peer);
  const { readClaim } = await import('../shell/primary.js');
  const { describeClaim } = await import('../core/primary.js');
  const lastPush = readJsonFile<{ time: string; result: string; error?: { message: string } }>(
    path.join(config.stateDir, 'last-push.json'),
  );
  const watch = readJsonFile<{ pid: number; health: string; lastPush?: unknown }>(
    path.join(config.stateDir, 'watch-status.json'),
  );
  const daemonAlive = watch?.pid && existsSync(`/proc/${watch.pid}`);
  const { lockHolder } = await import('../shell/lock.js');
  // a push (the daemon's or a person's) or a rollback under way here: what follows may change at once
  const holder = lockHolder(config.stateDir);
  const audit = latestReport(config);
  const here = Object.values(await readAddresses()).flat();
  const services: (ServiceState & { host: string })[] = (await readServiceStates(config)).map((x) => ({
    ...x,
    host: me,
  }));
  type Sync = 'in sync' | 'changes pending' | 'drift' | 'peer unreachable';
  const peers: { node: string; sync: Sync; pendingChanges: number; error?: string }[] = targets.map((t) => ({
    node: t.name,
    sync: 'in sync',
    pendingChanges: 0,
  }));
  const there = new Map<string, string[]>();
  let local: DirectorCheck | undefined;
  // one session per director for all of it: the dry run's, then who holds what there
  const keepers = new Map(targets.map((t) => [t.name, new PeerKeeper(config, t, me)]));
  const leader = readClaim(config).primary;
  /** Not the primary: this director's files against what the primary would push to it. */
  const following = leader !== me && config.nodes[leader] !== undefined;
  /** The directors a push from here could ask (the primary's dry run). */
  const asked = new Set<string>();
  try {
    if (following) {
      peers.splice(0, peers.length, { node: me, sync: 'in sync', pendingChanges: 0 });
      const ps = peers[0]!;
      const keeper = keepers.get(leader) ?? new PeerKeeper(config, peersOf(config, me, leader)[0]!, me);
      keepers.set(leader, keeper);
      const { planFromPrimary } = await import('../shell/follower.js');
      // (this director's own set: what the primary's files are compared with, and its VIPs)
      local = await checkSelf(config, me, false);
      try {
        const plan = await planFromPrimary(config, me, await keeper.get(), local);
        ps.pendingChanges = plan.changes.length;
        if (plan.conflicts.length) ps.sync = 'drift';
        else if (plan.changes.length) ps.sync = 'changes pending';
      } catch (e) {
        Object.assign(ps, { sync: 'peer unreachable', error: (e as Error).message });
      }
    } else {
      try {
        // what a push would do (its own check of the set here included)
        const r = await runPush({
          config,
          self: me,
          dryRun: true,
          external: false,
          keepers: (t) => keepers.get(t.name),
          ...(opts.peer ? { peer: opts.peer } : {}),
          ...(configPath ? { configPath } : {}),
        });
        local = r.local;
        for (const [i, np] of r.peers.entries()) {
          const ps = peers[i]!;
          // what the peer said (a rollback it cannot finish, a refused key) is the operator's next step
          if (np.unreachable) Object.assign(ps, { sync: 'peer unreachable', error: np.unreachable.message });
          // busy: the daemon (or a person) is pushing right now, changes are on their way
          else if (r.result === 'busy') ps.sync = 'changes pending';
          else if (np.plan) {
            ps.pendingChanges = np.plan.changes.length;
            if (np.plan.conflicts.length) ps.sync = 'drift';
            else if (ps.pendingChanges > 0 || r.result === 'invalid-here') ps.sync = 'changes pending';
          }
        }
        // an error of the whole push (not a director that could not be asked, each said above)
        if (r.error && r.result !== 'conflict' && r.result !== 'busy' && !r.peers.every((p) => p.unreachable))
          throw r.error;
        for (const [i, t] of targets.entries()) if (peers[i]!.sync !== 'peer unreachable') asked.add(t.name);
      } catch (e) {
        for (const ps of peers)
          if (ps.sync !== 'peer unreachable')
            Object.assign(ps, { sync: 'peer unreachable', error: (e as Error).message });
      }
    }
    // who holds what, and which services run, on every other director that answers
    await Promise.all(
      targets
        .filter((t) => following || asked.has(t.name))
        .map(async (t) => {
          try {
            const s = await keepers.get(t.name)!.get();
            const addresses = Object.values(await s.request({ op: 'addresses' })).flat();
            for (const x of await s.request({ op: 'services' })) services.push({ ...x, host: t.name });
            there.set(t.name, addresses);
          } catch (e) {
            const ps = peers.find((p) => p.node === t.name);
            if (ps && ps.sync !== 'peer unreachable')
              Object.assign(ps, { sync: 'peer unreachable', error: (e as Error).message });
          }
        }),
    );
  } finally {
    for (const k of keepers.values()) k.close();
  }
  const RANK: Sync[] = ['in sync', 'changes pending', 'drift', 'peer unreachable'];
  const sync = peers.reduce<Sync>((w, p) => (RANK.indexOf(p.sync) > RANK.indexOf(w) ? p.sync : w), 'in sync');
  const peerError = peers
    .filter((p) => p.error)
    .map((p) => (peers.length > 1 ? `${p.node}: ${p.error}` : p.error))
    .join('; ');
  const pending = peers.reduce((n, p) => n + p.pendingChanges, 0);
  local ??= await checkSelf(config, me, false).catch(() => undefined);
  const vips = new Set<string>();
  for (const i of local?.model.instances ?? []) {
    for (const v of [...i.vips, ...i.excludedVips]) vips.add(v.address);
  }
  const holders = [...vips].map((v) => ({
    vip: v,
    on: [
      ...(here.includes(v) ? [me] : []),
      ...targets.filter((t) => there.get(t.name)?.includes(v)).map((t) => t.name),
    ],
  }));
  // read after the peers were asked: one may have told of a later handover
  const claim = readClaim(config);
  const status = {
    cluster: config.cluster,
    self: me,
    primary: config.primary,
    handover: claim.epoch,
    peers,
    sync,
    ...(peerError ? { peerError } : {}),
    pendingChanges: pending,
    services,
    daemon: watch
      ? { running: Boolean(daemonAlive), health: watch.health, lastPush: watch.lastPush }
      : undefined,
    lastPush,
    ...(holder ? { underWay: { who: holder.who, pid: holder.pid, since: holder.since } } : {}),
    vips: holders,
    lastAudit: audit
      ? {
          time: audit.time,
          status: audit.status,
          findings: audit.findings.filter((f) => f.severity !== 'ok').length,
        }
      : undefined,
  };
  const unasked = targets.filter((t) => !there.has(t.name)).map((t) => t.name);
  if (opts.json) {
    io.stdout(`${JSON.stringify(status)}\n`);
  } else {
    const iso = (ms?: number) => (ms ? new Date(ms).toISOString() : 'unknown');
    const lines = [
      // a service that is not running comes before anything else
      ...services
        .filter((x) => x.up === false)
        .map(
          (x) =>
            `SERVICE DOWN: ${x.service} on ${x.host} since ${iso(x.since)} (last reload by lvssync ${iso(x.lastReload)})${x.detail ? `: ${x.detail}` : ''}`,
        ),
      ...peers.map(
        (p) =>
          `cluster ${config.cluster}: ${following ? `${leader} -> ${me} (this director)` : `${me} -> ${p.node}`}: ${p.sync.toUpperCase()}${p.pendingChanges ? ` (${p.pendingChanges} change(s) ${following ? `${leader} would push` : 'to push'})` : ''}${p.error ? `: ${p.error}` : ''}`,
      ),
      `primary:    ${describeClaim(claim)}${claim.primary === me ? ' (this director)' : `: edit there; ${me} follows it`}`,
      `daemon:     ${watch ? `${daemonAlive ? 'running' : 'NOT running'}, ${watch.health}` : 'never ran here'}`,
      ...(holder ? [`under way:  ${holder.who} (pid ${holder.pid}) since ${holder.since}`] : []),
      `last push:  ${lastPush ? `${lastPush.time} ${lastPush.result}${lastPush.error ? `: ${lastPush.error.message}` : ''}` : 'none'}`,
      ...holders.map(
        (h) =>
          `VIP ${h.vip.padEnd(16)} ${h.on.length === 1 ? `on ${h.on[0]}` : h.on.length === 0 ? 'on NOBODY (outage)' : `on ${h.on.join(' AND ')} (split brain)`}${unasked.length ? ` (${unasked.join(', ')} not asked)` : ''}`,
      ),
      `last audit: ${audit ? `${audit.time} ${audit.status.toUpperCase()} (${status.lastAudit!.findings} finding(s))` : 'none'}`,
    ];
    io.stdout(`${lines.join('\n')}\n`);
  }
  const bad =
    sync !== 'in sync' || holders.some((h) => h.on.length !== 1) || services.some((x) => x.up === false);
  return bad ? EXIT.FINDINGS : EXIT.OK;
}
