// The daemon and its worker check every message they receive (core/worker-ipc.ts).
import { describe, expect, it } from 'vitest';
import { parseWorkerMessage, parseWorkerRequest } from '../../src/core/worker-ipc.js';

describe('worker IPC', () => {
  it('takes well-formed requests and gate replies, and names what is wrong with the rest', () => {
    expect(parseWorkerRequest({ id: 3, job: 'push', gated: true })).toEqual({
      id: 3,
      job: 'push',
      gated: true,
    });
    expect(parseWorkerRequest({ id: 4, job: 'watchset' })).toEqual({ id: 4, job: 'watchset' });
    expect(parseWorkerRequest({ gate: 2, go: false })).toEqual({ gate: 2, go: false });
    expect(parseWorkerRequest({ id: 5, job: 'rm -rf' })).toEqual({ error: 'job: unknown job "rm -rf"' });
    expect(parseWorkerRequest({ id: -1, job: 'push' })).toEqual({ error: 'id: not a request number' });
    expect(parseWorkerRequest({ gate: 1, go: 'yes' })).toHaveProperty('error');
    expect(parseWorkerRequest(null)).toEqual({ error: 'not an object' });
  });

  it('takes answers and events, keeping only the fields they have', () => {
    expect(parseWorkerMessage({ id: 1, ok: true, result: { files: [], patterns: [] } })).toEqual({
      id: 1,
      ok: true,
      result: { files: [], patterns: [] },
    });
    expect(
      parseWorkerMessage({ id: 1, ok: false, error: { code: 'E_SSH_CONNECT', message: 'down', x: 1 } }),
    ).toEqual({
      id: 1,
      ok: false,
      error: { code: 'E_SSH_CONNECT', message: 'down' },
    });
    expect(parseWorkerMessage({ event: 'opened', peer: 'lvs2', agentPid: 7, extra: true })).toEqual({
      event: 'opened',
      peer: 'lvs2',
      agentPid: 7,
    });
    expect(parseWorkerMessage({ event: 'gate', id: 9 })).toEqual({ event: 'gate', id: 9 });
    expect(parseWorkerMessage({ event: 'shutdown' })).toEqual({ error: 'unknown event "shutdown"' });
    expect(parseWorkerMessage({ id: 1, ok: 'maybe' })).toEqual({ error: 'ok: not a boolean' });
    expect(parseWorkerMessage({ id: 1, ok: false, error: 'x' })).toHaveProperty(
      'error',
      'error: needs code and message',
    );
  });
});
