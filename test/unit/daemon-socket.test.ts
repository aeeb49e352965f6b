// The daemon's local socket for `lvssync push` (core/daemon-socket.ts, shell/daemon-socket.ts): a
// real Unix socket in a temporary directory.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseDaemonReply, parseDaemonRequest } from '../../src/core/daemon-socket.js';
import { askDaemon, serveDaemonSocket } from '../../src/shell/daemon-socket.js';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(path.join(tmpdir(), 'lvssync-sock-'));
  dirs.push(d);
  return path.join(d, 'watch.sock');
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const summary = {
  result: 'pushed',
  peers: [{ node: 'lvs2', changes: ['update /x'], conflicts: [] }],
  timings: {},
  errors: [],
  steps: [],
  memory: {},
};

describe('the daemon socket', () => {
  it('parses requests and replies strictly', () => {
    expect(parseDaemonRequest('{"op":"push"}')).toEqual({ op: 'push' });
    expect(parseDaemonRequest('{"op":"rm"}')).toHaveProperty('error');
    expect(parseDaemonRequest('push')).toEqual({ error: 'not JSON' });
    expect(parseDaemonReply(JSON.stringify({ ok: true, summary }))).toEqual({ ok: true, summary });
    expect(parseDaemonReply('{"ok":true,"summary":{"result":1}}')).toHaveProperty('error');
    expect(parseDaemonReply('{"ok":false,"error":{"code":"E_LOCKED","message":"m"}}')).toEqual({
      ok: false,
      error: { code: 'E_LOCKED', message: 'm' },
    });
  });

  it('answers a push request, root only; no daemon is no answer; a stale socket is replaced', async () => {
    const file = tmp();
    expect(await askDaemon(file)).toBeUndefined();
    // a socket left by a killed daemon: nothing listens on it
    const stale = net.createServer();
    await new Promise<void>((r) => stale.listen(file, () => r()));
    await new Promise<void>((r) => stale.close(() => r()));
    let asked = 0;
    const close = await serveDaemonSocket(file, async () => {
      asked++;
      return { ok: true, summary: summary as never };
    });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(await askDaemon(file)).toEqual({ ok: true, summary });
    expect(asked).toBe(1);
    // a second daemon does not take over a socket another one answers on
    await expect(
      serveDaemonSocket(file, async () => ({ ok: true, summary: summary as never })),
    ).rejects.toThrow(/another daemon answers/);
    close();
    expect(await askDaemon(file)).toBeUndefined();
  });

  it('a handler that fails is an error reply, not a hang', async () => {
    const file = tmp();
    const close = await serveDaemonSocket(file, async () => {
      throw new Error('worker gone');
    });
    expect(await askDaemon(file)).toEqual({
      ok: false,
      error: { code: 'E_INTERNAL', message: 'worker gone' },
    });
    close();
  });
});
