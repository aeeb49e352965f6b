// `lvssync watch`: the daemon on the primary. Watches exactly the files that matter (keepalived.conf,
// every file its includes resolve to, ferm's directory, extra files), re-resolved after every change;
// coalesces editor saves (core/coalesce.ts) and runs the push pipeline; an invalid edit is logged
// with file:line and nothing is pushed; an unreachable peer is retried with backoff until it is back.
// SIGHUP reloads lvssync.yaml (a bad one keeps the old); SIGTERM finishes the current step and exits.

import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { type FSWatcher, watch } from 'chokidar';
import cron, { type ScheduledTask } from 'node-cron';
import picomatch from 'picomatch';
import {
  type CoalesceState,
  dueAt,
  IDLE,
  isEditorTemp,
  onEvent,
  onPushDone,
  startIfDue,
} from '../core/coalesce.js';
import type { Config } from '../core/config.js';
import type { EvaluateOptions } from '../core/keepalived/evaluate.js';
import { globBase } from '../core/snapshot.js';
import { EXIT, LvssyncError } from '../errors.js';
import type { Io } from '../io.js';
import { runAudit, storeReport } from '../shell/audit.js';
import { checkSelf, type DirectorCheck, ToolCache } from '../shell/check-director.js';
import { loadConfig, requireSelfNode, selfNode } from '../shell/load-config.js';
import { createLogger, type Logger } from '../shell/logger.js';
import { PeerKeeper } from '../shell/peer.js';
import { type PushReport, peerOf, runPush } from '../shell/push.js';

export interface WatchOptions {
  config?: string;
  node?: string;
  quiet?: string;
  max?: string;
  idleRelease?: string;
  once?: boolean;
}

export type WatchHealth =
  | 'starting'
  | 'in-sync'
  | 'pending'
  | 'pushing'
  | 'invalid'
  | 'peer-down'
  | 'failed'
  | 'conflict';

interface WatchSet {
  files: Set<string>;
  patterns: string[];
  dirs: string[];
}

/** A full garbage collection, so that memory let go is given back to the system while idle. */
function collectGarbage(): void {
  try {
    setFlagsFromString('--expose-gc');
    (runInNewContext('gc') as () => void)();
  } catch {}
}

/** The daemon's memory in MiB (resident, V8 heap in use and reserved, outside the heap), for the logs. */
function memoryMiB(): Record<string, number> {
  const m = process.memoryUsage();
  const mib = (n: number) => Math.round((n / 1048576) * 10) / 10;
  return {
    rss: mib(m.rss),
    heapUsed: mib(m.heapUsed),
    heapTotal: mib(m.heapTotal),
    external: mib(m.external),
  };
}

const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 60_000;

/** What to watch, from a check of the set: its files, the include patterns, the directories. */
function watchSetOf(config: Config, local: DirectorCheck): WatchSet {
  const fermDir = path.posix.dirname(config.files.ferm);
  const files = new Set<string>([config.files.keepalived, config.files.ferm, ...local.evaluation.files]);
  const patterns = [
    ...local.evaluation.includes.map((i) => i.pattern),
    `${fermDir}/**`,
    ...config.files.extra,
  ];
  const dirs = new Set<string>([path.posix.dirname(config.files.keepalived), fermDir]);
  for (const f of files) dirs.add(path.posix.dirname(f));
  for (const p of patterns) dirs.add(globBase(p));
  for (const e of config.files.extra) dirs.add(globBase(e));
  return { files, patterns, dirs: [...dirs].sort() };
}

export async function runWatch(opts: WatchOptions, io: Io): Promise<number> {
  const log = createLogger({ pretty: io.isTTY });
  const { config, path: configPath } = await loadConfig(opts.config);
  const self = requireSelfNode(config, opts.node);
  if (self !== config.primary) {
    log.warn(
      { self, primary: config.primary },
      'this director is not the configured primary: watching anyway',
    );
  }
  const timing = {
    quietMs: Number(opts.quiet ?? 300),
    maxMs: Number(opts.max ?? 3000),
    idleReleaseMs: Number(opts.idleRelease ?? 60) * 1000,
  };
  if (!Object.values(timing).every((v) => Number.isFinite(v) && v >= 0))
    throw new LvssyncError('E_USAGE', '--quiet, --max and --idle-release take a number (ms, ms, seconds)');
  const daemon = new WatchDaemon(
    config,
    configPath,
    self,
    timing,
    log.child({ component: 'watch' }),
    opts.node,
  );
  return daemon.run(opts.once === true);
}

class WatchDaemon {
  private state: CoalesceState = IDLE;
  private watcher: FSWatcher | undefined;
  private set: WatchSet = { files: new Set(), patterns: [], dirs: [] };
  private isRelevant: (p: string) => boolean = () => false;
  private timer: NodeJS.Timeout | undefined;
  private retryMs = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  private pushing: Promise<void> | undefined;
  private health: WatchHealth = 'starting';
  private pushes = 0;
  private lastReport: { time: string; result: string; error?: string; pushId: number } | undefined;
  private resolveStopped: ((code: number) => void) | undefined;
  private auditTask: ScheduledTask | undefined;
  private auditing = false;

  constructor(
    private config: Config,
    private readonly configPath: string | undefined,
    private readonly self: string,
    private readonly timing: { quietMs: number; maxMs: number; idleReleaseMs: number },
    private readonly log: Logger,
    private readonly nodeFlag: string | undefined,
  ) {}

  async run(once: boolean): Promise<number> {
    await this.rewatch();
    this.log.info(
      { dirs: this.set.dirs, files: this.set.files.size, ...this.timing, self: this.self },
      'watching',
    );
    // Converge at start: edits made while the daemon was down are pushed now.
    this.state = onEvent(this.state, Date.now());
    this.schedule(0);
    if (once) {
      await new Promise<void>((r) => {
        const t = setInterval(() => {
          if (this.state.kind === 'idle' && !this.pushing && this.retryTimer === undefined) {
            clearInterval(t);
            r();
          }
        }, 50);
      });
      await this.watcher?.close();
      this.keeper?.close();
      return this.health === 'in-sync' ? EXIT.OK : EXIT.PUSH_FAILED;
    }
    this.scheduleAudit();
    process.on('SIGHUP', () => void this.reloadConfig());
    process.on('SIGTERM', () => void this.stop('SIGTERM'));
    process.on('SIGINT', () => void this.stop('SIGINT'));
    return new Promise<number>((resolve) => {
      this.resolveStopped = resolve;
    });
  }

  /** Parsed files kept between pushes: an edit re-parses only the files that changed. */
  private cache: NonNullable<EvaluateOptions['cache']> = new Map();
  /** ferm's and keepalived -t's verdicts on unchanged input (an edit of conf.d does not re-run ferm). */
  private tools = new ToolCache();
  private idleTimer: NodeJS.Timeout | undefined;

  /**
   * A burst of edits is over (no push for --idle-release): the peer session and the caches go, so
   * an idle daemon holds little memory; the next push opens a new session and parses the set again.
   */
  private armIdleRelease(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    if (this.timing.idleReleaseMs <= 0) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (this.pushing || this.state.kind !== 'idle' || this.stopping) return this.armIdleRelease();
      this.keeper?.close();
      this.keeper = undefined;
      this.cache = new Map();
      this.tools = new ToolCache();
      collectGarbage();
      this.log.info({ memory: memoryMiB() }, 'idle: peer session closed, caches dropped');
    }, this.timing.idleReleaseMs);
    this.idleTimer.unref();
  }
  /** The session to the peer, kept open between pushes (replaced when the configuration changes). */
  private keeper: PeerKeeper | undefined;

  private keeperFor(config: Config): PeerKeeper | undefined {
    try {
      const target = peerOf(config, this.self);
      if (this.keeper?.serves(target)) return this.keeper;
      this.keeper?.close();
      this.keeper = new PeerKeeper(config, target, this.self, (s) =>
        this.log.info(
          { peer: target.name, agentPid: s.hello?.pid, recovered: s.hello?.recovered },
          'peer session opened',
        ),
      );
      return this.keeper;
    } catch {
      return undefined;
    }
  }

  private async rewatch(local?: DirectorCheck): Promise<void> {
    const next = watchSetOf(
      this.config,
      local ?? (await checkSelf(this.config, this.self, false, this.cache)),
    );
    const matchers = next.patterns.map((p) => picomatch(p, { dot: false, posix: true }));
    this.isRelevant = (p: string) =>
      !isEditorTemp(p) && (next.files.has(p) || matchers.some((m) => m(p)) || this.set.files.has(p));
    const old = new Set(this.set.dirs);
    this.set = next;
    if (!this.watcher) {
      this.watcher = watch(next.dirs, { ignoreInitial: true, atomic: true, depth: 8, followSymlinks: false });
      this.watcher.on('all', (event, p) => this.onFsEvent(event, p));
      this.watcher.on('error', (err) => this.log.error({ err }, 'watcher error'));
      await new Promise<void>((r) => this.watcher!.once('ready', () => r()));
    } else {
      const add = next.dirs.filter((d) => !old.has(d));
      const gone = [...old].filter((d) => !next.dirs.includes(d));
      if (add.length) this.watcher.add(add);
      if (gone.length) this.watcher.unwatch(gone);
      if (add.length || gone.length) this.log.info({ added: add, removed: gone }, 'watch set changed');
    }
  }

  private onFsEvent(event: string, p: string): void {
    if (this.stopping || event === 'addDir' || !this.isRelevant(p)) return;
    this.log.debug({ event, file: p }, 'change');
    this.state = onEvent(this.state, Date.now());
    if (this.health !== 'pushing') this.setHealth('pending');
    this.schedule();
  }

  private schedule(delay?: number): void {
    if (this.timer) clearTimeout(this.timer);
    const due = dueAt(this.state, this.timing);
    if (due === undefined) return;
    this.timer = setTimeout(() => this.tick(), delay ?? Math.max(0, due - Date.now()));
  }

  private tick(): void {
    this.timer = undefined;
    if (this.stopping || this.retryTimer) return;
    const r = startIfDue(this.state, Date.now(), this.timing);
    this.state = r.state;
    if (!r.start) {
      this.schedule();
      return;
    }
    this.pushing = this.push().finally(() => {
      this.pushing = undefined;
      this.armIdleRelease();
      this.state = onPushDone(this.state, Date.now());
      if (this.state.kind === 'waiting' && !this.stopping && !this.retryTimer) this.schedule();
    });
  }

  private async push(): Promise<void> {
    const pushId = ++this.pushes;
    const log = this.log.child({ pushId });
    this.setHealth('pushing');
    const t0 = performance.now();
    let report: PushReport;
    try {
      report = await runPush({
        config: this.config,
        self: this.self,
        cache: this.cache,
        tools: this.tools,
        ...(this.keeperFor(this.config) ? { keeper: this.keeperFor(this.config)! } : {}),
        progress: (m) => log.debug({ step: m }, 'progress'),
      });
      // the includes may have changed: watch what the set is now
      if (report.local) await this.rewatch(report.local);
    } catch (e) {
      log.error({ err: e }, 'push crashed');
      this.setHealth('failed');
      this.record(pushId, 'crashed', String(e));
      return;
    }
    const durationMs = Math.round(performance.now() - t0);
    const changes = report.plan?.changes.map((c) => `${c.kind} ${c.path}`) ?? [];
    switch (report.result) {
      case 'pushed':
        this.retryMs = 0;
        log.info(
          {
            peer: report.peer,
            changes,
            order: report.order,
            version: report.version,
            durationMs,
            timings: report.timings,
            memory: memoryMiB(),
          },
          'pushed',
        );
        this.setHealth('in-sync');
        break;
      case 'in-sync':
        if (report.error) return this.peerDown(log, pushId, report);
        this.retryMs = 0;
        log.info({ peer: report.peer, durationMs }, 'in sync, nothing to push');
        this.setHealth('in-sync');
        break;
      case 'invalid-here':
        for (const d of report.diagnostics.filter((x) => x.severity === 'error')) {
          log.error({ file: d.file, line: d.line, col: d.col, code: d.code }, d.message);
        }
        log.warn(
          { errors: report.diagnostics.filter((x) => x.severity === 'error').length },
          'not pushed: the set has errors; the peer keeps its last good configuration',
        );
        this.setHealth('invalid');
        break;
      case 'conflict':
        log.error(
          { peer: report.peer, conflicts: report.plan?.conflicts.map((c) => c.path) },
          report.error?.message ?? 'conflict',
        );
        this.setHealth('conflict');
        break;
      case 'invalid-on-peer':
        for (const d of report.diagnostics.filter((x) => x.severity === 'error')) {
          log.error({ peer: report.peer, file: d.file, line: d.line, code: d.code }, d.message);
        }
        this.setHealth('failed');
        break;
      default:
        if (report.error && ['E_SSH_CONNECT', 'E_TRANSFER', 'E_LOCKED'].includes(report.error.code)) {
          return this.peerDown(log, pushId, report);
        }
        log.error(
          { peer: report.peer, result: report.result, err: report.error, steps: report.steps },
          'push failed',
        );
        this.setHealth('failed');
    }
    this.record(pushId, report.result, report.error?.message);
  }

  /** The peer cannot be reached (or is busy): try again later, with backoff, from the current files. */
  private peerDown(log: Logger, pushId: number, report: PushReport): void {
    this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs ? this.retryMs * 2 : RETRY_MIN_MS);
    const busy = report.error?.code === 'E_LOCKED';
    log.warn(
      { peer: report.peer, err: report.error?.message, retryInMs: this.retryMs },
      busy ? 'busy, will retry' : 'peer unreachable, will retry',
    );
    this.setHealth(busy ? 'pending' : 'peer-down');
    this.record(pushId, busy ? 'locked' : 'peer-down', report.error?.message);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.state = onEvent(this.state.kind === 'pushing' ? IDLE : this.state, Date.now() - this.timing.maxMs);
      this.schedule(0);
    }, this.retryMs);
  }

  private setHealth(h: WatchHealth): void {
    this.health = h;
    this.writeStatus();
  }

  private record(pushId: number, result: string, error?: string): void {
    this.lastReport = { time: new Date().toISOString(), result, pushId, ...(error ? { error } : {}) };
    this.writeStatus();
  }

  private writeStatus(): void {
    try {
      mkdirSync(this.config.stateDir, { recursive: true, mode: 0o700 });
      writeFileSync(
        path.join(this.config.stateDir, 'watch-status.json'),
        `${JSON.stringify({ pid: process.pid, health: this.health, since: new Date().toISOString(), lastPush: this.lastReport, watching: this.set.dirs }, null, 1)}\n`,
      );
    } catch {}
  }

  /** The nightly audit (audit.schedule), stored with retention and handed to its command. */
  private scheduleAudit(): void {
    void this.auditTask?.stop();
    const expr = this.config.audit.schedule;
    if (!cron.validate(expr)) {
      this.log.error({ schedule: expr }, 'audit.schedule is not a valid cron expression: no scheduled audit');
      return;
    }
    this.auditTask = cron.schedule(expr, () => void this.audit(), { noOverlap: true });
    this.log.info({ schedule: expr }, 'audit scheduled');
  }

  private async audit(): Promise<void> {
    if (this.auditing || this.stopping) return;
    this.auditing = true;
    const log = this.log.child({ component: 'audit' });
    try {
      const r = await runAudit(this.config, this.self);
      const file = await storeReport(this.config, r);
      const problems = r.findings.filter((f) => f.severity !== 'ok');
      const level = r.status === 'ok' ? 'info' : r.status === 'warning' ? 'warn' : 'error';
      log[level](
        {
          status: r.status,
          findings: problems.length,
          report: file,
          codes: problems.map((f) => `${f.host}:${f.code}`),
        },
        'audit done',
      );
    } catch (e) {
      log.error({ err: e }, 'audit failed');
    } finally {
      this.auditing = false;
    }
  }

  private async reloadConfig(): Promise<void> {
    try {
      const { config } = await loadConfig(this.configPath);
      if (this.nodeFlag === undefined && selfNode(config) !== this.self) {
        throw new LvssyncError('E_CONFIG', `the new configuration no longer names this host ${this.self}`);
      }
      this.config = config;
      // a new configuration may change the SSH settings: the next push opens a new session
      this.keeper?.close();
      this.keeper = undefined;
      await this.rewatch();
      this.scheduleAudit();
      this.log.info({ config: this.configPath }, 'configuration reloaded');
      this.state = onEvent(this.state, Date.now());
      this.schedule();
    } catch (e) {
      this.log.error({ err: e }, 'new configuration rejected; keeping the old one');
    }
  }

  private async stop(signal: string): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.log.info({ signal, pushing: Boolean(this.pushing) }, 'stopping');
    if (this.timer) clearTimeout(this.timer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.idleTimer) clearTimeout(this.idleTimer);
    void this.auditTask?.stop();
    await this.watcher?.close();
    // Finish the current push: the peer's agent rolls back by itself if we are killed meanwhile.
    if (this.pushing) await this.pushing;
    this.keeper?.close();
    this.log.info({}, 'stopped');
    this.resolveStopped?.(EXIT.OK);
  }
}
