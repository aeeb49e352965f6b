// The systemd unit is valid for systemd itself (systemd-analyze verify), wired to the daemon's
// signals and exit codes.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FIXTURES } from '../helpers/fixtures.js';
import { findTool } from '../helpers/tools.js';

const UNIT = path.resolve(FIXTURES, '..', '..', 'systemd', 'lvssync.service');
const analyze = findTool('systemd-analyze');
if (!analyze) console.warn('SKIP systemd unit check: systemd-analyze is not installed here');

describe('systemd/lvssync.service', () => {
  it('runs lvssync watch, reloads with SIGHUP, does not restart after config errors', () => {
    const unit = readFileSync(UNIT, 'utf8');
    expect(unit).toMatch(/^ExecStart=\/usr\/bin\/lvssync watch$/m);
    expect(unit).toMatch(/^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
    expect(unit).toMatch(/^RestartPreventExitStatus=2 3$/m);
    expect(unit).toMatch(/^NoNewPrivileges=yes$/m);
    expect(unit).toMatch(/^ReadWritePaths=.*\/var\/lib\/lvssync/m);
    // ordered after the services it reloads, a stop during a push would deadlock (systemd-lab test)
    expect(unit).not.toMatch(/^(After|Before)=.*(keepalived|ferm)/m);
  });

  it.skipIf(!analyze)('passes systemd-analyze verify', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'lvssync-unit-'));
    try {
      const f = path.join(dir, 'lvssync.service');
      writeFileSync(
        f,
        readFileSync(UNIT, 'utf8').replace('/usr/bin/lvssync watch', `${process.execPath} --version`),
      );
      const r = spawnSync(analyze!, ['verify', f], { encoding: 'utf8' });
      const problems = `${r.stdout}${r.stderr}`.split('\n').filter((l) => l.includes('lvssync.service'));
      expect(problems).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
