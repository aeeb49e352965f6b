// lvssync audit and status in the lab: each class of finding made for real, and a clean lab clean.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { DIRECTORS, LAB_IPVSADM, type Lab, LB_BODY } from '../../scripts/lab/lab.js';
import { FIXTURES } from '../helpers/fixtures.js';
import {
  FWM,
  internalConfig,
  labUnavailable,
  lvssync,
  MAIN,
  resetDirectors,
  slowKeepalivedReload,
  useLab,
} from '../helpers/lab.js';

const unavailable = labUnavailable();

async function audit(lab: Lab, ...extra: string[]) {
  const r = await lvssync(lab, 'lvs1', 'audit', '--json', ...extra);
  return {
    code: r.code,
    report: JSON.parse(r.stdout) as {
      status: string;
      findings: {
        check: string;
        code: string;
        host: string;
        severity: string;
        file?: string;
        line?: number;
        diff?: string;
        message: string;
      }[];
      checks: Record<string, string>;
    },
  };
}

describe.skipIf(unavailable !== undefined)('lvssync audit (lab)', () => {
  const lab = useLab('taudit');

  beforeEach(async () => {
    const l = lab();
    resetDirectors(l);
    for (const d of DIRECTORS) {
      l.writeFile(d, '/etc/lvssync/lab/ipvsadm.txt', LAB_IPVSADM);
      await l.applyFerm(d);
    }
    for (const w of ['web1', 'web2'] as const) l.setWebBody(w, LB_BODY);
    await l.restoreCrossover();
    await l.waitForVipHolder(20_000);
  }, 60_000);

  it('a clean lab audits clean (exit 0), digests included', async () => {
    const { code, report } = await audit(lab(), '--digests');
    expect(report.findings.filter((f) => f.severity !== 'ok')).toEqual([]);
    expect(report.status).toBe('ok');
    expect(code).toBe(0);
    expect(report.findings.map((f) => f.code)).toContain('DIGEST_OK');
    // every check says what it covered: a clean audit is clean because each of them ran
    expect(report.checks).toEqual({
      peer: 'lvs2 answered',
      drift: expect.stringMatching(/^\d+ managed file\(s\) of lvs2 against what lvs1 renders for it$/),
      vip: '2 virtual address(es) on lvs1 and lvs2',
      ipvs: '1 configured virtual server(s) against the live tables of lvs1 (1 service(s)) and lvs2 (1)',
      marks: "ferm.conf's MARK rules against the live mangle table of lvs1 (1 rule(s)) and lvs2 (1)",
      'pending-reload': expect.stringMatching(
        /^each service's files on lvs1 and lvs2 against what it last loaded/,
      ),
      services: '1 service(s) with a status command on lvs1 and lvs2',
      digest: expect.stringMatching(/^[1-9]\d* HTTP_GET url\(s\) fetched/),
    });
    const text = await lvssync(lab(), 'lvs1', 'audit');
    for (const check of ['peer', 'drift', 'vip', 'ipvs', 'marks', 'pending-reload', 'services'])
      expect(text.stdout).toMatch(new RegExp(`^${check}: ok \\(`, 'm'));
    expect(text.stdout).not.toContain('digest:');
  });

  it('a hand edit on lvs2 is drift, with a redacted unified diff and the line', async () => {
    const l = lab();
    l.writeFile('lvs2', FWM, l.readFile('lvs2', FWM).replace('delay_loop 30', 'delay_loop 31'));
    l.writeFile(
      'lvs2',
      '/etc/keepalived/keepalived.conf',
      l.readFile('lvs2', '/etc/keepalived/keepalived.conf').replace('$up3r$3(r37', 'hunter22'),
    );
    const { code, report } = await audit(l);
    expect(code).toBe(2);
    const drift = report.findings.filter((f) => f.code === 'DRIFT_DIFFERENT');
    expect(drift.map((f) => `${f.host} ${f.file}:${f.line}`).sort()).toEqual([
      'lvs2 /etc/keepalived/conf.d/fwm-100.conf:2',
      'lvs2 /etc/keepalived/keepalived.conf:21',
    ]);
    const fwm = drift.find((f) => f.file === FWM)!;
    expect(fwm.diff).toContain('-        delay_loop 31');
    expect(fwm.diff).toContain('+        delay_loop 30');
    const ka = JSON.stringify(drift);
    expect(ka).not.toContain('hunter22');
    expect(ka).not.toContain('$up3r');
  });

  it('a file missing on lvs2, and one only lvs2 has', async () => {
    const l = lab();
    const { rmSync } = await import('node:fs');
    rmSync(l.pathOn('lvs2', FWM));
    l.writeFile('lvs2', '/etc/keepalived/conf.d/stray.conf', '! left behind\n');
    const { report } = await audit(l);
    expect(
      report.findings
        .filter((f) => f.check === 'drift' || f.code.startsWith('DRIFT'))
        .map((f) => `${f.code} ${f.file}`),
    ).toEqual([`DRIFT_MISSING ${FWM}`, 'DRIFT_EXTRA /etc/keepalived/conf.d/stray.conf']);
  });

  it('a keepalived edit never reloaded: reload pending on the director where it happened', async () => {
    const l = lab();
    await new Promise((r) => setTimeout(r, 1100));
    for (const d of DIRECTORS)
      l.writeFile(d, FWM, l.readFile(d, FWM).replace('delay_loop 30', 'delay_loop 33'));
    const { report } = await audit(l);
    const pending = report.findings.filter((f) => f.code === 'KEEPALIVED_RELOAD_PENDING');
    expect(pending.map((f) => `${f.host} ${f.file}`).sort()).toEqual([`lvs1 ${FWM}`, `lvs2 ${FWM}`]);
  });

  it('a reload that never happened: the marks of ferm.conf are not live', async () => {
    const l = lab();
    for (const d of DIRECTORS)
      l.writeFile(
        d,
        '/etc/ferm/ferm.conf',
        `${l.readFile(d, '/etc/ferm/ferm.conf')}&LVS_MARK(198.51.100.100, 200);\n`,
      );
    const { report } = await audit(l);
    const f = report.findings.filter((x) => x.code === 'MARK_NOT_LIVE');
    expect(f.map((x) => x.host).sort()).toEqual(['lvs1', 'lvs2']);
    expect(f[0]!.message).toContain('MARK 200 (0xc8)');
  });

  it('VIPs on both directors when the crossover is cut: split brain, critical', async () => {
    const l = lab();
    // the audit reaches lvs2 over the internal segment while VRRP (crossover) is cut
    const cfg = internalConfig(l);
    await l.cutCrossover();
    const until = Date.now() + 15_000;
    while ((await l.holdersOf('198.51.100.250')).length < 2 && Date.now() < until)
      await new Promise((r) => setTimeout(r, 200));
    const { code, report } = await audit(l, '--config', cfg);
    expect(code).toBe(2);
    const vip = report.findings.filter((f) => f.code.startsWith('VIP_'));
    expect(vip.map((f) => `${f.code} ${f.host} ${f.file}:${f.line}`)).toEqual([
      'VIP_SPLIT_BRAIN lvs1,lvs2 /etc/keepalived/keepalived.conf:24',
      'VIP_SPLIT_BRAIN lvs1,lvs2 /etc/keepalived/keepalived.conf:27',
    ]);
    await l.restoreCrossover();
    await l.waitForVipHolder(20_000);
  }, 60_000);

  it('a web server serving a different body: digest mismatch, critical', async () => {
    const l = lab();
    l.setWebBody('web1', 'database connection failed');
    const { code, report } = await audit(l, '--digests');
    expect(code).toBe(2);
    const bad = report.findings.filter((f) => f.code === 'DIGEST_MISMATCH');
    expect(bad.map((f) => `${f.host} ${f.file}:${f.line}`)).toEqual([
      '198.51.100.10 /etc/keepalived/conf.d/fwm-100.conf:13',
    ]);
  });

  it('live IPVS tables: a real server out of one director, a stale service on the other, and the pair differing', async () => {
    const l = lab();
    l.writeFile(
      'lvs1',
      '/etc/lvssync/lab/ipvsadm.txt',
      LAB_IPVSADM.split('\n')
        .filter((x) => !x.includes('198.51.100.20'))
        .join('\n'),
    );
    l.writeFile(
      'lvs2',
      '/etc/lvssync/lab/ipvsadm.txt',
      readFileSync(path.join(FIXTURES, 'ipvsadm', 'list-all-variants.txt'), 'utf8'),
    );
    const { report } = await audit(l);
    const codes = report.findings.map((f) => `${f.host} ${f.code}`);
    expect(codes).toContain('lvs1 IPVS_REAL_ABSENT');
    expect(codes).toContain('lvs2 IPVS_SERVICE_MISSING');
    expect(codes).toContain('lvs2 IPVS_SERVICE_STALE');
    expect(codes).toContain('lvs1,lvs2 IPVS_PAIR_DIFFERS');
    const absent = report.findings.find((f) => f.code === 'IPVS_REAL_ABSENT')!;
    expect(absent.message).toContain('fails its HTTP_GET check');
    expect(`${absent.file}:${absent.line}`).toBe(`${FWM}:23`);
  });

  it('markdown and text formats, --output, and --store with the Prometheus textfile and the report command', async () => {
    const l = lab();
    l.writeFile('lvs2', FWM, l.readFile('lvs2', FWM).replace('delay_loop 30', 'delay_loop 32'));
    const md = await lvssync(l, 'lvs1', 'audit', '--format', 'markdown');
    expect(md.code).toBe(2);
    expect(md.stdout).toMatch(/^# lvssync audit: lab is CRITICAL/);
    expect(md.stdout).toContain('```diff');
    const out = path.join(l.dir, 'report.txt');
    const txt = await lvssync(l, 'lvs1', 'audit', '--output', out);
    expect(txt.stdout).toBe('');
    expect(readFileSync(out, 'utf8')).toContain('CRIT lvs2:');
    // --store: retention, textfile, command
    const cfg = l.pathOn('lvs1', '/etc/lvssync/lvssync.yaml');
    const good = readFileSync(cfg, 'utf8');
    const prom = path.join(l.dir, 'lvssync.prom');
    const mailbox = path.join(l.dir, 'mailbox');
    writeFileSync(
      cfg,
      good.replace(
        "  schedule: '17 3 * * *'",
        `  schedule: '17 3 * * *'\n  keep: 2\n  prometheus: ${prom}\n  command: [sh, -c, 'cat > ${mailbox}']`,
      ),
    );
    try {
      for (let i = 0; i < 3; i++) {
        await lvssync(l, 'lvs1', 'audit', '--store');
        await new Promise((r) => setTimeout(r, 1100));
      }
      const reports = readdirSync(l.pathOn('lvs1', '/var/lib/lvssync/reports'));
      expect(reports.filter((f) => f.endsWith('.json'))).toHaveLength(2);
      expect(readFileSync(prom, 'utf8')).toMatch(/lvssync_audit_status\{cluster="lab",check="drift"\} 2/);
      expect(readFileSync(prom, 'utf8')).toMatch(/lvssync_audit_status\{cluster="lab",check="ipvs"\} 0/);
      // digests were not asked for: not reported as ok
      expect(readFileSync(prom, 'utf8')).not.toContain('check="digest"');
      expect(readFileSync(mailbox, 'utf8')).toContain('lvssync audit of lab');
    } finally {
      writeFileSync(cfg, good);
    }
  });

  it('the daemon runs the audit on its schedule and keeps the report', async () => {
    const l = lab();
    const cfg = l.pathOn('lvs1', '/etc/lvssync/lvssync.yaml');
    const good = readFileSync(cfg, 'utf8');
    writeFileSync(cfg, good.replace("schedule: '17 3 * * *'", "schedule: '*/2 * * * * *'"));
    const d = l.spawnOn('lvs1', 'watch', [process.execPath, MAIN, 'watch']);
    try {
      const dir = l.pathOn('lvs1', '/var/lib/lvssync/reports');
      const until = Date.now() + 20_000;
      while (Date.now() < until && !(existsSync(dir) && readdirSync(dir).some((f) => f.endsWith('.json'))))
        await new Promise((r) => setTimeout(r, 200));
      expect(readdirSync(dir).some((f) => f.endsWith('.json'))).toBe(true);
      expect(readFileSync(l.logFile('lvs1', 'watch'), 'utf8')).toMatch(/"msg":"audit done"/);
    } finally {
      await l.killProc(d);
      writeFileSync(cfg, good);
    }
  }, 40_000);

  it('status: in sync, then changes pending, then peer unreachable', async () => {
    const l = lab();
    const sessions = () =>
      (readFileSync(l.logFile('lvs2', 'sshd'), 'utf8').match(/Accepted publickey/g) ?? []).length;
    const before = sessions();
    const s1 = await lvssync(l, 'lvs1', 'status', '--json');
    expect(JSON.parse(s1.stdout).sync).toBe('in sync');
    expect(s1.code).toBe(0);
    // one SSH session to lvs2 for all of it (the dry run, the addresses, the services)
    expect(sessions() - before).toBe(1);
    l.writeFile('lvs1', FWM, l.readFile('lvs1', FWM).replace('weight 50', 'weight 51'));
    const s2 = JSON.parse((await lvssync(l, 'lvs1', 'status', '--json')).stdout);
    expect(s2.sync).toBe('changes pending');
    expect(s2.pendingChanges).toBe(1);
    // looking is not pushing: the record of the last push is untouched
    expect(existsSync(l.pathOn('lvs1', '/var/lib/lvssync/last-push.json'))).toBe(false);
    await l.cutCrossover();
    const s3 = await lvssync(l, 'lvs1', 'status');
    expect(s3.stdout).toContain('PEER UNREACHABLE');
    expect(s3.stdout).toMatch(/VIP 198\.51\.100\.250 +on (lvs1|NOBODY)/);
    expect(s3.code).toBe(1);
  }, 60_000);

  it('status answers while a push is under way: each director as it is, and the push named', async () => {
    const l = lab();
    // lvs2's keepalived reload, after its commit, takes 6 s: the push holds lvs1's lock meanwhile
    const slow = slowKeepalivedReload(l, 'lvs2', 6);
    try {
      l.writeFile('lvs1', FWM, l.readFile('lvs1', FWM).replace('weight 50', 'weight 51'));
      let pushed = false;
      const push = lvssync(l, 'lvs1', 'push', '--yes').finally(() => {
        pushed = true;
      });
      await slow.reloading();
      const [st, text] = await Promise.all([
        lvssync(l, 'lvs1', 'status', '--json'),
        lvssync(l, 'lvs1', 'status'),
      ]);
      expect(pushed).toBe(false); // both answered while the push still ran
      const j = JSON.parse(st.stdout);
      // not 'changes pending' for want of the push's lock: lvs2 has the set
      expect(j.peers).toEqual([{ node: 'lvs2', sync: 'in sync', pendingChanges: 0 }]);
      expect(j.underWay).toMatchObject({ who: 'push', pid: expect.any(Number) });
      expect(text.stdout).toMatch(/^under way: +push \(pid \d+\) since /m);
      expect((await push).code).toBe(0);
      const after = await lvssync(l, 'lvs1', 'status');
      expect(after.stdout).toMatch(/lvs1 -> lvs2: IN SYNC/);
      expect(after.stdout).not.toMatch(/under way/);
    } finally {
      slow.restore();
    }
  }, 60_000);

  it('status on a director that is not the primary: its files against what the primary would push to it', async () => {
    const l = lab();
    l.writeFile('lvs1', FWM, l.readFile('lvs1', FWM).replace('weight 50', 'weight 51'));
    expect((await lvssync(l, 'lvs1', 'push', '--yes')).code).toBe(0);
    // lvs2's keepalived.conf says router_id LVS2, lvs1's LVS1: the rendering is what counts
    const s1 = await lvssync(l, 'lvs2', 'status');
    expect(s1.stdout).toMatch(/lvs1 -> lvs2 \(this director\): IN SYNC/);
    expect(s1.stdout).not.toMatch(/lvs2 -> lvs1/);
    expect(s1.stdout).toMatch(/primary: +lvs1.*: edit there; lvs2 follows it/);
    expect(s1.code).toBe(0);
    // an edit on the primary not pushed yet
    l.writeFile('lvs1', FWM, l.readFile('lvs1', FWM).replace('weight 51', 'weight 52'));
    const s2 = await lvssync(l, 'lvs2', 'status', '--json');
    const j2 = JSON.parse(s2.stdout);
    expect(j2.sync).toBe('changes pending');
    expect(j2.peers).toEqual([{ node: 'lvs2', sync: 'changes pending', pendingChanges: 1 }]);
    expect(s2.code).toBe(1);
    // and a hand edit here, which the next push would refuse as a conflict
    l.writeFile('lvs2', FWM, l.readFile('lvs2', FWM).replace('weight 51', 'weight 49'));
    const s3 = await lvssync(l, 'lvs2', 'status');
    expect(s3.stdout).toMatch(/lvs1 -> lvs2 \(this director\): DRIFT/);
    // lvs1's own view says the same of lvs2
    expect((await lvssync(l, 'lvs1', 'status')).stdout).toMatch(/lvs1 -> lvs2: DRIFT/);
    // the primary cannot be asked
    await l.cutCrossover();
    const s4 = await lvssync(l, 'lvs2', 'status');
    expect(s4.stdout).toMatch(/lvs1 -> lvs2 \(this director\): PEER UNREACHABLE/);
    expect(s4.code).toBe(1);
  }, 60_000);
});
