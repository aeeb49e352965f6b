// The records of a transaction in the state directory: the journal that lets a commit cut short be
// rolled back by whoever comes next (an abort, the next session, the ferm guard, the watcher), and
// the confirmation record each transaction leaves (what the ferm guard waits for).

import { readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { LvssyncError } from '../../errors.js';
import { atomicWrite, readJsonFile } from '../fs-atomic.js';

export interface Journal {
  txid: string;
  version: string;
  state: 'committing' | 'committed' | 'reloaded';
  reloaded: string[];
  paths: string[];
  /** sha256 of what the commit wrote to each put path: what lvssync wrote, whatever is there later. */
  written?: Record<string, string>;
}

export function checkTxid(txid: string): void {
  if (!/^[0-9a-f]{8,64}$/.test(txid)) throw new LvssyncError('E_PROTOCOL', `bad transaction id '${txid}'`);
}

export class TxRecords {
  constructor(private readonly stateDir: string) {}

  journal(): Journal | undefined {
    return readJsonFile<Journal>(path.join(this.stateDir, 'journal.json'));
  }

  saveJournal(j: Journal | undefined): void {
    const p = path.join(this.stateDir, 'journal.json');
    if (j === undefined) rmSync(p, { force: true });
    else atomicWrite(p, JSON.stringify(j), 0o600);
  }

  confirmPath(txid: string): string {
    checkTxid(txid);
    return path.join(this.stateDir, `confirm-${txid}`);
  }

  /**
   * Removes the confirmation records of transactions that ended more than `olderThanMs` ago (a ferm
   * guard reads its record only while it waits): one is written per push, and they would pile up.
   */
  pruneConfirmations(olderThanMs: number, now = Date.now()): number {
    let removed = 0;
    for (const name of readdirSync(this.stateDir)) {
      if (!/^confirm-[0-9a-f]{8,64}$/.test(name)) continue;
      const p = path.join(this.stateDir, name);
      try {
        if (now - statSync(p).mtimeMs > olderThanMs) {
          rmSync(p, { force: true });
          removed++;
        }
      } catch {}
    }
    return removed;
  }
}
