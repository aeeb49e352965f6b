// Benchmark of the watch daemon in the lab: edit-to-peer latency (a save on lvs1 until lvs2's file
// matches) over 40 edits among 1,000 conf.d files, p50/p95, next to lsyncd (default.rsyncssh,
// delay 0, and its default delay on a few edits) driven the same way in the same run. Also the
// idle daemon's RSS and CPU. Targets: p50 below lsyncd at delay 0 with full validation on; idle RSS
// under 60 MiB and no CPU when nothing changes. csync2 has no watcher of its own: `csync2 -x` runs
// right after each save (a trigger with no delay), against its own server on lvs2.

import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ADDR, DIRECTORS, type Lab, REPO, run, stopLab } from '../scripts/lab/lab.js';
import { virtualServerFile } from './gen.js';
import { labSsh, labWithSet, packagedProgram, timedOn } from './lab-set.js';
import { fmtMs, percentile, printTable, verdict } from './util.js';

const N = 1000;

/** Cold saves per daemon (after one more as a warm-up): this VM's noise is ±100 ms on a single one. */
const COLD_SAVES = 6;

async function latency(
  lab: Lab,
  edits: number,
  target: (p: string) => string,
  tag: string,
  timeoutMs = 60_000,
  /** Resolves when the tool has finished with the edit (the daemon's reloads); the next edit waits. */
  settled: () => Promise<void> = async () => {},
  /**
   * Between one edit's end and the next save, for every tool: a second, about as fast as a person
   * saves twice, and long enough that the keepalived processes reloaded for the last edit (which
   * re-read the whole set in the background after lvssync's verification) are done.
   */
  gapMs = 1000,
  /** Runs right after each save (a tool without a watcher of its own: csync2 -x). */
  trigger?: () => Promise<unknown>,
): Promise<number[]> {
  const out: number[] = [];
  for (let i = 1; i <= edits; i++) {
    const mark = 100 + ((i * 131) % N);
    const p = `/etc/keepalived/conf.d/fwm-${mark}.conf`;
    const text = virtualServerFile(mark, i).replace('# fwmark', `# ${tag} ${i} fwmark`);
    const t0 = performance.now();
    lab.writeFile('lvs1', p, text, 0o644);
    const triggered = trigger?.();
    for (;;) {
      let got = '';
      try {
        got = readFileSync(target(p), 'utf8');
      } catch {}
      if (got === text) break;
      if (performance.now() - t0 > timeoutMs)
        throw new Error(`${tag}: edit ${i} did not arrive within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 5));
    }
    out.push(performance.now() - t0);
    await triggered;
    await settled();
    await new Promise((r) => setTimeout(r, gapMs));
  }
  return out;
}

/** NODE_OPTIONS of systemd/lvssync.service: the daemon is measured as it is installed. */
function unitNodeOptions(): string {
  const unit = readFileSync(path.join(REPO, 'systemd', 'lvssync.service'), 'utf8');
  return /^Environment=NODE_OPTIONS=(.*)$/m.exec(unit)?.[1]?.trim() ?? '';
}

/** The daemon's process tree on the host: RSS summed, CPU ticks summed. */
function treeStat(pid: number): { rssKiB: number; ticks: number } {
  const all = [pid];
  for (let k = 0; k < all.length; k++) {
    try {
      const kids = readFileSync(`/proc/${all[k]}/task/${all[k]}/children`, 'utf8').trim();
      if (kids) all.push(...kids.split(/\s+/).map(Number));
    } catch {}
  }
  let rssKiB = 0;
  let ticks = 0;
  for (const p of all) {
    try {
      const s = procStat(p);
      rssKiB += s.rssKiB;
      ticks += s.ticks;
    } catch {}
  }
  return { rssKiB, ticks };
}

function procStat(pid: number): { rssKiB: number; ticks: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { rssKiB: rss, ticks: Number(f[11]) + Number(f[12]) };
}

function lsyncdConfig(lab: Lab, delay: number | undefined, targetDir: string): string {
  const ssh = path.join(lab.hostDir('lvs1'), 'ssh');
  return `settings { nodaemon = true, logfile = "${lab.dir}/lsyncd.log", statusFile = "${lab.dir}/lsyncd.status" }
sync {
  default.rsyncssh,
  source = "/etc/keepalived",
  host = "root@${ADDR.crossover.lvs2}",
  targetdir = "${targetDir}",
  ${delay === undefined ? '' : `delay = ${delay},`}
  rsync = { archive = true },
  ssh = { identityFile = "${ssh}/id_ed25519", options = { UserKnownHostsFile = "${ssh}/known_hosts", StrictHostKeyChecking = "yes" } },
}
`;
}

async function measureLsyncd(
  lab: Lab,
  delay: number | undefined,
  edits: number,
  tag: string,
): Promise<number[]> {
  const targetDir = path.join(lab.dir, `lsyncd-target-${tag}`);
  await run(['mkdir', '-p', targetDir]);
  const conf = path.join(lab.dir, `lsyncd-${tag}.lua`);
  writeFileSync(conf, lsyncdConfig(lab, delay, targetDir));
  const p = lab.spawnOn('lvs1', `lsyncd-${tag}`, ['lsyncd', conf]);
  try {
    // initial full sync
    const probe = path.join(targetDir, 'keepalived.conf');
    const until = Date.now() + 120_000;
    while (Date.now() < until) {
      try {
        if (readFileSync(probe, 'utf8').length > 0) break;
      } catch {}
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 1000));
    return await latency(
      lab,
      edits,
      (f) => path.join(targetDir, path.relative('/etc/keepalived', f)),
      `lsyncd-${tag}`,
      120_000,
    );
  } finally {
    await lab.killProc(p);
  }
}

/**
 * csync2 between the directors over the crossover link: its own server (-ii) on lvs2 writing to a
 * separate target directory (a csync2 prefix), a pre-shared key, no SSL, names as addresses (the lab
 * has no DNS), and `csync2 -x` run on lvs1 right after each save: a watcher with no delay at all.
 */
async function measureCsync2(lab: Lab, edits: number): Promise<number[]> {
  const target = path.join(lab.dir, 'csync2-target');
  const key = path.join(lab.dir, 'csync2.key');
  mkdirSync(target, { recursive: true });
  rmSync(key, { force: true });
  await run(['csync2', '-k', key]);
  const [a, b] = [ADDR.crossover.lvs1, ADDR.crossover.lvs2];
  const sys = (h: string) => path.join(lab.dir, `csync2-${h}`);
  for (const h of ['lvs1', 'lvs2']) {
    mkdirSync(path.join(sys(h), 'db'), { recursive: true });
    writeFileSync(
      path.join(sys(h), 'csync2.cfg'),
      `nossl * *;
group lvs {
  host ${a} ${b};
  key ${key};
  include %kad%;
  exclude *~ .*;
  auto younger;
}
prefix kad {
  on ${a}: /etc/keepalived;
  on ${b}: ${target};
}
`,
    );
  }
  const argv = (h: 'lvs1' | 'lvs2', ...args: string[]) => [
    'env',
    `CSYNC2_SYSTEM_DIR=${sys(h)}`,
    'csync2',
    ...args,
    '-p',
    '30865',
    '-N',
    h === 'lvs1' ? a : b,
    '-D',
    path.join(sys(h), 'db'),
  ];
  const server = lab.spawnOn('lvs2', 'csync2', argv('lvs2', '-ii'));
  try {
    const until = Date.now() + 10_000;
    while (!(await lab.exec('lvs2', ['ss', '-Hltn', `sport = :30865`])).stdout.trim() && Date.now() < until)
      await new Promise((r) => setTimeout(r, 50));
    // initial full sync
    await lab.exec('lvs1', argv('lvs1', '-xr'), { timeoutMs: 300_000 });
    return await latency(
      lab,
      edits,
      (f) => path.join(target, path.relative('/etc/keepalived', f)),
      'csync2',
      60_000,
      async () => {},
      1000,
      () => lab.exec('lvs1', argv('lvs1', '-x'), { timeoutMs: 60_000 }),
    );
  } finally {
    await lab.killProc(server);
  }
}

/**
 * What any save after the idle release pays before lvssync's own work, without a connection kept
 * while idle: a new SSH connection and a node process on lvs2 (the agent), then `keepalived -t` of
 * the set there (which cannot start before the set has arrived). And what keeping the connection
 * would cost the idle daemon: the RSS of an OpenSSH master connection.
 */
async function coldFloor(lab: Lab): Promise<{
  sshNodeMs: number;
  keepalivedTestMs: number;
  masterRssKiB: number;
  agentNewMs: number;
  agentMasterMs: number;
}> {
  const base = labSsh(lab);
  const to = `root@${ADDR.crossover.lvs2}`;
  const sshNode: number[] = [];
  for (let i = 0; i < 5; i++) sshNode.push(await timedOn(lab, 'lvs1', [...base, to, 'node', '-e', '0']));
  // the agent as a push starts it (lvssync's key, the forced command), told at once that nothing comes
  const agentArgv = (extra: string[]) => [
    'sh',
    '-c',
    `exec "$@" </dev/null`,
    'sh',
    ...labSsh(lab, 'lvssync'),
    ...extra,
    to,
  ];
  const agentNew: number[] = [];
  for (let i = 0; i < 5; i++) agentNew.push(await timedOn(lab, 'lvs1', agentArgv([])));
  const kt: number[] = [];
  for (let i = 0; i < 3; i++)
    kt.push(
      await timedOn(lab, 'lvs2', ['keepalived', '-t', '-l', '-n', '-f', '/etc/keepalived/keepalived.conf']),
    );
  const ctl = path.join(lab.dir, 'bench-master.sock');
  rmSync(ctl, { force: true });
  // with lvssync's key: every session through it is the agent, as with a connection of its own
  const lv = labSsh(lab, 'lvssync');
  const master = lab.spawnOn('lvs1', 'ssh-master', [...lv, '-M', '-N', '-S', ctl, to]);
  let masterRssKiB = Number.NaN;
  const agentMaster: number[] = [];
  try {
    for (const t = Date.now() + 10_000; Date.now() < t; ) {
      if ((await lab.exec('lvs1', [...lv, '-S', ctl, '-O', 'check', to], { allowFail: true })).code === 0)
        break;
      await new Promise((r) => setTimeout(r, 50));
    }
    for (let i = 0; i < 5; i++) agentMaster.push(await timedOn(lab, 'lvs1', agentArgv(['-S', ctl])));
    await new Promise((r) => setTimeout(r, 1000));
    masterRssKiB = treeStat(master.pid).rssKiB;
  } finally {
    await lab.killProc(master);
    rmSync(ctl, { force: true });
  }
  return {
    sshNodeMs: percentile(sshNode, 50),
    keepalivedTestMs: percentile(kt, 50),
    masterRssKiB,
    agentNewMs: percentile(agentNew, 50),
    agentMasterMs: percentile(agentMaster, 50),
  };
}

export async function benchWatch(): Promise<boolean> {
  const tools: Record<string, boolean> = {};
  for (const tool of ['lsyncd', 'csync2']) {
    const has = async () =>
      (await run(['sh', '-c', `command -v ${tool} || test -x /usr/sbin/${tool}`], { allowFail: true }))
        .code === 0;
    if (!(await has())) {
      const inst = await run(
        [
          'sh',
          '-c',
          `DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${tool} >/dev/null`,
        ],
        { allowFail: true },
      );
      if (inst.code !== 0)
        console.log(`watch: could not install ${tool} (${inst.stderr.trim()}): ${tool} not measured`);
    }
    tools[tool] = await has();
  }
  // the program as the Debian package ships it (bundled, started with its code cache), on both
  const { program, cleanup } = await packagedProgram();
  const lab = await labWithSet('wbench', N, DIRECTORS, program);
  try {
    // lvssync watch: full validation on both directors, reloads in order; started as the unit starts it
    const idleRelease = 5;
    const startDaemon = async (name: string) => {
      const proc = lab.spawnOn('lvs1', name, [
        'env',
        `NODE_OPTIONS=${unitNodeOptions()}`,
        ...Object.entries(program.env ?? {}).map(([k, v]) => `${k}=${v}`),
        process.execPath,
        program.path,
        'watch',
        '--quiet',
        '100',
        '--max',
        '1000',
        '--idle-release',
        String(idleRelease),
      ]);
      const text = () => readFileSync(lab.logFile('lvs1', name), 'utf8');
      const until = Date.now() + 120_000;
      while (
        !/in sync, nothing to push|"msg":"pushed"|"msg":"files in sync; reloaded/.test(text()) &&
        Date.now() < until
      )
        await new Promise((r) => setTimeout(r, 100));
      const pushes = () => (text().match(/"msg":"(pushed|in sync, nothing to push)"/g) ?? []).length;
      const released = () =>
        (text().match(/"msg":"idle: peer session closed, caches dropped"/g) ?? []).length;
      const nextRelease = async () => {
        const before = released();
        for (const t = Date.now() + 60_000; released() === before && Date.now() < t; )
          await new Promise((r) => setTimeout(r, 100));
      };
      // The next edit comes once the daemon has finished with the last one (its reloads included):
      // the latency of an edit, not of a queue of them.
      let seen = pushes();
      const settled = async () => {
        const t = Date.now() + 60_000;
        while (pushes() === seen && Date.now() < t) await new Promise((r) => setTimeout(r, 20));
        seen = pushes();
      };
      return {
        proc,
        text,
        settled,
        released,
        /** Saves each made after the daemon let its worker, session and caches go (the first is a warm-up). */
        coldSaves: (tag: string) =>
          latency(
            lab,
            COLD_SAVES + 1,
            (p) => lab.pathOn('lvs2', p),
            tag,
            120_000,
            settled,
            (idleRelease + 2) * 1000,
          ),
        /** RSS and CPU once idle (its next release, settled from it), 10 s apart. */
        idle: async () => {
          await nextRelease();
          await new Promise((r) => setTimeout(r, 3000));
          const a = treeStat(proc.pid);
          await new Promise((r) => setTimeout(r, 10_000));
          return { a, b: treeStat(proc.pid) };
        },
      };
    };
    const watch = await startDaemon('watch');
    const { proc: daemon, text: log, settled } = watch;
    const ours = await latency(lab, 40, (p) => lab.pathOn('lvs2', p), 'lvssync', 120_000, settled);
    const warm = treeStat(daemon.pid);
    // the first edit after the daemon let its session and caches go
    const cold = await watch.coldSaves('lvssync-cold');
    // where a cold push spends its time (the daemon's log of each: ms from its start, here and on lvs2)
    const coldPushes = log()
      .split('\n')
      .filter((l) => l.includes('"msg":"pushed"'))
      .slice(-cold.length)
      .map(
        (l) =>
          JSON.parse(l) as {
            timings: Record<string, number>;
            peerTimings?: Record<string, Record<string, number>>;
          },
      );
    const stages = new Map<string, number[]>();
    for (const p of coldPushes) {
      for (const [k, v] of Object.entries(p.timings)) stages.set(k, [...(stages.get(k) ?? []), v]);
      for (const [node, t] of Object.entries(p.peerTimings ?? {}))
        for (const [k, v] of Object.entries(t))
          stages.set(`${node} ${k}`, [...(stages.get(`${node} ${k}`) ?? []), v]);
    }
    // idle: no change; measured once the daemon has let the session and caches go (after the last
    // push's reloads and its --idle-release), and settled from it
    const { a, b } = await watch.idle();
    await lab.killProc(daemon);

    // the same with ssh.keepConnection: the daemon keeps an OpenSSH master to lvs2 while idle
    const yaml = lab.readFile('lvs1', '/etc/lvssync/lvssync.yaml');
    lab.writeFile(
      'lvs1',
      '/etc/lvssync/lvssync.yaml',
      yaml.replace(/^ssh:\n/m, 'ssh:\n  keepConnection: true\n'),
    );
    const kept = await startDaemon('watch-kept');
    for (const t = Date.now() + 60_000; kept.released() === 0 && Date.now() < t; )
      await new Promise((r) => setTimeout(r, 100));
    const coldKept = await kept.coldSaves('lvssync-cold-kept');
    const { a: ka, b: kb } = await kept.idle();
    await lab.killProc(kept.proc);
    lab.writeFile('lvs1', '/etc/lvssync/lvssync.yaml', yaml);

    const floor = await coldFloor(lab);
    const lsyncd0 = tools.lsyncd ? await measureLsyncd(lab, 0, 40, 'delay0') : [];
    const csync2 = tools.csync2 ? await measureCsync2(lab, 40) : [];
    const lsyncdDefault = lsyncd0.length ? await measureLsyncd(lab, undefined, 3, 'default') : [];
    const p50 = percentile(ours, 50);
    const l50 = lsyncd0.length ? percentile(lsyncd0, 50) : Number.NaN;
    const latencyOk = lsyncd0.length > 0 && p50 < l50;
    const coldP50 = percentile(cold.slice(1), 50);
    const coldOk = lsyncd0.length > 0 && coldP50 <= l50;
    const rssOk = b.rssKiB < 60 * 1024;
    const cpuOk = b.ticks - a.ticks === 0;
    printTable(
      `watch: edit on lvs1 until lvs2's file matches, ${N.toLocaleString('en')} conf.d files, 40 edits`,
      [
        {
          name: 'lvssync watch p50 (validation on both, reloads)',
          value: fmtMs(p50),
          note: lsyncd0.length ? verdict(latencyOk, '< lsyncd delay 0 p50') : '',
        },
        { name: 'lvssync watch p95', value: fmtMs(percentile(ours, 95)) },
        {
          name: `lvssync watch, first edit after ${idleRelease} s idle (worker and session released; median of ${COLD_SAVES})`,
          value: fmtMs(coldP50),
          note: lsyncd0.length ? verdict(coldOk, '<= lsyncd delay 0 p50') : '',
        },
        { name: 'lsyncd default.rsyncssh delay 0 p50', value: lsyncd0.length ? fmtMs(l50) : 'not measured' },
        {
          name: 'lsyncd default.rsyncssh delay 0 p95',
          value: lsyncd0.length ? fmtMs(percentile(lsyncd0, 95)) : 'not measured',
        },
        {
          name: 'ratio p50 lvssync / lsyncd delay 0',
          value: lsyncd0.length ? `${(p50 / l50).toFixed(2)}x` : '-',
        },
        {
          name: 'lsyncd default delay p50 (3 edits)',
          value: lsyncdDefault.length ? fmtMs(percentile(lsyncdDefault, 50)) : 'not measured',
        },
        {
          name: 'csync2 -x right after each save p50 (no validation, no reload)',
          value: csync2.length ? fmtMs(percentile(csync2, 50)) : 'not measured',
        },
        {
          name: 'csync2 -x right after each save p95',
          value: csync2.length ? fmtMs(percentile(csync2, 95)) : 'not measured',
        },
        {
          name: 'ratio p50 lvssync / csync2',
          value: csync2.length ? `${(p50 / percentile(csync2, 50)).toFixed(2)}x` : '-',
        },
        {
          name: 'daemon RSS while pushing (session and caches held)',
          value: `${(warm.rssKiB / 1024).toFixed(1)} MiB`,
        },
        {
          name: 'idle daemon RSS (session and caches released)',
          value: `${(b.rssKiB / 1024).toFixed(1)} MiB`,
          note: verdict(rssOk, '< 60 MiB'),
        },
        { name: 'idle daemon CPU over 10 s', value: `${b.ticks - a.ticks} ticks`, note: verdict(cpuOk, '0') },
        {
          name: `with ssh.keepConnection: first edit after the idle release (median of ${COLD_SAVES})`,
          value: fmtMs(percentile(coldKept.slice(1), 50)),
          note: lsyncd0.length
            ? verdict(percentile(coldKept.slice(1), 50) <= l50, '<= lsyncd delay 0 p50')
            : '',
        },
        {
          name: 'with ssh.keepConnection: idle daemon RSS (its master included)',
          value: `${(kb.rssKiB / 1024).toFixed(1)} MiB`,
          note: verdict(kb.rssKiB < 60 * 1024, '< 60 MiB'),
        },
        {
          name: 'with ssh.keepConnection: idle daemon CPU over 10 s',
          value: `${kb.ticks - ka.ticks} ticks`,
          note: verdict(kb.ticks - ka.ticks === 0, '0'),
        },
      ],
    );
    const floorMs = floor.sshNodeMs + floor.keepalivedTestMs;
    const withMaster = b.rssKiB + floor.masterRssKiB;
    printTable(
      'watch: the floor of the first save after the idle release (measured in this run, on lvs2 from lvs1)',
      [
        {
          name: 'a new SSH connection running `node -e 0` there (median of 5)',
          value: fmtMs(floor.sshNodeMs),
        },
        { name: '`keepalived -t` of the set there (median of 3)', value: fmtMs(floor.keepalivedTestMs) },
        {
          name: 'floor without a kept connection: both, one after the other',
          value: fmtMs(floorMs),
          note: lsyncd0.length
            ? `${floorMs > l50 ? 'above' : 'not above'} lsyncd delay 0 p50 ${fmtMs(l50)}`
            : '',
        },
        {
          name: 'the agent started and ended, a new connection (median of 5)',
          value: fmtMs(floor.agentNewMs),
        },
        {
          name: 'the agent started and ended through a kept master (median of 5)',
          value: fmtMs(floor.agentMasterMs),
        },
        {
          name: 'floor with a kept master: that, then `keepalived -t` there',
          value: fmtMs(floor.agentMasterMs + floor.keepalivedTestMs),
          note: lsyncd0.length
            ? `${floor.agentMasterMs + floor.keepalivedTestMs > l50 ? 'above' : 'not above'} lsyncd delay 0 p50 ${fmtMs(l50)}`
            : '',
        },
        {
          name: 'a kept OpenSSH master connection to lvs2 (its RSS)',
          value: `${(floor.masterRssKiB / 1024).toFixed(1)} MiB`,
        },
        {
          name: 'the idle daemon with that connection kept',
          value: `${(withMaster / 1024).toFixed(1)} MiB`,
          note: `${withMaster < 60 * 1024 ? 'within' : 'over'} the 60 MiB idle budget`,
        },
      ],
    );
    printTable(
      'watch: where the first save after the idle release spends its time (median over the cold pushes, ms from the push start)',
      [...stages].map(([k, v]) => ({ name: k, value: fmtMs(percentile(v, 50)) })),
    );
    return latencyOk && coldOk && rssOk && cpuOk;
  } finally {
    await stopLab(lab.dir);
    cleanup();
  }
}
