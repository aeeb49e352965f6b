// lvssync watch in the lab: the daemon on lvs1, edits made the ways editors and tools make them,
// lvs2 following (or not, when it must not).
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Lab, type ProcRecord, REPO } from '../../scripts/lab/lab.js';
import { labUnavailable, resetDirectors, startWatch, useLab } from '../helpers/lab.js';

const unavailable = labUnavailable();
const MAIN = path.join(REPO, 'dist', 'src', 'main.js');
const FWM = '/etc/keepalived/conf.d/fwm-100.conf';
const _KA = '/etc/keepalived/keepalived.conf';

async function until(what: string, probe: () => boolean | Promise<boolean>, ms = 15_000): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (await probe()) return Date.now() - t0;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out after ${ms} ms: ${what}`);
}

/** The daemon's log on lvs1, one object per JSON line (none before the file exists). */
function watchLog<T extends { msg: string }>(lab: Lab): T[] {
  try {
    return readFileSync(lab.logFile('lvs1', 'watch'), 'utf8')
      .split('\n')
      .filter((x) => x.startsWith('{'))
      .map((x) => JSON.parse(x) as T);
  } catch {
    return [];
  }
}

/** What the tests of the daemon's masters read: its log, and lvs2's logins. */
function masterProbes(l: Lab) {
  const log = () => watchLog<{ msg: string; pid?: number; burst?: boolean }>(l);
  return {
    log,
    // each new SSH connection to lvs2 is one line of its sshd; a session through a master is none
    logins: () =>
      (readFileSync(l.logFile('lvs2', 'sshd'), 'utf8').match(/Accepted publickey for root/g) ?? []).length,
    masters: () => log().filter((j) => j.msg === 'keeping a connection'),
    released: () => log().filter((j) => j.msg.startsWith('idle: peer session closed')).length,
  };
}

function pushesIn(lab: Lab): { result: string; changes?: string[] }[] {
  return (
    readFileSync(lab.logFile('lvs1', 'watch'), 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l))
      .filter(
        (j) => j.msg === 'pushed' || j.msg?.startsWith('not pushed') || j.msg?.startsWith('peer unreachable'),
      )
      // changes per director: { lvs2: [...] }
      .map((j) => ({
        result: j.msg,
        changes: j.changes ? Object.values<string[]>(j.changes).flat() : undefined,
      }))
  );
}

describe.skipIf(unavailable !== undefined)('lvssync watch (lab)', () => {
  const lab = useLab('twatch');
  let daemon: ProcRecord | undefined;

  beforeEach(async () => {
    const l = lab();
    resetDirectors(l);
    rmSync(l.logFile('lvs1', 'watch'), { force: true });
    daemon = startWatch(l, 'lvs1');
    await until('the daemon to converge', () => {
      try {
        return /in sync, nothing to push|"msg":"pushed"|"msg":"files in sync; reloaded/.test(
          readFileSync(l.logFile('lvs1', 'watch'), 'utf8'),
        );
      } catch {
        return false;
      }
    });
  }, 60_000);

  afterEach(async () => {
    if (daemon) await lab().killProc(daemon);
    await lab().restoreCrossover();
  });

  /** The daemon started again with a 200 ms quiet window and this idle release (seconds), its log new. */
  const restartWatch = async (l: Lab, idleRelease: number) => {
    await l.killProc(daemon!);
    rmSync(l.logFile('lvs1', 'watch'), { force: true });
    daemon = l.spawnOn('lvs1', 'watch', [
      process.execPath,
      MAIN,
      'watch',
      '--quiet',
      '200',
      '--idle-release',
      String(idleRelease),
    ]);
  };

  const sameOnLvs2 = (l: Lab, p: string) => () => {
    try {
      return l.readFile('lvs2', p) === l.readFile('lvs1', p);
    } catch {
      return false;
    }
  };

  const edits: [string, (l: Lab) => Promise<unknown>][] = [
    ['sed -i', (l) => l.exec('lvs1', ['sed', '-i', 's/weight 50/weight 71/', FWM])],
    [
      'vim (swap file, backup, write by rename)',
      (l) =>
        l.exec('lvs1', [
          'sh',
          '-c',
          `cd /etc/keepalived/conf.d && echo swap > .fwm-100.conf.swp && echo x > 4913 && rm 4913 && cp fwm-100.conf fwm-100.conf~ && sed 's/weight 50/weight 72/' fwm-100.conf > .fwm-100.conf.new && mv .fwm-100.conf.new fwm-100.conf && rm .fwm-100.conf.swp fwm-100.conf~`,
        ]),
    ],
    [
      'nano (write in place)',
      (l) =>
        l.exec('lvs1', ['sh', '-c', `sed 's/weight 50/weight 73/' ${FWM} > /tmp/n && cat /tmp/n > ${FWM}`]),
    ],
    [
      'cp over',
      (l) => l.exec('lvs1', ['sh', '-c', `sed 's/weight 50/weight 74/' ${FWM} > /tmp/c && cp /tmp/c ${FWM}`]),
    ],
    [
      'atomic rename writer',
      (l) =>
        l.exec('lvs1', [
          'sh',
          '-c',
          `sed 's/weight 50/weight 75/' ${FWM} > /etc/keepalived/conf.d/.tmp-x && mv /etc/keepalived/conf.d/.tmp-x ${FWM}`,
        ]),
    ],
  ];

  it.each(edits)('an edit by %s reaches lvs2, and no temporary file does', async (_name, doEdit) => {
    const l = lab();
    await doEdit(l);
    const ms = await until('lvs2 to follow', sameOnLvs2(l, FWM));
    console.log(`edit to lvs2: ${ms} ms`);
    expect(l.readFile('lvs2', FWM)).toMatch(/weight 7\d/);
    expect(readdirSync(l.pathOn('lvs2', '/etc/keepalived/conf.d'))).toEqual(['fwm-100.conf']);
  });

  it('a burst of 200 saves in a second ends with the final content on lvs2 after a few pushes', async () => {
    const l = lab();
    const before = pushesIn(l).length;
    await l.exec('lvs1', [
      'sh',
      '-c',
      `for i in $(seq 1 200); do sed -i "s/weight [0-9]*/weight $i/" ${FWM}; sleep 0.004; done`,
    ]);
    await until('lvs2 to get the final save', () => l.readFile('lvs2', FWM).includes('weight 200'));
    // the file arrives at the commit; the push is logged once its reloads are done
    await until('the push to finish', () =>
      pushesIn(l)
        .slice(before)
        .some((p) => p.result === 'pushed'),
    );
    await new Promise((r) => setTimeout(r, 1000));
    const pushes = pushesIn(l)
      .slice(before)
      .filter((p) => p.result === 'pushed');
    console.log(`200 saves -> ${pushes.length} push(es)`);
    expect(pushes.length).toBeGreaterThanOrEqual(1);
    expect(pushes.length).toBeLessThanOrEqual(4);
    expect(l.readFile('lvs2', FWM)).toBe(l.readFile('lvs1', FWM));
  });

  it('an invalid save is not pushed; the fix is', async () => {
    const l = lab();
    await l.exec('lvs1', ['sed', '-i', 's/lb_algo wlc/lb_algo wlcc/', FWM]);
    await until('the daemon to refuse it', () =>
      /KA_INVALID_SCHEDULER/.test(readFileSync(l.logFile('lvs1', 'watch'), 'utf8')),
    );
    const log = readFileSync(l.logFile('lvs1', 'watch'), 'utf8');
    expect(log).toMatch(/"file":"\/etc\/keepalived\/conf.d\/fwm-100.conf","line":3/);
    expect(l.readFile('lvs2', FWM)).toContain('lb_algo wlc\n');
    await l.exec('lvs1', ['sed', '-i', 's/lb_algo wlcc/lb_algo rr/', FWM]);
    await until('the fix to reach lvs2', () => l.readFile('lvs2', FWM).includes('lb_algo rr'));
    // the transaction opened on lvs2 ahead of the refused push was aborted, and the session kept
    await until('the push to finish', () =>
      /"msg":"pushed"/.test(
        readFileSync(l.logFile('lvs1', 'watch'), 'utf8').split('KA_INVALID_SCHEDULER')[1] ?? '',
      ),
    );
    const after = readFileSync(l.logFile('lvs1', 'watch'), 'utf8');
    expect(after.match(/"msg":"peer session opened"/g)).toHaveLength(1);
    expect(after).not.toMatch(/push crashed|push failed/);
    expect(existsSync(l.pathOn('lvs2', '/var/lib/lvssync/journal.json'))).toBe(false);
  });

  it('one agent session serves a burst of pushes and is closed when the daemon goes idle', async () => {
    const l = lab();
    await restartWatch(l, 3);
    const log = () => watchLog<{ msg: string; agentPid?: number }>(l);
    const opened = () => log().filter((j) => j.msg === 'peer session opened');
    await until('the daemon to converge', () => log().some((j) => /in sync|pushed/.test(j.msg)), 30_000);
    for (const w of [81, 82]) {
      await l.exec('lvs1', ['sed', '-i', `s/weight [0-9]*/weight ${w}/`, FWM]);
      await until(`weight ${w} on lvs2`, sameOnLvs2(l, FWM));
    }
    // both pushes done (their log lines come after the reloads, the files before; the first one's
    // reload on lvs1 may be superseded by the second save, which then loads both)
    await until(
      'the pushes to finish',
      () =>
        pushesIn(l).some((p) => p.result === 'pushed' && p.changes?.length) &&
        /"health": "in-sync"/.test(
          readFileSync(l.pathOn('lvs1', '/var/lib/lvssync/watch-status.json'), 'utf8'),
        ),
    );
    expect(opened()).toHaveLength(1);
    await until(
      'the idle release',
      () => log().some((j) => j.msg.startsWith('idle: peer session closed')),
      15_000,
    );
    await l.exec('lvs1', ['sed', '-i', 's/weight [0-9]*/weight 83/', FWM]);
    await until('weight 83 on lvs2', sameOnLvs2(l, FWM));
    expect(opened()).toHaveLength(2);
    expect(opened()[1]!.agentPid).not.toBe(opened()[0]!.agentPid);
  });

  it('without ssh.keepConnection, each burst makes one OpenSSH master as its worker starts: the worker’s session goes through it (one login for the burst), and it ends at the idle release', async () => {
    const l = lab();
    await restartWatch(l, 2);
    const { log, logins, masters, released } = masterProbes(l);
    const opened = () => log().filter((j) => j.msg === 'peer session opened');
    await until('the daemon to converge and go idle', () => released() >= 1, 30_000);
    // the converge at start was a burst of its own: its master ended with its worker
    expect(masters()).toHaveLength(1);
    expect(masters()[0]!.burst).toBe(true);
    await until('the first master to end', () => !existsSync(`/proc/${masters()[0]!.pid}`), 10_000);
    const before = logins();
    await l.exec('lvs1', ['sed', '-i', 's/weight [0-9]*/weight 87/', FWM]);
    await until('weight 87 on lvs2', sameOnLvs2(l, FWM));
    await until('a second master and session', () => masters().length === 2 && opened().length === 2);
    const master = masters()[1]!.pid!;
    const cmd = readFileSync(`/proc/${master}/cmdline`, 'utf8').split('\0');
    expect(cmd).toContain('-M');
    expect(cmd).toContain('ControlPath=/var/lib/lvssync/ssh/lvs2.sock');
    // the session went through the master: the burst made one connection to lvs2, the master's
    expect(logins()).toBe(before + 1);
    await until('the idle release', () => released() >= 2, 15_000);
    // what each side's lints found is kept for the next worker and agent: the worker's as it went,
    // the agent's when the push finished
    await until('the worker to keep its findings', () =>
      existsSync(l.pathOn('lvs1', '/var/lib/lvssync/findings.json')),
    );
    for (const d of ['lvs1', 'lvs2'] as const)
      expect(Object.keys(JSON.parse(l.readFile(d, '/var/lib/lvssync/findings.json')).files)).toContain(FWM);
    await until('the master to end with the burst', () => !existsSync(`/proc/${master}`), 10_000);
    expect(existsSync(l.pathOn('lvs1', '/var/lib/lvssync/ssh/lvs2.sock'))).toBe(false);
  }, 90_000);

  it('with ssh.keepConnection, the daemon keeps one OpenSSH master to lvs2 while idle: a push after the idle release opens its agent session through it; a master killed is made again, and the push meanwhile connects by itself', async () => {
    const l = lab();
    const yaml = l.readFile('lvs1', '/etc/lvssync/lvssync.yaml');
    l.writeFile(
      'lvs1',
      '/etc/lvssync/lvssync.yaml',
      yaml.replace(/^ssh:\n/m, 'ssh:\n  keepConnection: true\n'),
    );
    await restartWatch(l, 2);
    const { log, logins, masters, released } = masterProbes(l);
    await until(
      'the daemon to converge and keep a connection',
      () => masters().length === 1 && released() >= 1,
      30_000,
    );
    const master = masters()[0]!.pid!;
    const cmd = readFileSync(`/proc/${master}/cmdline`, 'utf8').split('\0');
    expect(cmd).toContain('-M');
    expect(cmd).toContain('ControlPath=/var/lib/lvssync/ssh/lvs2.sock');
    // lvssync's key: every session through it is the forced agent
    expect(cmd).toContain('/etc/lvssync/id_ed25519');
    expect(statSync(l.pathOn('lvs1', '/var/lib/lvssync/ssh')).mode & 0o777).toBe(0o700);
    const before = logins();
    const opened = () => log().filter((j) => j.msg === 'peer session opened').length;
    const sessions = opened();
    const pushed = () => log().filter((j) => j.msg === 'pushed').length;
    const pushes = pushed();
    await l.exec('lvs1', ['sed', '-i', 's/weight [0-9]*/weight 91/', FWM]);
    await until('weight 91 on lvs2', sameOnLvs2(l, FWM));
    await until('the push to finish', () => pushed() > pushes);
    expect(opened()).toBe(sessions + 1);
    expect(logins()).toBe(before);
    // a master killed (a cut link ends it the same way): the next push connects by itself
    await until('the idle release', () => released() >= 2, 15_000);
    process.kill(master, 'SIGKILL');
    await until('the daemon to see its master end', () =>
      log().some((j) => j.msg === 'kept connection ended'),
    );
    await l.exec('lvs1', ['sed', '-i', 's/weight [0-9]*/weight 92/', FWM]);
    await until('weight 92 on lvs2', sameOnLvs2(l, FWM));
    expect(logins()).toBeGreaterThan(before);
    // and the master is made again by itself
    await until('a new master', () => masters().length === 2, 20_000);
    expect(masters()[1]!.pid).not.toBe(master);
    // the daemon stops: its master with it
    const again = masters()[1]!.pid!;
    await l.killProc(daemon!);
    await until('the master to end with the daemon', () => !existsSync(`/proc/${again}`), 10_000);
    daemon = undefined;
  }, 120_000);

  it('the first save starts a push at once, committed only after the quiet window; a second save within it supersedes it', async () => {
    const l = lab();
    await l.killProc(daemon!);
    rmSync(l.logFile('lvs1', 'watch'), { force: true });
    const QUIET = 1500;
    daemon = l.spawnOn('lvs1', 'watch', [
      process.execPath,
      MAIN,
      'watch',
      '--quiet',
      String(QUIET),
      '--max',
      '8000',
    ]);
    const log = () => watchLog<{ msg: string; timings?: Record<string, number>; early?: boolean }>(l);
    const pushed = () => log().filter((j) => j.msg === 'pushed');
    await until('the daemon to converge', () => log().some((j) => /in sync|pushed/.test(j.msg)), 30_000);
    const before = pushed().length;

    // A, then B 400 ms later: A's early push is abandoned, lvs2 never has A, and gets B.
    let sawA = false;
    const t0 = Date.now();
    await l.exec('lvs1', ['sed', '-i', 's/weight [0-9]*/weight 81/', FWM]);
    await new Promise((r) => setTimeout(r, 400));
    await l.exec('lvs1', ['sed', '-i', 's/weight [0-9]*/weight 82/', FWM]);
    await until('weight 82 on lvs2', () => {
      const t = l.readFile('lvs2', FWM);
      if (t.includes('weight 81')) sawA = true;
      return t.includes('weight 82');
    });
    expect(sawA).toBe(false);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(400 + QUIET);
    await until('the push to be logged', () => pushed().length === before + 1);
    expect(log().some((j) => j.msg === 'early push abandoned: the set changed again')).toBe(true);

    // One save: its push starts at once and is ready before the window is over, then commits.
    const t1 = Date.now();
    await l.exec('lvs1', ['sed', '-i', 's/weight [0-9]*/weight 83/', FWM]);
    await until('weight 83 on lvs2', sameOnLvs2(l, FWM));
    expect(Date.now() - t1).toBeGreaterThanOrEqual(QUIET);
    await until('the push to be logged', () => pushed().length === before + 2);
    const last = pushed().at(-1)!;
    expect(last.early).toBe(true);
    expect(last.timings?.validated).toBeLessThan(QUIET);
    expect(last.timings?.gated).toBeGreaterThanOrEqual(QUIET - 100);
    expect(pushed().length).toBe(before + 2);
  }, 60_000);

  it('a second save right after the first (whose change event the file watcher drops) still reaches lvs2', async () => {
    const l = lab();
    const host = l.pathOn('lvs1', FWM);
    for (const [i, gapMs] of [5, 15, 25, 35, 45, 5, 20, 40].entries()) {
      const base = l.readFile('lvs1', FWM);
      const second = base.replace(/weight \d+/, `weight ${60 + i}`);
      // a valid first save, or half a file (a writer caught in the middle): invalid
      const first =
        i < 5 ? base.replace(/weight \d+/, `weight ${90 + i}`) : second.slice(0, second.length >> 1);
      writeFileSync(host, first);
      await new Promise((r) => setTimeout(r, gapMs));
      writeFileSync(host, second);
      await until(`the second save (${gapMs} ms after the first) on lvs2`, () => {
        try {
          return l.readFile('lvs2', FWM) === second;
        } catch {
          return false;
        }
      });
      // and it stays: no later push of the first
      await new Promise((r) => setTimeout(r, 600));
      expect(l.readFile('lvs2', FWM)).toBe(second);
    }
  }, 120_000);

  it('a new conf.d file and its mark follow, and so does its removal', async () => {
    const l = lab();
    const f = '/etc/keepalived/conf.d/fwm-200.conf';
    await l.exec('lvs1', [
      'sh',
      '-c',
      `printf 'virtual_server fwmark 200 {\\n    lb_algo wlc\\n    lb_kind DR\\n    real_server 198.51.100.10 0 {\\n        weight 1\\n    }\\n}\\n' > ${f} && echo '&LVS_MARK(198.51.100.100, 200);' >> /etc/ferm/ferm.conf`,
    ]);
    await until('fwm-200.conf on lvs2', sameOnLvs2(l, f));
    await until('the mark on lvs2', async () => (await l.iptablesSave('lvs2')).includes('0xc8/'));
    await l.exec('lvs1', ['sh', '-c', `rm ${f} && sed -i '/200);/d' /etc/ferm/ferm.conf`]);
    await until(
      'fwm-200.conf gone from lvs2',
      () => !readdirSync(l.pathOn('lvs2', '/etc/keepalived/conf.d')).includes('fwm-200.conf'),
    );
  });

  it('with the crossover link cut it reports the peer down, and converges when the link returns', async () => {
    const l = lab();
    await l.cutCrossover();
    await l.exec('lvs1', ['sed', '-i', 's/weight 50/weight 81/', FWM]);
    await until(
      'the daemon to report the peer down',
      () => /peer unreachable/.test(readFileSync(l.logFile('lvs1', 'watch'), 'utf8')),
      30_000,
    );
    const status = JSON.parse(readFileSync(l.pathOn('lvs1', '/var/lib/lvssync/watch-status.json'), 'utf8'));
    expect(status.health).toBe('peer-down');
    await l.exec('lvs1', ['sed', '-i', 's/weight 81/weight 82/', FWM]); // edited meanwhile
    await l.restoreCrossover();
    await until('lvs2 to converge', () => l.readFile('lvs2', FWM).includes('weight 82'), 90_000);
    // the split brain of the cut settles before the next test
    await l.waitForVipHolder(20_000);
  }, 150_000);

  it('kill -9 of the push worker, then of the daemon and its worker, during a push: lvs2 stays valid and converges', async () => {
    const l = lab();
    const reload = l.pathOn('lvs2', '/etc/lvssync/lab/keepalived-reload');
    const good = readFileSync(reload, 'utf8');
    const { writeFileSync } = await import('node:fs');
    const journal = l.pathOn('lvs2', '/var/lib/lvssync/journal.json');
    const workerPids = () =>
      readFileSync(l.logFile('lvs1', 'watch'), 'utf8')
        .split('\n')
        .filter((x) => x.includes('"push worker started"'))
        .map((x) => JSON.parse(x).workerPid as number);
    const rolledBack = (weight: number) => () =>
      !existsSync(journal) && l.readFile('lvs2', FWM).includes(`weight ${weight}`);
    writeFileSync(reload, `sleep 2\n${good}`);
    try {
      // 1. The worker dies alone: the agent rolls back, the daemon sees the crash and tries again.
      await l.exec('lvs1', ['sed', '-i', 's/weight 50/weight 91/', FWM]);
      await until('the push to commit on lvs2', () => existsSync(journal));
      const first = workerPids().at(-1)!;
      process.kill(first, 'SIGKILL');
      await until('the daemon to report the crash', () =>
        /push crashed, will retry/.test(readFileSync(l.logFile('lvs1', 'watch'), 'utf8')),
      );
      await until('lvs2 to converge after the retry', rolledBack(91), 30_000);
      expect(workerPids().at(-1)).not.toBe(first);

      // 2. The daemon and its worker die together (a crash of the host's lvssync): the agent rolls
      // lvs2 back to the last good set, and a restarted daemon converges.
      await l.exec('lvs1', ['sed', '-i', 's/weight 91/weight 92/', FWM]);
      await until('the next push to commit on lvs2', () => existsSync(journal));
      const worker = workerPids().at(-1)!;
      process.kill(daemon!.pid, 'SIGKILL');
      process.kill(worker, 'SIGKILL');
      await until('lvs2 to roll back', rolledBack(91), 20_000);
      const check = await l.exec('lvs2', [process.execPath, MAIN, 'check'], { allowFail: true });
      expect(check.code).toBe(0);
      daemon = l.spawnOn('lvs1', 'watch', [process.execPath, MAIN, 'watch', '--quiet', '200']);
      await until(
        'the restarted daemon to converge',
        () => l.readFile('lvs2', FWM).includes('weight 92'),
        30_000,
      );
    } finally {
      writeFileSync(reload, good);
    }
  }, 120_000);

  it('lvssync push while the daemon runs asks the daemon, which pushes at once on its warm path', async () => {
    const l = lab();
    await l.exec('lvs1', ['sed', '-i', 's/weight 50/weight 71/', FWM]);
    const r = await l.exec('lvs1', [process.execPath, MAIN, 'push', '--yes'], {
      allowFail: true,
      timeoutMs: 60_000,
    });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stderr).toMatch(/the daemon pushes on this director/);
    // the daemon may have pushed the edit by itself first: then it says so, in sync
    expect(r.stdout).toMatch(/pushed to lvs2|lvs2 is in sync with lvs1|lvs2: in sync/);
    expect(l.readFile('lvs2', FWM)).toContain('weight 71');
    // --dry-run still plans here, without the daemon
    const dry = await l.exec('lvs1', [process.execPath, MAIN, 'push', '--dry-run'], { allowFail: true });
    expect(dry.stderr).not.toMatch(/the daemon pushes/);
    await l.exec('lvs1', ['sed', '-i', 's/weight 71/weight 50/', FWM]);
    await until('lvs2 back', () => l.readFile('lvs2', FWM).includes('weight 50'));
  }, 90_000);

  it('watch --once pushes what changed while no daemon ran, and exits 0 once in sync', async () => {
    const l = lab();
    await l.killProc(daemon!);
    daemon = undefined;
    await l.exec('lvs1', ['sed', '-i', 's/weight 50/weight 66/', FWM]);
    const r = await l.exec('lvs1', [process.execPath, MAIN, 'watch', '--once'], {
      allowFail: true,
      timeoutMs: 60_000,
    });
    expect(r.code).toBe(0);
    expect(l.readFile('lvs2', FWM)).toContain('weight 66');
    expect(r.stdout).toMatch(/"msg":"pushed"/);
  }, 90_000);

  it('SIGHUP right after a push (its worker still up) reloads lvssync.yaml and keeps pushing', async () => {
    const l = lab();
    await l.exec('lvs1', ['sed', '-i', 's/weight 50/weight 61/', FWM]);
    await until('lvs2 to follow', () => l.readFile('lvs2', FWM).includes('weight 61'));
    const log = l.logFile('lvs1', 'watch');
    const from = readFileSync(log, 'utf8').length;
    process.kill(daemon!.pid, 'SIGHUP');
    await until('the reload', () =>
      /configuration reloaded|configuration rejected/.test(readFileSync(log, 'utf8').slice(from)),
    );
    expect(readFileSync(log, 'utf8').slice(from)).not.toMatch(/rejected/);
    await l.exec('lvs1', ['sed', '-i', 's/weight 61/weight 50/', FWM]);
    await until('lvs2 to follow after the reload', () => l.readFile('lvs2', FWM).includes('weight 50'));
  });

  it('SIGHUP with a broken lvssync.yaml keeps the old configuration; SIGTERM exits 0', async () => {
    const l = lab();
    const cfg = l.pathOn('lvs1', '/etc/lvssync/lvssync.yaml');
    const good = readFileSync(cfg, 'utf8');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(cfg, `${good}bogus: 1\n`);
    try {
      process.kill(daemon!.pid, 'SIGHUP');
      await until('the rejection', () =>
        /new configuration rejected/.test(readFileSync(l.logFile('lvs1', 'watch'), 'utf8')),
      );
      await l.exec('lvs1', ['sed', '-i', 's/weight 50/weight 95/', FWM]);
      await until('lvs2 to follow with the old configuration', () =>
        l.readFile('lvs2', FWM).includes('weight 95'),
      );
    } finally {
      writeFileSync(cfg, good);
    }
    process.kill(daemon!.pid, 'SIGTERM');
    await until('the daemon to stop', () =>
      /"msg":"stopped"/.test(readFileSync(l.logFile('lvs1', 'watch'), 'utf8')),
    );
  });
});
