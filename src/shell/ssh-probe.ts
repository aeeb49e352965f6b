// Whether an SSH server answers at an address: its identification line (RFC 4253 4.2), read without
// logging in. The watch daemon asks it of a director it could not reach while a retry waits.

import { connect } from 'node:net';

export function sshAnswers(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    let got = '';
    let done = false;
    const socket = connect({ host, port });
    const finish = (ok: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      // the server may send other lines before its version line
      const lines = got.split('\n');
      if (lines.slice(0, -1).some((l) => l.startsWith('SSH-'))) finish(true);
      else if (got.length > 8192) finish(false);
    });
    socket.on('error', () => finish(false));
    socket.on('close', () => finish(false));
  });
}
