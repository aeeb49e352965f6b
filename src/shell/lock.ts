// One lvssync run at a time per state directory: the daemon, a manual push and the peer agent take
// this lock. A lock file holds the owner's PID and start time; a lock whose owner is gone is stale
// and taken over. Shell.

import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { LvssyncError } from '../errors.js';
import { liveStart } from './proc.js';

export interface Owner {
  pid: number;
  start: string;
  who: string;
  since: string;
}

/** Takes the lock (waiting up to waitMs); returns the function that releases it. Throws E_LOCKED. */
export async function withLock(stateDir: string, who: string, waitMs = 0): Promise<() => void> {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const file = path.join(stateDir, 'lock');
  const me: Owner = {
    pid: process.pid,
    start: liveStart(process.pid) ?? '',
    who,
    since: new Date().toISOString(),
  };
  const until = Date.now() + waitMs;
  for (;;) {
    try {
      const fd = openSync(file, 'wx', 0o600);
      writeSync(fd, JSON.stringify(me));
      closeSync(fd);
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        process.removeListener('exit', release);
        try {
          const o = JSON.parse(readFileSync(file, 'utf8')) as Owner;
          if (o.pid === me.pid && o.start === me.start) rmSync(file, { force: true });
        } catch {}
      };
      process.once('exit', release);
      return release;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new LvssyncError('E_WRITE', `could not create ${file}: ${(e as Error).message}`, { cause: e });
      }
    }
    const owner = lockHolder(stateDir);
    if (!owner) {
      rmSync(file, { force: true }); // stale: its owner is gone
      continue;
    }
    if (Date.now() >= until) {
      throw new LvssyncError(
        'E_LOCKED',
        `another lvssync run holds ${file} (${owner.who}, pid ${owner.pid}, since ${owner.since}); try again when it is done`,
        { details: { owner } },
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Who holds the lock now (a live owner), if anyone: what status says of a run under way. */
export function lockHolder(stateDir: string): Owner | undefined {
  try {
    const owner = JSON.parse(readFileSync(path.join(stateDir, 'lock'), 'utf8')) as Owner;
    return liveStart(owner.pid) === owner.start ? owner : undefined;
  } catch {
    return undefined;
  }
}
