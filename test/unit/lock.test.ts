// The state directory's lock: a live owner is named and keeps it, a dead owner's lock is taken over.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { lockHolder, withLock } from '../../src/shell/lock.js';
import { liveStart } from '../../src/shell/proc.js';

describe('the state directory lock', () => {
  let dir: string;
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const ownedBy = (pid: number, start: string) =>
    writeFileSync(
      path.join(dir, 'lock'),
      JSON.stringify({ pid, start, who: 'push', since: '2026-01-01T00:00:00.000Z' }),
    );

  it('names a live owner, which keeps it; a dead owner’s lock is stale and taken over', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'lvssync-lock-'));
    const live = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      ownedBy(live.pid!, liveStart(live.pid!)!);
      expect(lockHolder(dir)).toMatchObject({ pid: live.pid, who: 'push' });
      await expect(withLock(dir, 'diff', 0)).rejects.toMatchObject({ code: 'E_LOCKED' });
    } finally {
      live.kill();
    }
    // a process that has ended (its PID may even be reused: the start time tells)
    const gone = spawnSync('sh', ['-c', 'echo $$']).stdout.toString().trim();
    ownedBy(Number(gone), 'long ago');
    expect(lockHolder(dir)).toBeUndefined();
    const release = await withLock(dir, 'push', 0);
    expect(lockHolder(dir)).toMatchObject({ pid: process.pid, who: 'push' });
    release();
    expect(lockHolder(dir)).toBeUndefined();
  });
});
