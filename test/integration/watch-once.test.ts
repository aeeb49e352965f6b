// `lvssync watch --once` when the peer cannot be reached: one attempt, the reason logged, exit 4
// (not a wait for a peer that may never come). The set and lvssync.yaml live in a temporary folder;
// the peer is a closed port on loopback.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { generateSet, writeSet } from '../../bench/gen.js';
import { REPO } from '../../scripts/lab/lab.js';
import { requireTools } from '../helpers/tools.js';

const MAIN = path.join(REPO, 'dist', 'src', 'main.js');
const missing = requireTools('ferm', 'keepalived', 'ssh-keygen');

describe.skipIf(missing.length > 0)('lvssync watch --once', () => {
  let dir = '';
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reports an unreachable peer once and exits 4', () => {
    dir = mkdtempSync(path.join(tmpdir(), 'lvssync-once-'));
    const root = path.join(dir, 'root');
    writeSet(root, generateSet(3));
    spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'id')]);
    writeFileSync(path.join(dir, 'known_hosts'), '');
    const config = path.join(dir, 'lvssync.yaml');
    writeFileSync(
      config,
      [
        'cluster: once',
        'primary: lvs1',
        'nodes:',
        '  lvs1: { address: 127.0.0.1, router_id: LVS1 }',
        '  lvs2: { address: 127.0.0.1, port: 1, router_id: LVS2 }',
        'ssh:',
        `  identityFile: ${dir}/id`,
        `  knownHosts: ${dir}/known_hosts`,
        '  connectTimeoutMs: 2000',
        'files:',
        `  keepalived: ${root}/etc/keepalived/keepalived.conf`,
        `  ferm: ${root}/etc/ferm/ferm.conf`,
        `stateDir: ${dir}/state`,
        '',
      ].join('\n'),
    );
    const t0 = Date.now();
    const r = spawnSync(process.execPath, [MAIN, 'watch', '--once', '--config', config, '--node', 'lvs1'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status).toBe(4);
    expect(Date.now() - t0).toBeLessThan(30_000);
    const lines = r.stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg: string; err?: string });
    const down = lines.find((l) => l.msg === 'peer unreachable');
    expect(down?.err).toMatch(/127\.0\.0\.1:1/);
    expect(lines.some((l) => /will retry/.test(l.msg))).toBe(false);
  }, 60_000);
});
