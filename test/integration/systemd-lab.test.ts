// lvssync as an operator installs and runs it: the .deb on two booted Debian systems (lvs1 Debian 12
// with nodejs 18, lvs2 Debian 13 with nodejs 20: a mixed pair, as during an upgrade), lvssync init,
// a first push, then the daemon under systemd with the shipped unit and its hardening: edits reach
// lvs2 and both services are reloaded through systemctl, logs are in the journal, systemctl reload and
// stop work, an upgrade restarts the daemon and keeps the state, remove and purge keep what they must.

import { copyFileSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type PairDirector as Director,
  type SystemdLab,
  startSystemdLab,
  stopSystemdLab,
} from '../../scripts/lab/systemd-lab.js';
import { buildPackage, type PackageResult } from '../../scripts/package/build.js';
import { isRoot, requireTools } from '../helpers/tools.js';

const missing = requireTools('systemd-nspawn', 'mmdebstrap', 'dpkg-deb', 'nsenter', 'ip');
const unavailable = !isRoot ? 'needs root' : missing.length ? `missing ${missing.join(', ')}` : undefined;
if (unavailable && process.env.LVSSYNC_ALLOW_MISSING_TOOLS !== '1') {
  throw new Error(`the systemd lab ${unavailable} (scripts/setup-host.sh installs the tools)`);
}

const FWM = '/etc/keepalived/conf.d/fwm-100.conf';
const NAME = 'tsysd';

let lab: SystemdLab;
let v1: PackageResult;

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  ms = 30_000,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const sh = async (host: Director, script: string, allowFail = false) => {
  const t0 = Date.now();
  const r = await lab.exec(host, ['sh', '-c', script], { allowFail, timeoutMs: 180_000 });
  if (Date.now() - t0 > 10_000)
    console.log(`${host}: ${script}: ${Date.now() - t0} ms\n${r.stdout.slice(-2000)}`);
  return r;
};

/** The JSON lines lvssync logged to the journal on lvs1. */
async function daemonLog(): Promise<{ msg: string; [k: string]: unknown }[]> {
  return (await lab.journal('lvs1', 'lvssync'))
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg: string });
}

async function mainPid(): Promise<number> {
  return Number((await lab.systemctl('lvs1', ['show', '-p', 'MainPID', '--value', 'lvssync'])).stdout.trim());
}

function install(host: Director, deb: PackageResult) {
  copyFileSync(deb.deb, lab.pathOn(host, `/root/${path.basename(deb.deb)}`));
  return sh(host, `apt-get install -y /root/${path.basename(deb.deb)} 2>&1`);
}

describe.skipIf(unavailable !== undefined)('the Debian package on booted Debian 12 and 13 directors', () => {
  beforeAll(async () => {
    v1 = await buildPackage({ outDir: path.join('/tmp', `lvssync-${NAME}-debs`) });
    lab = await startSystemdLab({ name: NAME, log: (l) => console.log(l) });
  }, 900_000);

  afterAll(async () => {
    if (lab) await stopSystemdLab(lab.dir);
    if (v1) rmSync(path.dirname(v1.deb), { recursive: true, force: true });
  }, 120_000);

  it('is lintian-clean apart from its documented overrides', () => {
    if (v1.lintian === undefined)
      throw new Error('lintian is not installed (scripts/setup-host.sh installs it)');
    expect(v1.lintian.split('\n').filter((l) => /^[EW]: /.test(l))).toEqual([]);
  });

  it("installs with apt on both releases and runs on each one's own nodejs", async () => {
    for (const [host, node] of [
      ['lvs1', /^v18\./],
      ['lvs2', /^v20\./],
    ] as const) {
      const r = await install(host, v1);
      expect(r.stdout).toMatch(/Setting up lvssync/);
      expect((await sh(host, 'node --version')).stdout.trim()).toMatch(node);
      expect((await sh(host, 'lvssync --version')).stdout.trim()).toBe(v1.version);
      // the first run of a command leaves its code cache for the next ones
      await sh(host, 'lvssync check --no-external >/dev/null', true);
      const nodeVersion = (await sh(host, 'node --version')).stdout.trim();
      expect(existsSync(lab.pathOn(host, `/var/cache/lvssync/check-${nodeVersion}-x64.v8`))).toBe(true);
      // not enabled on install: only the primary runs the daemon
      expect((await lab.systemctl(host, ['is-enabled', 'lvssync'], true)).stdout.trim()).toBe('disabled');
      expect(statSync(lab.pathOn(host, '/var/lib/lvssync')).mode & 0o777).toBe(0o700);
      expect(existsSync(lab.pathOn(host, '/usr/share/man/man8/lvssync.8.gz'))).toBe(true);
      expect(existsSync(lab.pathOn(host, '/usr/share/doc/lvssync/examples/lvssync.example.yaml'))).toBe(true);
      // the completion, generated from the command table, completes a command's options
      const bash = await lab.exec(host, [
        'bash',
        '-c',
        '. /usr/share/bash-completion/completions/lvssync && COMP_WORDS=(lvssync push --d) COMP_CWORD=2 && _lvssync && echo "${COMPREPLY[@]}"',
      ]);
      expect(bash.stdout.trim()).toBe('--dry-run');
    }
  }, 300_000);

  it('lvssync init sets up the pair; the first push reloads both directors through systemctl', async () => {
    const init = await sh('lvs1', 'lvssync init --yes');
    const line = init.stdout
      .split('\n')
      .find((l) => l.startsWith('command="lvssync agent",restrict ssh-ed25519 '));
    expect(line).toBeDefined();
    writeFileSync(lab.pathOn('lvs2', '/root/.ssh/authorized_keys'), `${line}\n`, { mode: 0o600 });
    // a change to push: lvs2's copy differs
    await sh('lvs1', `sed -i 's/weight 50/weight 51/' ${FWM}`);
    const before = (await lab.journal('lvs2', 'keepalived'))
      .split('\n')
      .filter((l) => /Reload complete|Reloading/.test(l)).length;
    const push = await sh('lvs1', 'lvssync push --yes 2>&1', true);
    expect(push.code, push.stdout).toBe(0);
    expect(lab.readFile('lvs2', FWM)).toContain('weight 51');
    expect(lab.readFile('lvs2', '/etc/keepalived/keepalived.conf')).toMatch(/router_id LVS2/);
    // one root file system: the committed file is the staged one under a second name, not a copy
    const links = await sh('lvs2', `stat -c '%h %i' ${FWM} /var/lib/lvssync/staging/tree${FWM}`);
    const [live, staged] = links.stdout.trim().split('\n');
    expect(live).toMatch(/^2 /);
    expect(staged).toBe(live);
    const after = (await lab.journal('lvs2', 'keepalived'))
      .split('\n')
      .filter((l) => /Reload complete|Reloading/.test(l)).length;
    expect(after).toBeGreaterThan(before);
    expect(await lab.journal('lvs2', 'ferm')).toMatch(/Reload/);
  }, 120_000);

  it('the daemon under systemd: ready before a reload can reach it, pushes edits, logs to the journal', async () => {
    await lab.systemctl('lvs1', ['enable', '--now', 'lvssync']);
    // Type=notify: systemctl returns once the daemon handles SIGHUP, so a reload at once is safe
    await lab.systemctl('lvs1', ['restart', 'lvssync']);
    const pid = await mainPid();
    await lab.systemctl('lvs1', ['reload', 'lvssync']);
    expect((await lab.systemctl('lvs1', ['is-active', 'lvssync'], true)).stdout.trim()).toBe('active');
    expect(await mainPid()).toBe(pid);
    await until('the reload in the journal', async () =>
      (await daemonLog()).some((l) => l.msg === 'configuration reloaded'),
    );

    await sh('lvs1', `sed -i 's/weight 51/weight 52/' ${FWM}`);
    await until('lvs2 to follow the edit', () => lab.readFile('lvs2', FWM).includes('weight 52'));
    await until('the push in the journal', async () => (await daemonLog()).some((l) => l.msg === 'pushed'));
    expect(await lab.journal('lvs1', 'lvssync')).toMatch(/Started lvssync\.service/);
  }, 120_000);

  it('every path the daemon writes is allowed by the unit hardening (audit reports, textfile)', async () => {
    // the lab's audit runs every 20 s and stores its report and node-exporter's textfile
    await until(
      "the daemon's audit textfile",
      () => existsSync(lab.pathOn('lvs1', '/var/lib/prometheus/node-exporter/lvssync.prom')),
      60_000,
    );
    expect(
      readFileSync(lab.pathOn('lvs1', '/var/lib/prometheus/node-exporter/lvssync.prom'), 'utf8'),
    ).toMatch(/^lvssync_/m);
    const journal = await lab.journal('lvs1', 'lvssync');
    expect(journal).not.toMatch(/EROFS|read-only file system|EACCES|EPERM|not writable/i);
    // and the check itself works: with the textfile directory left out of ReadWritePaths, the daemon
    // names it at start
    await sh(
      'lvs1',
      'mkdir -p /etc/systemd/system/lvssync.service.d && printf "[Service]\\nReadWritePaths=\\nReadWritePaths=/var/lib/lvssync /etc/keepalived /etc/ferm /run\\n" > /etc/systemd/system/lvssync.service.d/ro.conf',
    );
    await lab.systemctl('lvs1', ['daemon-reload']);
    await lab.systemctl('lvs1', ['restart', 'lvssync']);
    await until('the complaint', async () =>
      /audit\.prometheus \/var\/lib\/prometheus\/node-exporter is not writable \(read-only file system\); under systemd/.test(
        await lab.journal('lvs1', 'lvssync'),
      ),
    );
    await sh('lvs1', 'rm -r /etc/systemd/system/lvssync.service.d');
    await lab.systemctl('lvs1', ['daemon-reload']);
    await lab.systemctl('lvs1', ['restart', 'lvssync']);
  }, 120_000);

  it('systemctl stop during a push lets the push finish, reloads included, and stops at once', async () => {
    await sh('lvs1', `sed -i 's/weight 52/weight 60/' ${FWM}`);
    await until(
      'the push to be under way',
      () => {
        try {
          return JSON.parse(lab.readFile('lvs1', '/var/lib/lvssync/watch-status.json')).health === 'pushing';
        } catch {
          return false;
        }
      },
      30_000,
    );
    const t0 = Date.now();
    // systemctl waits for the stop job; a reload the push asks for meanwhile must not wait for it
    await lab.systemctl('lvs1', ['stop', 'lvssync']);
    const stopMs = Date.now() - t0;
    const show = (await lab.systemctl('lvs1', ['show', '-p', 'Result', 'lvssync'])).stdout;
    expect(show, `stopped after ${stopMs} ms`).toMatch(/Result=success/);
    expect(stopMs).toBeLessThan(30_000);
    expect(lab.readFile('lvs2', FWM)).toContain('weight 60');
    await sh('lvs1', `sed -i 's/weight 60/weight 52/' ${FWM}`);
    await lab.systemctl('lvs1', ['start', 'lvssync']);
    await until('lvs2 back in step', () => lab.readFile('lvs2', FWM).includes('weight 52'));
  }, 120_000);

  it('systemctl stop is clean', async () => {
    await lab.systemctl('lvs1', ['stop', 'lvssync']);
    const show = (await lab.systemctl('lvs1', ['show', '-p', 'Result,ExecMainStatus,ActiveState', 'lvssync']))
      .stdout;
    expect(show).toMatch(/Result=success/);
    expect(show).toMatch(/ExecMainStatus=0/);
    expect(show).toMatch(/ActiveState=inactive/);
    expect((await daemonLog()).some((l) => l.msg === 'stopped')).toBe(true);
  }, 60_000);

  it('an upgrade with the daemon running restarts it on the new version, keeps the state, converges', async () => {
    await lab.systemctl('lvs1', ['start', 'lvssync']);
    const pid = await mainPid();
    const v2 = await buildPackage({
      version: `${v1.version}+upgrade1`,
      outDir: path.dirname(v1.deb),
      lintian: false,
    });
    const versionsBefore = (await sh('lvs1', 'lvssync rollback --list 2>&1')).stdout;
    for (const host of ['lvs2', 'lvs1'] as const) {
      const r = await install(host, v2);
      expect(r.stdout).toMatch(/Unpacking lvssync .* over/);
      expect((await sh(host, 'lvssync --version')).stdout.trim()).toBe(v2.version);
    }
    expect((await lab.systemctl('lvs1', ['is-active', 'lvssync'], true)).stdout.trim()).toBe('active');
    expect(await mainPid()).not.toBe(pid);
    expect((await sh('lvs1', 'lvssync rollback --list 2>&1')).stdout).toBe(versionsBefore);
    await sh('lvs1', `sed -i 's/weight 52/weight 53/' ${FWM}`);
    await until('lvs2 to follow after the upgrade', () => lab.readFile('lvs2', FWM).includes('weight 53'));
  }, 300_000);

  it('remove keeps /etc/lvssync and the state; purge removes the state', async () => {
    // the primary first: remove stops its daemon (an agent session open on lvs2 during lvs2's purge
    // would write its state again)
    const t0 = Date.now();
    await sh('lvs1', 'apt-get remove -y lvssync 2>&1');
    if (Date.now() - t0 > 10_000)
      console.log((await lab.journal('lvs1', 'lvssync')).split('\n').slice(-40).join('\n'));
    expect((await lab.systemctl('lvs1', ['is-active', 'lvssync'], true)).stdout.trim()).not.toBe('active');
    expect(existsSync(lab.pathOn('lvs1', '/etc/lvssync/id_ed25519'))).toBe(true);
    await until(
      'no agent left on lvs2',
      async () => (await sh('lvs2', 'pgrep -f "[l]vssync agent"', true)).code === 1,
    );
    await sh('lvs2', 'apt-get remove -y lvssync 2>&1');
    expect(existsSync(lab.pathOn('lvs2', '/usr/bin/lvssync'))).toBe(false);
    expect(existsSync(lab.pathOn('lvs2', '/etc/lvssync/lvssync.yaml'))).toBe(true);
    expect(existsSync(lab.pathOn('lvs2', '/var/lib/lvssync/history'))).toBe(true);
    await sh('lvs2', 'apt-get purge -y lvssync 2>&1');
    expect(existsSync(lab.pathOn('lvs2', '/var/lib/lvssync'))).toBe(false);
    expect(existsSync(lab.pathOn('lvs2', '/var/cache/lvssync'))).toBe(false);
    expect(existsSync(lab.pathOn('lvs2', '/etc/lvssync/lvssync.yaml'))).toBe(true);
  }, 180_000);
});
