// Three directors in the lab (lvs1 the primary, lvs2, lvs3): a push reaches every other node, each
// with its own rendering, in the order of the VRRP instances they hold; a failure on one undoes the
// ones changed before it; a director that is down does not hold up the others and is brought up to
// date when it returns; a split brain across the three is seen.
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { ADDR, type Director, type Lab, type ProcRecord } from '../../scripts/lab/lab.js';
import { renderForNode } from '../../src/core/render.js';
import {
  edit,
  FWM,
  failKeepalivedReloadOnce,
  internalConfig,
  KA,
  labUnavailable,
  lvssync,
  reloadsOf,
  resetDirectors,
  startWatch,
  tree,
  useLab,
} from '../helpers/lab.js';

const unavailable = labUnavailable();

async function until(what: string, probe: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out after ${ms} ms: ${what}`);
}

/** The managed files of `to` as lvs1's set rendered for it (router_id LVS2, LVS3). */
function renderedFor(l: Lab, to: Director): Record<string, string> {
  const mine = tree(l, 'lvs1');
  const texts = new Map(Object.entries(mine).map(([p, v]) => [p, v.slice(v.indexOf(' ') + 1)]));
  const keepalived = Object.keys(mine).filter((p) => p.startsWith('/etc/keepalived/'));
  const r = renderForNode(texts, keepalived, { node: to, routerId: to.toUpperCase(), hostLines: [] });
  return Object.fromEntries(
    Object.entries(mine).map(([p, v]) => [p, `${v.slice(0, v.indexOf(' '))} ${r.files.get(p)}`]),
  );
}

async function sshd(l: Lab, host: Director, up: boolean): Promise<void> {
  const rec = l.proc(host, 'sshd');
  if (!up && rec) await l.killProc(rec);
  if (up && !rec)
    l.spawnOn(host, 'sshd', ['/usr/sbin/sshd', '-D', '-e', '-f', `${l.hostDir(host)}/ssh/sshd_config`]);
}

describe.skipIf(unavailable !== undefined)('three directors (lab)', () => {
  const lab = useLab('tgroup', { directors: 3 });
  /** The VIP holder, then the others in lvssync.yaml's order: the order a push goes in is others, holder. */
  let holder: Director;
  let others: Director[] = [];

  beforeEach(async () => {
    const l = lab();
    resetDirectors(l);
    for (const d of l.directors) {
      await sshd(l, d, true);
      await l.applyFerm(d);
      if (!l.proc(d, 'keepalived')) await l.startKeepalived(d);
      await l.exec(d, ['sh', '/etc/lvssync/lab/keepalived-reload']);
    }
    holder = await l.waitForVipHolder();
    others = l.directors.filter((d) => d !== holder);
  }, 60_000);

  it('a push reaches both other directors, each rendered for itself; all validate before any commits; the VIP holder goes last', async () => {
    const l = lab();
    edit(l, 'lvs1', FWM, (s) => s.replace(/weight 50/g, 'weight 70'));
    const r = await lvssync(l, 'lvs1', 'push', '--yes', '--json');
    expect(r.stderr).toBe('');
    const j = JSON.parse(r.stdout);
    expect(j.result).toBe('pushed');
    expect(r.code).toBe(0);
    expect(j.peers.map((p: { node: string }) => p.node)).toEqual(['lvs2', 'lvs3']);
    for (const d of ['lvs2', 'lvs3'] as const) {
      expect(tree(l, d)).toEqual(renderedFor(l, d));
      expect(l.readFile(d, KA)).toContain(`router_id ${d.toUpperCase()}`);
    }
    const steps = j.steps.map(
      (s: { host: string; step: string }) => `${s.host} ${s.step.split(' ').slice(0, 2).join(' ')}`,
    );
    // every validation before the first commit
    const lastValidate = Math.max(...steps.map((s: string, i: number) => (s.endsWith('validate') ? i : -1)));
    const firstCommit = steps.findIndex((s: string) => s.includes(' commit'));
    expect(lastValidate).toBeLessThan(firstCommit);
    expect(steps.filter((s: string) => s.includes('validate')).sort()).toEqual([
      'lvs2 validate',
      'lvs3 validate',
    ]);
    // directors without the VIPs first (in lvssync.yaml's order), the holder last, ferm before keepalived
    const order = [...others, holder];
    expect(j.order).toEqual(order);
    expect(steps.filter((s: string) => s.includes('reload'))).toEqual(
      order.flatMap((d) => [`${d} reload ferm`, `${d} reload keepalived`]),
    );
    expect(await l.holdersOf(ADDR.clusterVip)).toEqual([holder]);
    // status and the audit cover all three
    const st = JSON.parse((await lvssync(l, 'lvs1', 'status', '--json')).stdout);
    expect(st.peers).toEqual([
      { node: 'lvs2', sync: 'in sync', pendingChanges: 0 },
      { node: 'lvs3', sync: 'in sync', pendingChanges: 0 },
    ]);
    expect(st.vips.map((v: { on: string[] }) => v.on)).toEqual([[holder], [holder]]);
    const audit = JSON.parse((await lvssync(l, 'lvs1', 'audit', '--json')).stdout);
    expect(audit.hosts).toEqual(['lvs1', 'lvs2', 'lvs3']);
    // --peer limits each to one director
    const one = JSON.parse((await lvssync(l, 'lvs1', 'status', '--peer', 'lvs3', '--json')).stdout);
    expect(one.peers.map((p: { node: string }) => p.node)).toEqual(['lvs3']);
    expect(JSON.parse((await lvssync(l, 'lvs1', 'audit', '--peer', 'lvs2', '--json')).stdout).hosts).toEqual([
      'lvs1',
      'lvs2',
    ]);
    expect(
      audit.findings
        .filter((f: { check: string }) => f.check === 'drift' || f.check === 'vip')
        .map((f: { severity: string }) => f.severity),
    ).not.toContain('critical');
    // rollback puts back what the last push replaced, on every director it changed
    const rb = JSON.parse((await lvssync(l, 'lvs1', 'rollback', '--yes', '--json')).stdout);
    expect(rb.result).toBe('rolled-back');
    expect(rb.peers.map((p: { node: string }) => p.node)).toEqual(['lvs2', 'lvs3']);
    for (const d of ['lvs2', 'lvs3'] as const) expect(l.readFile(d, FWM)).toContain('weight 50');
    expect(l.readFile('lvs1', FWM)).toContain('weight 70');
  }, 120_000);

  it('a failure on the third director rolls back the second, and the primary is never reached', async () => {
    const l = lab();
    // the order is: the two directors without the VIPs, then the holder; the second of them fails
    const [second, third] = l.directors.filter((d) => d !== 'lvs1') as [Director, Director];
    if (holder !== 'lvs1') {
      // this test wants the primary last, so it holds the VIPs: the others stop until it does
      for (const d of others) await l.stopKeepalived(d);
      await until('lvs1 to hold the VIPs', async () => (await l.waitForVipHolder()) === 'lvs1');
      for (const d of others) await l.startKeepalived(d);
    }
    expect(await l.waitForVipHolder()).toBe('lvs1');
    const before = { second: tree(l, second), third: tree(l, third), lvs1: tree(l, 'lvs1') };
    const reloads = { lvs1: await reloadsOf(l, 'lvs1'), second: await reloadsOf(l, second) };
    const failing = failKeepalivedReloadOnce(l, third);
    try {
      edit(l, 'lvs1', FWM, (s) => s.replace(/weight 50/g, 'weight 61'));
      const r = await lvssync(l, 'lvs1', 'push', '--yes', '--json');
      const j = JSON.parse(r.stdout);
      expect(r.code).toBe(5);
      expect(j.result).toBe('rolled-back');
      const steps = j.steps.map(
        (s: { host: string; step: string; ok: boolean }) => `${s.host} ${s.step.split(',')[0]} ${s.ok}`,
      );
      expect(j.order).toEqual([second, third, 'lvs1']);
      expect(steps).toEqual(
        expect.arrayContaining([
          `${second} reload keepalived true`,
          `${third} reload keepalived false`,
          `${third} roll back true`,
          `${second} roll back true`,
        ]),
      );
      // the second was put back after the third failed: rolled back in that order
      expect(steps.indexOf(`${second} roll back true`)).toBeGreaterThan(
        steps.indexOf(`${third} roll back true`),
      );
      expect(j.error.message).toContain(`failed on ${third}`);
      expect(tree(l, second)).toEqual(before.second);
      expect(tree(l, third)).toEqual(before.third);
      // the second ran the new set, then its old one again; the primary was never reloaded
      expect(await reloadsOf(l, second)).toBeGreaterThanOrEqual(reloads.second + 2);
      expect(await reloadsOf(l, 'lvs1')).toBe(reloads.lvs1);
      expect(steps.some((s: string) => s.startsWith('lvs1 '))).toBe(false);
      for (const d of l.directors) expect(l.proc(d, 'keepalived')).toBeDefined();
    } finally {
      failing.restore();
    }
  }, 120_000);

  it('a director that is down does not block the others; the daemon brings it up to date when it returns', async () => {
    const l = lab();
    let daemon: ProcRecord | undefined;
    try {
      daemon = startWatch(l, 'lvs1');
      await until('the daemon in sync', () => health(l) === 'in-sync', 30_000);
      // lvs3's link goes (the daemon's kept session to it with it)
      await l.cutCrossover(['lvs3']);
      edit(l, 'lvs1', FWM, (s) => s.replace(/weight 50/g, 'weight 52'));
      await until('lvs2 to get the edit', () => l.readFile('lvs2', FWM).includes('weight 52'), 60_000);
      await until('the daemon to say lvs3 is behind', () => health(l) === 'peer-down');
      expect(l.readFile('lvs3', FWM)).toContain('weight 50');
      const st = await lvssync(l, 'lvs1', 'status');
      expect(st.code).toBe(1);
      expect(st.stdout).toMatch(/lvs1 -> lvs2: IN SYNC/);
      expect(st.stdout).toMatch(/lvs1 -> lvs3: PEER UNREACHABLE/);
      expect(st.stdout).toMatch(/\(lvs3 not asked\)/);
      // a backoff of 8 s or more: the daemon probes lvs3's sshd meanwhile
      const daemonLog = () => readFileSync(l.logFile('lvs1', 'watch'), 'utf8');
      const retries = () =>
        daemonLog()
          .split('\n')
          .filter((x) => x.includes('"peer unreachable, will retry"'))
          .map((x) => (JSON.parse(x) as { retryInMs: number }).retryInMs);
      await until('a retry 8 s or more away', () => retries().some((ms) => ms >= 8000), 60_000);
      // (its first probe, at the failure, has found lvs3 silent: it times out in 1.5 s)
      await new Promise((r) => setTimeout(r, 2000));
      // back: no new edit; a probe finds lvs3 answering, and the daemon pushes before its backoff ends
      await l.restoreCrossover(['lvs3']);
      await until('lvs3 to catch up', () => l.readFile('lvs3', FWM).includes('weight 52'), 60_000);
      expect(daemonLog()).toMatch(/"peers":\["lvs3"\],"msg":"peer answers again: retrying now"/);
      // (a retry that fails once more, e.g. while VRRP settles after the link is back, waits out the
      // backoff, 60 s at most, before the next one)
      await until('the daemon in sync again', () => health(l) === 'in-sync', 130_000).catch((e: Error) => {
        // what the daemon did meanwhile, for whoever reads the failure
        const log = readFileSync(l.logFile('lvs1', 'watch'), 'utf8').trim().split('\n').slice(-12);
        throw new Error(`${e.message}; health ${health(l)}; the daemon's last lines:\n${log.join('\n')}`);
      });
      expect(tree(l, 'lvs3')).toEqual(renderedFor(l, 'lvs3'));
    } finally {
      await l.restoreCrossover(['lvs3']);
      if (daemon) await l.killProc(daemon);
      await l.waitForVipHolder(30_000);
    }
  }, 260_000);

  it('split brain across three: status and the audit name every holder', async () => {
    const l = lab();
    // lvssync reaches the others over the internal segment while VRRP (crossover) is cut
    const cfg = internalConfig(l);
    try {
      await l.cutCrossover();
      await until(
        'all three to hold the VIP',
        async () => (await l.holdersOf(ADDR.clusterVip)).length === 3,
        20_000,
      );
      const st = await lvssync(l, 'lvs1', 'status', '--config', cfg, '--json');
      expect(st.code).toBe(1);
      const j = JSON.parse(st.stdout);
      expect(j.vips.map((v: { on: string[] }) => v.on)).toEqual([
        ['lvs1', 'lvs2', 'lvs3'],
        ['lvs1', 'lvs2', 'lvs3'],
      ]);
      const text = await lvssync(l, 'lvs1', 'status', '--config', cfg);
      expect(text.stdout).toMatch(/on lvs1 AND lvs2 AND lvs3 \(split brain\)/);
      const a = await lvssync(l, 'lvs1', 'audit', '--config', cfg, '--json');
      expect(a.code).toBe(2);
      const vip = JSON.parse(a.stdout).findings.filter((f: { code: string }) => f.code === 'VIP_SPLIT_BRAIN');
      expect(vip.map((f: { host: string }) => f.host)).toEqual(['lvs1,lvs2,lvs3', 'lvs1,lvs2,lvs3']);
    } finally {
      await l.restoreCrossover();
      await l.waitForVipHolder(30_000);
    }
  }, 90_000);

  it('handover while the old primary is down; back, its edits are shown three-way and overwritten by nobody silently', async () => {
    const l = lab();
    // in step, what lvssync synced recorded on lvs1 (a note file of lvs1's reaches every director)
    const NOTE = '/etc/keepalived/conf.d/zz-note.conf';
    l.writeFile('lvs1', NOTE, '# kept on every director\n', 0o644);
    expect(JSON.parse((await lvssync(l, 'lvs1', 'push', '--yes', '--json')).stdout).result).toBe('pushed');
    for (const d of l.directors) expect(existsSync(l.pathOn(d, NOTE))).toBe(true);
    await sshd(l, 'lvs1', false);
    try {
      // lvs1 is edited while it cannot be reached: one file changed, one deleted
      edit(l, 'lvs1', FWM, (s) => s.replace(/weight 50/g, 'weight 58'));
      rmSync(l.pathOn('lvs1', NOTE));
      const refused = await lvssync(l, 'lvs2', 'primary', 'lvs2');
      expect(refused.code).toBe(4);
      expect(refused.stderr).toMatch(/lvs1, the primary, cannot be asked/);
      expect(l.readFile('lvs2', '/etc/lvssync/lvssync.yaml')).toMatch(/^primary: lvs1$/m);
      const h = await lvssync(l, 'lvs2', 'primary', 'lvs2', '--force');
      expect(h.code, h.stdout + h.stderr).toBe(4);
      expect(h.stdout).toMatch(/lvs2 is the primary from handover 1 on \(it was lvs1\)/);
      expect(h.stdout).toMatch(/lvs1: NOT TOLD/);
      for (const d of ['lvs2', 'lvs3'] as const)
        expect(l.readFile(d, '/etc/lvssync/lvssync.yaml')).toMatch(/^primary: lvs2$/m);
      // the old primary, unaware, pushes: the first director it reaches tells it, and nothing is pushed
      const stale = await lvssync(l, 'lvs1', 'push', '--yes');
      expect(stale.code).toBe(6);
      expect(stale.stderr).toMatch(/follows lvs2 \(handover 1\), a later handover/);
      expect(l.readFile('lvs1', '/etc/lvssync/lvssync.yaml')).toMatch(/^primary: lvs2$/m);
      for (const d of ['lvs2', 'lvs3'] as const) expect(l.readFile(d, FWM)).toContain('weight 50');
      // the new primary's own edit reaches lvs3; lvs1 cannot be reached
      edit(l, 'lvs2', FWM, (s) => s.replace(/weight 50/g, 'weight 60'));
      const p = await lvssync(l, 'lvs2', 'push', '--yes', '--json');
      expect(p.code).toBe(4);
      expect(JSON.parse(p.stdout).result).toBe('partial');
      expect(l.readFile('lvs3', FWM)).toContain('weight 60');
    } finally {
      await sshd(l, 'lvs1', true);
    }
    // back: lvs1's edit is a conflict, shown against what lvssync last synced there
    const diff = await lvssync(l, 'lvs2', 'diff');
    expect(diff.stdout).toMatch(
      /CONFLICT \/etc\/keepalived\/conf\.d\/fwm-100\.conf: edited on lvs1 since lvssync last synced it there/,
    );
    expect(diff.stdout).toMatch(/--- last synced to lvs1:.*fwm-100.conf\n\+\+\+ lvs1 now:/);
    expect(diff.stdout).toMatch(/--- last synced to lvs1:.*fwm-100.conf\n\+\+\+ lvs2 \(rendered for lvs1\):/);
    expect(diff.stdout).toMatch(/-\s+weight 50\n\+\s+weight 58/);
    expect(diff.stdout).toMatch(/-\s+weight 50\n\+\s+weight 60/);
    expect(diff.stdout).toContain('lvssync take lvs1 /etc/keepalived/conf.d/fwm-100.conf');
    // the file deleted there is a conflict too, not silently made again
    expect(diff.stdout).toMatch(
      /CONFLICT \/etc\/keepalived\/conf\.d\/zz-note\.conf: deleted on lvs1 since lvssync/,
    );
    const blocked = await lvssync(l, 'lvs2', 'push', '--yes');
    expect(blocked.code).toBe(6);
    expect(l.readFile('lvs1', FWM)).toContain('weight 58');
    // lvs1's side wins for that file: taken on the primary, then pushed to all
    const take = await lvssync(l, 'lvs2', 'take', 'lvs1');
    expect(take.code, take.stdout + take.stderr).toBe(0);
    expect(take.stdout).toContain(`took ${FWM} (lvs1's version)`);
    // the file lvs1 deleted: taken as deleted
    expect(take.stdout).toContain(`removed ${NOTE} (lvs1's version)`);
    expect(existsSync(l.pathOn('lvs2', NOTE))).toBe(false);
    expect(l.readFile('lvs2', FWM)).toContain('weight 58');
    const after = await lvssync(l, 'lvs2', 'push', '--yes', '--json');
    expect(JSON.parse(after.stdout).result).toBe('pushed');
    for (const d of l.directors) expect(l.readFile(d, FWM)).toContain('weight 58');
    for (const d of l.directors) expect(existsSync(l.pathOn(d, NOTE))).toBe(false);
    // made again later on the primary, it is simply pushed: that deletion was agreed
    l.writeFile('lvs2', NOTE, '# back again\n', 0o644);
    const again = JSON.parse((await lvssync(l, 'lvs2', 'push', '--yes', '--json')).stdout);
    expect(again.result).toBe('pushed');
    expect(again.peers.flatMap((p: { conflicts: unknown[] }) => p.conflicts)).toEqual([]);
    for (const d of l.directors) expect(l.readFile(d, NOTE)).toBe('# back again\n');
    expect(l.readFile('lvs1', KA)).toContain('router_id LVS1');
    // lvs2's own version is in its history (reason take)
    const hist = l.pathOn('lvs2', '/var/lib/lvssync/history');
    const metas = readdirSync(hist).map((v) =>
      JSON.parse(readFileSync(path.join(hist, v, 'meta.json'), 'utf8')),
    );
    expect(metas.map((m: { reason: string }) => m.reason)).toContain('take');
  }, 180_000);

  it('handover from a running primary: refused with changes not pushed; then the daemons swap roles', async () => {
    const l = lab();
    const daemons: ProcRecord[] = [];
    const watchOn = (d: Director) => daemons.push(startWatch(l, d));
    try {
      edit(l, 'lvs1', FWM, (s) => s.replace(/weight 50/g, 'weight 57'));
      const refused = await lvssync(l, 'lvs1', 'primary', 'lvs2');
      expect(refused.code).toBe(6);
      expect(refused.stderr).toMatch(/lvs1, the primary, has changes not pushed to lvs2: .*fwm-100\.conf/);
      expect(JSON.parse((await lvssync(l, 'lvs1', 'push', '--yes', '--json')).stdout).result).toBe('pushed');
      watchOn('lvs1');
      watchOn('lvs2');
      await until(
        'lvs1 in sync, lvs2 watching only',
        () => healthOn(l, 'lvs1') === 'in-sync' && healthOn(l, 'lvs2') === 'not-primary',
      );
      const h = await lvssync(l, 'lvs1', 'primary', 'lvs2');
      expect(h.code, h.stdout + h.stderr).toBe(0);
      // each daemon read its new lvssync.yaml: the old primary watches, the new one pushes
      await until(
        'the daemons to swap',
        () => healthOn(l, 'lvs1') === 'not-primary' && healthOn(l, 'lvs2') === 'in-sync',
      );
      edit(l, 'lvs2', FWM, (s) => s.replace(/weight 57/g, 'weight 63'));
      await until(
        "lvs1 and lvs3 to get lvs2's edit",
        () => l.readFile('lvs1', FWM).includes('weight 63') && l.readFile('lvs3', FWM).includes('weight 63'),
      );
      expect(l.readFile('lvs1', KA)).toContain('router_id LVS1');
      // an edit on the old primary goes nowhere
      edit(l, 'lvs1', FWM, (s) => s.replace(/weight 63/g, 'weight 64'));
      await new Promise((r) => setTimeout(r, 3000));
      expect(healthOn(l, 'lvs1')).toBe('not-primary');
      for (const d of ['lvs2', 'lvs3'] as const) expect(l.readFile(d, FWM)).toContain('weight 63');
      // lvssync push there says why
      const p = await lvssync(l, 'lvs1', 'push', '--yes');
      expect(p.code).toBe(6);
      expect(p.stderr).toMatch(/lvs1 is not the primary/);
      // --force hands over with changes not pushed: the primary keeps them in its history
      for (const d of daemons.splice(0)) await l.killProc(d);
      edit(l, 'lvs2', FWM, (s) => s.replace(/weight 63/g, 'weight 65'));
      const f = await lvssync(l, 'lvs3', 'primary', 'lvs3', '--force', '--json');
      expect(f.code, f.stdout + f.stderr).toBe(0);
      const j = JSON.parse(f.stdout);
      expect(j).toMatchObject({ primary: 'lvs3', epoch: 2, from: 'lvs2', notPushed: [FWM] });
      const kept = j.told.find((t: { node: string }) => t.node === 'lvs2').kept as string;
      expect(l.readFile('lvs2', `/var/lib/lvssync/history/${kept}/files${FWM}`)).toContain('weight 65');
      for (const d of l.directors)
        expect(l.readFile(d, '/etc/lvssync/lvssync.yaml')).toMatch(/^primary: lvs3$/m);
    } finally {
      for (const d of daemons) await l.killProc(d);
    }
  }, 180_000);
});

/** The daemon's health on a director (watch-status.json), or '' before it wrote one. */
function healthOn(l: Lab, d: Director): string {
  try {
    return (JSON.parse(l.readFile(d, '/var/lib/lvssync/watch-status.json')) as { health: string }).health;
  } catch {
    return '';
  }
}

const health = (l: Lab) => healthOn(l, 'lvs1');
