// The lab's web server (web1/web2): serves /lb.php with the body in a file (read on every request, so
// a test can make the health check fail by changing it) and anything else with 404. Runs inside the
// web host's network namespace, listening on all of its addresses (eth0 and the loopback VIP).
//   node web-server.js --port 80 --body-file /path/lb.php --name web1

import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';

function arg(name: string, fallback?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i === -1 ? fallback : process.argv[i + 1];
  if (v === undefined) throw new Error(`web-server: --${name} is required`);
  return v;
}

const port = Number(arg('port', '80'));
const bodyFile = arg('body-file');
const name = arg('name', 'web');

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://lab');
  if (url.pathname !== '/lb.php') {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
    return;
  }
  readFile(bodyFile).then(
    (body) => {
      res.writeHead(200, { 'content-type': 'text/html', 'x-lab-host': name });
      res.end(body);
    },
    () => {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('health check body missing\n');
    },
  );
});
server.listen(port, '0.0.0.0', () => {
  process.stdout.write(`${name} listening on port ${port}\n`);
});
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => server.close(() => process.exit(0)));
