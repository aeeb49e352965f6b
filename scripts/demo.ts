// The demo (README's first command): starts the lab and `lvssync watch` on lvs1, edits the
// configuration on lvs1 the way an operator would, and shows lvs2 following: the push logged with
// its changes, router_id kept per host, ferm and keepalived reloaded in order, VIPs where they were.
// Then an invalid edit, which never leaves lvs1. Tears the lab down; exits 0 when every step did
// what it should.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ADDR, type Director, type Lab, REPO, startLab, stopLab } from './lab/lab.js';

const MAIN = path.join(REPO, 'dist', 'src', 'main.js');
const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
let failures = 0;

function step(title: string): void {
  console.log(`\n${bold(`== ${title}`)}`);
}

async function waitUntil(probe: () => boolean, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (probe()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return probe();
}

function expectThat(ok: boolean, what: string): void {
  console.log(`   ${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures++;
}

async function lvssync(lab: Lab, host: Director, ...args: string[]) {
  const r = await lab.exec(host, [process.execPath, MAIN, ...args], { allowFail: true, timeoutMs: 120_000 });
  const show = `${r.stdout}${r.stderr}`.trimEnd();
  console.log(`   ${host}# lvssync ${args.join(' ')}`);
  if (show) console.log(show.replace(/^/gm, '     '));
  return r;
}

async function main(): Promise<void> {
  const name = 'demo';
  await stopLab(path.join('/tmp', `lvssync-lab-${name}`));
  step('starting the lab: lvs1 and lvs2 (sshd, keepalived VRRP, ferm), web1 and web2');
  const lab = await startLab({ name, log: (l) => console.log(`   ${l}`) });
  try {
    console.log((await lab.describe()).replace(/^/gm, '   '));
    const holder = await lab.waitForVipHolder();

    step('lvs1: lvssync check (our parser and lints, ferm --noexec, keepalived -t)');
    const c = await lvssync(lab, 'lvs1', 'check');
    expectThat(c.code === 0, 'the reference configuration checks clean (warnings only)');

    step('lvs1: lvssync watch (the daemon systemd runs), logging to ' + lab.logFile('lvs1', 'watch'));
    const daemon = lab.spawnOn('lvs1', 'watch', [process.execPath, MAIN, 'watch']);
    const logText = () => readFileSync(lab.logFile('lvs1', 'watch'), 'utf8');
    let shown = 0;
    const showLog = () => {
      const lines = logText().split('\n').filter(Boolean);
      for (const l of lines.slice(shown)) {
        try {
          const j = JSON.parse(l) as Record<string, unknown>;
          const { level: _l, time: _t, pid: _p, component: _c, msg, ...rest } = j;
          console.log(`     watch: ${msg} ${JSON.stringify(rest).slice(0, 220)}`);
        } catch {
          console.log(`     ${l}`);
        }
      }
      shown = lines.length;
    };
    await waitUntil(() => /in sync|"msg":"pushed"/.test(logText()), 15_000);
    showLog();

    step('lvs1: an operator edits the config: weights (sed -i), a new fwmark service and its ferm mark');
    const fwm = '/etc/keepalived/conf.d/fwm-100.conf';
    await lab.exec('lvs1', ['sed', '-i', 's/weight 50/weight 80/', fwm]);
    await lab.exec('lvs1', [
      'sh',
      '-c',
      "printf 'virtual_server fwmark 200 {\\n    delay_loop 10\\n    lb_algo wlc\\n    lb_kind DR\\n\\n    real_server 198.51.100.10 0 {\\n        weight 50\\n        TCP_CHECK {\\n            connect_port 443\\n        }\\n    }\\n}\\n' > /etc/keepalived/conf.d/fwm-200.conf",
    ]);
    await lab.exec('lvs1', ['sh', '-c', `echo '&LVS_MARK(${ADDR.serviceVip}, 200);' >> /etc/ferm/ferm.conf`]);
    const t0 = Date.now();
    const followed = await waitUntil(() => {
      try {
        return (
          lab.readFile('lvs2', fwm) === lab.readFile('lvs1', fwm) &&
          lab.readFile('lvs2', '/etc/keepalived/conf.d/fwm-200.conf') ===
            lab.readFile('lvs1', '/etc/keepalived/conf.d/fwm-200.conf') &&
          lab.readFile('lvs2', '/etc/ferm/ferm.conf') === lab.readFile('lvs1', '/etc/ferm/ferm.conf')
        );
      } catch {
        return false;
      }
    }, 20_000);
    await waitUntil(() => /"msg":"pushed"/.test(logText()), 5000);
    showLog();
    expectThat(followed, `lvs2 followed in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const ka1 = lab.readFile('lvs1', '/etc/keepalived/keepalived.conf');
    const ka2 = lab.readFile('lvs2', '/etc/keepalived/keepalived.conf');
    expectThat(
      ka2 === ka1.replace('router_id LVS1', 'router_id LVS2'),
      'lvs2 keepalived.conf = lvs1 except router_id LVS2',
    );
    expectThat(
      (await lab.iptablesSave('lvs2')).includes('--set-xmark 0xc8/0xffffffff'),
      'lvs2 mangle table marks fwmark 200 (0xc8)',
    );
    expectThat((await lab.holdersOf(ADDR.clusterVip)).join() === holder, `VIPs still on ${holder}`);

    step('lvs1: lvssync diff (nothing left to push)');
    const d = await lvssync(lab, 'lvs1', 'diff');
    expectThat(d.code === 0 && d.stdout.includes('in sync'), 'lvs2 is in sync');

    step('lvs1: an invalid edit (a misspelt scheduler) never leaves lvs1');
    await lab.exec('lvs1', ['sed', '-i', 's/lb_algo wlc/lb_algo wlcc/', fwm]);
    await waitUntil(() => /not pushed/.test(logText()), 15_000);
    showLog();
    expectThat(
      /"file":"\/etc\/keepalived\/conf.d\/fwm-100.conf","line":3/.test(logText()),
      'the daemon names fwm-100.conf line 3',
    );
    expectThat(lab.readFile('lvs2', fwm).includes('lb_algo wlc\n'), 'lvs2 keeps lb_algo wlc');
    await lab.exec('lvs1', ['sed', '-i', 's/lb_algo wlcc/lb_algo wlc/', fwm]);
    await waitUntil(() => (logText().match(/in sync|"msg":"pushed"/g) ?? []).length >= 3, 15_000);
    await lab.killProc(daemon);
    showLog();
  } finally {
    step('stopping the lab');
    await stopLab(lab.dir);
    console.log('   every namespace, process and file of the lab is gone');
  }
  console.log(`\n${failures === 0 ? bold('demo: all good') : bold(`demo: ${failures} check(s) failed`)}`);
  process.exitCode = failures === 0 ? 0 : 1;
}

main().catch((e) => {
  console.error(`demo: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
});
