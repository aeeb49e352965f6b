// `npm run lab -- start|stop|status [--name NAME] [--dir DIR]`: the lab by hand.
// start prints what is where; stop removes every namespace, process and file the lab made.

import { defaultDir, LabError, loadLab, startLab, stopLab } from './lab.js';

function opt(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? undefined : process.argv[i + 1];
}

async function main(): Promise<number> {
  const cmd = process.argv[2];
  const name = opt('name') ?? 'lvl';
  const dir = opt('dir') ?? defaultDir(name);
  switch (cmd) {
    case 'start': {
      const lab = await startLab({ name, dir, log: (l) => console.log(l) });
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
      console.error('usage: npm run lab -- start|stop|status [--name NAME] [--dir DIR]');
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
