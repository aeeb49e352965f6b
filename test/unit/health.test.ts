// The watch daemon's health and backoff (core/health.ts): what each push result means, and the retry
// delays a run of failures gives; and the one place a push's error code becomes its result.
import { describe, expect, it } from 'vitest';
import {
  afterProbes,
  afterPush,
  classifyPush,
  type HealthState,
  PROBE_MIN_RETRY_MS,
  RETRY_MAX_MS,
  RETRY_MIN_MS,
  STARTING,
  watchForAnswer,
} from '../../src/core/health.js';
import { resultOfError } from '../../src/core/worker-ipc.js';

describe('classifyPush', () => {
  it.each([
    ['pushed', { kind: 'converged' }],
    ['reloaded', { kind: 'converged' }],
    ['in-sync', { kind: 'converged' }],
    ['superseded', { kind: 'superseded' }],
    ['service-down', { kind: 'retry', health: 'service-down', reason: 'service-down' }],
    ['invalid-here', { kind: 'needs-edit', health: 'invalid' }],
    ['conflict', { kind: 'needs-edit', health: 'conflict' }],
    ['invalid-on-peer', { kind: 'needs-edit', health: 'failed' }],
    ['unreachable', { kind: 'retry', health: 'peer-down', reason: 'peer-down' }],
    ['link-lost', { kind: 'retry', health: 'peer-down', reason: 'peer-down' }],
    ['busy', { kind: 'retry', health: 'pending', reason: 'busy' }],
    ['refused', { kind: 'needs-edit', health: 'failed' }],
    ['interrupted', { kind: 'retry', health: 'peer-down', reason: 'interrupted' }],
    ['peer-cannot-write', { kind: 'retry', health: 'failed', reason: 'peer-cannot-write' }],
    ['rolled-back', { kind: 'needs-edit', health: 'failed' }],
    ['primary-failed', { kind: 'needs-edit', health: 'failed' }],
    ['failed', { kind: 'needs-edit', health: 'failed' }],
  ] as const)('%s -> %j', (result, verdict) => {
    expect(classifyPush({ result })).toEqual(verdict);
  });

  it('a crashed worker is retried', () => {
    expect(classifyPush({ crashed: true })).toEqual({ kind: 'retry', health: 'failed', reason: 'crashed' });
  });
});

describe('resultOfError: the one place an error code becomes a result', () => {
  it.each([
    ['E_SSH_CONNECT', false, 'unreachable'],
    ['E_SSH_AUTH', false, 'refused'],
    ['E_HOST_KEY', false, 'refused'],
    ['E_LOCKED', false, 'busy'],
    ['E_TRANSFER', false, 'link-lost'],
    ['E_WRITE', false, 'peer-cannot-write'],
    ['E_TOOL_MISSING', false, 'failed'],
    ['E_INTERNAL', false, 'failed'],
    // after the peer committed, whatever the code, its agent rolls back and the next push redoes it
    ['E_TRANSFER', true, 'interrupted'],
    ['E_WRITE', true, 'interrupted'],
    ['E_INTERNAL', true, 'interrupted'],
  ] as const)('%s (committed: %s) -> %s', (code, committed, result) => {
    expect(resultOfError(code, committed)).toBe(result);
  });
});

describe('afterPush', () => {
  it('backs off by doubling up to the maximum, and a converged push resets it', () => {
    let s: HealthState = STARTING;
    const delays: number[] = [];
    for (let i = 0; i < 10; i++) {
      const next = afterPush(s, classifyPush({ result: 'unreachable' }));
      s = next.state;
      delays.push(next.retryInMs!);
    }
    expect(delays.slice(0, 4)).toEqual([RETRY_MIN_MS, 2 * RETRY_MIN_MS, 4 * RETRY_MIN_MS, 8 * RETRY_MIN_MS]);
    expect(Math.max(...delays)).toBe(RETRY_MAX_MS);
    expect(s.health).toBe('peer-down');
    const ok = afterPush(s, classifyPush({ result: 'pushed' }));
    expect(ok).toEqual({ state: { health: 'in-sync', retryMs: 0 } });
    expect(afterPush(ok.state, classifyPush({ result: 'peer-cannot-write' })).retryInMs).toBe(RETRY_MIN_MS);
  });

  it('an outcome only an edit can change arms no retry and keeps the backoff where it was', () => {
    const s: HealthState = { health: 'peer-down', retryMs: 8000 };
    for (const result of ['invalid-here', 'conflict', 'invalid-on-peer', 'refused'] as const) {
      const next = afterPush(s, classifyPush({ result }));
      expect(next.retryInMs).toBeUndefined();
      expect(next.state.retryMs).toBe(8000);
    }
    expect(afterPush(s, classifyPush({ result: 'superseded' })).state).toEqual({
      health: 'pending',
      retryMs: 8000,
    });
  });

  it('watch --once reports instead of retrying', () => {
    const next = afterPush(STARTING, classifyPush({ result: 'service-down' }), true);
    expect(next).toEqual({ state: { health: 'service-down', retryMs: 0 } });
  });
});

describe('watching for an unreachable director to answer again', () => {
  const answers = (o: Record<string, boolean>) => new Map(Object.entries(o));

  it('is kept only for a backoff long enough to be worth cutting short', () => {
    expect(watchForAnswer(['lvs2'], PROBE_MIN_RETRY_MS - 1)).toBeUndefined();
    expect(watchForAnswer([], 60_000)).toBeUndefined();
    expect(watchForAnswer(['lvs2'], PROBE_MIN_RETRY_MS)).toEqual({ nodes: ['lvs2'], silent: [] });
  });

  it('retries once every director answers after one of them was silent', () => {
    let w = watchForAnswer(['lvs2', 'lvs3'], 16_000)!;
    let r = afterProbes(w, answers({ lvs2: false, lvs3: true }));
    expect(r.retry).toBeUndefined();
    w = r.watch!;
    expect(w.silent).toEqual(['lvs2']);
    r = afterProbes(w, answers({ lvs2: true, lvs3: false }));
    expect(r.retry).toBeUndefined();
    w = r.watch!;
    expect(w.silent).toEqual(['lvs2', 'lvs3']);
    r = afterProbes(w, answers({ lvs2: true, lvs3: true }));
    expect(r).toEqual({ retry: { back: ['lvs2', 'lvs3'] } });
  });

  it('ends without a retry when every director answered from the first round (its failure was not the link)', () => {
    const w = watchForAnswer(['lvs2'], 16_000)!;
    expect(afterProbes(w, answers({ lvs2: true }))).toEqual({});
  });

  it('a director with no answer at all (not in the map) counts as silent', () => {
    const w = watchForAnswer(['lvs2'], 16_000)!;
    expect(afterProbes(w, answers({})).watch?.silent).toEqual(['lvs2']);
  });
});
