// A service only ever loads a set that validated, in the lab: saves made while a push reloads (on
// the primary during its slow ferm reload, on the peer between its commit and its reload, and into
// ferm.conf while ferm runs) are never loaded unvalidated; the pair converges once they are fixed.
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  DIRECTORS,
  type Director,
  type Lab,
  LVSSYNC_YAML,
  type ProcRecord,
  REPO,
} from '../../scripts/lab/lab.js';
import {
  countAgents,
  labUnavailable,
  resetDirectors,
  startWatch,
  useLab,
  writeUnrecoverableJournal,
} from '../helpers/lab.js';

const unavailable = labUnavailable();
const MAIN = path.join(REPO, 'dist', 'src', 'main.js');
const FWM = '/etc/keepalived/conf.d/fwm-100.conf';
const KA = '/etc/keepalived/keepalived.conf';
const FERM = '/etc/ferm/ferm.conf';
const YAML = '/etc/lvssync/lvssync.yaml';
const DUP =
  '\nvrrp_instance vi_dup {\n        interface eth1\n        state BACKUP\n        priority 50\n        virtual_router_id 100\n        virtual_ipaddress {\n                198.51.100.251 dev eth0\n        }\n}\n';

async function until(what: string, probe: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out after ${ms} ms: ${what}`);
}

const lvssync = (l: Lab, host: Director, ...args: string[]) =>
  l.exec(host, [process.execPath, MAIN, ...args], { allowFail: true, timeoutMs: 120_000 });

/** Every file below a director's directory, with its text (lvs2 must never have held a text). */
function texts(l: Lab, host: Director, top: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && statSync(p).size < 1_000_000) out.push(readFileSync(p, 'utf8'));
    }
  };
  walk(l.pathOn(host, top));
  return out;
}

function logLines(l: Lab): { msg?: string; [k: string]: unknown }[] {
  try {
    return readFileSync(l.logFile('lvs1', 'watch'), 'utf8')
      .split('\n')
      .filter((x) => x.startsWith('{'))
      .map((x) => JSON.parse(x));
  } catch {
    return [];
  }
}

/** Each VIP of the lab is held by exactly one director. */
async function vipsOnOne(l: Lab): Promise<Record<string, Director[]>> {
  const out: Record<string, Director[]> = {};
  for (const vip of ['198.51.100.250', '198.51.100.100']) out[vip] = await l.holdersOf(vip);
  return out;
}

describe.skipIf(unavailable !== undefined)('reload safety (lab)', () => {
  const lab = useLab('tsafe');
  let daemon: ProcRecord | undefined;

  beforeEach(async () => {
    const l = lab();
    resetDirectors(l);
    for (const d of DIRECTORS) {
      l.writeFile(d, YAML, LVSSYNC_YAML);
      rmSync(l.pathOn(d, '/run/ferm-reloading'), { force: true });
      await l.applyFerm(d);
      if (!l.proc(d, 'keepalived')) await l.startKeepalived(d);
      await l.exec(d, ['sh', '/etc/lvssync/lab/keepalived-reload']);
    }
    await l.waitForVipHolder();
    rmSync(l.logFile('lvs1', 'watch'), { force: true });
  }, 60_000);

  afterEach(async () => {
    if (daemon) await lab().killProc(daemon);
    daemon = undefined;
  });

  /** A slow ferm reload on `host` that says when it has started (a busy host). */
  function slowFerm(l: Lab, host: Director, seconds: number): void {
    l.writeFile(
      host,
      YAML,
      LVSSYNC_YAML.replace(
        'reload: [ferm, /etc/ferm/ferm.conf]',
        `reload: [sh, -c, "touch /run/ferm-reloading; sleep ${seconds}; exec ferm /etc/ferm/ferm.conf"]`,
      ),
    );
  }

  it('an invalid save during the primary’s reload is never loaded: keepalived keeps running, the VIPs stay on one director, the pair converges after the fix', async () => {
    const l = lab();
    slowFerm(l, 'lvs1', 2);
    daemon = startWatch(l, 'lvs1');
    await until('the daemon to start', () =>
      logLines(l).some((j) => /in sync|pushed|reloaded/.test(j.msg ?? '')),
    );
    rmSync(l.pathOn('lvs1', '/run/ferm-reloading'), { force: true });
    const keepalived = l.proc('lvs1', 'keepalived')!;
    // an edit of both services' files (a push reloads what it changes: here ferm, then keepalived)
    l.writeFile('lvs1', FWM, l.readFile('lvs1', FWM).replace('weight 50', 'weight 61'));
    l.writeFile('lvs1', FERM, `${l.readFile('lvs1', FERM)}# weight 61 on fwmark 100\n`);
    await until('the primary’s ferm reload to start', () =>
      existsSync(l.pathOn('lvs1', '/run/ferm-reloading')),
    );
    expect(l.readFile('lvs2', FWM)).toContain('weight 61');
    // the operator's second save, while lvs1's ferm reload runs: a duplicate VRID
    const dupLine = l.readFile('lvs1', KA).split('\n').length + 5;
    l.writeFile('lvs1', KA, l.readFile('lvs1', KA) + DUP);
    await until('the daemon to report the invalid set', () =>
      logLines(l).some((j) => j.code === 'KA_DUPLICATE_VRID'),
    );
    const log = logLines(l);
    expect(log.some((j) => /superseded/.test(j.msg ?? ''))).toBe(true);
    expect(log.find((j) => j.code === 'KA_DUPLICATE_VRID')).toMatchObject({ file: KA, line: dupLine });
    // keepalived on lvs1 never read the invalid set: the same process runs, and one director holds each VIP
    expect(l.proc('lvs1', 'keepalived')?.pid).toBe(keepalived.pid);
    expect(readFileSync(l.logFile('lvs1', 'keepalived'), 'utf8')).not.toMatch(
      /vi_dup|exited with permanent error/,
    );
    for (const [vip, holders] of Object.entries(await vipsOnOne(l)))
      expect({ vip, holders }).toEqual({ vip, holders: ['lvs1'] });
    for (const top of ['/etc/keepalived', '/var/lib/lvssync']) {
      expect(texts(l, 'lvs2', top).some((t) => t.includes('vi_dup'))).toBe(false);
    }
    // the fix: the daemon validates it, and reloads the weight change lvs1's keepalived never loaded
    const fixedAt = logLines(l).length;
    l.writeFile('lvs1', KA, l.readFile('lvs1', KA).replace(DUP, ''));
    await until(
      'the pair to converge',
      () =>
        logLines(l)
          .slice(fixedAt)
          .some((j) => j.msg === 'files in sync; reloaded what had not loaded them' || j.msg === 'pushed'),
      30_000,
    );
    expect(l.proc('lvs1', 'keepalived')).toBeDefined();
    const audit = await lvssync(l, 'lvs1', 'audit', '--json');
    const findings = (JSON.parse(audit.stdout) as { findings: { code: string; severity: string }[] })
      .findings;
    const bad = findings.filter(
      (f) => f.severity !== 'ok' && /^(DRIFT|VIP|KEEPALIVED_RELOAD_PENDING|SERVICE_DOWN)/.test(f.code),
    );
    expect(bad).toEqual([]);
  }, 90_000);

  it('a hand edit on lvs2 between its commit and its reload is not loaded: the push ends superseded, nothing rolled over it', async () => {
    const l = lab();
    slowFerm(l, 'lvs2', 2);
    const reloads = (d: Director) =>
      readFileSync(l.logFile(d, 'keepalived'), 'utf8').match(/Reloading \.\.\./g)?.length ?? 0;
    const lvs1Reloads = reloads('lvs1');
    l.writeFile('lvs1', FWM, l.readFile('lvs1', FWM).replace('weight 50', 'weight 62'));
    const push = lvssync(l, 'lvs1', 'push', '--yes', '--json');
    await until('lvs2’s ferm reload to start', () => existsSync(l.pathOn('lvs2', '/run/ferm-reloading')));
    const keepalived = l.proc('lvs2', 'keepalived')!;
    // the hand edit on lvs2, after the commit, before its keepalived reload
    const edited = l.readFile('lvs2', FWM).replace('weight 62', 'weight 63');
    l.writeFile('lvs2', FWM, edited);
    const r = await push;
    const j = JSON.parse(r.stdout) as {
      result: string;
      superseded?: { host: string; service: string; changed: string[] };
    };
    expect(r.code).toBe(5);
    expect(j.result).toBe('superseded');
    expect(j.superseded).toEqual({ host: 'lvs2', service: 'keepalived', changed: [FWM] });
    // lvs2's edit is still there (not rolled over), its keepalived ran on and never loaded it
    expect(l.readFile('lvs2', FWM)).toBe(edited);
    expect(l.proc('lvs2', 'keepalived')?.pid).toBe(keepalived.pid);
    expect(
      JSON.parse(readFileSync(l.pathOn('lvs2', '/var/lib/lvssync/loaded.json'), 'utf8')).keepalived,
    ).toBeUndefined();
    // and lvs1 was not reloaded either: the push stopped there
    expect(reloads('lvs1')).toBe(lvs1Reloads);
    // the next push sees lvs2's edit as a conflict, as any edit made there
    const next = await lvssync(l, 'lvs1', 'push', '--yes', '--json');
    expect(JSON.parse(next.stdout).result).toBe('conflict');
  }, 60_000);

  it('a ferm.conf saved while ferm runs is validated before it stays loaded; an invalid one is reported at once', async () => {
    const l = lab();
    slowFerm(l, 'lvs1', 2);
    l.writeFile('lvs1', FWM, l.readFile('lvs1', FWM).replace('weight 50', 'weight 64'));
    const push = lvssync(l, 'lvs1', 'push', '--yes', '--json');
    await until('lvs1’s ferm reload to start', () => existsSync(l.pathOn('lvs1', '/run/ferm-reloading')));
    // a broken ferm.conf saved while ferm is about to read it
    const good = l.readFile('lvs1', FERM);
    l.writeFile('lvs1', FERM, `${good}\nthis is not ferm;\n`);
    const r = await push;
    const j = JSON.parse(r.stdout) as {
      result: string;
      error?: { message: string };
      diagnostics: { code: string; file: string; severity: string }[];
      steps: { host: string; step: string; ok: boolean }[];
    };
    expect(r.code).toBe(5);
    expect(j.result).toBe('primary-failed');
    expect(j.error?.message).toMatch(/CRITICAL: ferm read its files while they changed/);
    expect(j.diagnostics.some((d) => d.severity === 'error' && d.file === FERM)).toBe(true);
    // keepalived on lvs1 was not reloaded after it
    expect(j.steps.some((s) => s.host === 'lvs1' && s.step.startsWith('reload keepalived'))).toBe(false);
    // the fix goes through: a save of a valid ferm.conf while ferm runs is validated and loaded again
    l.writeFile('lvs1', FERM, good);
    rmSync(l.pathOn('lvs1', '/run/ferm-reloading'), { force: true });
    const again = lvssync(l, 'lvs1', 'push', '--yes', '--json');
    await until('lvs1’s ferm reload to start again', () =>
      existsSync(l.pathOn('lvs1', '/run/ferm-reloading')),
    );
    l.writeFile('lvs1', FERM, `${good}\n# a comment saved during the reload\n`);
    const r2 = await again;
    const j2 = JSON.parse(r2.stdout) as {
      result: string;
      steps: { host: string; step: string; ok: boolean }[];
    };
    expect(j2.steps.filter((s) => s.host === 'lvs1').map((s) => `${s.step}:${s.ok}`)).toContain(
      'reload ferm (2 rounds: files changed while it read them):true',
    );
    expect(r2.code).toBe(0);
  }, 90_000);

  it('a dead keepalived is never "in sync": status shows it first, the audit is CRITICAL, a push does not go into it, the daemon says service-down until it runs again', async () => {
    const l = lab();
    await l.killProc(l.proc('lvs2', 'keepalived')!, 'SIGKILL');
    const st = await lvssync(l, 'lvs1', 'status');
    expect(st.code).toBe(1);
    expect(st.stdout.split('\n')[0]).toMatch(/^SERVICE DOWN: keepalived on lvs2 since \d{4}-/);
    const sj = JSON.parse((await lvssync(l, 'lvs1', 'status', '--json')).stdout) as {
      services: { host: string; service: string; up?: boolean }[];
    };
    expect(sj.services).toContainEqual(
      expect.objectContaining({ host: 'lvs2', service: 'keepalived', up: false }),
    );
    expect(sj.services).toContainEqual(
      expect.objectContaining({ host: 'lvs1', service: 'keepalived', up: true }),
    );
    const audit = await lvssync(l, 'lvs1', 'audit', '--json');
    expect(audit.code).toBe(2);
    const findings = (
      JSON.parse(audit.stdout) as { findings: { code: string; severity: string; host: string }[] }
    ).findings;
    expect(findings).toContainEqual(
      expect.objectContaining({ code: 'SERVICE_DOWN', severity: 'critical', host: 'lvs2' }),
    );
    // a push commits nothing and reloads nothing while it lasts, and says why
    const before = l.readFile('lvs2', FWM);
    l.writeFile('lvs1', FWM, l.readFile('lvs1', FWM).replace('weight 50', 'weight 65'));
    const p = await lvssync(l, 'lvs1', 'push', '--yes', '--json');
    const pj = JSON.parse(p.stdout) as { result: string; error: { code: string; message: string } };
    expect(p.code).toBe(5);
    expect(pj.result).toBe('service-down');
    expect(pj.error).toMatchObject({
      code: 'E_SERVICE_DOWN',
      message: expect.stringMatching(/keepalived is not running on lvs2/),
    });
    expect(l.readFile('lvs2', FWM)).toBe(before);
    // the daemon: service-down, never "in sync", until keepalived runs again; then it converges by itself
    daemon = l.spawnOn('lvs1', 'watch', [process.execPath, MAIN, 'watch', '--quiet', '200']);
    const status = () => {
      try {
        return JSON.parse(readFileSync(l.pathOn('lvs1', '/var/lib/lvssync/watch-status.json'), 'utf8')) as {
          health: string;
          servicesDown?: { host: string; service: string }[];
        };
      } catch {
        return undefined;
      }
    };
    await until('the daemon to report service-down', () => status()?.health === 'service-down');
    expect(status()?.servicesDown).toContainEqual(
      expect.objectContaining({ host: 'lvs2', service: 'keepalived' }),
    );
    expect(logLines(l).some((j) => j.msg === 'service down' && j.host === 'lvs2')).toBe(true);
    expect(logLines(l).some((j) => /in sync/.test(j.msg ?? ''))).toBe(false);
    await l.startKeepalived('lvs2');
    await until('the daemon to push once keepalived runs', () => status()?.health === 'in-sync', 30_000);
    expect(l.readFile('lvs2', FWM)).toContain('weight 65');
  }, 90_000);

  it('the daemon facing a peer that cannot recover: retries with backoff, leaves no agent behind, stops at once on SIGTERM', async () => {
    const l = lab();
    const journal = writeUnrecoverableJournal(l, 'lvs2', FWM);
    const agents = countAgents;
    try {
      daemon = l.spawnOn('lvs1', 'watch', [process.execPath, MAIN, 'watch', '--quiet', '200']);
      await until(
        'three attempts',
        () => logLines(l).filter((j) => j.msg === 'push failed on the peer').length >= 3,
        30_000,
      );
      const failed = logLines(l).find((j) => j.msg === 'push failed on the peer') as {
        err?: { message?: string };
      };
      expect(failed.err?.message).toMatch(/cannot roll back the interrupted push dead00000000beef/);
      expect(agents()).toBeLessThanOrEqual(1);
      const t0 = Date.now();
      await l.killProc(daemon, 'SIGTERM', 10_000);
      daemon = undefined;
      expect(Date.now() - t0).toBeLessThan(5_000);
      await new Promise((r) => setTimeout(r, 300));
      expect(agents()).toBe(0);
    } finally {
      rmSync(journal, { force: true });
    }
  }, 60_000);

  it('a valid save while keepalived reads its files (reload_file) is validated and loaded in a second round', async () => {
    const l = lab();
    const reloadScript = l.pathOn('lvs1', '/etc/lvssync/lab/keepalived-reload');
    const good = readFileSync(reloadScript, 'utf8');
    // the signal reaches keepalived a second after the reload started: the save lands in between
    writeFileSync(reloadScript, good.replace('kill -HUP', 'touch /run/ka-reloading; sleep 1; kill -HUP'));
    rmSync(l.pathOn('lvs1', '/run/ka-reloading'), { force: true });
    try {
      l.writeFile('lvs1', FWM, l.readFile('lvs1', FWM).replace('weight 50', 'weight 69'));
      const push = lvssync(l, 'lvs1', 'push', '--yes', '--json');
      await until('lvs1’s keepalived reload to start', () =>
        existsSync(l.pathOn('lvs1', '/run/ka-reloading')),
      );
      l.writeFile('lvs1', FWM, l.readFile('lvs1', FWM).replace('weight 69', 'weight 70'));
      const r = await push;
      const j = JSON.parse(r.stdout) as {
        result: string;
        steps: { host: string; step: string; ok: boolean }[];
      };
      expect(j.steps.filter((x) => x.host === 'lvs1').map((x) => `${x.step}:${x.ok}`)).toContain(
        'reload keepalived (2 rounds: files changed while it read them):true',
      );
      expect(r.code).toBe(0);
      // what lvs1's keepalived loaded is recorded by content: the second save
      const loaded = JSON.parse(readFileSync(l.pathOn('lvs1', '/var/lib/lvssync/loaded.json'), 'utf8')) as {
        keepalived: { files: Record<string, string> };
      };
      const { createHash } = await import('node:crypto');
      expect(loaded.keepalived.files[FWM]).toBe(
        createHash('sha256').update(l.readFile('lvs1', FWM)).digest('hex'),
      );
      expect(l.readFile('lvs1', FWM)).toContain('weight 70');
    } finally {
      writeFileSync(reloadScript, good);
    }
  }, 60_000);
});
