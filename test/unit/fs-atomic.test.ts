// The commit's file primitives on real file systems: a staged file linked beside its target (the
// same file, never written through afterwards), a copy across file systems, and the batched sync.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { linkTemp, SYNCFS_FROM, syncAll, syncFileSystems } from '../../src/shell/fs-atomic.js';

const dirs: string[] = [];
const scratch = (base = tmpdir()) => {
  const d = mkdtempSync(path.join(base, 'lvssync-fs-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** /dev/shm when it is another file system than the temporary directory (a tmpfs). */
const otherFs = (() => {
  try {
    return statSync('/dev/shm').dev !== statSync(tmpdir()).dev ? '/dev/shm' : undefined;
  } catch {
    return undefined;
  }
})();

describe('linkTemp', () => {
  it('names the staged file beside its target, with the mode; a later staging of that path does not write through', () => {
    const d = scratch();
    mkdirSync(path.join(d, 'stage'));
    mkdirSync(path.join(d, 'live'));
    const staged = path.join(d, 'stage', 'a.conf');
    const target = path.join(d, 'live', 'a.conf');
    writeFileSync(staged, 'new\n', { mode: 0o600 });
    const tmp = linkTemp(target, staged, 0o644)!;
    expect(path.dirname(tmp)).toBe(path.join(d, 'live'));
    expect(path.basename(tmp)).toMatch(/^\.a\.conf\.lvssync-tmp-[0-9a-f]{8}$/);
    expect(statSync(tmp).ino).toBe(statSync(staged).ino);
    expect(statSync(tmp).mode & 0o7777).toBe(0o644);
    // the staging mirror makes a new file for the next transaction's version: the linked one stays
    rmSync(staged);
    writeFileSync(staged, 'next\n');
    expect(readFileSync(tmp, 'utf8')).toBe('new\n');
  });

  it.skipIf(!otherFs)('is not made across file systems (the caller copies)', () => {
    const staged = path.join(scratch(), 'a.conf');
    writeFileSync(staged, 'x');
    const target = path.join(scratch(otherFs), 'a.conf');
    expect(linkTemp(target, staged, 0o644)).toBeUndefined();
    expect(execFileSync('ls', ['-A', path.dirname(target)], { encoding: 'utf8' })).toBe('');
  });
});

describe('syncAll', () => {
  it('syncs each file system of many files once (sync -f), a few files one by one', async () => {
    const ds = [scratch(), ...(otherFs ? [scratch(otherFs)] : [])];
    const many = ds.flatMap((d) =>
      Array.from({ length: SYNCFS_FROM }, (_, i) => {
        const p = path.join(d, `f${i}`);
        writeFileSync(p, `${i}\n`);
        return p;
      }),
    );
    expect(await syncFileSystems(many)).toBe(true);
    await syncAll(many);
    await syncAll(many.slice(0, 2));
    // a file that is not there: the batched sync declines, and the fsync of each says why
    expect(await syncFileSystems([...many, path.join(ds[0]!, 'gone')])).toBe(false);
    await expect(syncAll([...many, path.join(ds[0]!, 'gone')])).rejects.toThrow(/ENOENT/);
  });
});
