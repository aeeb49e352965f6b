// `npm run lab -- start|stop|status [--directors N] [--systemd] [--name NAME] [--dir DIR]`: the lab by hand.
// --directors N (2 to 4): that many directors lvs1..lvsN on the same segments.
// start prints what is where; stop removes every namespace, process and file the lab made.
// --systemd: the lab of booted Debian 12 and 13 systems (systemd-lab.ts) instead of namespaces.

import { defaultDir, LabError, loadLab, startLab, stopLab } from './lab.js';
import { loadSystemdLab, startSystemdLab, stopSystemdLab, systemdLabDir } from './systemd-lab.js';

function opt(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? undefined : process.argv[i + 1];
}

async function main(): Promise<number> {
  const cmd = process.argv[2];
  if (process.argv.includes('--systemd')) return systemdMain(cmd);
  const name = opt('name') ?? 'lvl';
  const dir = opt('dir') ?? defaultDir(name);
  switch (cmd) {
    case 'start': {
      const n = opt('directors');
      const lab = await startLab({
        name,
        dir,
        log: (l) => console.log(l),
        ...(n ? { directors: Number(n) } : {}),
      });
      console.log(await lab.describe());
      return 0;
    }
    case 'stop':
      await stopLab(dir);
      console.log(`lab ${name} stopped; nothing of it remains`);
      return 0;
    case 'status': {
      const lab = loadLab(dir);
      if (!lab) {
        console.log(`lab ${name} is not running`);
        return 3;
      }
      console.log(await lab.describe());
      return 0;
    }
    default:
      console.error('usage: npm run lab -- start|stop|status [--directors N] [--name NAME] [--dir DIR]');
      return 2;
  }
}

async function systemdMain(cmd: string | undefined): Promise<number> {
  const name = opt('name') ?? 'lvsd';
  const dir = opt('dir') ?? systemdLabDir(name);
  switch (cmd) {
    case 'start': {
      const lab = await startSystemdLab({ name, dir, log: (l) => console.log(l) });
      for (const [d, m] of Object.entries(lab.state.machines)) {
        console.log(`  ${d}: ${m.release}, enter with: nsenter -t ${lab.leader(d as 'lvs1')} -a -- bash`);
      }
      return 0;
    }
    case 'stop':
      await stopSystemdLab(dir);
      console.log(`systemd lab ${name} stopped; nothing of it remains`);
      return 0;
    case 'status': {
      const lab = loadSystemdLab(dir);
      if (!lab) {
        console.log(`systemd lab ${name} is not running`);
        return 3;
      }
      for (const d of Object.keys(lab.state.machines))
        console.log(`  ${d}: ${await lab.isRunning(d as 'lvs1')}`);
      return 0;
    }
    default:
      console.error('usage: npm run lab -- start|stop|status --systemd [--name NAME] [--dir DIR]');
      return 2;
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e instanceof LabError ? `lab: ${e.message}` : e);
    process.exit(1);
  },
);
