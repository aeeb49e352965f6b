// Benchmark of lvssync audit in the lab: both directors with 1,000 conf.d files and a 10,000-line
// IPVS table, next to `rsync -an --checksum` over SSH of the same tree, measured in the same run.
// Target: the whole audit of both directors within the time of that one rsync dry run.

import path from 'node:path';
import { ADDR, DIRECTORS, type Lab, REPO, stopLab } from '../scripts/lab/lab.js';
import { labSsh, labWithSet, timedOn } from './lab-set.js';
import { fmtMs, median, printTable, verdict } from './util.js';

const MAIN = path.join(REPO, 'dist', 'src', 'main.js');
const N = 1000;

/** An ipvsadm -Ln table of `lines` lines: the N configured services and their real servers. */
export function bigTable(lines: number): string {
  const out = [
    'IP Virtual Server version 1.2.1 (size=4096)',
    'Prot LocalAddress:Port Scheduler Flags',
    '  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn',
  ];
  let mark = 100;
  while (out.length < lines) {
    out.push(`FWM  ${mark} wlc persistent 300`);
    const reals = 2 + (mark % 3);
    for (let r = 0; r < reals && out.length < lines; r++) {
      const host = ((mark * 7 + r) % 250) + 1;
      out.push(`  -> 198.51.100.${host}:0            Route   ${50 + r}     0          0`);
    }
    mark++;
  }
  return `${out.join('\n')}\n`;
}

const timed = (lab: Lab, argv: string[]) => timedOn(lab, 'lvs1', argv);

export async function benchAudit(): Promise<boolean> {
  const lab = await labWithSet('abench', N, DIRECTORS);
  try {
    for (const d of DIRECTORS) lab.writeFile(d, '/etc/lvssync/lab/ipvsadm.txt', bigTable(10_000));
    const ours: number[] = [];
    const stages: Record<string, number>[] = [];
    let findings = 0;
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      const r = await lab.exec('lvs1', [process.execPath, MAIN, 'audit', '--json'], {
        allowFail: true,
        timeoutMs: 600_000,
      });
      ours.push(performance.now() - t0);
      const report = JSON.parse(r.stdout) as { findings: unknown[]; timings?: Record<string, number> };
      findings = report.findings.length;
      if (report.timings) stages.push(report.timings);
    }
    const sshCmd = labSsh(lab).join(' ');
    const rsync = [
      'rsync',
      '-an',
      '--checksum',
      '--delete',
      '-e',
      sshCmd,
      '/etc/keepalived/',
      `root@${ADDR.crossover.lvs2}:/etc/keepalived/`,
    ];
    const theirs: number[] = [];
    for (let i = 0; i < 3; i++) theirs.push(await timed(lab, rsync));
    // the floor under both: a fresh OpenSSH session that runs nothing
    const bare: number[] = [];
    for (let i = 0; i < 3; i++)
      bare.push(await timed(lab, ['sh', '-c', `${sshCmd} root@${ADDR.crossover.lvs2} true`]));
    /** Median time (ms since lvssync audit started) at which each stage was reached. */
    const stage = (k: string) => {
      const v = stages.map((t) => t[k]).filter((x): x is number => x !== undefined);
      return v.length ? `${k} ${Math.round(median(v))}` : undefined;
    };
    const where = ['connect', 'handshake', 'requested', 'read-here', 'checked-here', 'peer-answered', 'done']
      .map(stage)
      .filter(Boolean)
      .join(', ');
    const a = median(ours);
    const b = median(theirs);
    const ok = a <= b;
    printTable(
      `audit: ${N.toLocaleString('en')} conf.d files and a 10,000-line IPVS table on both directors`,
      [
        {
          name: 'lvssync audit of both directors (median of 3)',
          value: fmtMs(a),
          note: `${findings} findings`,
        },
        { name: '  where its time goes (ms since start, median)', value: '', note: where },
        { name: 'rsync -an --checksum over SSH, keepalived dir (median of 3)', value: fmtMs(b) },
        { name: 'ssh lvs2 true, a fresh OpenSSH session (median of 3)', value: fmtMs(median(bare)) },
        {
          name: 'ratio lvssync audit / rsync dry run',
          value: `${(a / b).toFixed(2)}x`,
          note: verdict(ok, '<= 1x'),
        },
      ],
    );
    return ok;
  } finally {
    await stopLab(lab.dir);
  }
}
