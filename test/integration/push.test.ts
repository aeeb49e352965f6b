// lvssync push in the lab: lvs1 pushes to lvs2 over real SSH to the forced-command agent, with real
// keepalived -t, ferm and iptables on both sides. Every failure path must leave lvs2 byte-identical
// to before and running.
import { spawn } from 'node:child_process';
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ADDR, DIRECTORS, type Lab, LVSSYNC_YAML, REPO } from '../../scripts/lab/lab.js';
import { validateConfig } from '../../src/core/config.js';
import { PROTOCOL_VERSION } from '../../src/core/protocol.js';
import { renderForNode } from '../../src/core/render.js';
import { controlPath, openSshArgv } from '../../src/shell/openssh.js';
import {
  countAgents,
  edit,
  FERM,
  FWM,
  failKeepalivedReloadOnce,
  KA,
  labUnavailable,
  lvssync,
  reloadsOf,
  resetDirectors,
  slowKeepalivedReload,
  tree,
  useLab,
  writeUnrecoverableJournal,
} from '../helpers/lab.js';

const unavailable = labUnavailable();
const MAIN = path.join(REPO, 'dist', 'src', 'main.js');

/**
 * Waits up to `ms` for lvs2's files to be `before` again (and, with `closed`, its transaction
 * finished: no journal), then asserts it.
 */
async function expectRestored(
  l: Lab,
  before: Record<string, string>,
  ms: number,
  closed = false,
): Promise<void> {
  const journal = l.pathOn('lvs2', '/var/lib/lvssync/journal.json');
  const done = () =>
    (!closed || !existsSync(journal)) && JSON.stringify(tree(l, 'lvs2')) === JSON.stringify(before);
  for (const until = Date.now() + ms; Date.now() < until && !done(); )
    await new Promise((res) => setTimeout(res, 100));
  if (closed) expect(existsSync(journal)).toBe(false);
  expect(tree(l, 'lvs2')).toEqual(before);
}

/**
 * The agents serving a push on lvs2 of this lab (in its network namespace; not their transaction
 * watchers or ferm guards), by pid.
 */
function pushAgents(l: Lab): number[] {
  const ns = readlinkSync(`/proc/${l.state.holders.lvs2}/ns/net`);
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
        return (
          cmd.includes('agent') &&
          !cmd.includes('--watch-tx') &&
          !cmd.includes('--guard') &&
          readlinkSync(`/proc/${p}/ns/net`) === ns
        );
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** lvs2's live filter table. */
async function filterRules(l: Lab): Promise<string> {
  const r = await l.exec('lvs2', [
    'sh',
    '-c',
    'iptables-legacy-save -t filter 2>/dev/null || iptables-save -t filter',
  ]);
  return r.stdout;
}

describe.skipIf(unavailable !== undefined)('lvssync push (lab)', () => {
  const lab = useLab('tpush');

  beforeEach(async () => {
    const l = lab();
    resetDirectors(l);
    for (const d of DIRECTORS) {
      await l.applyFerm(d);
      if (!l.proc(d, 'keepalived')) await l.startKeepalived(d);
      await l.exec(d, ['sh', '/etc/lvssync/lab/keepalived-reload']);
    }
    await l.waitForVipHolder();
  }, 60_000);

  it('makes lvs2 byte-identical to the render (router_id LVS2), reloads both in order, VIPs stay, marks present', async () => {
    const l = lab();
    const holder = await l.waitForVipHolder();
    edit(l, 'lvs1', FWM, (s) => s.replace(/weight 50/g, 'weight 70'));
    l.writeFile(
      'lvs1',
      '/etc/keepalived/conf.d/fwm-200.conf',
      'virtual_server fwmark 200 {\n    lb_algo wlc\n    lb_kind DR\n    real_server 198.51.100.10 0 {\n        weight 1\n    }\n}\n',
      0o644,
    );
    edit(l, 'lvs1', FERM, (s) => `${s}&LVS_MARK(198.51.100.100, 200);\n`);
    const reloads = { lvs1: await reloadsOf(l, 'lvs1'), lvs2: await reloadsOf(l, 'lvs2') };
    const r = await lvssync(l, 'lvs1', 'push', '--yes', '--json');
    expect(r.stderr).toBe('');
    const j = JSON.parse(r.stdout);
    expect(j.result).toBe('pushed');
    expect(r.code).toBe(0);
    // lvs2 = lvs1 rendered for lvs2: only router_id differs
    const mine = tree(l, 'lvs1');
    const theirs = tree(l, 'lvs2');
    const texts = new Map(Object.entries(mine).map(([p, v]) => [p, v.slice(v.indexOf(' ') + 1)]));
    const rendered = renderForNode(texts, [KA, FWM, '/etc/keepalived/conf.d/fwm-200.conf'], {
      node: 'lvs2',
      routerId: 'LVS2',
      hostLines: [],
    });
    for (const [p, v] of Object.entries(mine)) {
      const mode = v.slice(0, v.indexOf(' '));
      expect(theirs[p]).toBe(`${mode} ${rendered.files.get(p)}`);
    }
    expect(Object.keys(theirs).sort()).toEqual(Object.keys(mine).sort());
    expect(l.readFile('lvs2', KA)).toContain('router_id LVS2');
    expect(l.readFile('lvs1', KA)).toContain('router_id LVS1');
    // ferm before keepalived; the director without the VIPs first
    const other = holder === 'lvs1' ? 'lvs2' : 'lvs1';
    expect(
      j.steps
        .filter((s: { step: string }) => s.step.startsWith('reload'))
        .map((s: { host: string; step: string }) => `${s.host} ${s.step}`),
    ).toEqual([
      `${other} reload ferm`,
      `${other} reload keepalived`,
      `${holder} reload ferm`,
      `${holder} reload keepalived`,
    ]);
    expect(await reloadsOf(l, 'lvs1')).toBeGreaterThan(reloads.lvs1);
    expect(await reloadsOf(l, 'lvs2')).toBeGreaterThan(reloads.lvs2);
    expect(await l.holdersOf(ADDR.clusterVip)).toEqual([holder]);
    for (const d of DIRECTORS) expect(await l.iptablesSave(d)).toMatch(/MARK --set-xmark 0xc8\/0xffffffff/);
    // a second push finds nothing to do
    const again = JSON.parse((await lvssync(l, 'lvs1', 'push', '--yes', '--json')).stdout);
    expect(again.result).toBe('in-sync');
    // on a terminal, rollback says what it will restore and asks; "n" leaves lvs2 as it is
    const tty = await l.exec(
      'lvs1',
      ['script', '-qec', `${process.execPath} ${MAIN} rollback`, '/dev/null'],
      { input: 'n\n', allowFail: true, timeoutMs: 60_000 },
    );
    expect(tty.stdout).toMatch(/lvs2: restore version \S+ \(commit, [^)]+\): \d+ file\(s\)/);
    expect(tty.stdout).toContain('  /etc/keepalived/conf.d/fwm-100.conf');
    expect(tty.stdout).toContain('Roll lvs2 back? [y/N]');
    expect(tty.stdout).toContain('not rolled back (declined)');
    expect(l.readFile('lvs2', FWM)).not.toContain('weight 50');
    // lvssync rollback restores what lvs2 had before the push
    const rb = await lvssync(l, 'lvs1', 'rollback');
    expect(rb.code).toBe(0);
    expect(l.readFile('lvs2', FWM)).toContain('weight 50');
    expect(() => l.readFile('lvs2', '/etc/keepalived/conf.d/fwm-200.conf')).toThrow();
  });

  it("a new agent runs ferm --noexec only when ferm's files changed: the verdicts outlive the processes (verdicts.json)", async () => {
    const l = lab();
    const push = async () => {
      const r = await lvssync(l, 'lvs1', 'push', '--yes', '--json');
      const j = JSON.parse(r.stdout);
      expect(j.result).toBe('pushed');
      return j.peers[0].timings as Record<string, number>;
    };
    edit(l, 'lvs1', FERM, (s) => `${s}&LVS_MARK(198.51.100.100, 210);\n`);
    edit(l, 'lvs1', FWM, (s) => s.replace(/weight 50/g, 'weight 56'));
    expect((await push()).ferm).toBeGreaterThan(0);
    expect(existsSync(l.pathOn('lvs2', '/var/lib/lvssync/verdicts.json'))).toBe(true);
    // another command, another agent, the same ferm files: ferm's verdict is the one kept
    edit(l, 'lvs1', FWM, (s) => s.replace(/weight 56/g, 'weight 57'));
    expect((await push()).ferm).toBe(0);
    // ferm's files changed: ferm runs
    edit(l, 'lvs1', FERM, (s) => s.replace('&LVS_MARK(198.51.100.100, 210);\n', ''));
    expect((await push()).ferm).toBeGreaterThan(0);
    expect(l.readFile('lvs2', FWM)).toContain('weight 57');
  });

  it('never sends an invalid set: exit 1, the error at file:line, lvs2 untouched', async () => {
    const l = lab();
    const before = tree(l, 'lvs2');
    edit(l, 'lvs1', FWM, (s) => s.replace('lb_algo wlc', 'lb_algo wlcc'));
    const r = await lvssync(l, 'lvs1', 'push', '--yes');
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('/etc/keepalived/conf.d/fwm-100.conf:3:');
    expect(r.stdout).toContain('nothing left this host');
    expect(tree(l, 'lvs2')).toEqual(before);
  });

  it("keepalived -t's verdict here, which comes while lvs2 validates its staged copy, still stops the push", async () => {
    const l = lab();
    const before = tree(l, 'lvs2');
    // a keepalived -t on lvs1 that takes its time and then rejects the set (lvs2 runs the real one)
    const fake = mkdtempSync(path.join(tmpdir(), 'lvssync-fake-keepalived-'));
    writeFileSync(path.join(fake, 'keepalived'), '#!/bin/sh\nsleep 1\nexit 1\n', { mode: 0o755 });
    try {
      edit(l, 'lvs1', FWM, (s) => s.replace('weight 50', 'weight 61'));
      const r = await l.exec(
        'lvs1',
        ['env', `PATH=${fake}:${process.env.PATH}`, process.execPath, MAIN, 'push', '--yes', '--json'],
        { allowFail: true, timeoutMs: 120_000 },
      );
      expect({ code: r.code, out: r.stdout.slice(0, 3000) }).toMatchObject({ code: 1 });
      const j = JSON.parse(r.stdout) as {
        result: string;
        diagnostics: { code: string }[];
        timings: Record<string, number>;
      };
      expect(j.result).toBe('invalid-here');
      expect(j.diagnostics.map((d) => d.code)).toContain('KEEPALIVED_T');
      // the upload to lvs2's staging area happened before the verdict, and nothing was committed
      expect(j.timings.uploaded).toBeLessThan(j.timings['checked-here']!);
      expect(j.timings.committed).toBeUndefined();
      expect(tree(l, 'lvs2')).toEqual(before);
    } finally {
      rmSync(fake, { recursive: true, force: true });
    }
  });

  it('refuses a set that only fails on lvs2 (an interface lvs2 lacks), validated there: lvs2 untouched', async () => {
    const l = lab();
    await l.exec('lvs1', ['ip', 'link', 'add', 'eth2', 'type', 'veth', 'peer', 'name', 'eth2p']);
    try {
      const before = tree(l, 'lvs2');
      edit(l, 'lvs1', KA, (s) =>
        s.replace(
          'track_interface {\n                eth0',
          'track_interface {\n                eth0\n                eth2',
        ),
      );
      const r = await lvssync(l, 'lvs1', 'push', '--yes', '--json');
      const j = JSON.parse(r.stdout);
      expect(j.result).toBe('invalid-on-peer');
      expect(r.code).toBe(5);
      expect(
        j.diagnostics.some(
          (d: { code: string; message: string }) =>
            d.code === 'KEEPALIVED_T_HOST' && d.message.includes('eth2'),
        ),
      ).toBe(true);
      expect(tree(l, 'lvs2')).toEqual(before);
    } finally {
      await l.exec('lvs1', ['ip', 'link', 'del', 'eth2']);
    }
  });

  it('rolls lvs2 back when its reload fails, and leaves lvs1 alone', async () => {
    const l = lab();
    const before = tree(l, 'lvs2');
    // fail the first reload only (the one after the commit); the rollback's reload succeeds
    const failing = failKeepalivedReloadOnce(l, 'lvs2');
    try {
      edit(l, 'lvs1', FERM, (s) => `${s}&LVS_MARK(198.51.100.100, 300);\n`);
      l.writeFile(
        'lvs1',
        '/etc/keepalived/conf.d/fwm-300.conf',
        'virtual_server fwmark 300 {\n    lb_algo wlc\n    lb_kind DR\n    real_server 198.51.100.10 0 {\n        weight 1\n    }\n}\n',
        0o644,
      );
      const lvs1Reloads = await reloadsOf(l, 'lvs1');
      const r = await lvssync(l, 'lvs1', 'push', '--yes', '--json');
      const j = JSON.parse(r.stdout);
      expect(j.result).toBe('rolled-back');
      expect(r.code).toBe(5);
      expect(j.steps.map((s: { step: string; ok: boolean }) => `${s.step}:${s.ok}`)).toContain(
        'roll back:true',
      );
      expect(tree(l, 'lvs2')).toEqual(before);
      // lvs2's firewall is back on the old rules; lvs1 was not reloaded
      expect(await l.iptablesSave('lvs2')).not.toMatch(/0x12c/);
      expect(await l.iptablesSave('lvs1')).not.toMatch(/0x12c/);
      expect(await reloadsOf(l, 'lvs1')).toBe(lvs1Reloads);
      expect(l.proc('lvs2', 'keepalived')).toBeDefined();
    } finally {
      failing.restore();
    }
  });

  it('reloads what a push changes: keepalived alone for a conf.d edit, ferm alone for its file, and after a rollback on lvs2 what changed back there', async () => {
    const l = lab();
    const push = async () => {
      const r = await lvssync(l, 'lvs1', 'push', '--yes', '--json');
      return {
        code: r.code,
        j: JSON.parse(r.stdout) as { result: string; steps: { host: string; step: string }[] },
      };
    };
    const reloads = (j: { steps: { host: string; step: string }[] }, host?: string) =>
      j.steps
        .filter((s) => s.step.startsWith('reload') && (!host || s.host === host))
        .map((s) => `${s.host} ${s.step}`)
        .sort();
    const sessions = () =>
      (readFileSync(l.logFile('lvs2', 'sshd'), 'utf8').match(/Accepted publickey/g) ?? []).length;
    // the first push: no director knows yet what its services loaded, so each reloads both
    edit(l, 'lvs1', FWM, (s) => s.replace(/weight 50/g, 'weight 71'));
    const first = await push();
    expect(first.code).toBe(0);
    expect(reloads(first.j)).toEqual([
      'lvs1 reload ferm',
      'lvs1 reload keepalived',
      'lvs2 reload ferm',
      'lvs2 reload keepalived',
    ]);
    // a conf.d edit: keepalived alone on both, and no second SSH connection for ferm's guard
    edit(l, 'lvs1', FWM, (s) => s.replace(/weight 71/g, 'weight 72'));
    let before = sessions();
    const ka = await push();
    expect(ka.code).toBe(0);
    expect(reloads(ka.j)).toEqual(['lvs1 reload keepalived', 'lvs2 reload keepalived']);
    expect(sessions() - before).toBe(1);
    // a new mark in ferm.conf: ferm alone, with its guard's connection, live on both
    edit(l, 'lvs1', FERM, (s) => `${s}&LVS_MARK(198.51.100.100, 201);\n`);
    before = sessions();
    const fm = await push();
    expect(fm.code).toBe(0);
    expect(reloads(fm.j)).toEqual(['lvs1 reload ferm', 'lvs2 reload ferm']);
    expect(sessions() - before).toBe(2);
    for (const d of DIRECTORS) expect(await l.iptablesSave(d)).toMatch(/0xc9\/0xffffffff/);
    // lvs2 reloads ferm with a new mark, then its keepalived fails once: lvs2 rolls back, both of its
    // services reloaded with its previous files (ferm had loaded the new set a moment before)
    const failing = failKeepalivedReloadOnce(l, 'lvs2');
    try {
      edit(l, 'lvs1', FERM, (s) => `${s}&LVS_MARK(198.51.100.100, 202);\n`);
      edit(l, 'lvs1', FWM, (s) => s.replace(/weight 72/g, 'weight 73'));
      const failed = await push();
      expect(failed.code).toBe(5);
      expect(failed.j.result).toBe('rolled-back');
      expect(await l.iptablesSave('lvs2')).not.toMatch(/0xca\//);
      // what its services run now is not a set lvssync validated as such: no record of it is kept
      // (its ferm's record would say the new mark), so no reload is claimed pending there
      const loaded = JSON.parse(readFileSync(l.pathOn('lvs2', '/var/lib/lvssync/loaded.json'), 'utf8'));
      expect(Object.keys(loaded)).toEqual([]);
      // the same set again: ferm reloads on lvs2 too (its files changed back there), and runs the mark
      const again = await push();
      expect(again.code).toBe(0);
      expect(reloads(again.j, 'lvs2')).toEqual(['lvs2 reload ferm', 'lvs2 reload keepalived']);
      expect(await l.iptablesSave('lvs2')).toMatch(/0xca\/0xffffffff/);
    } finally {
      failing.restore();
    }
  }, 120_000);

  it('rollback is staged and validated on lvs2 first, and undoes itself when a reload fails', async () => {
    const l = lab();
    edit(l, 'lvs1', FWM, (s) => s.replace('weight 50', 'weight 61'));
    expect(JSON.parse((await lvssync(l, 'lvs1', 'push', '--yes', '--json')).stdout).result).toBe('pushed');
    const pushed = tree(l, 'lvs2');
    const list = JSON.parse((await lvssync(l, 'lvs1', 'rollback', '--list', '--json')).stdout) as {
      peers: { node: string; versions: { version: string; reason: string }[] }[];
    };
    expect(list.peers.map((p) => p.node)).toEqual(['lvs2']);
    const last = list.peers[0]!.versions.filter((v) => v.reason === 'commit').at(-1)!.version;
    const kept = l.pathOn('lvs2', `/var/lib/lvssync/history/${last}/files${FWM}`);
    const keptText = readFileSync(kept, 'utf8');
    expect(keptText).toContain('weight 50');
    // 1. a version that no longer checks (here: its copy damaged) is refused by lvs2's validation
    writeFileSync(kept, keptText.replace('lb_algo wlc', 'lb_algo wlcc'));
    const bad = await lvssync(l, 'lvs1', 'rollback', '--json');
    const jb = JSON.parse(bad.stdout);
    expect(bad.code).toBe(5);
    expect(jb.result).toBe('invalid-on-peer');
    expect(jb.diagnostics).toContainEqual(
      expect.objectContaining({ code: 'KA_INVALID_SCHEDULER', file: FWM, severity: 'error' }),
    );
    expect(tree(l, 'lvs2')).toEqual(pushed);
    writeFileSync(kept, keptText);
    // 2. a reload that fails after the rollback's commit: lvs2 goes back to what it ran before it
    const failing = failKeepalivedReloadOnce(l, 'lvs2');
    try {
      const failed = await lvssync(l, 'lvs1', 'rollback', '--json');
      const jf = JSON.parse(failed.stdout);
      expect(failed.code).toBe(5);
      expect(jf.result).toBe('failed');
      expect(jf.steps.map((x: { step: string; ok: boolean }) => `${x.step}:${x.ok}`)).toEqual(
        expect.arrayContaining(['validate:true', 'reload keepalived:false', 'roll back:true']),
      );
      expect(tree(l, 'lvs2')).toEqual(pushed);
      expect(l.proc('lvs2', 'keepalived')).toBeDefined();
    } finally {
      failing.restore();
    }
    // 3. and then it goes through: lvs2 back on weight 50, what it replaced kept as a 'restore' version
    const ok = await lvssync(l, 'lvs1', 'rollback', '--json');
    const jo = JSON.parse(ok.stdout);
    expect(ok.code).toBe(0);
    expect(jo).toMatchObject({
      result: 'rolled-back',
      peers: [{ node: 'lvs2', version: last, paths: [FWM] }],
    });
    expect(l.readFile('lvs2', FWM)).toContain('weight 50');
    const after = JSON.parse((await lvssync(l, 'lvs1', 'rollback', '--list', '--json')).stdout) as {
      peers: { versions: { version: string; reason: string }[] }[];
    };
    expect(after.peers[0]!.versions.find((v) => v.version === jo.peers[0].backup)?.reason).toBe('restore');
  });

  it('pushes an extra file (files.extra) with its mode, and removes it from lvs2 when it goes from lvs1', async () => {
    const l = lab();
    const NOTIFY = '/etc/lvssync/lab/notify.sh';
    const yaml = `${LVSSYNC_YAML}files:\n  extra:\n    - ${NOTIFY}\n`;
    try {
      for (const d of DIRECTORS) l.writeFile(d, '/etc/lvssync/lvssync.yaml', yaml);
      l.writeFile('lvs1', NOTIFY, '#!/bin/sh\necho "$@" >> /run/notify.log\n', 0o750);
      const r = await lvssync(l, 'lvs1', 'push', '--yes', '--json');
      expect(JSON.parse(r.stdout).result, r.stderr).toBe('pushed');
      expect(l.readFile('lvs2', NOTIFY)).toBe(l.readFile('lvs1', NOTIFY));
      expect(statSync(l.pathOn('lvs2', NOTIFY)).mode & 0o7777).toBe(0o750);
      // gone from lvs1: gone from lvs2 (with a backup)
      rmSync(l.pathOn('lvs1', NOTIFY));
      const again = JSON.parse((await lvssync(l, 'lvs1', 'push', '--yes', '--json')).stdout);
      expect(again.result).toBe('pushed');
      expect(again.changes.map((c: { kind: string; path: string }) => `${c.kind} ${c.path}`)).toEqual([
        `delete ${NOTIFY}`,
      ]);
      expect(existsSync(l.pathOn('lvs2', NOTIFY))).toBe(false);
    } finally {
      for (const d of DIRECTORS) {
        l.writeFile(d, '/etc/lvssync/lvssync.yaml', LVSSYNC_YAML);
        rmSync(l.pathOn(d, NOTIFY), { force: true });
      }
    }
  });

  // OpenSSH's ssh (the default) and the built-in client: the same refusals, codes and words
  for (const client of ['openssh', 'builtin'] as const) {
    it(`${client}: refuses a changed or unknown host key (E_HOST_KEY), a key lvs2 does not accept (E_SSH_AUTH), a port nobody answers on (E_SSH_CONNECT): exit 4, lvs2 untouched; then pushes`, async () => {
      const l = lab();
      const yaml = LVSSYNC_YAML.replace(
        'connectTimeoutMs: 5000',
        `connectTimeoutMs: 5000\n  client: ${client}`,
      );
      expect(yaml).not.toBe(LVSSYNC_YAML);
      l.writeFile('lvs1', '/etc/lvssync/lvssync.yaml', yaml);
      const kh = l.pathOn('lvs1', '/etc/lvssync/known_hosts');
      const good = readFileSync(kh, 'utf8');
      const own = readFileSync(path.join(l.hostDir('lvs1'), 'ssh', 'ssh_host_ed25519_key.pub'), 'utf8').split(
        ' ',
      );
      writeFileSync(kh, `${ADDR.crossover.lvs2} ${own[0]} ${own[1]}\n`);
      /** A push with this lvssync.yaml on lvs1 is refused: exit 4, with these words. */
      const refused = async (text: string, words: RegExp) => {
        l.writeFile('lvs1', '/etc/lvssync/lvssync.yaml', text);
        const r = await lvssync(l, 'lvs1', 'push', '--yes');
        expect(r.code).toBe(4);
        expect(r.stderr).toMatch(words);
      };
      try {
        const before = tree(l, 'lvs2');
        edit(l, 'lvs1', FWM, (s) => s.replace(/weight 50/g, 'weight 51'));
        await refused(yaml, /HOST KEY CHANGED: lvs2 presented ssh-ed25519 SHA256:/);
        writeFileSync(kh, '');
        await refused(yaml, /not pinned/);
        writeFileSync(kh, good);
        // a key lvs2's authorized_keys does not hold
        await l.exec('lvs1', [
          'sh',
          '-c',
          'rm -f /etc/lvssync/other_key*; ssh-keygen -q -t ed25519 -N "" -f /etc/lvssync/other_key',
        ]);
        await refused(
          yaml.replace('/etc/lvssync/id_ed25519', '/etc/lvssync/other_key'),
          /lvs2 \(203\.0\.113\.252:22\) refused the key of root \(\/etc\/lvssync\/other_key\)/,
        );
        // nothing listens on port 2 of lvs2
        await refused(
          yaml.replace('router_id: LVS2', 'router_id: LVS2\n    port: 2'),
          /cannot reach lvs2 at 203\.0\.113\.252:2: .*(Connection refused|ECONNREFUSED)/,
        );
        expect(tree(l, 'lvs2')).toEqual(before);
        // and with everything right, this client pushes
        l.writeFile('lvs1', '/etc/lvssync/lvssync.yaml', yaml);
        const ok = await lvssync(l, 'lvs1', 'push', '--yes', '--json');
        expect(JSON.parse(ok.stdout).result).toBe('pushed');
        expect(l.readFile('lvs2', FWM)).toContain('weight 51');
      } finally {
        writeFileSync(kh, good);
        l.writeFile('lvs1', '/etc/lvssync/lvssync.yaml', LVSSYNC_YAML);
      }
    });
  }

  it('stops on a file edited on lvs2 since lvssync wrote it (exit 6), and --force overwrites it with a backup', async () => {
    const l = lab();
    edit(l, 'lvs1', FWM, (s) => s.replace(/weight 50/g, 'weight 52'));
    expect((await lvssync(l, 'lvs1', 'push', '--yes')).code).toBe(0);
    edit(l, 'lvs2', FWM, (s) => s.replace('delay_loop 30', 'delay_loop 31'));
    edit(l, 'lvs1', FWM, (s) => s.replace(/weight 52/g, 'weight 53'));
    const handEdited = l.readFile('lvs2', FWM);
    const r = await lvssync(l, 'lvs1', 'push', '--yes');
    expect(r.code).toBe(6);
    expect(r.stdout).toContain(`CONFLICT ${FWM}`);
    expect(r.stderr).toContain('push --force');
    expect(l.readFile('lvs2', FWM)).toBe(handEdited);
    const f = await lvssync(l, 'lvs1', 'push', '--yes', '--force');
    expect(f.code).toBe(0);
    expect(l.readFile('lvs2', FWM)).toContain('weight 53');
    // the hand edit is in lvs2's history
    const hist = l.pathOn('lvs2', '/var/lib/lvssync/history');
    const kept = readdirSync(hist).map((v) => {
      try {
        return readFileSync(path.join(hist, v, 'files', FWM), 'utf8');
      } catch {
        return '';
      }
    });
    expect(kept).toContain(handEdited);
  });

  it('the agent refuses paths outside its managed set and symlinks, whatever the primary sends', async () => {
    const l = lab();
    const key = '/etc/lvssync/id_ed25519';
    const ssh = [
      'ssh',
      '-T',
      '-o',
      'BatchMode=yes',
      '-o',
      'UserKnownHostsFile=/etc/lvssync/known_hosts',
      '-i',
      key,
      `root@${ADDR.crossover.lvs2}`,
      'anything',
    ];
    const txid = 'abcdef0123456789';
    const req = (o: object, id: number) => JSON.stringify({ id, ...o });
    const data = Buffer.from('owned\n').toString('base64');
    const input = [
      req({ op: 'hello', version: PROTOCOL_VERSION, primary: 'lvs1' }, 1),
      req({ op: 'begin', txid }, 2),
      req({ op: 'put', txid, path: '/etc/passwd', mode: 0o644, data }, 3),
      req({ op: 'put', txid, path: '/etc/keepalived/../passwd', mode: 0o644, data }, 4),
      req({ op: 'put', txid, path: '/etc/keepalived/conf.d/x.conf', mode: 0o4755, data }, 5),
      req({ op: 'read', path: '/etc/shadow' }, 6),
      req({ op: 'put', txid, path: '/etc/keepalived/conf.d/link/x.conf', mode: 0o644, data }, 7),
      '',
    ].join('\n');
    // a symlink inside conf.d pointing out of the managed tree
    await l.exec('lvs2', ['ln', '-s', '/tmp', '/etc/keepalived/conf.d/link']);
    try {
      const r = await l.exec('lvs1', ssh, { input, allowFail: true });
      const replies = r.stdout
        .trim()
        .split('\n')
        .map((x) => JSON.parse(x));
      expect(replies[0].ok).toBe(true);
      expect(replies[1].ok).toBe(false); // begin: the manifest meets the symlink
      expect(replies[1].error.message).toMatch(/symlink/);
      for (const x of replies.slice(2)) expect(x.ok).toBe(false);
      expect(replies[2].error.message).toMatch(/outside the managed paths/);
      expect(replies[3].error.message).toMatch(/not a normalised absolute path/);
      expect(replies[5].error.message).toMatch(/outside the managed paths/);
      expect(readFileSync('/etc/passwd', 'utf8')).not.toContain('owned');
      // and a normal push refuses to touch lvs2 while the symlink is there
      edit(l, 'lvs1', FWM, (s) => s.replace(/weight 50/g, 'weight 54'));
      const p = await lvssync(l, 'lvs1', 'push', '--yes');
      expect(p.code).not.toBe(0);
      expect(p.stderr).toMatch(/conf.d\/link is a symlink/);
      expect(l.readFile('lvs2', FWM)).toContain('weight 50');
    } finally {
      await l.exec('lvs2', ['rm', '-f', '/etc/keepalived/conf.d/link']);
    }
  });

  /** Runs fn with lvs1 reaching lvs2 through a proxy that cuts the connection when told to. */
  async function throughProxy(
    l: Lab,
    cutAfter: number,
    fn: (config: string, trigger: string) => Promise<void>,
  ) {
    const kh = l.pathOn('lvs1', '/etc/lvssync/known_hosts');
    const good = readFileSync(kh, 'utf8');
    const hostKey = readFileSync(
      path.join(l.hostDir('lvs2'), 'ssh', 'ssh_host_ed25519_key.pub'),
      'utf8',
    ).split(' ');
    writeFileSync(kh, `${good}[127.0.0.1]:2222 ${hostKey[0]} ${hostKey[1]}\n`);
    const config = '/etc/lvssync/cut.yaml';
    l.writeFile(
      'lvs1',
      config,
      LVSSYNC_YAML.replace(`address: ${ADDR.crossover.lvs2}`, 'address: 127.0.0.1\n    port: 2222'),
    );
    const trigger = path.join(l.dir, 'cut-now');
    const proxy = l.spawnOn('lvs1', 'proxy', [
      process.execPath,
      path.join(REPO, 'dist', 'scripts', 'lab', 'cut-proxy.js'),
      '--listen',
      '2222',
      '--to',
      `${ADDR.crossover.lvs2}:22`,
      '--cut-after-bytes',
      String(cutAfter),
      '--trigger',
      trigger,
    ]);
    const until = Date.now() + 5000;
    while (!readFileSync(l.logFile('lvs1', 'proxy'), 'utf8').includes('listening') && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 50));
    }
    try {
      await fn(config, trigger);
    } finally {
      await l.killProc(proxy);
      writeFileSync(kh, good);
    }
  }

  it('an SSH connection cut during the upload leaves lvs2 byte-identical and running', async () => {
    const l = lab();
    const before = tree(l, 'lvs2');
    // a large new file, so that the cut lands in the middle of the upload
    const big = `${'# padding to make the upload long enough to be cut half-way\n'.repeat(8000)}virtual_server fwmark 500 {\n    lb_algo wlc\n    lb_kind DR\n    real_server 198.51.100.10 0 {\n        weight 1\n    }\n}\n`;
    l.writeFile('lvs1', '/etc/keepalived/conf.d/fwm-500.conf', big, 0o644);
    edit(l, 'lvs1', FERM, (s) => `${s}&LVS_MARK(198.51.100.100, 500);\n`);
    await throughProxy(l, 150_000, async (config) => {
      const r = await lvssync(l, 'lvs1', 'push', '--yes', '--config', config);
      expect(r.code).toBe(5);
      expect(r.stderr).toMatch(/connection to lvs2 lost/);
    });
    await new Promise((res) => setTimeout(res, 500));
    expect(tree(l, 'lvs2')).toEqual(before);
    // the staging mirror stays for the next session, but what the cut push staged is marked dirty
    // (copied again from the live file next time): every other staged copy is the live file
    const staging = l.pathOn('lvs2', '/var/lib/lvssync/staging');
    const kept = JSON.parse(readFileSync(path.join(staging, 'mirror.json'), 'utf8')) as {
      entries: [string, string][];
    };
    const ids = new Map(kept.entries);
    expect(ids.get('/etc/keepalived/conf.d/fwm-500.conf') ?? 'dirty').toBe('dirty');
    for (const [p, id] of ids) {
      if (id === 'dirty') continue;
      expect(readFileSync(path.join(staging, 'tree', p), 'utf8'), p).toBe(l.readFile('lvs2', p));
    }
    expect(l.proc('lvs2', 'keepalived')).toBeDefined();
    // and the next push goes through (no lock or journal left behind)
    const again = await lvssync(l, 'lvs1', 'push', '--yes');
    expect(again.code).toBe(0);
    expect(l.readFile('lvs2', '/etc/keepalived/conf.d/fwm-500.conf')).toBe(big);
  }, 60_000);

  it('a rollback that cannot be done on lvs2 is reported at once, every time, and nothing hangs or stays behind', async () => {
    const l = lab();
    const journal = writeUnrecoverableJournal(l, 'lvs2', FWM);
    const agentsOn = countAgents;
    const agentsBefore = agentsOn();
    try {
      for (let i = 0; i < 2; i++) {
        const t0 = Date.now();
        const r = await lvssync(l, 'lvs1', 'push', '--yes', '--json');
        expect(Date.now() - t0).toBeLessThan(20_000);
        expect(r.code).toBe(5);
        const j = JSON.parse(r.stdout) as { result: string; error: { code: string; message: string } };
        expect(j.result).toBe('peer-cannot-write');
        expect(j.error.message).toMatch(/cannot roll back the interrupted push dead00000000beef/);
      }
      const st = await lvssync(l, 'lvs1', 'status', '--json');
      expect(st.code).toBe(1);
      expect(JSON.parse(st.stdout)).toMatchObject({
        sync: 'peer unreachable',
        peerError: expect.stringMatching(/cannot roll back the interrupted push/),
      });
      await new Promise((res) => setTimeout(res, 500));
      expect(agentsOn()).toBeLessThanOrEqual(agentsBefore);
    } finally {
      rmSync(journal, { force: true });
    }
  });

  it('an unanswered y/N question is a no after its time, and the lock is free again', async () => {
    const l = lab();
    edit(l, 'lvs1', FWM, (s) => s.replace('weight 50', 'weight 68'));
    const before = tree(l, 'lvs2');
    // a terminal (script(1) gives push a pty) whose user never answers
    const argv = l.argvOn('lvs1', [
      'env',
      'LVSSYNC_PROMPT_SECONDS=2',
      'script',
      '-qec',
      `${process.execPath} ${MAIN} push`,
      '/dev/null',
    ]);
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    const code = await new Promise<number | null>((resolve) => {
      const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
      child.on('close', (c) => {
        clearTimeout(t);
        resolve(c);
      });
    });
    child.stdin.end();
    expect(out).toMatch(/Push to lvs2 and reload\? \[y\/N\]/);
    expect(out).toMatch(/no answer within 2 s: taken as no/);
    expect(code).toBe(0);
    expect(tree(l, 'lvs2')).toEqual(before);
    // and the next run is not locked out
    const r = await lvssync(l, 'lvs1', 'push', '--yes', '--json');
    expect(JSON.parse(r.stdout).result).toBe('pushed');
  });

  it('kill -9 of the agent on lvs2 during its keepalived reload: lvs2 is restored at once, without a new connection', async () => {
    const l = lab();
    const before = tree(l, 'lvs2');
    const slow = slowKeepalivedReload(l, 'lvs2');
    try {
      edit(l, 'lvs1', FWM, (s) => s.replace('weight 50', 'weight 67'));
      const push = lvssync(l, 'lvs1', 'push', '--yes', '--json');
      await slow.reloading();
      const agents = pushAgents(l);
      expect(agents.length).toBeGreaterThan(0);
      for (const p of agents) process.kill(p, 'SIGKILL');
      const r = await push;
      expect(r.code).toBe(5);
      expect(JSON.parse(r.stdout).result).toBe('interrupted');
      // no new session: the watcher the agent left restores the files by itself
      await expectRestored(l, before, 20_000, true);
      expect(l.proc('lvs2', 'keepalived')).toBeDefined();
    } finally {
      slow.restore();
    }
  });

  it('an agent stopped during its keepalived reload (SIGSTOP: the connection stays up) is given up after ssh.agentTimeoutMs; once it runs again it rolls back', async () => {
    const l = lab();
    const before = tree(l, 'lvs2');
    const slow = slowKeepalivedReload(l, 'lvs2');
    const yaml = LVSSYNC_YAML.replace(
      'connectTimeoutMs: 5000',
      'connectTimeoutMs: 5000\n  agentTimeoutMs: 5000',
    );
    expect(yaml).not.toBe(LVSSYNC_YAML);
    l.writeFile('lvs1', '/etc/lvssync/lvssync.yaml', yaml);
    let stopped: number[] = [];
    try {
      edit(l, 'lvs1', FWM, (s) => s.replace('weight 50', 'weight 68'));
      const t0 = Date.now();
      const push = lvssync(l, 'lvs1', 'push', '--yes', '--json');
      await slow.reloading();
      stopped = pushAgents(l);
      expect(stopped.length).toBeGreaterThan(0);
      for (const p of stopped) process.kill(p, 'SIGSTOP');
      const r = await push;
      // given up after its silence, not held for ever (the sshd and the TCP connection still answer)
      expect(Date.now() - t0).toBeLessThan(20_000);
      expect(r.code).toBe(5);
      const j = JSON.parse(r.stdout);
      expect(j.result).toBe('interrupted');
      expect(r.stdout).toMatch(/agent has not answered \(reload\) nor said it is alive for 5 s/);
      // it runs again, finds the primary gone and puts lvs2's files back
      for (const p of stopped.splice(0)) process.kill(p, 'SIGCONT');
      await expectRestored(l, before, 30_000, true);
      expect(l.proc('lvs2', 'keepalived')).toBeDefined();
    } finally {
      for (const p of stopped) process.kill(p, 'SIGCONT');
      slow.restore();
      l.writeFile('lvs1', '/etc/lvssync/lvssync.yaml', LVSSYNC_YAML);
    }
  });

  it('an SSH connection cut after the commit, during the reloads, makes lvs2 roll back by itself', async () => {
    const l = lab();
    const before = tree(l, 'lvs2');
    const reloadScript = l.pathOn('lvs2', '/etc/lvssync/lab/keepalived-reload');
    const good = readFileSync(reloadScript, 'utf8');
    writeFileSync(reloadScript, `sleep 2\n${good}`); // a slow reload: the cut lands after the commit
    try {
      edit(l, 'lvs1', FERM, (s) => `${s}&LVS_MARK(198.51.100.100, 600);\n`);
      l.writeFile(
        'lvs1',
        '/etc/keepalived/conf.d/fwm-600.conf',
        'virtual_server fwmark 600 {\n    lb_algo wlc\n    lb_kind DR\n    real_server 198.51.100.10 0 {\n        weight 1\n    }\n}\n',
        0o644,
      );
      await throughProxy(l, 0, async (config, trigger) => {
        const push = lvssync(l, 'lvs1', 'push', '--yes', '--config', config);
        const journal = l.pathOn('lvs2', '/var/lib/lvssync/journal.json');
        const until = Date.now() + 20_000;
        while (!existsSync(journal) && Date.now() < until) await new Promise((res) => setTimeout(res, 10));
        expect(existsSync(journal)).toBe(true);
        writeFileSync(trigger, 'now');
        const r = await push;
        expect(r.code).toBe(5);
      });
      await expectRestored(l, before, 20_000, true);
      expect(await l.iptablesSave('lvs2')).not.toMatch(/0x258/);
      expect(l.proc('lvs2', 'keepalived')).toBeDefined();
    } finally {
      writeFileSync(reloadScript, good);
    }
  }, 60_000);

  it('a second agent connection (the ferm confirmation) does not roll back a live push', async () => {
    const l = lab();
    edit(l, 'lvs1', FERM, (s) => `${s}&LVS_MARK(198.51.100.100, 400);\n`);
    l.writeFile(
      'lvs1',
      '/etc/keepalived/conf.d/fwm-400.conf',
      'virtual_server fwmark 400 {\n    lb_algo wlc\n    lb_kind DR\n    real_server 198.51.100.10 0 {\n        weight 1\n    }\n}\n',
      0o644,
    );
    const r = await lvssync(l, 'lvs1', 'push', '--yes', '--json');
    expect(JSON.parse(r.stdout).result).toBe('pushed');
    // wait past the ferm guard's deadline: it must not have reverted anything
    await new Promise((res) => setTimeout(res, 11_000));
    expect(await l.iptablesSave('lvs2')).toMatch(/0x190/);
    expect(l.readFile('lvs2', FERM)).toContain('400');
  }, 30_000);

  /**
   * A ferm.conf that drops new SSH connections from lvs1 on lvs2 (but keeps the open one) is pushed:
   * the guard's proof fails, and the push's own rollback over the open connection restores lvs2.
   */
  async function expectNewSshRefusalRolledBack(l: Lab, before: ReturnType<typeof tree>): Promise<void> {
    edit(
      l,
      'lvs1',
      FERM,
      (s) =>
        `${s}table filter chain INPUT {\n    mod state state (ESTABLISHED RELATED) ACCEPT;\n    saddr ${ADDR.crossover.lvs1} proto tcp dport 22 DROP;\n}\n`,
    );
    const r = await lvssync(l, 'lvs1', 'push', '--yes', '--json');
    const j = JSON.parse(r.stdout);
    expect(j.result).toBe('rolled-back');
    expect(JSON.stringify(j.steps)).toMatch(/no new SSH connection/);
    await expectRestored(l, before, 20_000);
    expect(await filterRules(l)).not.toMatch(/--dport 22 -j DROP/);
  }

  it('a firewall that refuses the primary a new SSH connection is rolled back on lvs2', async () => {
    const l = lab();
    const before = tree(l, 'lvs2');
    await expectNewSshRefusalRolledBack(l, before);
  }, 60_000);

  it('the ferm guard proves a new connection even while a kept master (ssh.keepConnection) carries the push', async () => {
    const l = lab();
    const before = tree(l, 'lvs2');
    const yaml = l.readFile('lvs1', '/etc/lvssync/lvssync.yaml');
    l.writeFile(
      'lvs1',
      '/etc/lvssync/lvssync.yaml',
      yaml.replace(/^ssh:\n/m, 'ssh:\n  keepConnection: true\n'),
    );
    // the daemon's master, made by hand: lvssync's key, its socket where the daemon keeps it
    await l.exec('lvs1', ['install', '-d', '-m', '700', '/var/lib/lvssync/ssh']);
    const sock = '/var/lib/lvssync/ssh/lvs2.sock';
    // lvssync's own argv for the master (the lab's lvs1 paths are the same inside its namespace)
    const { config } = validateConfig(parse(l.readFile('lvs1', '/etc/lvssync/lvssync.yaml')));
    const lvs2 = { name: 'lvs2', host: ADDR.crossover.lvs2, port: 22 };
    expect(controlPath(config, lvs2)).toBe(sock);
    const master = l.spawnOn('lvs1', 'ssh-master', ['ssh', ...openSshArgv(config, lvs2, undefined)]);
    try {
      for (const t = Date.now() + 10_000; !existsSync(l.pathOn('lvs1', sock)) && Date.now() < t; )
        await new Promise((r) => setTimeout(r, 50));
      expect(existsSync(l.pathOn('lvs1', sock))).toBe(true);
      const logins = () =>
        (readFileSync(l.logFile('lvs2', 'sshd'), 'utf8').match(/Accepted publickey for root/g) ?? []).length;
      const loginsBefore = logins();
      await expectNewSshRefusalRolledBack(l, before);
      // the push itself went through the master (no login of its own before the firewall came)
      expect(logins()).toBe(loginsBefore);
    } finally {
      await l.killProc(master);
      l.writeFile('lvs1', '/etc/lvssync/lvssync.yaml', yaml);
    }
  }, 60_000);

  it('the ferm guard restores lvs2 by itself when a new firewall cuts the primary off entirely', async () => {
    const l = lab();
    const before = tree(l, 'lvs2');
    // drops every packet from lvs1 to sshd, the open connection's included: no rollback can arrive
    edit(
      l,
      'lvs1',
      FERM,
      (s) => `${s}table filter chain INPUT saddr ${ADDR.crossover.lvs1} proto tcp dport 22 DROP;\n`,
    );
    const r = await lvssync(l, 'lvs1', 'push', '--yes', '--json');
    expect(r.code).not.toBe(0);
    await expectRestored(l, before, 40_000);
    const state = l.pathOn('lvs2', '/var/lib/lvssync');
    const confirms = readdirSync(state).filter((f) => f.startsWith('confirm-'));
    expect(confirms.map((f) => readFileSync(path.join(state, f), 'utf8'))).toContain('reverted by guard\n');
    expect(await filterRules(l)).not.toMatch(/--dport 22 -j DROP/);
  }, 90_000);
});

describe.skipIf(unavailable !== undefined)('lvssync init (lab)', () => {
  const lab = useLab('tinit');
  it('pins the peer host key after confirmation, creates the key, prints the authorized_keys line', async () => {
    const l = lab();
    for (const f of ['/etc/lvssync/known_hosts', '/etc/lvssync/id_ed25519', '/etc/lvssync/id_ed25519.pub']) {
      rmSync(l.pathOn('lvs1', f), { force: true });
    }
    const refused = await lvssync(l, 'lvs1', 'init');
    expect(refused.code).toBe(2); // not a terminal and no --yes: nothing pinned blindly
    expect(refused.stderr).toContain('--yes');
    const r = await lvssync(l, 'lvs1', 'init', '--yes');
    expect(r.code).toBe(0);
    const hostKey = readFileSync(
      path.join(l.hostDir('lvs2'), 'ssh', 'ssh_host_ed25519_key.pub'),
      'utf8',
    ).split(' ');
    expect(l.readFile('lvs1', '/etc/lvssync/known_hosts')).toBe(
      `${ADDR.crossover.lvs2} ${hostKey[0]} ${hostKey[1]}\n`,
    );
    const pub = l.readFile('lvs1', '/etc/lvssync/id_ed25519.pub').trim();
    expect(r.stdout).toContain(`command="lvssync agent",restrict ${pub}`);
    const fp = await l.exec('lvs1', [
      'ssh-keygen',
      '-lf',
      path.join(l.hostDir('lvs2'), 'ssh', 'ssh_host_ed25519_key.pub'),
    ]);
    expect(r.stdout).toContain(fp.stdout.split(' ')[1]!);
  });
});
