// The Store's history: a copy of every file a commit or restore replaced or deleted, one version
// per transaction, with its modes and owners (what `lvssync rollback` and the agent's own rollback
// put back). Versions are named by time and transaction.

import type { Stats } from 'node:fs';
import {
  closeSync,
  copyFileSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import path from 'node:path';
import type { HistoryEntry } from '../../core/protocol.js';
import { LvssyncError } from '../../errors.js';
import { atomicWrite } from '../fs-atomic.js';

export interface VersionEntry {
  path: string;
  existed: boolean;
  mode: number;
  uid: number;
  gid: number;
}

interface Meta extends HistoryEntry {
  entries: VersionEntry[];
}

export class History {
  constructor(
    private readonly stateDir: string,
    /** How many versions trim() keeps. */
    private readonly keep: number,
  ) {}

  private get dir(): string {
    return path.join(this.stateDir, 'history');
  }

  /** Copies the current state of `paths` into a new version (fsync'ed before its record is written). */
  backup(paths: readonly string[], txid: string, reason: HistoryEntry['reason']): string {
    const version = `${new Date()
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d+Z$/, 'Z')}-${txid.slice(0, 8)}`;
    const dir = path.join(this.dir, version);
    mkdirSync(path.join(dir, 'files'), { recursive: true, mode: 0o700 });
    const entries: VersionEntry[] = [];
    for (const p of paths) {
      let st: Stats | undefined;
      try {
        st = lstatSync(p);
      } catch {}
      if (st?.isFile()) {
        const to = path.join(dir, 'files', p);
        mkdirSync(path.dirname(to), { recursive: true });
        copyFileSync(p, to);
        const fd = openSync(to, 'r');
        fsyncSync(fd);
        closeSync(fd);
        entries.push({ path: p, existed: true, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid });
      } else entries.push({ path: p, existed: false, mode: 0, uid: 0, gid: 0 });
    }
    const meta: Meta = { version, time: new Date().toISOString(), txid, reason, paths: [...paths], entries };
    atomicWrite(path.join(dir, 'meta.json'), `${JSON.stringify(meta, null, 1)}\n`, 0o600);
    return version;
  }

  /** A version's entries, and how to read each kept file. */
  open(version: string): { entries: VersionEntry[]; data: (p: string) => Buffer } {
    if (!/^[0-9TZ]+-[0-9a-f]{1,8}$/.test(version))
      throw new LvssyncError('E_PROTOCOL', `bad version '${version}'`);
    const dir = path.join(this.dir, version);
    let meta: Meta;
    try {
      meta = JSON.parse(readFileSync(path.join(dir, 'meta.json'), 'utf8')) as Meta;
    } catch {
      throw new LvssyncError('E_USAGE', `no version ${version} in ${this.dir}`);
    }
    return { entries: meta.entries, data: (p) => readFileSync(path.join(dir, 'files', p)) };
  }

  versions(): HistoryEntry[] {
    let names: string[] = [];
    try {
      names = readdirSync(this.dir).sort();
    } catch {}
    const out: HistoryEntry[] = [];
    for (const n of names) {
      try {
        const m = JSON.parse(readFileSync(path.join(this.dir, n, 'meta.json'), 'utf8')) as Meta;
        out.push({ version: m.version, time: m.time, txid: m.txid, paths: m.paths, reason: m.reason });
      } catch {}
    }
    return out;
  }

  /** Keeps the newest `keep` versions. */
  trim(): void {
    const all = this.versions();
    for (const v of all.slice(0, Math.max(0, all.length - this.keep))) {
      rmSync(path.join(this.dir, v.version), { recursive: true, force: true });
    }
  }
}
