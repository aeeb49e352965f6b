// `ferm --noexec --lines` of this director's ferm.conf, for the audit's and the reload check's
// comparison with the live mangle table. The expansion is kept in the state directory under a key of
// every file in ferm's directory and the ferm binary (ferm-expansion.json), and reused while the key
// holds and the files ask the host for nothing (core/ferm/expansion-key.ts): ferm is a Perl program
// and its start is most of an audit's time on a director. Validation (`lvssync check`, push) always
// runs ferm itself.

import { mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../core/config.js';
import { fermExpansionKey, fermUncacheable } from '../core/ferm/expansion-key.js';
import { execTool, which } from './exec.js';
import { readJsonFile, replaceCacheFile } from './fs-atomic.js';

export interface FermExpansion {
  ok: boolean;
  /** ferm's output (iptables-save lines) when ok. */
  lines: string;
  /** Why it failed, when not ok. */
  error?: string;
  /** Taken from the state directory (ferm did not run). */
  cached: boolean;
}

const MAX_FILES = 500;
const MAX_BYTES = 4 * 1024 * 1024;

/** The texts of the regular files under `dir` (recursively), or undefined when there are too many. */
function readDir(dir: string): Map<string, string> | undefined {
  const out = new Map<string, string>();
  let bytes = 0;
  const walk = (d: string): boolean => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return true;
    }
    for (const e of entries) {
      const p = path.posix.join(d, e.name);
      if (e.isDirectory()) {
        if (!walk(p)) return false;
      } else if (e.isFile() || e.isSymbolicLink()) {
        let text: string;
        try {
          text = readFileSync(p, 'utf8');
        } catch {
          continue;
        }
        bytes += text.length;
        out.set(p, text);
        if (out.size > MAX_FILES || bytes > MAX_BYTES) return false;
      }
    }
    return true;
  };
  return walk(dir) ? out : undefined;
}

export async function expandFerm(config: Config, stateDir: string): Promise<FermExpansion> {
  const bin = which('ferm');
  if (!bin) return { ok: false, lines: '', error: 'ferm is not installed', cached: false };
  const fermPath = config.files.ferm;
  const dir = path.posix.dirname(fermPath);
  const files = readDir(dir);
  let key: string | undefined;
  if (files?.has(fermPath) && fermUncacheable(files, dir) === undefined) {
    let binId = bin;
    try {
      const st = statSync(bin);
      binId = `${bin}:${st.size}:${st.mtimeMs}`;
    } catch {}
    key = fermExpansionKey(files, binId);
  }
  const cacheFile = path.join(stateDir, 'ferm-expansion.json');
  if (key !== undefined) {
    const kept = readJsonFile<{ key: string; lines: string }>(cacheFile);
    if (kept?.key === key && typeof kept.lines === 'string')
      return { ok: true, lines: kept.lines, cached: true };
  }
  const r = await execTool([bin, '--noexec', '--lines', fermPath], { timeoutMs: 60_000 });
  if (r.code !== 0)
    return { ok: false, lines: '', error: r.stderr.trim() || `exit ${r.code}`, cached: false };
  if (key !== undefined) {
    try {
      mkdirSync(stateDir, { recursive: true, mode: 0o700 });
      replaceCacheFile(cacheFile, JSON.stringify({ key, lines: r.stdout }));
    } catch {
      // a state directory that cannot be written only costs the next run ferm's time
    }
  }
  return { ok: true, lines: r.stdout, cached: false };
}
