// Benchmark of lvssync push in the lab, next to rsync over an SSH ControlMaster connection to the same
// sshd, measured in the same run: a full first push of 1,000 conf.d files, and edit-to-peer-committed
// for one changed file among them. Targets: one-file push with both directors' validation at most one
// `keepalived -t` of the set plus 50 ms; the transfer alone no slower than rsync over a warm connection.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ADDR, type Lab, type LabProgram, REPO, startLab, stopLab } from '../scripts/lab/lab.js';
import { generateSet, virtualServerFile } from './gen.js';
import { labSsh, packagedProgram, timedOn } from './lab-set.js';
import { fmtMs, median, printTable, verdict } from './util.js';

const N = 1000;
/** The program as the Debian package ships it (set by benchPush). */
let program: LabProgram = { path: path.join(REPO, 'dist', 'src', 'main.js') };
const lvssync = () => [
  'env',
  ...Object.entries(program.env ?? {}).map(([k, v]) => `${k}=${v}`),
  process.execPath,
  program.path,
];

interface PushJson {
  result: string;
  timings: Record<string, number>;
  /** The check here: its reading and lints. */
  checkTimings?: Record<string, number>;
  peers: { node: string; timings?: Record<string, number> }[];
}

/** One push's stages in one record: the push's, the check's here ("here ..."), lvs2's validation ("lvs2 ..."). */
function stagesOf(j: PushJson): Record<string, number> {
  return {
    ...j.timings,
    ...Object.fromEntries(Object.entries(j.checkTimings ?? {}).map(([k, v]) => [`here ${k}`, v])),
    ...Object.fromEntries(
      j.peers.flatMap((p) => Object.entries(p.timings ?? {}).map(([k, v]) => [`${p.node} ${k}`, v])),
    ),
  };
}

/** Each director's reload phase in a push: its reloads and their verification, from its commit (or its turn) on. */
function reloadPhases(j: PushJson): { node: string; ms: number }[] {
  const t = j.timings;
  return Object.keys(t)
    .filter((k) => k.endsWith(' applied'))
    .map((k) => {
      const node = k.slice(0, -' applied'.length);
      return { node, ms: t[k]! - (t[`${node} committed`] ?? t[`${node} start`] ?? Number.NaN) };
    });
}

/**
 * keepalived's own reread of the set on a director, the reload phase's floor: from the reload
 * (SIGHUP, as lvssync sends it) to keepalived removing its reload_file (median of 3).
 */
async function keepalivedRereadMs(lab: Lab, host: 'lvs1' | 'lvs2'): Promise<number> {
  const runs: number[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await lab.exec(host, [
      'sh',
      '-c',
      'echo bench > /run/keepalived.reload; t0=$(date +%s%N); sh /etc/lvssync/lab/keepalived-reload; ' +
        'while [ -e /run/keepalived.reload ]; do sleep 0.005; done; echo $(( ($(date +%s%N) - t0) / 1000 ))',
    ]);
    runs.push(Number(r.stdout.trim()) / 1000);
    await new Promise((res) => setTimeout(res, 1000));
  }
  return median(runs);
}

function medianStages(all: Record<string, number>[]): string {
  return Object.keys(all[0] ?? {})
    .map((k) => `${k} ${median(all.map((t) => t[k] ?? Number.NaN)).toFixed(0)}`)
    .join(', ');
}

async function push(lab: Lab): Promise<PushJson> {
  const r = await lab.exec('lvs1', [...lvssync(), 'push', '--yes', '--json'], {
    allowFail: true,
    timeoutMs: 600_000,
  });
  const j = JSON.parse(r.stdout) as PushJson;
  if (j.result !== 'pushed') throw new Error(`push: ${r.stdout.slice(0, 2000)} ${r.stderr.slice(0, 2000)}`);
  return j;
}

const timed = (lab: Lab, argv: string[]) => timedOn(lab, 'lvs1', argv);

export async function benchPush(): Promise<boolean> {
  const name = 'bench';
  await stopLab(path.join('/tmp', `lvssync-lab-${name}`));
  const packaged = await packagedProgram();
  program = packaged.program;
  const lab = await startLab({ name, program });
  try {
    // lvs1 gets 1,000 fwmark services and their ferm marks.
    const set = generateSet(N);
    for (const [p, text] of set.files) {
      if (p.startsWith('/etc/keepalived/conf.d/')) lab.writeFile('lvs1', p, text, 0o644);
    }
    const ferm = lab.readFile('lvs1', '/etc/ferm/ferm.conf');
    lab.writeFile('lvs1', '/etc/ferm/ferm.conf', `${ferm}${set.files.get('/etc/ferm/ferm.conf')}`);

    // keepalived -t of the whole set, the yardstick of the one-file target
    const kt: number[] = [];
    for (let i = 0; i < 5; i++) {
      kt.push(
        await timed(lab, ['keepalived', '-t', '-l', '-n', '-f', '/etc/keepalived/keepalived.conf']).catch(
          () => Number.NaN,
        ),
      );
    }

    // full first push (validation on both, reloads)
    const t0 = performance.now();
    const first = await push(lab);
    const fullPush = performance.now() - t0;

    // rsync over a warm ControlMaster connection to lvs2's sshd
    const ctl = path.join(lab.dir, 'ctl-%r@%h:%p');
    const sshCmd = [
      ...labSsh(lab),
      '-o',
      'ControlMaster=auto',
      '-o',
      `ControlPath=${ctl}`,
      '-o',
      'ControlPersist=60',
    ].join(' ');
    await lab.exec('lvs1', [
      'sh',
      '-c',
      `${sshCmd} root@${ADDR.crossover.lvs2} 'rm -rf /tmp/rsync-bench; mkdir -p /tmp/rsync-bench'`,
    ]);
    const rsync = [
      'rsync',
      '-a',
      '--checksum',
      '-e',
      sshCmd,
      '/etc/keepalived/',
      `root@${ADDR.crossover.lvs2}:/tmp/rsync-bench/`,
    ];
    const rsyncFull = await timed(lab, rsync);
    const phases = reloadPhases(first);
    const allPhases = phases.reduce((n, p) => n + p.ms, 0);
    const reread = await keepalivedRereadMs(lab, 'lvs2');
    const fullLessReloads = (first.timings.done ?? fullPush) - allPhases;
    const fullOk = fullLessReloads <= 3 * rsyncFull;
    const phasesOk = phases.every((p) => p.ms < 1000);

    // one changed file, five times, with the command line (a new SSH connection and agent each time)
    const cold: number[] = [];
    const coldStages: Record<string, number>[] = [];
    const coldWhole: number[] = [];
    /** Each director's reload phase in those pushes (a conf.d edit: keepalived's reload alone). */
    const coldPhases = new Map<string, number[]>();
    const theirs: number[] = [];
    for (let i = 1; i <= 5; i++) {
      const mark = 100 + ((i * 97) % N);
      const p = `/etc/keepalived/conf.d/fwm-${mark}.conf`;
      lab.writeFile('lvs1', p, virtualServerFile(mark, i), 0o644);
      const tc = performance.now();
      const j = await push(lab);
      coldWhole.push(performance.now() - tc);
      cold.push(j.timings.committed ?? Number.NaN);
      for (const ph of reloadPhases(j)) coldPhases.set(ph.node, [...(coldPhases.get(ph.node) ?? []), ph.ms]);
      coldStages.push(stagesOf(j));
      lab.writeFile('lvs1', p, virtualServerFile(mark, i + 100), 0o644);
      theirs.push(await timed(lab, rsync));
    }
    // ... and as the watch daemon pushes: one session and agent kept open, caches warm
    const driver = await lab.exec(
      'lvs1',
      [process.execPath, path.join(REPO, 'dist', 'bench', 'push-driver.js'), '15', String(N)],
      { timeoutMs: 600_000 },
    );
    const warm = JSON.parse(driver.stdout) as Record<string, number>[];
    // the command line while the daemon runs: it asks the daemon, whose worker is warm
    const daemon = lab.spawnOn('lvs1', 'watch', [...lvssync(), 'watch', '--quiet', '100', '--max', '1000']);
    const daemonLog = () => readFileSync(lab.logFile('lvs1', 'watch'), 'utf8');
    for (
      let t = Date.now();
      !/in sync, nothing to push|"msg":"pushed"/.test(daemonLog()) && Date.now() - t < 120_000;
    )
      await new Promise((r) => setTimeout(r, 100));
    const viaDaemon: number[] = [];
    for (let i = 1; i <= 5; i++) {
      const mark = 100 + ((i * 89) % N);
      const p = `/etc/keepalived/conf.d/fwm-${mark}.conf`;
      // written as a person's save, pushed at once with the command (the daemon's own push would
      // wait for its quiet window): the command's whole process, to the peer committed and reloaded
      lab.writeFile('lvs1', p, virtualServerFile(mark, i + 200), 0o644);
      const t = performance.now();
      const r = await lab.exec('lvs1', [...lvssync(), 'push', '--yes'], {
        timeoutMs: 120_000,
        allowFail: true,
      });
      if (r.code !== 0 || !/the daemon pushes/.test(r.stderr))
        throw new Error(`push via the daemon: ${r.stdout} ${r.stderr}`);
      viaDaemon.push(performance.now() - t);
      await new Promise((r2) => setTimeout(r2, 1000));
    }
    await lab.killProc(daemon);
    const ours = warm.map((t) => t.committed ?? Number.NaN);
    const oursValidation = warm.map((t) => (t.checked ?? 0) + ((t.validated ?? 0) - (t.uploaded ?? 0)));
    const oursTransfer = warm.map(
      (t) => (t.committed ?? 0) - (t.checked ?? 0) - ((t.validated ?? 0) - (t.uploaded ?? 0)),
    );
    const ktMs = median(kt);
    const one = median(ours);
    const transfer = median(oursTransfer);
    const rs = median(theirs);
    const oneOk = one <= ktMs + 50;
    const transferOk = transfer <= rs;
    printTable(`push: ${N.toLocaleString('en')} conf.d files in the lab (lvs1 -> lvs2 over SSH)`, [
      {
        name: 'full first push (validate both, commit, reload)',
        value: fmtMs(fullPush),
        note: `stages ${medianStages([stagesOf(first)])}`,
      },
      { name: 'rsync -a --checksum, full copy (warm ControlMaster)', value: fmtMs(rsyncFull) },
      { name: 'ratio full: lvssync / rsync', value: `${(fullPush / rsyncFull).toFixed(2)}x` },
      {
        name: '  the full first push less its reload phases (committed at)',
        value: `${fmtMs(fullLessReloads)} (${fmtMs(first.timings.committed ?? Number.NaN)})`,
        note: verdict(fullOk, `within 3 x rsync's full copy = ${fmtMs(3 * rsyncFull)}`),
      },
      ...phases.map((p) => ({
        name: `  reload phase on ${p.node} (reloads and their verification)`,
        value: fmtMs(p.ms),
        note: verdict(p.ms < 1000, '< 1 s'),
      })),
      {
        name: "  keepalived's own reread of the 1,000 virtual servers on lvs2 (SIGHUP to reload_file gone; median of 3)",
        value: fmtMs(reread),
        note: 'the floor of the keepalived reload',
      },
      { name: 'keepalived -t of the set (median of 5)', value: fmtMs(ktMs) },
      {
        name: 'one changed file, lvssync push command (new session; median of 5), to committed',
        value: fmtMs(median(cold)),
        note: verdict(median(cold) < 1000, '< 1 s'),
      },
      {
        name: '  stages (median ms from the push start; here: the check here, lvs2: its validation)',
        value: '',
        note: medianStages(coldStages),
      },
      {
        name: '  the whole command (node start to exit, reloads included)',
        value: fmtMs(median(coldWhole)),
      },
      ...[...coldPhases].map(([node, ms]) => ({
        name: `  reload phase on ${node} (keepalived reloaded and verified; median of 5)`,
        value: fmtMs(median(ms)),
        note: verdict(median(ms) < 1000, `< 1 s; keepalived's own reread ${fmtMs(reread)}`),
      })),
      {
        name: 'one changed file, lvssync push with the daemon running (whole command, median of 5)',
        value: fmtMs(median(viaDaemon)),
      },
      {
        name: 'one changed file, daemon session: push to peer committed (median of 15)',
        value: fmtMs(one),
        note: verdict(oneOk, `<= keepalived -t + 50 ms = ${fmtMs(ktMs + 50)}`),
      },
      {
        name: '  stages (median ms from the start)',
        value: '',
        note: Object.keys(warm[0] ?? {})
          .map((k) => `${k} ${median(warm.map((t) => t[k] ?? Number.NaN)).toFixed(0)}`)
          .join(', '),
      },
      { name: '  of which validation (here + on the peer)', value: fmtMs(median(oursValidation)) },
      {
        name: '  transfer alone (connect, manifest, upload, commit)',
        value: fmtMs(transfer),
        note: verdict(transferOk, '<= rsync'),
      },
      { name: 'rsync -a --checksum, one changed file (warm ControlMaster, median of 5)', value: fmtMs(rs) },
      { name: 'ratio one file: lvssync transfer / rsync', value: `${(transfer / rs).toFixed(2)}x` },
    ]);
    const coldPhasesOk = [...coldPhases.values()].every((ms) => median(ms) < 1000);
    return oneOk && transferOk && fullOk && phasesOk && coldPhasesOk;
  } finally {
    await stopLab(lab.dir);
    packaged.cleanup();
  }
}
