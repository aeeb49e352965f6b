// A lab for the benchmarks: started fresh, with the generated set of N fwmark services (and their
// ferm marks) written to the given directors.

import path from 'node:path';
import { type Director, type Lab, type LabProgram, startLab, stopLab } from '../scripts/lab/lab.js';
import { generateSet } from './gen.js';

export async function labWithSet(
  name: string,
  n: number,
  on: readonly Director[],
  program?: LabProgram,
): Promise<Lab> {
  await stopLab(path.join('/tmp', `lvssync-lab-${name}`));
  const lab = await startLab({ name, ...(program ? { program } : {}) });
  const set = generateSet(n);
  for (const d of on) {
    for (const [p, text] of set.files) {
      if (p.startsWith('/etc/keepalived/conf.d/')) lab.writeFile(d, p, text, 0o644);
    }
    lab.writeFile(
      d,
      '/etc/ferm/ferm.conf',
      `${lab.readFile(d, '/etc/ferm/ferm.conf')}${set.files.get('/etc/ferm/ferm.conf')}`,
    );
    await lab.applyFerm(d);
  }
  return lab;
}
