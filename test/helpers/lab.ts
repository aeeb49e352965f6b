// Gives a vitest file a lab of its own (started once for the file, stopped after it), or a fresh one
// per test. Needs root and the Debian tools (scripts/setup-host.sh); without them the test fails with
// the reason, or skips with it printed when LVSSYNC_ALLOW_MISSING_TOOLS=1.

import { existsSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import {
  ADDR,
  type Director,
  defaultDir,
  directorConfig,
  type Lab,
  labYaml,
  type ProcRecord,
  REPO,
  startLab,
  stopLab,
} from '../../scripts/lab/lab.js';
import { isRoot, requireTools } from './tools.js';

export function labUnavailable(): string | undefined {
  const missing = requireTools(
    'ip',
    'nsenter',
    'unshare',
    'keepalived',
    'ferm',
    'iptables',
    'sshd',
    'ssh-keygen',
  );
  if (missing.length > 0) return `missing ${missing.join(', ')}`;
  if (!isRoot) {
    const msg = 'the lab needs root (network namespaces)';
    if (process.env.LVSSYNC_ALLOW_MISSING_TOOLS === '1') {
      console.warn(`SKIP: ${msg}`);
      return msg;
    }
    throw new Error(msg);
  }
  if (!existsSync(path.join(REPO, 'dist', 'scripts', 'lab', 'web-server.js'))) {
    throw new Error('dist/ is missing: run npm run build (npm test builds first)');
  }
  return undefined;
}

/** One lab for the whole file: `const lab = useLab('tpush')` then `lab()` inside tests. */
export function useLab(name: string, opts: { directors?: number } = {}): () => Lab {
  let lab: Lab | undefined;
  beforeAll(async () => {
    await stopLab(defaultDir(name)); // a previous run that was killed may have left one
    lab = await startLab({ name, ...opts });
  }, 60_000);
  afterAll(async () => {
    await stopLab(defaultDir(name));
  }, 60_000);
  return () => {
    if (!lab) throw new Error(`lab ${name} did not start`);
    return lab;
  };
}

const PAST = new Date('2020-01-01T00:00:00Z');

/** Puts every director back on the lab's reference configuration and lvssync.yaml, with no lvssync state. */
export function resetDirectors(lab: Lab): void {
  for (const d of lab.directors) {
    lab.writeFile(d, '/etc/lvssync/lvssync.yaml', labYaml(lab.directors));
    // empty the directories rather than remove them: they are bind-mounted into the director
    for (const top of ['/etc/keepalived', '/etc/ferm', '/var/lib/lvssync']) {
      const dir = lab.pathOn(d, top);
      for (const e of readdirSync(dir)) rmSync(path.join(dir, e), { recursive: true, force: true });
    }
    for (const [p, text] of directorConfig(d)) {
      lab.writeFile(d, p, text, p.endsWith('keepalived.conf') ? 0o640 : 0o644);
      // as if installed long before the running keepalived read them
      utimesSync(lab.pathOn(d, p), PAST, PAST);
    }
  }
}

/** An interrupted push on `host` whose backup is gone (a state directory cleaned by hand). */
export function writeUnrecoverableJournal(lab: Lab, host: Director, file: string): string {
  const journal = lab.pathOn(host, '/var/lib/lvssync/journal.json');
  writeFileSync(
    journal,
    JSON.stringify({
      txid: 'dead00000000beef',
      version: '20200101T000000Z-dead0000',
      state: 'committed',
      reloaded: [],
      paths: [file],
    }),
  );
  return journal;
}

/** How many `lvssync agent` processes run on this machine (any lab's, any session's). */
export function countAgents(): number {
  return readdirSync('/proc').filter((p) => {
    try {
      return /^\d+$/.test(p) && readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').includes('agent');
    } catch {
      return false;
    }
  }).length;
}

export const MAIN = path.join(REPO, 'dist', 'src', 'main.js');
export const FWM = '/etc/keepalived/conf.d/fwm-100.conf';
export const KA = '/etc/keepalived/keepalived.conf';
export const FERM = '/etc/ferm/ferm.conf';

/** Every managed file of a director: path -> [content, mode]. */
export function tree(lab: Lab, host: Director): Record<string, string> {
  const out: Record<string, string> = {};
  for (const top of ['/etc/keepalived', '/etc/ferm']) {
    const walk = (dir: string) => {
      const hostDir = lab.pathOn(host, dir);
      for (const e of readdirSync(hostDir, { withFileTypes: true })) {
        const p = `${dir}/${e.name}`;
        if (e.isDirectory()) walk(p);
        else {
          const hp = lab.pathOn(host, p);
          out[p] = `${(statSync(hp).mode & 0o7777).toString(8)} ${readFileSync(hp, 'utf8')}`;
        }
      }
    };
    walk(top);
  }
  return out;
}

export async function lvssync(lab: Lab, host: Director, ...args: string[]) {
  const r = await lab.exec(host, [process.execPath, MAIN, ...args], { allowFail: true, timeoutMs: 120_000 });
  return r;
}

export function edit(lab: Lab, host: Director, p: string, f: (s: string) => string): void {
  lab.writeFile(host, p, f(lab.readFile(host, p)));
}

export async function reloadsOf(lab: Lab, host: Director): Promise<number> {
  return (readFileSync(lab.logFile(host, 'keepalived'), 'utf8').match(/Reloading/g) ?? []).length;
}

/** Starts `lvssync watch` on a director (the tests' quiet window and maximum unless `args` say otherwise). */
export function startWatch(
  lab: Lab,
  host: Director,
  args: readonly string[] = ['--quiet', '200', '--max', '2000'],
): ProcRecord {
  return lab.spawnOn(host, 'watch', [process.execPath, MAIN, 'watch', ...args]);
}

/**
 * An lvssync.yaml for lvs1 that reaches every other director over the internal segment (its sshd
 * listens there too): lvssync still asks them while the crossover, VRRP's link, is cut. Its path.
 */
export function internalConfig(lab: Lab): string {
  const cfg = '/etc/lvssync/internal.yaml';
  let yaml = lab.readFile('lvs1', '/etc/lvssync/lvssync.yaml');
  for (const d of lab.directors)
    yaml = yaml.replace(`address: ${ADDR.crossover[d]}`, `address: ${ADDR.internal[d]}`);
  lab.writeFile('lvs1', cfg, yaml);
  return cfg;
}

/**
 * A director's keepalived reload made slow (3 s unless told) and marked when it starts:
 * `reloading()` waits for the mark; `restore()` puts the lab's script back.
 */
export function slowKeepalivedReload(
  l: Lab,
  host: Director,
  seconds = 3,
): { reloading: () => Promise<void>; restore: () => void } {
  const script = l.pathOn(host, '/etc/lvssync/lab/keepalived-reload');
  const good = readFileSync(script, 'utf8');
  writeFileSync(script, `touch /run/ka-reloading; sleep ${seconds}\n${good}`);
  const mark = l.pathOn(host, '/run/ka-reloading');
  rmSync(mark, { force: true });
  return {
    reloading: async () => {
      for (const until = Date.now() + 20_000; !existsSync(mark) && Date.now() < until; )
        await new Promise((res) => setTimeout(res, 10));
      if (!existsSync(mark)) throw new Error(`${host}'s keepalived reload did not start within 20 s`);
    },
    restore: () => writeFileSync(script, good),
  };
}

/**
 * A director's next keepalived reload fails (only that one: the rollback's reload after it works);
 * `restore()` puts the lab's script back.
 */
export function failKeepalivedReloadOnce(l: Lab, host: Director): { restore: () => void } {
  const script = l.pathOn(host, '/etc/lvssync/lab/keepalived-reload');
  const good = readFileSync(script, 'utf8');
  writeFileSync(
    script,
    `if [ ! -e /run/failed-once ]; then touch /run/failed-once; echo "simulated reload failure" >&2; exit 1; fi\n${good}`,
  );
  return {
    restore: () => {
      writeFileSync(script, good);
      rmSync(l.pathOn(host, '/run/failed-once'), { force: true });
    },
  };
}
