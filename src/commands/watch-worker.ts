// `lvssync watch-worker` (internal): the part of the watch daemon that pushes, audits and reads the
// set, in a child process of the daemon, spoken to over Node's IPC channel. It holds what makes a
// push fast (one session to the peer's agent, parsed files, the validators' verdicts); the daemon
// ends it when a burst of edits is over, and with it the SSH client and every cache, so the idle
// daemon is small. It ignores SIGTERM and SIGHUP (the daemon handles them) and exits once the daemon
// is gone and its current job is done.

import cron from 'node-cron';
import type { Config } from '../core/config.js';
import { emptySnapshot } from '../core/snapshot.js';
import {
  type AuditSummary,
  type GateReply,
  type NextAudit,
  type PushSummary,
  parseWorkerRequest,
  type WatchInput,
  type WorkerJob,
  type WorkerMessage,
} from '../core/worker-ipc.js';
import { LvssyncError } from '../errors.js';
import { runAudit, storeReport } from '../shell/audit.js';
import { checkSelf, type DirectorCheck } from '../shell/check-director.js';
import { loadConfig, requireSelfNode } from '../shell/load-config.js';
import { PeerKeeper, type PeerTarget, peersOf } from '../shell/peer.js';
import { runPush } from '../shell/push.js';
import { changedSinceRead } from '../shell/read-snapshot.js';
import { Workspace } from '../shell/workspace.js';

export function memoryMiB(): Record<string, number> {
  const m = process.memoryUsage();
  const mib = (n: number) => Math.round((n / 1048576) * 10) / 10;
  return {
    rss: mib(m.rss),
    heapUsed: mib(m.heapUsed),
    heapTotal: mib(m.heapTotal),
    external: mib(m.external),
  };
}

function watchInput(local: DirectorCheck): WatchInput {
  return { files: local.evaluation.files, patterns: local.evaluation.includes.map((i) => i.pattern) };
}

/**
 * The next time the audit schedule fires after now, from node-cron itself (its syntax, its idea of
 * local time). The daemon keeps only the timestamp: node-cron's time zone arithmetic goes through
 * Intl, whose data would stay resident in the daemon for good.
 */
async function nextAudit(expr: string): Promise<NextAudit> {
  if (!cron.validate(expr)) return { error: `audit.schedule '${expr}' is not a valid cron expression` };
  const task = cron.schedule(expr, () => {}, { name: 'lvssync-next-audit' });
  try {
    const next = task.getNextRun();
    return next ? { at: next.getTime() } : { error: `audit.schedule '${expr}' never fires` };
  } finally {
    await task.destroy();
  }
}

class Worker {
  /** What this director's checks keep between pushes (the worker's life: a burst of edits). */
  private readonly workspace: Workspace;
  /** The set as the last push read it (read again in place: a re-check redoes what changed). */
  private readonly snapshot = emptySnapshot();
  /** One kept session per other director (opened with the first push that needs it). */
  private readonly keepers = new Map<string, PeerKeeper>();
  private readonly gates = new Map<number, (go: boolean) => void>();

  constructor(
    private readonly config: Config,
    private readonly configPath: string | undefined,
    private readonly self: string,
    private readonly send: (m: WorkerMessage) => void,
    /** The daemon's masters to the other directors (their pids): a new session waits for one in its handshake. */
    masters: ReadonlyMap<string, number> = new Map(),
  ) {
    this.workspace = Workspace.kept(config.stateDir);
    let targets: PeerTarget[] = [];
    try {
      targets = peersOf(config, self);
    } catch {
      // no peer configured: every push reports it
    }
    for (const target of targets) {
      const pid = masters.get(target.name);
      this.keepers.set(
        target.name,
        new PeerKeeper(
          config,
          target,
          self,
          (s) =>
            send({
              event: 'opened',
              peer: target.name,
              ...(s.hello?.pid ? { agentPid: s.hello.pid } : {}),
              ...(s.hello?.recovered ? { recovered: s.hello.recovered } : {}),
            }),
          pid,
        ),
      );
    }
  }

  /** The daemon answered a gated push. */
  gateReply(r: GateReply): void {
    this.gates.get(r.gate)?.(r.go);
    this.gates.delete(r.gate);
  }

  /** The daemon is gone: no gated push may commit any more. */
  abandonGates(): void {
    for (const resolve of this.gates.values()) resolve(false);
    this.gates.clear();
  }

  async run(
    job: WorkerJob,
    id = 0,
    gated = false,
  ): Promise<PushSummary | WatchInput | AuditSummary | NextAudit> {
    switch (job) {
      case 'next-audit':
        return nextAudit(this.config.audit.schedule);
      case 'watchset':
        return watchInput(await checkSelf(this.config, this.self, false, { workspace: this.workspace }));
      case 'push':
        return this.push(gated ? id : undefined);
      case 'audit': {
        const r = await runAudit(this.config, this.self);
        const report = await storeReport(this.config, r);
        const problems = r.findings.filter((f) => f.severity !== 'ok');
        return {
          status: r.status,
          problems: problems.length,
          codes: problems.map((f) => `${f.host}:${f.code}`),
          report,
        };
      }
    }
  }

  private async push(gateId?: number): Promise<PushSummary> {
    // An early push commits when the daemon says the set has stayed unchanged for its quiet window,
    // and the files are still what this push read (a change the watcher dropped shows here). Its
    // other outcomes (invalid, in sync, failed) stand on the same condition.
    let changedOnDisk: string | undefined;
    let asked = false;
    const gate =
      gateId === undefined
        ? undefined
        : () => {
            asked = true;
            return new Promise<boolean>((resolve) => {
              this.gates.set(gateId, resolve);
              this.send({ event: 'gate', id: gateId });
            }).then((go) => {
              if (!go) return false;
              changedOnDisk = changedSinceRead(this.snapshot, '/', this.workspace);
              return changedOnDisk === undefined;
            });
          };
    const report = await runPush({
      ...(gate ? { gate } : {}),
      config: this.config,
      self: this.self,
      workspace: this.workspace,
      snapshot: this.snapshot,
      keepers: (t) => this.keepers.get(t.name),
      ...(this.configPath ? { configPath: this.configPath } : {}),
      progress: (step) => this.send({ event: 'progress', step }),
    });
    if (gate && !asked && !(await gate())) report.result = 'superseded';
    const s: PushSummary = {
      result: report.result,
      peers: report.peers.map((p) => ({
        node: p.node,
        ...(p.unreachable ? { unreachable: p.unreachable.message } : {}),
        changes: p.plan?.changes.map((c) => `${c.kind} ${c.path}`) ?? [],
        conflicts: p.plan?.conflicts.map((c) => c.path) ?? [],
        ...(p.version ? { version: p.version } : {}),
        ...(p.peerTimings ? { peerTimings: p.peerTimings } : {}),
      })),
      timings: report.timings,
      errors: report.diagnostics.filter((d) => d.severity === 'error'),
      steps: report.steps,
      memory: memoryMiB(),
    };
    if (report.order) s.order = report.order;
    if (report.servicesDown) s.servicesDown = report.servicesDown;
    if (report.error) s.error = { code: report.error.code, message: report.error.message };
    if (report.local) s.watch = watchInput(report.local);
    if (changedOnDisk) s.changedOnDisk = changedOnDisk;
    // a reload left undone because the files changed: a new state of the set to push
    else if (report.superseded) s.changedOnDisk = report.superseded.changed[0] ?? report.superseded.service;
    return s;
  }

  /** The burst is over: what the lints found is kept for the worker started after the idle release. */
  close(): void {
    for (const k of this.keepers.values()) k.close();
    this.workspace.saveFindings();
  }
}

/** `--master lvs2=PID`: the daemon's master to each director, by name. */
function mastersOf(args: readonly string[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const a of args) {
    const m = /^(.+)=(\d+)$/.exec(a);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

export async function runWatchWorker(opts: {
  config?: string;
  node?: string;
  master?: string[];
}): Promise<number> {
  if (!process.send) throw new LvssyncError('E_USAGE', 'watch-worker is started by lvssync watch only');
  const send = (m: WorkerMessage) => {
    if (process.connected) process.send?.(m);
  };
  const { config, path: configPath } = await loadConfig(opts.config);
  const worker = new Worker(
    config,
    configPath,
    requireSelfNode(config, opts.node),
    send,
    mastersOf(opts.master ?? []),
  );
  // the daemon decides when to stop; a signal sent to its whole process group is its business
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(sig, () => {});
  let busy = 0;
  let gone = false;
  const leave = () => {
    worker.close();
    process.removeAllListeners('message');
    for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.removeAllListeners(sig);
  };
  process.on('message', (raw: unknown) => {
    const m = parseWorkerRequest(raw);
    if ('error' in m) {
      const id = (raw as { id?: unknown } | null)?.id;
      if (typeof id === 'number')
        send({ id, ok: false, error: { code: 'E_PROTOCOL', message: `bad request: ${m.error}` } });
      return;
    }
    if ('gate' in m) return worker.gateReply(m);
    busy++;
    worker
      .run(m.job, m.id, m.gated === true)
      .then(
        (result) => send({ id: m.id, ok: true, result }),
        (e: unknown) =>
          send({
            id: m.id,
            ok: false,
            error: {
              code: e instanceof LvssyncError ? e.code : 'E_INTERNAL',
              message: e instanceof Error ? e.message : String(e),
            },
          }),
      )
      .finally(() => {
        busy--;
        if (gone && busy === 0) leave();
      });
  });
  // The daemon is gone (ended this worker, or was killed): finish the current job, then leave.
  process.on('disconnect', () => {
    gone = true;
    worker.abandonGates();
    if (busy === 0) leave();
  });
  return 0;
}
