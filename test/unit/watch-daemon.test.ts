// The watch daemon with fakes for its clock, file watcher and worker: coalescing, backoff, a crashed
// worker, stop during a push and SIGHUP, without root, a lab or real time.
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type {
  Clock,
  DaemonDeps,
  FileWatcher,
  Timer,
  WorkerHandlers,
  WorkerPort,
} from '../../src/commands/watch.js';
import { WatchDaemon } from '../../src/commands/watch.js';
import { type Config, validateConfig } from '../../src/core/config.js';
import type { DaemonReply, DaemonRequest } from '../../src/core/daemon-socket.js';
import { PROBE_EVERY_MS, RETRY_MIN_MS } from '../../src/core/health.js';
import type { PushSummary, WatchInput, WorkerJob } from '../../src/core/worker-ipc.js';

const CONF_D = '/etc/keepalived/conf.d';

/** Lets pending promise chains run to their next wait (a few real macrotasks). */
async function flush(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((r) => setImmediate(r));
}

class ManualClock implements Clock {
  t = 1_800_000_000_000;
  private timers: { at: number; id: number; fn: () => void }[] = [];
  private nextId = 1;
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): Timer {
    const id = this.nextId++;
    this.timers.push({ at: this.t + Math.max(0, ms), id, fn });
    return id;
  }
  clearTimeout(t: Timer): void {
    this.timers = this.timers.filter((x) => x.id !== t);
  }
  /** Moves time on by `ms`, running each timer when its moment comes (and what it starts). */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      await flush();
      const due = this.timers.filter((x) => x.at <= end).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.timers = this.timers.filter((x) => x !== due);
      this.t = due.at;
      due.fn();
    }
    this.t = end;
    await flush();
  }
}

type Answer = Partial<PushSummary> & { result: PushSummary['result'] };

class FakeWorker implements WorkerPort {
  running = false;
  readonly jobs: WorkerJob[] = [];
  stops = 0;
  /** The masters handed to each worker started. */
  readonly masters: Record<string, number>[] = [];
  /** The answers to the next pushes, in order (default: pushed). */
  readonly answers: (Answer | Error | Promise<Answer>)[] = [];
  constructor(readonly handlers: WorkerHandlers) {}
  async request<T>(job: WorkerJob): Promise<T> {
    if (!this.running) {
      // as the real one: the masters asked for right before the worker starts
      this.masters.push(this.handlers.masters?.(job) ?? {});
      this.running = true;
      this.handlers.onLife('started', 4242);
    }
    this.jobs.push(job);
    if (job === 'watchset')
      return { files: [`${CONF_D}/a.conf`], patterns: [`${CONF_D}/*.conf`] } satisfies WatchInput as T;
    if (job === 'next-audit') return { error: 'not in these tests' } as T;
    if (job === 'audit') throw new Error('no audit here');
    const a = this.answers.shift() ?? { result: 'pushed' };
    const answer = a instanceof Error ? Promise.reject(a) : Promise.resolve(a);
    const r = await answer;
    return {
      peers: [{ node: 'lvs2', changes: [], conflicts: [] }],
      timings: {},
      errors: [],
      steps: [],
      memory: {},
      ...r,
    } as T;
  }
  reply(): void {}
  stop(): void {
    this.running = false;
    this.stops++;
  }
  pushes(): number {
    return this.jobs.filter((j) => j === 'push').length;
  }
}

function setup(opts: { early?: boolean } = {}) {
  const clock = new ManualClock();
  let emit: (event: string, p: string) => void = () => {};
  let worker: FakeWorker | undefined;
  const signals: { hup?: () => void; term?: () => void } = {};
  const statuses: { health: string }[] = [];
  const logLines: { msg: string; [k: string]: unknown }[] = [];
  const { config } = validateConfig({
    nodes: { lvs1: { address: '192.0.2.1' }, lvs2: { address: '192.0.2.2' } },
  });
  let configs = 0;
  let ask: ((req: DaemonRequest) => Promise<DaemonReply>) | undefined;
  /** Whether lvs2's SSH server answers a probe, and the probes made. */
  const peer = { answers: false, probes: [] as string[] };
  /** What the daemon asked of its kept connections, in order. */
  const kept: string[] = [];
  const deps: DaemonDeps = {
    keepConnections: (_config, self) => ({
      ensure: () => kept.push('ensure'),
      burst: () => {
        kept.push('burst');
        return { lvs2: 5151 };
      },
      release: () => kept.push('release'),
      update: (_c, targets) => kept.push(`update ${targets.map((t) => t.name).join(',')} from ${self}`),
      stop: () => kept.push('stop'),
    }),
    clock,
    watchFiles: async (_dirs, onEvent) => {
      emit = onEvent;
      return { add() {}, unwatch() {}, close: async () => {} } satisfies FileWatcher;
    },
    worker: (_args, handlers) => {
      worker = new FakeWorker(handlers);
      return worker;
    },
    loadConfig: async () => {
      configs++;
      return config as Config;
    },
    writeStatus: (_dir, status) => statuses.push(status as { health: string }),
    onSignals: (h) => Object.assign(signals, h),
    notifyReady: async () => ({}),
    serve: async (_dir, handle) => {
      ask = handle;
      return () => {
        ask = undefined;
      };
    },
    probe: async (host, port) => {
      peer.probes.push(`${host}:${port}`);
      return peer.answers;
    },
  };
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n').filter(Boolean)) logLines.push(JSON.parse(l));
      cb();
    },
  });
  const daemon = new WatchDaemon(
    config,
    undefined,
    'lvs1',
    { quietMs: 300, maxMs: 3000, idleReleaseMs: 60_000, early: opts.early ?? false },
    pino({ level: 'debug' }, sink),
    'lvs1',
    deps,
  );
  const running = daemon.run(false);
  return {
    clock,
    daemon,
    running,
    signals,
    statuses,
    logLines,
    configs: () => configs,
    ask: () => ask!({ op: 'push' }),
    served: () => ask !== undefined,
    worker: () => worker!,
    edit: (name = 'a.conf') => emit('change', `${CONF_D}/${name}`),
    peer,
    kept,
  };
}

describe('the watch daemon, with a manual clock and fake watcher and worker', () => {
  it('converges at start, then pushes a burst of saves once, after the quiet window', async () => {
    const d = setup();
    await d.clock.advance(299);
    expect(d.worker().pushes()).toBe(0);
    await d.clock.advance(1);
    expect(d.worker().pushes()).toBe(1); // the converge at start, once its quiet window is over
    for (let i = 0; i < 5; i++) {
      d.edit();
      await d.clock.advance(100);
    }
    expect(d.worker().pushes()).toBe(1);
    await d.clock.advance(300);
    expect(d.worker().pushes()).toBe(2);
    expect(d.daemon.currentHealth.health).toBe('in-sync');
    // editors' temporaries and files outside the set are not events
    d.edit('.a.conf.swp');
    d.edit('notes.txt');
    await d.clock.advance(5000);
    expect(d.worker().pushes()).toBe(2);
  });

  it('retries an unreachable peer with doubling delays, and stops retrying once it converges', async () => {
    const d = setup();
    const down: Answer = { result: 'unreachable', error: { code: 'E_SSH_CONNECT', message: 'no route' } };
    await d.clock.advance(400); // the converge at start
    d.worker().answers.push(down, down);
    d.edit();
    await d.clock.advance(300);
    expect(d.worker().pushes()).toBe(2);
    expect(d.daemon.currentHealth).toEqual({ health: 'peer-down', retryMs: RETRY_MIN_MS });
    await d.clock.advance(RETRY_MIN_MS);
    expect(d.worker().pushes()).toBe(3);
    expect(d.daemon.currentHealth.retryMs).toBe(2 * RETRY_MIN_MS);
    await d.clock.advance(2 * RETRY_MIN_MS - 1);
    expect(d.worker().pushes()).toBe(3);
    await d.clock.advance(1);
    expect(d.worker().pushes()).toBe(4); // this one is answered 'pushed'
    expect(d.daemon.currentHealth).toEqual({ health: 'in-sync', retryMs: 0 });
    await d.clock.advance(120_000);
    expect(d.worker().pushes()).toBe(4);
    expect(
      d.logLines.filter((l) => l.msg === 'peer unreachable, will retry').map((l) => l.retryInMs),
    ).toEqual([1000, 2000]);
  });

  /** Five failed pushes to an unreachable lvs2: the next retry waits 8 s (1, 2, 4 and 8 s of backoff). */
  async function downFor8s(d: ReturnType<typeof setup>): Promise<void> {
    const down: Answer = {
      result: 'unreachable',
      peers: [{ node: 'lvs2', unreachable: 'no route to host', changes: [], conflicts: [] }],
      error: { code: 'E_SSH_CONNECT', message: 'no route' },
    };
    await d.clock.advance(400); // the converge at start
    d.worker().answers.push(down, down, down, down);
    d.edit();
    await d.clock.advance(300 + 1000 + 2000 + 4000);
    expect(d.worker().pushes()).toBe(5);
    expect(d.daemon.currentHealth).toEqual({ health: 'peer-down', retryMs: 8 * RETRY_MIN_MS });
  }

  it('a director that answers again while a long backoff runs is pushed to at once', async () => {
    const d = setup();
    await downFor8s(d);
    // silent at the failure, and 2 s later
    const before = d.peer.probes.length;
    await d.clock.advance(PROBE_EVERY_MS);
    expect(d.peer.probes.slice(before)).toEqual(['192.0.2.2:22']);
    d.peer.answers = true;
    await d.clock.advance(PROBE_EVERY_MS);
    expect(d.worker().pushes()).toBe(6); // 4 s before its backoff would have ended
    expect(d.daemon.currentHealth).toEqual({ health: 'in-sync', retryMs: 0 });
    expect(
      d.logLines.filter((l) => l.msg === 'peer answers again: retrying now').map((l) => l.peers),
    ).toEqual([['lvs2']]);
    // in sync: nothing is probed any more
    const after = d.peer.probes.length;
    await d.clock.advance(60_000);
    expect(d.peer.probes.length).toBe(after);
    expect(d.worker().pushes()).toBe(6);
  });

  it('a director whose SSH server answered all along is not probed again: its backoff is waited out', async () => {
    const d = setup();
    d.peer.answers = true;
    await downFor8s(d);
    // each failed push's first probe found it answering
    expect(d.peer.probes.length).toBe(2); // after the pushes that waited 4 s and 8 s
    await d.clock.advance(8 * RETRY_MIN_MS - 1);
    expect(d.peer.probes.length).toBe(2);
    expect(d.worker().pushes()).toBe(5);
    await d.clock.advance(1);
    expect(d.worker().pushes()).toBe(6);
  });

  it("a retry never pushes a save made just before it sooner than the save's quiet window", async () => {
    const d = setup();
    await d.clock.advance(400); // the converge at start
    d.worker().answers.push({ result: 'busy', error: { code: 'E_LOCKED', message: 'locked' } });
    d.edit();
    await d.clock.advance(300);
    expect(d.worker().pushes()).toBe(2); // busy: retried in 1 s
    await d.clock.advance(RETRY_MIN_MS - 100);
    d.edit(); // 100 ms before the retry
    await d.clock.advance(100);
    expect(d.worker().pushes()).toBe(2);
    await d.clock.advance(199);
    expect(d.worker().pushes()).toBe(2);
    await d.clock.advance(1); // its quiet window (300 ms) is over
    expect(d.worker().pushes()).toBe(3);
    expect(d.daemon.currentHealth.health).toBe('in-sync');
  });

  it('an invalid set waits for the next edit; a crashed worker is retried', async () => {
    const d = setup();
    await d.clock.advance(400); // the converge at start
    d.worker().answers.push({ result: 'invalid-here' }, new Error('worker died'));
    d.edit();
    await d.clock.advance(300);
    expect(d.daemon.currentHealth.health).toBe('invalid');
    await d.clock.advance(60_000);
    expect(d.worker().pushes()).toBe(2);
    d.edit();
    await d.clock.advance(300);
    expect(d.worker().pushes()).toBe(3);
    expect(d.daemon.currentHealth.health).toBe('failed');
    await d.clock.advance(RETRY_MIN_MS);
    expect(d.worker().pushes()).toBe(4);
    expect(d.daemon.currentHealth.health).toBe('in-sync');
  });

  it('SIGTERM during a push lets it finish, then stops the worker and exits 0', async () => {
    const d = setup();
    await d.clock.advance(400); // the converge at start
    let finish: (a: Answer) => void = () => {};
    d.worker().answers.push(new Promise<Answer>((r) => (finish = r)));
    d.edit();
    await d.clock.advance(300);
    expect(d.daemon.currentHealth.health).toBe('pushing');
    d.signals.term!();
    await d.clock.advance(10);
    let exited: number | undefined;
    void d.running.then((c) => (exited = c));
    await flush();
    expect(exited).toBeUndefined();
    expect(d.worker().stops).toBe(0);
    finish({ result: 'pushed' });
    await d.clock.advance(400); // the converge at start
    expect(exited).toBe(0);
    expect(d.worker().stops).toBe(1);
    d.edit();
    await d.clock.advance(10_000);
    expect(d.worker().pushes()).toBe(2);
  });

  it('lvssync push asks the daemon: a push at once, whatever the quiet window or the backoff', async () => {
    const d = setup();
    await d.clock.advance(400);
    d.worker().answers.push(
      { result: 'unreachable', error: { code: 'E_SSH_CONNECT', message: 'no route' } },
      {
        result: 'pushed',
        peers: [{ node: 'lvs2', changes: ['update /etc/keepalived/conf.d/a.conf'], conflicts: [] }],
      },
    );
    d.edit();
    await d.clock.advance(300);
    expect(d.daemon.currentHealth).toEqual({ health: 'peer-down', retryMs: RETRY_MIN_MS });
    // asked during the backoff: no waiting for the retry
    const reply = d.ask();
    await d.clock.advance(0);
    expect(d.worker().pushes()).toBe(3);
    expect(await reply).toMatchObject({
      ok: true,
      summary: {
        result: 'pushed',
        peers: [{ node: 'lvs2', changes: ['update /etc/keepalived/conf.d/a.conf'] }],
      },
    });
    expect(d.daemon.currentHealth.health).toBe('in-sync');
    // asked while idle: pushes (and says in sync) at once
    const again = d.ask();
    await d.clock.advance(0);
    expect(d.worker().pushes()).toBe(4);
    expect(await again).toMatchObject({ ok: true, summary: { result: 'pushed' } });
    // asked during a push: answered by the push after it (which reads the set again)
    let finish: (a: Answer) => void = () => {};
    d.worker().answers.push(new Promise<Answer>((r) => (finish = r)), { result: 'in-sync' });
    d.edit();
    await d.clock.advance(300);
    expect(d.daemon.currentHealth.health).toBe('pushing');
    const during = d.ask();
    finish({ result: 'pushed' });
    await d.clock.advance(0);
    expect(d.worker().pushes()).toBe(6);
    expect(await during).toMatchObject({ ok: true, summary: { result: 'in-sync' } });
    // asked just as the daemon stops: refused, not left waiting; then the socket is closed
    const late = d.ask();
    d.signals.term!();
    await d.clock.advance(0);
    expect(await late).toMatchObject({ ok: false });
    expect(d.served()).toBe(false);
  });

  it('SIGHUP reads lvssync.yaml again, restarts the worker and converges', async () => {
    const d = setup();
    await d.clock.advance(400); // the converge at start
    const before = d.worker().pushes();
    d.signals.hup!();
    await d.clock.advance(3000);
    expect(d.configs()).toBe(1);
    expect(d.logLines.some((l) => l.msg === 'configuration reloaded')).toBe(true);
    expect(d.worker().stops).toBe(1);
    expect(d.worker().pushes()).toBe(before + 1);
  });

  it('keeps its connections from the start, asks for them again after each push and at the idle release, hands them a new lvssync.yaml and ends them when it stops', async () => {
    const d = setup();
    await d.clock.advance(400); // the converge at start
    // the worker for the converge at start is handed the masters of its burst as it starts
    expect(d.kept.slice(0, 1)).toEqual(['burst']);
    expect(d.worker().masters).toEqual([{ lvs2: 5151 }]);
    expect(d.kept).toContain('ensure');
    const afterStart = d.kept.length;
    d.edit();
    await d.clock.advance(400);
    expect(d.kept.length).toBe(afterStart + 1);
    await d.clock.advance(61_000); // the idle release
    expect(d.logLines.some((l) => l.msg.startsWith('idle: peer session closed'))).toBe(true);
    // the burst's masters end with the worker; the kept ones are asked for again
    expect(d.kept.slice(-2)).toEqual(['release', 'ensure']);
    // the next burst's worker gets them anew
    d.edit();
    await d.clock.advance(400);
    expect(d.worker().masters).toHaveLength(2);
    expect(d.kept.filter((k) => k === 'burst')).toHaveLength(2);
    d.signals.hup!();
    await d.clock.advance(1000);
    expect(d.kept).toContain('update lvs2 from lvs1');
    d.signals.term!();
    await d.clock.advance(1000);
    expect(d.kept.at(-1)).toBe('stop');
    await d.running;
  });
});
