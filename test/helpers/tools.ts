// Integration-test helpers: real programs must be installed (scripts/test.sh installs them).
// A missing program fails the test with the reason; LVSSYNC_ALLOW_MISSING_TOOLS=1 turns that into a
// skip that prints the reason instead.

import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export function findTool(name: string): string | undefined {
  for (const d of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin']) {
    try {
      execFileSync('test', ['-x', path.join(d, name)]);
      return path.join(d, name);
    } catch {}
  }
  return undefined;
}

/** Names of the required programs that are missing; throws unless missing tools are allowed. */
export function requireTools(...names: string[]): string[] {
  const missing = names.filter((n) => !findTool(n));
  if (missing.length > 0) {
    const msg = `missing programs for integration tests: ${missing.join(', ')} (run npm test as root: scripts/test.sh installs them)`;
    if (process.env.LVSSYNC_ALLOW_MISSING_TOOLS === '1') console.warn(`SKIP: ${msg}`);
    else throw new Error(msg);
  }
  return missing;
}

export const isRoot = process.getuid?.() === 0;

/** A temporary root holding a copy of `from` (a folder laid out like /). */
export function tempRoot(from?: string): { root: string; cleanup: () => void } {
  const root = mkdtempSync(path.join(tmpdir(), 'lvssync-root-'));
  if (from) cpSync(from, root, { recursive: true });
  return { root, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

export function captureIo() {
  const out: string[] = [];
  const err: string[] = [];
  return {
    io: { stdout: (s: string) => void out.push(s), stderr: (s: string) => void err.push(s), isTTY: false },
    stdout: () => out.join(''),
    stderr: () => err.join(''),
  };
}
