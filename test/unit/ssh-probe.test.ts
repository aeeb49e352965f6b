// The probe the watch daemon sends a director it could not reach: an SSH server's identification
// line counts, anything else (another service, silence, a closed port) does not. Real sockets on the
// loopback interface.
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { sshAnswers } from '../../src/shell/ssh-probe.js';

const servers: Server[] = [];
const sockets: Socket[] = [];

async function serve(onConnect: (s: Socket) => void): Promise<number> {
  const server = createServer((s) => {
    sockets.push(s);
    s.on('error', () => {});
    onConnect(s);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as { port: number }).port;
}

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

describe('sshAnswers', () => {
  it('an SSH server, also one that sends other lines before its version, in pieces', async () => {
    const plain = await serve((s) => s.write('SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r\n'));
    expect(await sshAnswers('127.0.0.1', plain, 2000)).toBe(true);
    const chatty = await serve((s) => {
      s.write('welcome to lvs2\r\nSSH-2.');
      setTimeout(() => s.write('0-OpenSSH_10.0\r\n'), 20);
    });
    expect(await sshAnswers('127.0.0.1', chatty, 2000)).toBe(true);
  });

  it('another service, a server that says nothing, a closed port: no', async () => {
    const http = await serve((s) => s.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    expect(await sshAnswers('127.0.0.1', http, 2000)).toBe(false);
    const silent = await serve(() => {});
    const t0 = performance.now();
    expect(await sshAnswers('127.0.0.1', silent, 150)).toBe(false);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
    const closed = await serve(() => {});
    await new Promise((r) => servers.pop()!.close(r));
    expect(await sshAnswers('127.0.0.1', closed, 2000)).toBe(false);
  });
});
