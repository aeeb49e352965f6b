// The daemon's local socket (core/daemon-socket.ts): the server in the daemon, the client in
// `lvssync push`. A Unix socket in the state directory, mode 0600: root on this director only.

import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import {
  type DaemonReply,
  type DaemonRequest,
  parseDaemonReply,
  parseDaemonRequest,
} from '../core/daemon-socket.js';

const MAX_LINE = 64 * 1024;

/** Whether something answers on the socket (another daemon): then this one must not take it over. */
function answers(file: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(file);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

export async function serveDaemonSocket(
  file: string,
  handle: (req: DaemonRequest) => Promise<DaemonReply>,
): Promise<() => void> {
  try {
    if (lstatSync(file).isSocket()) {
      if (await answers(file)) throw new Error(`another daemon answers on ${file}`);
      unlinkSync(file); // left by a daemon that was killed
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const server = net.createServer((conn) => {
    let buf = '';
    conn.setEncoding('utf8');
    conn.on('error', () => {});
    conn.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_LINE) return conn.destroy();
      const nl = buf.indexOf('\n');
      if (nl === -1) return;
      const req = parseDaemonRequest(buf.slice(0, nl));
      buf = '';
      conn.pause();
      const reply: Promise<DaemonReply> =
        'error' in req
          ? Promise.resolve({ ok: false, error: { code: 'E_PROTOCOL', message: req.error } })
          : handle(req).catch((e: unknown) => ({
              ok: false as const,
              error: { code: 'E_INTERNAL', message: e instanceof Error ? e.message : String(e) },
            }));
      void reply.then((r) => conn.end(`${JSON.stringify(r)}\n`));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(file, () => resolve());
  });
  chmodSync(file, 0o600);
  server.unref();
  return () => {
    server.close();
    try {
      unlinkSync(file);
    } catch {}
  };
}

/**
 * Asks the daemon to push now. undefined when no daemon answers on the socket (then the caller
 * pushes by itself); the daemon's reply otherwise.
 */
export function askDaemon(file: string, timeoutMs = 15 * 60_000): Promise<DaemonReply | undefined> {
  return new Promise((resolve) => {
    const c = net.connect(file);
    let buf = '';
    let connected = false;
    const timer = setTimeout(() => {
      c.destroy();
      resolve({ ok: false, error: { code: 'E_INTERNAL', message: 'the daemon did not answer in time' } });
    }, timeoutMs);
    c.setEncoding('utf8');
    c.once('connect', () => {
      connected = true;
      c.write(`${JSON.stringify({ op: 'push' } satisfies DaemonRequest)}\n`);
    });
    c.on('data', (chunk: string) => {
      buf += chunk;
    });
    c.once('error', () => {
      clearTimeout(timer);
      if (!connected) resolve(undefined);
    });
    c.once('close', () => {
      clearTimeout(timer);
      if (!connected) return resolve(undefined);
      const r = parseDaemonReply(buf.trim());
      resolve(
        'error' in r && !('ok' in r)
          ? { ok: false, error: { code: 'E_PROTOCOL', message: `the daemon's answer: ${r.error}` } }
          : (r as DaemonReply),
      );
    });
  });
}
