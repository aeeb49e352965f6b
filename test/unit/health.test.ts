// The watch daemon's health and backoff (core/health.ts): what each push outcome means, and the retry
// delays a run of failures gives.
import { describe, expect, it } from 'vitest';
import {
  afterPush,
  classifyPush,
  type HealthState,
  RETRY_MAX_MS,
  RETRY_MIN_MS,
  STARTING,
} from '../../src/core/health.js';

describe('classifyPush', () => {
  it.each([
    [{ result: 'pushed' }, { kind: 'converged' }],
    [{ result: 'reloaded' }, { kind: 'converged' }],
    [{ result: 'in-sync' }, { kind: 'converged' }],
    [
      { result: 'in-sync', errorCode: 'E_SSH_CONNECT' },
      { kind: 'retry', health: 'peer-down', reason: 'peer-down' },
    ],
    [
      { result: 'in-sync', errorCode: 'E_LOCKED' },
      { kind: 'retry', health: 'pending', reason: 'busy' },
    ],
    [{ result: 'superseded' }, { kind: 'superseded' }],
    [{ result: 'service-down' }, { kind: 'retry', health: 'service-down', reason: 'service-down' }],
    [{ result: 'invalid-here' }, { kind: 'needs-edit', health: 'invalid' }],
    [
      { result: 'conflict', errorCode: 'E_CONFLICT' },
      { kind: 'needs-edit', health: 'conflict' },
    ],
    [{ result: 'invalid-on-peer' }, { kind: 'needs-edit', health: 'failed' }],
    [
      { result: 'unreachable', errorCode: 'E_SSH_CONNECT' },
      { kind: 'retry', health: 'peer-down', reason: 'peer-down' },
    ],
    [
      { result: 'interrupted', errorCode: 'E_TRANSFER' },
      { kind: 'retry', health: 'peer-down', reason: 'peer-down' },
    ],
    [
      { result: 'failed', errorCode: 'E_WRITE' },
      { kind: 'retry', health: 'failed', reason: 'peer-cannot-write' },
    ],
    [
      { result: 'rolled-back', errorCode: 'E_RELOAD' },
      { kind: 'needs-edit', health: 'failed' },
    ],
    [{ crashed: true as const }, { kind: 'retry', health: 'failed', reason: 'crashed' }],
  ])('%j -> %j', (outcome, verdict) => {
    expect(classifyPush(outcome)).toEqual(verdict);
  });
});

describe('afterPush', () => {
  it('backs off by doubling up to the maximum, and a converged push resets it', () => {
    let s: HealthState = STARTING;
    const delays: number[] = [];
    for (let i = 0; i < 10; i++) {
      const next = afterPush(s, classifyPush({ result: 'unreachable', errorCode: 'E_SSH_CONNECT' }));
      s = next.state;
      delays.push(next.retryInMs!);
    }
    expect(delays.slice(0, 4)).toEqual([RETRY_MIN_MS, 2 * RETRY_MIN_MS, 4 * RETRY_MIN_MS, 8 * RETRY_MIN_MS]);
    expect(Math.max(...delays)).toBe(RETRY_MAX_MS);
    expect(s.health).toBe('peer-down');
    const ok = afterPush(s, classifyPush({ result: 'pushed' }));
    expect(ok).toEqual({ state: { health: 'in-sync', retryMs: 0 } });
    expect(afterPush(ok.state, classifyPush({ result: 'failed', errorCode: 'E_WRITE' })).retryInMs).toBe(
      RETRY_MIN_MS,
    );
  });

  it('an outcome only an edit can change arms no retry and keeps the backoff where it was', () => {
    const s: HealthState = { health: 'peer-down', retryMs: 8000 };
    for (const result of ['invalid-here', 'conflict', 'invalid-on-peer']) {
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
