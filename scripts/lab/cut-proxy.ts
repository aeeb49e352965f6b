// A TCP proxy that cuts its connections on purpose, for tests of a push interrupted half-way:
// after a number of bytes from the client, or when a trigger file appears.
//   node cut-proxy.js --listen 2222 --to 203.0.113.252:22 [--cut-after-bytes N] [--trigger FILE]

import { existsSync, rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? undefined : process.argv[i + 1];
}

const listen = Number(arg('listen') ?? '2222');
const [host, port] = (arg('to') ?? '').split(':');
const cutAfter = Number(arg('cut-after-bytes') ?? '0');
const trigger = arg('trigger');
const open = new Set<[Socket, Socket]>();

function cut(pair: [Socket, Socket], why: string): void {
  pair[0].destroy();
  pair[1].destroy();
  open.delete(pair);
  process.stdout.write(`cut: ${why}\n`);
}

createServer((client) => {
  const server = connect(Number(port), host);
  const pair: [Socket, Socket] = [client, server];
  open.add(pair);
  let up = 0;
  client.on('data', (b) => {
    up += b.length;
    if (cutAfter > 0 && up > cutAfter) {
      cut(pair, `${up} bytes`);
      return;
    }
    server.write(b);
  });
  server.on('data', (b) => client.write(b));
  for (const s of pair) {
    s.on('error', () => cut(pair, 'error'));
    s.on('close', () => cut(pair, 'closed'));
  }
}).listen(listen, '127.0.0.1', () => process.stdout.write(`listening on ${listen}\n`));

if (trigger) {
  setInterval(() => {
    if (existsSync(trigger)) {
      rmSync(trigger, { force: true });
      for (const p of [...open]) cut(p, 'trigger');
    }
  }, 5);
}
