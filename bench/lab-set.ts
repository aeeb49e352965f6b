// A lab for the benchmarks: started fresh, with the generated set of N fwmark services (and their
// ferm marks) written to the given directors.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  type Director,
  type Lab,
  type LabHost,
  type LabProgram,
  startLab,
  stopLab,
} from '../scripts/lab/lab.js';
import { generateSet } from './gen.js';

export async function labWithSet(
  name: string,
  n: number,
  on: readonly Director[],
  program?: LabProgram,
): Promise<Lab> {
  await stopLab(path.join('/tmp', `lvssync-lab-${name}`));
  const lab = await startLab({ name, ...(program ? { program } : {}) });
  const set = generateSet(n);
  for (const d of on) {
    for (const [p, text] of set.files) {
      if (p.startsWith('/etc/keepalived/conf.d/')) lab.writeFile(d, p, text, 0o644);
    }
    lab.writeFile(
      d,
      '/etc/ferm/ferm.conf',
      `${lab.readFile(d, '/etc/ferm/ferm.conf')}${set.files.get('/etc/ferm/ferm.conf')}`,
    );
    await lab.applyFerm(d);
  }
  return lab;
}

/**
 * The program as the Debian package ships it (bundled, started with its code cache in a directory
 * of the benchmark's own), for the daemon, the CLI and the agents of a benchmark's lab.
 */
export async function packagedProgram(): Promise<{ program: LabProgram; cleanup: () => void }> {
  const { buildPackage } = await import('../scripts/package/build.js');
  const pkg = await buildPackage({
    lintian: false,
    outDir: mkdtempSync(path.join(tmpdir(), 'lvssync-bench-deb-')),
  });
  rmSync(path.dirname(pkg.deb), { recursive: true, force: true });
  const cache = mkdtempSync(path.join(tmpdir(), 'lvssync-bench-cache-'));
  return {
    program: {
      path: path.join(pkg.tree, 'usr', 'share', 'lvssync', 'lvssync.cjs'),
      env: { LVSSYNC_CODE_CACHE: cache },
    },
    cleanup: () => rmSync(cache, { recursive: true, force: true }),
  };
}

/**
 * OpenSSH from lvs1 with its lab key (a shell), or lvssync's key (the peers' authorized_keys force
 * the agent), against the pinned host keys only: argv, before the host.
 */
export function labSsh(lab: Lab, key: 'admin' | 'lvssync' = 'admin'): string[] {
  const ssh = path.join(lab.hostDir('lvs1'), 'ssh');
  return [
    'ssh',
    '-i',
    key === 'admin' ? `${ssh}/id_ed25519` : path.join(lab.hostDir('lvs1'), 'etc', 'lvssync', 'id_ed25519'),
    '-o',
    `UserKnownHostsFile=${ssh}/known_hosts`,
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    'BatchMode=yes',
  ];
}

/** How long `argv` takes on `host` of the lab (its exit status aside: keepalived -t fails on warnings). */
export async function timedOn(lab: Lab, host: LabHost, argv: string[]): Promise<number> {
  const t0 = performance.now();
  await lab.exec(host, argv, { timeoutMs: 600_000, allowFail: true });
  return performance.now() - t0;
}
