// `lvssync watch`: the daemon on the primary. Watches exactly the files that matter (keepalived.conf,
// every file its includes resolve to, ferm's directory, extra files), re-resolved after every change;
// coalesces editor saves (core/coalesce.ts) and runs the push pipeline; an invalid edit is logged
// with file:line and nothing is pushed; an unreachable peer is retried with backoff until it is back.
// SIGHUP reloads lvssync.yaml (a bad one keeps the old); SIGTERM finishes the current step and exits.

import { type ChildProcess, fork } from 'node:child_process';
import { accessSync, constants, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { watch } from 'chokidar';
import picomatch from 'picomatch';
import {
  type CoalesceState,
  dueAt,
  gate,
  IDLE,
  isEditorTemp,
  onEvent,
  onPushDone,
  onRetry,
  startEarly,
  startIfDue,
} from '../core/coalesce.js';
import { type Config, daemonWriteDirs } from '../core/config.js';
import { DAEMON_SOCKET, type DaemonReply, type DaemonRequest } from '../core/daemon-socket.js';
import {
  type AnswerWatch,
  afterProbes,
  afterPush,
  classifyPush,
  type HealthState,
  PROBE_EVERY_MS,
  STARTING,
  type Verdict,
  type WatchHealth,
  watchForAnswer,
} from '../core/health.js';
import { globBase } from '../core/snapshot.js';
import {
  type AuditSummary,
  type GateReply,
  type NextAudit,
  type PushSummary,
  parseWorkerMessage,
  type WatchInput,
  type WorkerJob,
  type WorkerMessage,
  type WorkerRequest,
} from '../core/worker-ipc.js';
import { EXIT, isLvssyncError, LvssyncError } from '../errors.js';
import type { Io } from '../io.js';
import { serveDaemonSocket } from '../shell/daemon-socket.js';
import { loadConfig, requireSelfNode, selfNode } from '../shell/load-config.js';
import { createLogger, type Logger } from '../shell/logger.js';
import { otherTargets, type PeerTarget } from '../shell/openssh.js';
import { sdNotify } from '../shell/sd-notify.js';
import { KeptConnections } from '../shell/ssh-master.js';
import { sshAnswers } from '../shell/ssh-probe.js';

/** chokidar keeps one change event per file in 50 ms: the quiet window must be at least that. */
const MIN_QUIET_MS = 50;

export interface WatchOptions {
  config?: string;
  node?: string;
  quiet?: string;
  max?: string;
  idleRelease?: string;
  once?: boolean;
  /** false (--no-early): the first edit of a burst waits for the quiet window like the others. */
  early?: boolean;
}

export type { WatchHealth };

const peerNames = (r: PushSummary) => r.peers.map((p) => p.node);
/** The directors a push lost: those it could not reach, else (a link lost on the way) all it spoke to. */
const notReachedOf = (r: PushSummary) => {
  const unreachable = r.peers.filter((p) => p.unreachable).map((p) => p.node);
  return unreachable.length ? unreachable : peerNames(r);
};

const RETRY_MESSAGE: Readonly<Record<Extract<Verdict, { kind: 'retry' }>['reason'], string>> = {
  'peer-down': 'peer unreachable',
  busy: 'busy',
  'service-down': 'a service is down',
  'peer-cannot-write': 'the peer cannot take a push',
  interrupted: 'the push was cut off after the commit',
  crashed: 'push crashed',
};

interface WatchSet {
  files: Set<string>;
  patterns: string[];
  dirs: string[];
}

const LEAN_FLAGS =
  /^--(lite-mode|jitless|max-lazy|no-opt|single-threaded|max-old-space-size|(min|max)-semi-space-size)/;

/**
 * The worker's young generation, large from its start: a cold worker's first check keeps nearly all
 * it allocates (every file's syntax tree), so each scavenge of V8's default small young generation
 * copies it all again (40-90 ms of a cold push on a 1,000-file set; none with 64 MiB).
 */
const WORKER_HEAP = ['--min-semi-space-size=64', '--max-semi-space-size=64'];

/** The worker's node flags: the daemon's without those that save memory at the cost of speed (or of WebAssembly, which the SSH client needs), and its own young generation. */
export function workerExecArgv(daemon: readonly string[]): string[] {
  return [...daemon.filter((a) => !LEAN_FLAGS.test(a)), ...WORKER_HEAP];
}

/**
 * The worker's environment: the unit's memory-saving V8 settings (a small young generation) suit
 * the idle watcher, not the worker, which parses and validates whole sets while it lives (the same
 * rule as for its argv).
 */
export function workerEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const opts = (env.NODE_OPTIONS ?? '')
    .split(/\s+/)
    .filter((o) => o && !LEAN_FLAGS.test(o))
    .join(' ');
  const out = { ...env };
  if (opts) out.NODE_OPTIONS = opts;
  else delete out.NODE_OPTIONS;
  return out;
}

/** What to watch, from a read of the set: its files, the include patterns, the directories. */
function watchSetOf(config: Config, local: WatchInput): WatchSet {
  const fermDir = path.posix.dirname(config.files.ferm);
  const files = new Set<string>([config.files.keepalived, config.files.ferm, ...local.files]);
  const patterns = [...local.patterns, `${fermDir}/**`, ...config.files.extra];
  const dirs = new Set<string>([path.posix.dirname(config.files.keepalived), fermDir]);
  for (const f of files) dirs.add(path.posix.dirname(f));
  for (const p of patterns) dirs.add(globBase(p));
  for (const e of config.files.extra) dirs.add(globBase(e));
  return { files, patterns, dirs: [...dirs].sort() };
}

export async function runWatch(opts: WatchOptions, io: Io): Promise<number> {
  // The daemon itself only waits for file events and hands work to its worker process (which runs
  // with V8's defaults): without the optimizing and baseline compilers, whose code would otherwise
  // be paged in, it stays a few MiB smaller.
  setFlagsFromString('--no-opt');
  setFlagsFromString('--no-sparkplug');
  const log = await createLogger({ pretty: io.isTTY });
  const { config, path: configPath } = await loadConfig(opts.config);
  const self = requireSelfNode(config, opts.node);
  if (self !== config.primary) {
    log.warn(
      { self, primary: config.primary },
      'this director is not the primary: watching, pushing nothing until a handover makes it the primary',
    );
  }
  const timing = {
    quietMs: Number(opts.quiet ?? 300),
    maxMs: Number(opts.max ?? 3000),
    idleReleaseMs: Number(opts.idleRelease ?? 60) * 1000,
  };
  if (!Object.values(timing).every((v) => Number.isFinite(v) && v >= 0))
    throw new LvssyncError('E_USAGE', '--quiet, --max and --idle-release take a number (ms, ms, seconds)');
  if (timing.quietMs < MIN_QUIET_MS)
    throw new LvssyncError(
      'E_USAGE',
      `--quiet ${timing.quietMs} is too short: at least ${MIN_QUIET_MS} ms (the file watcher reports one change per file in ${MIN_QUIET_MS} ms, so a shorter window could push a file before its last write)`,
    );
  // under systemd's ProtectSystem=strict a directory not in ReadWritePaths is read-only: say so now
  for (const w of daemonWriteDirs(config)) {
    const problem = notWritable(w.dir);
    if (!problem) continue;
    const hint = process.env.INVOCATION_ID
      ? `; under systemd, allow it with a drop-in (systemctl edit lvssync): [Service] ReadWritePaths=${w.dir}`
      : '';
    const message = `${w.setting} ${w.dir} is not writable (${problem})${hint}`;
    if (w.required) throw new LvssyncError('E_CONFIG', message);
    log.error({ dir: w.dir, setting: w.setting, problem }, message);
  }
  const daemon = new WatchDaemon(
    config,
    configPath,
    self,
    { ...timing, early: opts.early !== false },
    log.child({ component: 'watch' }),
    opts.node,
    processDeps,
  );
  return daemon.run(opts.once === true);
}

/** A timer handle of the daemon's clock. */
export type Timer = unknown;

/** Time for the daemon: the real clock in the daemon, a manual one in its tests. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number, opts?: { unref?: boolean }): Timer;
  clearTimeout(t: Timer): void;
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms, opts) => {
    const t = setTimeout(fn, ms);
    if (opts?.unref) t.unref();
    return t;
  },
  clearTimeout: (t) => clearTimeout(t as NodeJS.Timeout),
};

/** The file watcher the daemon listens to (chokidar in the daemon). */
export interface FileWatcher {
  add(dirs: string[]): void;
  unwatch(dirs: string[]): void;
  close(): Promise<void>;
}

/** The daemon's pushing half, as the daemon uses it (WorkerClient: a child process). */
export interface WorkerPort {
  readonly running: boolean;
  request<T extends PushSummary | WatchInput | AuditSummary | NextAudit>(
    job: WorkerJob,
    gated?: boolean,
  ): Promise<T>;
  reply(r: GateReply): void;
  stop(): void;
}

export interface WorkerHandlers {
  onEvent: (m: Extract<WorkerMessage, { event: string }>) => void;
  onLife: (what: 'started' | 'exited', pid: number | undefined, how?: string) => void;
  /** Right before a worker starts for `job`: the masters its sessions may go through, by director (their pids). */
  masters?: (job: WorkerJob) => Record<string, number>;
}

/** What the daemon needs from outside, passed in: the real ones in runWatch, fakes in its tests. */
export interface DaemonDeps {
  clock: Clock;
  /** Starts watching `dirs`; resolves once the watcher has listed them. */
  watchFiles(
    dirs: string[],
    onEvent: (event: string, path: string) => void,
    onError: (err: unknown) => void,
  ): Promise<FileWatcher>;
  /** The worker for `args` (--config/--node), started when its first job comes. */
  worker(args: string[], handlers: WorkerHandlers): WorkerPort;
  /** lvssync.yaml read again (SIGHUP). */
  loadConfig(path: string | undefined): Promise<Config>;
  /** watch-status.json. */
  writeStatus(stateDir: string, status: unknown): void;
  /** Signals and readiness: the process's in the daemon. */
  onSignals(handlers: { hup: () => void; term: () => void; int: () => void }): void;
  notifyReady(): Promise<{ error?: string }>;
  /** The local socket `lvssync push` asks (core/daemon-socket.ts); resolves to its closer. */
  serve(stateDir: string, handle: (req: DaemonRequest) => Promise<DaemonReply>): Promise<() => void>;
  /** Whether an SSH server answers at host:port within timeoutMs (its banner; no login). */
  probe(host: string, port: number, timeoutMs: number): Promise<boolean>;
  /** The connections kept to the other directors while idle (ssh.keepConnection); none in tests. */
  keepConnections?(config: Config, self: string, log: Logger): KeptConnectionsPort;
}

/** What the daemon does with its kept connections (shell/ssh-master.ts). */
export interface KeptConnectionsPort {
  /** Starts the ones not running (after their retry wait). */
  ensure(): void;
  /** A worker starts: the masters for its burst (made now without ssh.keepConnection), by director. */
  burst(): Record<string, number>;
  /** The worker went at the idle release: the masters made for its burst end. */
  release(): void;
  update(config: Config, targets: PeerTarget[]): void;
  stop(): void;
}

/**
 * The daemon's pushing half, a child process (watch-worker.ts) started when there is work and ended
 * when a burst of edits is over: the SSH client, the session to the peer and the caches live there.
 */
class WorkerClient implements WorkerPort {
  private child: ChildProcess | undefined;
  private nextId = 1;
  /** Requests awaiting an answer, each with the worker it went to (an old worker's exit fails only its own). */
  private readonly pending = new Map<
    number,
    { child: ChildProcess; resolve: (v: unknown) => void; reject: (e: Error) => void }
  >();

  private readonly onEvent: WorkerHandlers['onEvent'];
  private readonly onLife: WorkerHandlers['onLife'];
  private readonly masters: WorkerHandlers['masters'];

  constructor(
    private readonly args: string[],
    handlers: WorkerHandlers,
  ) {
    this.onEvent = handlers.onEvent;
    this.onLife = handlers.onLife;
    this.masters = handlers.masters;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  request<T extends PushSummary | WatchInput | AuditSummary | NextAudit>(
    job: WorkerJob,
    gated = false,
  ): Promise<T> {
    const child = this.ensure(job);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { child, resolve: resolve as (v: unknown) => void, reject });
      const req: WorkerRequest = gated ? { id, job, gated } : { id, job };
      child.send(req);
    });
  }

  /** Answers a gated push's question. */
  reply(r: GateReply): void {
    if (this.child?.connected) this.child.send(r);
  }

  private ensure(job: WorkerJob): ChildProcess {
    if (this.child) return this.child;
    const masters = Object.entries(this.masters?.(job) ?? {}).map(([name, pid]) => `${name}=${pid}`);
    const child = fork(
      process.argv[1]!,
      ['watch-worker', ...this.args, ...masters.flatMap((m) => ['--master', m])],
      {
        stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
        execArgv: workerExecArgv(process.execArgv),
        env: workerEnv(process.env),
      },
    );
    child.on('message', (raw: unknown) => {
      const m = parseWorkerMessage(raw);
      if ('error' in m && !('id' in m)) {
        // a worker of another version, or a damaged message: its answers cannot be trusted
        for (const [id, p] of this.pending) {
          if (p.child !== child) continue;
          this.pending.delete(id);
          p.reject(new LvssyncError('E_PROTOCOL', `the push worker sent a bad message: ${m.error}`));
        }
        this.stop();
        return;
      }
      if ('event' in m) return this.onEvent(m);
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.result);
      else p.reject(new LvssyncError(m.error.code as LvssyncError['code'], m.error.message));
    });
    child.on('exit', (code, signal) => {
      if (this.child === child) this.child = undefined;
      this.onLife('exited', child.pid, signal ?? `status ${code}`);
      for (const [id, p] of this.pending) {
        if (p.child !== child) continue;
        this.pending.delete(id);
        p.reject(new LvssyncError('E_INTERNAL', `the push worker exited (${signal ?? `status ${code}`})`));
      }
    });
    this.child = child;
    this.onLife('started', child.pid);
    return child;
  }

  /** Ends the worker once its current job is done (it leaves when its channel closes). */
  stop(): void {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    if (child.connected) child.disconnect();
  }
}

export class WatchDaemon {
  private state: CoalesceState = IDLE;
  private watcher: FileWatcher | undefined;
  private set: WatchSet = { files: new Set(), patterns: [], dirs: [] };
  private isRelevant: (p: string) => boolean = () => false;
  private timer: Timer | undefined;
  private retryTimer: Timer | undefined;
  /** While a retry waits: the unreachable directors probed until they answer again (core/health.ts). */
  private answerWatch: AnswerWatch | undefined;
  private probeTimer: Timer | undefined;
  private stopping = false;
  private pushing: Promise<void> | undefined;
  private healthState: HealthState = STARTING;
  /** While health is service-down: which, where, since when. */
  private serviceDown: NonNullable<PushSummary['servicesDown']> = [];
  private pushes = 0;
  private lastReport: { time: string; result: string; error?: string; pushId: number } | undefined;
  private resolveStopped: ((code: number) => void) | undefined;
  private auditTimer: Timer | undefined;
  private auditGeneration = 0;
  private auditing = false;
  /** `lvssync push` callers waiting for the next push to start (and then for its summary). */
  private askers: ((r: PushSummary | Error) => void)[] = [];
  private closeServer: (() => void) | undefined;

  constructor(
    private config: Config,
    private readonly configPath: string | undefined,
    private readonly self: string,
    private readonly timing: { quietMs: number; maxMs: number; idleReleaseMs: number; early: boolean },
    private readonly log: Logger,
    private readonly nodeFlag: string | undefined,
    private readonly deps: DaemonDeps,
  ) {
    this.clock = deps.clock;
    this.kept = deps.keepConnections?.(config, self, log);
    const args = [...(configPath ? ['--config', configPath] : []), ...(nodeFlag ? ['--node', nodeFlag] : [])];
    this.worker = deps.worker(args, {
      onEvent: (m) => {
        if (m.event === 'opened')
          this.log.info(
            { peer: m.peer, agentPid: m.agentPid, recovered: m.recovered },
            'peer session opened',
          );
        else if (m.event === 'gate')
          void this.awaitGate().then((go) => this.worker.reply({ gate: m.id, go }));
        else this.log.debug({ step: m.step }, 'progress');
      },
      onLife: (what, workerPid, how) => {
        if (what === 'started') this.log.info({ workerPid }, 'push worker started');
        else this.log.debug({ workerPid, how }, 'push worker exited');
      },
      // a worker started to push: the master's handshake goes on while it starts (an audit, or the
      // next audit's time, opens no connection for nothing)
      masters: (job) => (job === 'push' || job === 'watchset' ? (this.kept?.burst() ?? {}) : {}),
    });
  }

  private readonly clock: Clock;
  private readonly kept: KeptConnectionsPort | undefined;

  /** --once: one attempt to converge; a peer that cannot be reached is reported, not waited for. */
  private once = false;

  async run(once: boolean): Promise<number> {
    this.once = once;
    // one attempt to converge keeps nothing for later
    if (once) this.kept?.stop();
    await this.rewatch();
    this.log.info(
      { dirs: this.set.dirs, files: this.set.files.size, ...this.timing, self: this.self },
      'watching',
    );
    // Converge at start: edits made while the daemon was down are pushed now.
    this.state = onEvent(this.state, this.clock.now());
    this.schedule(0);
    if (once) {
      await new Promise<void>((r) => {
        const poll = () => {
          if (this.state.kind === 'idle' && !this.pushing && this.retryTimer === undefined) r();
          else this.clock.setTimeout(poll, 50);
        };
        poll();
      });
      await this.watcher?.close();
      this.worker.stop();
      return this.health === 'in-sync'
        ? EXIT.OK
        : this.health === 'peer-down'
          ? EXIT.PEER
          : this.health === 'not-primary'
            ? EXIT.CONFLICT
            : EXIT.PUSH_FAILED;
    }
    this.kept?.ensure();
    void this.scheduleAudit();
    this.deps.onSignals({
      hup: () => void this.reloadConfig(),
      term: () => void this.stop('SIGTERM'),
      int: () => void this.stop('SIGINT'),
    });
    const stopped = new Promise<number>((resolve) => {
      this.resolveStopped = resolve;
    });
    try {
      this.closeServer = await this.deps.serve(this.config.stateDir, (req) => this.answer(req));
    } catch (e) {
      this.log.warn({ err: e }, 'no local socket: lvssync push will push by itself');
    }
    // only now may systemd send SIGHUP (ExecReload): before the handler it would end the process
    const ready = await this.deps.notifyReady();
    if (ready.error) this.log.warn({ error: ready.error }, 'could not tell systemd that the daemon is ready');
    return stopped;
  }

  private readonly worker: WorkerPort;
  private idleTimer: Timer | undefined;

  /**
   * A burst of edits is over (no push for --idle-release): the worker, and with it the peer session
   * and the caches, goes, so an idle daemon holds little memory; the next push starts a new worker.
   */
  private armIdleRelease(): void {
    if (this.idleTimer) this.clock.clearTimeout(this.idleTimer);
    if (this.timing.idleReleaseMs <= 0) return;
    this.idleTimer = this.clock.setTimeout(
      () => {
        this.idleTimer = undefined;
        if (this.pushing || this.auditing || this.state.kind !== 'idle' || this.stopping)
          return this.armIdleRelease();
        if (!this.worker.running) return;
        this.worker.stop();
        this.kept?.release();
        this.log.info({}, 'idle: peer session closed, caches dropped');
        this.kept?.ensure();
      },
      this.timing.idleReleaseMs,
      { unref: true },
    );
  }

  private async rewatch(local?: WatchInput): Promise<void> {
    const next = watchSetOf(this.config, local ?? (await this.worker.request<WatchInput>('watchset')));
    const matchers = next.patterns.map((p) => picomatch(p, { dot: false, posix: true }));
    this.isRelevant = (p: string) =>
      !isEditorTemp(p) && (next.files.has(p) || matchers.some((m) => m(p)) || this.set.files.has(p));
    const old = new Set(this.set.dirs);
    this.set = next;
    if (!this.watcher) {
      this.watcher = await this.deps.watchFiles(
        next.dirs,
        (event, p) => this.onFsEvent(event, p),
        (err) => this.log.error({ err }, 'watcher error'),
      );
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
    this.state = onEvent(this.state, this.clock.now());
    if (this.health !== 'pushing') this.setHealth('pending');
    this.checkGate();
    if (this.timing.early && !this.pushing && !this.retryTimer) {
      const r = startEarly(this.state);
      if (r.start) {
        this.state = r.state;
        this.startPush();
        return;
      }
    }
    this.schedule();
  }

  /** A gated push waiting for its quiet window: resolved by the window's end or by the next event. */
  private gateWait: { resolve: (go: boolean) => void; timer?: Timer } | undefined;

  /** Whether the running (early) push may commit: at once, or when its quiet window has passed. */
  private awaitGate(): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      this.gateWait?.resolve(false);
      this.gateWait = { resolve };
      this.checkGate();
    });
  }

  private checkGate(): void {
    const w = this.gateWait;
    if (!w) return;
    if (w.timer) this.clock.clearTimeout(w.timer);
    const v = this.stopping ? { go: false } : gate(this.state, this.clock.now(), this.timing);
    if ('go' in v) {
      this.gateWait = undefined;
      w.resolve(v.go);
    } else
      w.timer = this.clock.setTimeout(() => this.checkGate(), Math.max(0, v.waitUntil - this.clock.now()));
  }

  private schedule(delay?: number): void {
    if (this.timer) this.clock.clearTimeout(this.timer);
    const due = dueAt(this.state, this.timing);
    if (due === undefined) return;
    this.timer = this.clock.setTimeout(() => this.tick(), delay ?? Math.max(0, due - this.clock.now()));
  }

  private tick(): void {
    this.timer = undefined;
    if (this.stopping || this.retryTimer) return;
    const r = startIfDue(this.state, this.clock.now(), this.timing);
    this.state = r.state;
    if (!r.start) {
      this.schedule();
      return;
    }
    this.startPush();
  }

  /** `lvssync push`: push now (whatever the quiet window), and answer with that push's summary. */
  private async answer(req: DaemonRequest): Promise<DaemonReply> {
    if (req.op !== 'push' || this.stopping)
      return { ok: false, error: { code: 'E_LOCKED', message: 'the daemon is stopping' } };
    const result = new Promise<PushSummary | Error>((resolve) => this.askers.push(resolve));
    if (!this.pushing) {
      // a push now, as after a retry's delay: the quiet window and any backoff are over
      this.clearRetry();
      this.state = onEvent(this.state, this.clock.now() - this.timing.maxMs);
      this.schedule(0);
    }
    // (a push under way may have read the set before the caller's edit: the next one answers)
    const r = await result;
    return r instanceof Error
      ? { ok: false, error: { code: isLvssyncError(r) ? r.code : 'E_INTERNAL', message: r.message } }
      : { ok: true, summary: r };
  }

  private startPush(): void {
    const early = this.state.kind === 'pushing' && this.state.early !== undefined;
    let abandoned = false;
    const askers = this.askers;
    this.askers = [];
    this.pushing = this.push(early, askers)
      .then((a) => {
        abandoned = a;
      })
      .finally(() => {
        this.pushing = undefined;
        this.armIdleRelease();
        // a kept connection that ended with the link comes back once it is reachable again
        if (!this.stopping) this.kept?.ensure();
        this.state = onPushDone(this.state, this.clock.now(), abandoned);
        // `lvssync push` asked during this push: the next one starts now, whatever the windows
        if (this.askers.length && !this.stopping) {
          this.clearRetry();
          this.state = onEvent(this.state, this.clock.now() - this.timing.maxMs);
          this.schedule(0);
        } else if (this.state.kind === 'waiting' && !this.stopping && !this.retryTimer) this.schedule();
      });
  }

  /** One push by the worker; true when it was an early push abandoned for a newer state of the set. */
  private async push(early = false, askers: ((r: PushSummary | Error) => void)[] = []): Promise<boolean> {
    if (this.config.primary !== this.self) {
      // another director is the primary and pushes here: this one watches, and pushes nothing
      const error = new LvssyncError(
        'E_NOT_PRIMARY',
        `${this.self} is not the primary (${this.config.primary} is): its daemon watches and pushes nothing; edit on ${this.config.primary}, or take the role with lvssync primary ${this.self}`,
      );
      for (const a of askers) a(error);
      if (this.health !== 'not-primary')
        this.log.warn({ primary: this.config.primary }, 'not the primary: watching, pushing nothing');
      this.setHealth('not-primary');
      return false;
    }
    const pushId = ++this.pushes;
    const log = this.log.child({ pushId, ...(early ? { early } : {}) });
    this.setHealth('pushing');
    const t0 = this.clock.now();
    let report: PushSummary;
    try {
      report = await this.worker.request<PushSummary>('push', early);
      // (an early push's outcome speaks only for a set that stayed as it read it: the worker asks
      // the gate for every outcome, and reports 'superseded' when the set changed again)
      if (report.result === 'superseded') {
        // the set changed again: the push that follows answers whoever asked
        this.askers.unshift(...askers);
        // a change with no event of its own (the watcher keeps one per file in 50 ms): a new burst
        if (report.changedOnDisk) this.state = onEvent(this.state, this.clock.now());
        log.info(
          {
            durationMs: Math.round(this.clock.now() - t0),
            ...(report.changedOnDisk ? { file: report.changedOnDisk } : {}),
            ...(report.error ? { reason: report.error.message } : {}),
          },
          report.error
            ? 'push superseded: the set changed after it validated'
            : 'early push abandoned: the set changed again',
        );
        this.setHealth('pending');
        return true;
      }
      // the includes may have changed: watch what the set is now
      if (report.watch) await this.rewatch(report.watch);
    } catch (e) {
      // The worker died (killed, out of memory): the peer's agent rolls back what it had open when
      // the connection went; try again from the current files, with backoff.
      log.error({ err: e }, 'push crashed');
      for (const a of askers) a(e instanceof Error ? e : new Error(String(e)));
      this.record(pushId, 'crashed', String(e));
      this.apply(log, classifyPush({ crashed: true }));
      return false;
    }
    const durationMs = Math.round(this.clock.now() - t0);
    for (const a of askers) a(report);
    const verdict = classifyPush({ result: report.result });
    this.logOutcome(log, report, durationMs, verdict);
    if (report.result === 'service-down') this.serviceDown = report.servicesDown ?? [];
    const recorded =
      verdict.kind === 'retry' && verdict.reason === 'busy'
        ? 'locked'
        : verdict.kind === 'retry' && verdict.reason === 'peer-down'
          ? 'peer-down'
          : report.result;
    this.record(pushId, recorded, report.error?.message);
    this.apply(
      verdict.kind === 'retry' ? log.child({ peers: peerNames(report), err: report.error?.message }) : log,
      verdict,
      verdict.kind === 'retry' && (verdict.reason === 'peer-down' || verdict.reason === 'interrupted')
        ? notReachedOf(report)
        : [],
    );
    return false;
  }

  /** The log lines of a push's outcome (what it means for the daemon is classifyPush's). */
  private logOutcome(log: Logger, report: PushSummary, durationMs: number, verdict: Verdict): void {
    const reached = report.peers.filter((p) => !p.unreachable);
    const unreached = report.peers.filter((p) => p.unreachable);
    for (const p of unreached) log.warn({ peer: p.node, err: p.unreachable }, 'peer not reached');
    switch (report.result) {
      case 'pushed':
      case 'partial': {
        const timed = reached.filter((p) => p.peerTimings);
        log.info(
          {
            peers: reached.map((p) => p.node),
            changes: Object.fromEntries(reached.map((p) => [p.node, p.changes])),
            order: report.order,
            versions: Object.fromEntries(reached.filter((p) => p.version).map((p) => [p.node, p.version])),
            ...(unreached.length ? { notReached: unreached.map((p) => p.node) } : {}),
            durationMs,
            timings: report.timings,
            ...(timed.length
              ? { peerTimings: Object.fromEntries(timed.map((p) => [p.node, p.peerTimings])) }
              : {}),
            memory: report.memory,
          },
          report.result === 'pushed' ? 'pushed' : 'pushed to the directors that answered',
        );
        return;
      }
      case 'reloaded':
        log.info(
          { peers: peerNames(report), order: report.order, durationMs, steps: report.steps },
          'files in sync; reloaded what had not loaded them',
        );
        return;
      case 'in-sync':
        if (verdict.kind === 'converged')
          log.info({ peers: peerNames(report), durationMs }, 'in sync, nothing to push');
        return;
      case 'service-down':
        for (const x of report.servicesDown ?? [])
          log.error(
            {
              host: x.host,
              service: x.service,
              ...(x.since ? { since: new Date(x.since).toISOString() } : {}),
              ...(x.lastReload ? { lastReload: new Date(x.lastReload).toISOString() } : {}),
              ...(x.detail ? { detail: x.detail } : {}),
            },
            'service down',
          );
        return;
      case 'invalid-here':
        for (const d of report.errors) {
          log.error({ file: d.file, line: d.line, col: d.col, code: d.code }, d.message);
        }
        log.warn(
          { errors: report.errors.length },
          'not pushed: the set has errors; the peer keeps its last good configuration',
        );
        return;
      case 'conflict':
        log.error(
          {
            conflicts: Object.fromEntries(
              reached.filter((p) => p.conflicts.length).map((p) => [p.node, p.conflicts]),
            ),
          },
          report.error?.message ?? 'conflict',
        );
        return;
      case 'invalid-on-peer':
        for (const d of report.errors) {
          log.error({ file: d.file, line: d.line, code: d.code }, d.message);
        }
        return;
      default:
        if (verdict.kind === 'retry' && verdict.reason === 'peer-cannot-write')
          log.error(
            { peers: peerNames(report), result: report.result, err: report.error },
            'push failed on the peer',
          );
        else if (verdict.kind !== 'retry')
          log.error(
            { peers: peerNames(report), result: report.result, err: report.error, steps: report.steps },
            'push failed',
          );
    }
  }

  /** The health a push's verdict gives, and a retry with backoff when it asks for one. */
  private apply(log: Logger, verdict: Verdict, notReached: readonly string[] = []): void {
    const next = afterPush(this.healthState, verdict, this.once);
    this.healthState = next.state;
    if (verdict.kind === 'retry') {
      const msg = RETRY_MESSAGE[verdict.reason];
      if (next.retryInMs === undefined) log.warn({}, msg);
      else log.warn({ retryInMs: next.retryInMs }, `${msg}, will retry`);
    }
    this.writeStatus();
    if (next.retryInMs === undefined) return;
    this.clearRetry();
    this.retryTimer = this.clock.setTimeout(() => this.retryNow(), next.retryInMs);
    this.answerWatch = watchForAnswer(notReached, next.retryInMs);
    // the first round at once: a director that answers now did not fail for its link
    if (this.answerWatch) this.probeTimer = this.clock.setTimeout(() => void this.probe(), 0);
  }

  /** The retry's moment has come (its delay is over, or a director it waits for answers again). */
  private retryNow(): void {
    this.clearRetry();
    this.state = onRetry(this.state, this.clock.now(), this.timing);
    this.schedule(0);
  }

  private clearRetry(): void {
    if (this.retryTimer) this.clock.clearTimeout(this.retryTimer);
    if (this.probeTimer) this.clock.clearTimeout(this.probeTimer);
    this.retryTimer = this.probeTimer = this.answerWatch = undefined;
  }

  /** One round of probes of the directors a waiting retry could not reach. */
  private async probe(): Promise<void> {
    this.probeTimer = undefined;
    const w = this.answerWatch;
    if (!w || this.stopping) return;
    const timeoutMs = Math.min(this.config.ssh.connectTimeoutMs, PROBE_EVERY_MS - 500);
    const answers = await Promise.all(
      w.nodes.map(async (n) => {
        const node = this.config.nodes[n];
        const ok = node
          ? await this.deps.probe(node.address, node.port, timeoutMs).catch(() => false)
          : false;
        return [n, ok] as const;
      }),
    );
    // (a push, a stop or another failure since the round began has its own watch, or none)
    if (this.answerWatch !== w || !this.retryTimer) return;
    const r = afterProbes(w, new Map(answers));
    if (r.retry) {
      this.log.info({ peers: r.retry.back }, 'peer answers again: retrying now');
      this.retryNow();
      return;
    }
    this.answerWatch = r.watch;
    if (r.watch) this.probeTimer = this.clock.setTimeout(() => void this.probe(), PROBE_EVERY_MS);
  }

  private setHealth(h: WatchHealth): void {
    this.healthState = { ...this.healthState, health: h };
    this.writeStatus();
  }

  private get health(): WatchHealth {
    return this.healthState.health;
  }

  private record(pushId: number, result: string, error?: string): void {
    this.lastReport = {
      time: new Date(this.clock.now()).toISOString(),
      result,
      pushId,
      ...(error ? { error } : {}),
    };
    this.writeStatus();
  }

  private writeStatus(): void {
    this.deps.writeStatus(this.config.stateDir, {
      pid: process.pid,
      health: this.health,
      since: new Date(this.clock.now()).toISOString(),
      lastPush: this.lastReport,
      watching: this.set.dirs,
      ...(this.health === 'service-down' ? { servicesDown: this.serviceDown } : {}),
    });
  }

  /** The daemon's health (for its tests and watch-status.json). */
  get currentHealth(): HealthState {
    return this.healthState;
  }

  /**
   * The nightly audit (audit.schedule), stored with retention and handed to its command. node-cron,
   * in the worker, says when the schedule fires next; the daemon waits for that moment with a plain
   * timer (re-armed at least every 10 minutes, so a clock step or a suspend does not push the audit
   * far off), runs the audit and asks again.
   */
  private async scheduleAudit(): Promise<void> {
    if (this.auditTimer) this.clock.clearTimeout(this.auditTimer);
    this.auditTimer = undefined;
    const generation = ++this.auditGeneration;
    const expr = this.config.audit.schedule;
    let next: NextAudit;
    try {
      next = await this.worker.request<NextAudit>('next-audit');
    } catch (e) {
      next = { error: String(e) };
    }
    if (generation !== this.auditGeneration || this.stopping) return;
    if (next.at === undefined) {
      this.log.error(
        { schedule: expr, err: next.error },
        'audit.schedule cannot be used: no scheduled audit',
      );
      return;
    }
    this.log.info({ schedule: expr, next: new Date(next.at).toISOString() }, 'audit scheduled');
    this.armAudit(next.at, generation);
  }

  private armAudit(at: number, generation: number): void {
    const wait = at - this.clock.now();
    if (wait <= 0) {
      void this.audit().finally(() => {
        if (generation === this.auditGeneration && !this.stopping) void this.scheduleAudit();
      });
      return;
    }
    this.auditTimer = this.clock.setTimeout(() => this.armAudit(at, generation), Math.min(wait, 10 * 60_000));
  }

  private async audit(): Promise<void> {
    if (this.auditing || this.stopping) return;
    this.auditing = true;
    const log = this.log.child({ component: 'audit' });
    try {
      const r = await this.worker.request<AuditSummary>('audit');
      const level = r.status === 'ok' ? 'info' : r.status === 'warning' ? 'warn' : 'error';
      log[level]({ status: r.status, findings: r.problems, report: r.report, codes: r.codes }, 'audit done');
    } catch (e) {
      log.error({ err: e }, 'audit failed');
    } finally {
      this.auditing = false;
      this.armIdleRelease();
    }
  }

  private async reloadConfig(): Promise<void> {
    try {
      const config = await this.deps.loadConfig(this.configPath);
      if (this.nodeFlag === undefined && selfNode(config) !== this.self) {
        throw new LvssyncError('E_CONFIG', `the new configuration no longer names this host ${this.self}`);
      }
      this.config = config;
      // the worker read the old configuration: the next job starts a new one
      this.worker.stop();
      this.kept?.update(config, otherTargets(config, this.self));
      await this.rewatch();
      void this.scheduleAudit();
      this.log.info({ config: this.configPath }, 'configuration reloaded');
      this.state = onEvent(this.state, this.clock.now());
      this.schedule();
    } catch (e) {
      this.log.error({ err: e }, 'new configuration rejected; keeping the old one');
    }
  }

  async stop(signal: string): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.log.info({ signal, pushing: Boolean(this.pushing) }, 'stopping');
    this.checkGate();
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.clearRetry();
    if (this.idleTimer) this.clock.clearTimeout(this.idleTimer);
    if (this.auditTimer) this.clock.clearTimeout(this.auditTimer);
    this.auditGeneration++;
    await this.watcher?.close();
    // Finish the current push: the peer's agent rolls back by itself if we are killed meanwhile.
    if (this.pushing) await this.pushing;
    this.closeServer?.();
    for (const a of this.askers.splice(0))
      a(new LvssyncError('E_LOCKED', 'the daemon stopped before pushing'));
    this.worker.stop();
    this.kept?.stop();
    this.log.info({}, 'stopped');
    this.resolveStopped?.(EXIT.OK);
  }
}

/** Why the daemon cannot write in `dir` (its nearest existing ancestor when it is not there yet). */
function notWritable(dir: string): string | undefined {
  for (let d = dir; ; d = path.dirname(d)) {
    try {
      accessSync(d, constants.W_OK);
      return undefined;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' || d === path.dirname(d))
        return code === 'EROFS' ? 'read-only file system' : code;
    }
  }
}

/** The daemon's real surroundings: the clock, chokidar, the worker process, the files, the signals. */
const processDeps: DaemonDeps = {
  clock: realClock,
  watchFiles: async (dirs, onEvent, onError) => {
    const w = watch(dirs, { ignoreInitial: true, atomic: true, depth: 8, followSymlinks: false });
    w.on('all', (event, p) => onEvent(event, p));
    w.on('error', onError);
    await new Promise<void>((r) => w.once('ready', () => r()));
    return w;
  },
  worker: (args, handlers) => new WorkerClient(args, handlers),
  loadConfig: async (p) => (await loadConfig(p)).config,
  writeStatus: (stateDir, status) => {
    try {
      mkdirSync(stateDir, { recursive: true, mode: 0o700 });
      writeFileSync(path.join(stateDir, 'watch-status.json'), `${JSON.stringify(status, null, 1)}\n`);
    } catch {}
  },
  onSignals: (h) => {
    process.on('SIGHUP', h.hup);
    process.on('SIGTERM', h.term);
    process.on('SIGINT', h.int);
  },
  notifyReady: () => sdNotify([`--pid=${process.pid}`, '--ready', '--status=watching']),
  serve: (stateDir, handle) => serveDaemonSocket(path.join(stateDir, DAEMON_SOCKET), handle),
  probe: sshAnswers,
  keepConnections: (config, self, log) => new KeptConnections(config, otherTargets(config, self), log),
};
