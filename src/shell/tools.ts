// Runs the real validators on a configuration set: `ferm --noexec --lines` (never applies anything)
// and `keepalived -t`. Under a root prefix they run in a private mount namespace with the root's
// directories bound over the director's paths, so absolute includes resolve as on the director.
// Shell: wraps child processes; results come back as data.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Diagnostic } from '../core/diagnostic.js';
import { diag } from '../core/diagnostic.js';
import { type MarkRule, parseFermError, parseFermLines } from '../core/ferm/marks.js';
import { parseKeepalivedTest } from '../core/keepalived/test-output.js';
import { execTool, which } from './exec.js';
import { directorPath, hostPath } from './read-snapshot.js';

export interface ToolRun {
  /** false when the program is not installed: the caller decides whether that is fatal. */
  available: boolean;
  diagnostics: Diagnostic[];
  durationMs: number;
  /** The verdict of an earlier run on the same input (ToolCache). */
  cached?: boolean;
  /** The program's exit status (keepalived -t: non-zero for any message, warnings included). */
  exitCode?: number;
}

export interface FermRun extends ToolRun {
  marks: MarkRule[];
  /** The iptables rules ferm would apply (its --lines output). */
  lines: string;
}

/** Top-most directories that hold the given director paths, for bind mounts. */
export function bindDirs(paths: readonly string[]): string[] {
  const dirs = [...new Set(paths.map((p) => path.posix.dirname(p)))].sort();
  return dirs.filter((d, i) => !dirs.slice(0, i).some((o) => d === o || d.startsWith(`${o}/`)));
}

/** Wraps argv so it runs with root's copies of `dirs` mounted over the real ones (root only). */
function withRoot(
  root: string,
  dirs: readonly string[],
  argv: string[],
): { argv: string[]; mapped: boolean } {
  if (root === '/') return { argv, mapped: true };
  const usable =
    process.getuid?.() === 0 && dirs.every((d) => existsSync(d) && existsSync(hostPath(root, d)));
  if (!usable) return { argv, mapped: false };
  const mounts = dirs.map((_d, i) => `mount --bind "\${${2 * i + 1}}" "\${${2 * i + 2}}"`).join(' && ');
  const mountArgs = dirs.flatMap((d) => [hostPath(root, d), d]);
  const shift = `shift ${2 * dirs.length}`;
  return {
    argv: [
      'unshare',
      '--mount',
      '--propagation',
      'private',
      'sh',
      '-c',
      `${mounts} && ${shift} && exec "$@"`,
      'lvssync-root',
      ...mountArgs,
      ...argv,
    ],
    mapped: true,
  };
}

export async function execFermCheck(
  root: string,
  fermPath: string,
  sourceOf: (p: string) => string | undefined,
): Promise<FermRun> {
  const bin = which('ferm');
  if (!bin) {
    return {
      available: false,
      marks: [],
      lines: '',
      durationMs: 0,
      diagnostics: [
        diag(
          'warning',
          'FERM_UNAVAILABLE',
          { file: fermPath, line: 1, col: 1 },
          'ferm is not installed here: ferm.conf was not validated and its marks not cross-checked',
        ),
      ],
    };
  }
  const wrapped = withRoot(root, bindDirs([fermPath]), [bin, '--noexec', '--lines', fermPath]);
  const argv = wrapped.mapped ? wrapped.argv : [bin, '--noexec', '--lines', hostPath(root, fermPath)];
  const r = await execTool(argv, { timeoutMs: 120_000 });
  if (r.code !== 0) {
    return {
      available: true,
      marks: [],
      lines: '',
      durationMs: r.durationMs,
      diagnostics: parseFermError(r.stderr || r.stdout, fermPath, sourceOf, (p) =>
        directorPath(root, path.resolve(p)),
      ),
    };
  }
  return {
    available: true,
    marks: parseFermLines(r.stdout),
    lines: r.stdout,
    durationMs: r.durationMs,
    diagnostics: [],
  };
}

export async function execKeepalivedTest(
  root: string,
  confPath: string,
  files: readonly string[],
  configId?: string,
  /** 'error': keep the messages about this host (missing interfaces) as errors: on the director itself. */
  hostSpecific: 'drop' | 'error' = 'drop',
  /** The directories to map under a root; by default those of the files. */
  dirs?: readonly string[],
): Promise<ToolRun> {
  const bin = which('keepalived');
  if (!bin) return { available: false, diagnostics: [], durationMs: 0 };
  const args = ['-t', '-l', '-n', '-f', confPath];
  if (configId !== undefined) args.push('-i', configId);
  const wrapped = withRoot(root, dirs ?? bindDirs([confPath, ...files]), [bin, ...args]);
  const argv = wrapped.mapped
    ? wrapped.argv
    : [bin, ...args.map((a) => (a === confPath ? hostPath(root, confPath) : a))];
  const r = await execTool(argv, { timeoutMs: 300_000 });
  const parsed = parseKeepalivedTest(`${r.stdout}\n${r.stderr}`, confPath, (p) => directorPath(root, p));
  if (r.code !== 0 && parsed.diagnostics.length === 0 && parsed.hostSpecific.length === 0) {
    parsed.diagnostics.push(
      diag(
        'error',
        'KEEPALIVED_T',
        { file: confPath, line: 1, col: 1 },
        `keepalived -t exited with status ${r.code} without a message`,
      ),
    );
  }
  if (hostSpecific === 'error') {
    const seen = new Set<string>();
    for (const h of parsed.hostSpecific) {
      const key = `${h.file}:${h.line}:${h.message}`;
      if (seen.has(key) || (!h.located && parsed.hostSpecific.some((o) => o.located))) continue;
      seen.add(key);
      parsed.diagnostics.push(
        diag(
          'error',
          'KEEPALIVED_T_HOST',
          { file: h.file, line: h.line, col: 1 },
          `keepalived -t on this director: ${h.message}`,
        ),
      );
    }
  }
  for (const d of parsed.diagnostics) d.source = 'keepalived';
  return { available: true, diagnostics: parsed.diagnostics, durationMs: r.durationMs, exitCode: r.code };
}

/** The installed keepalived's version ("2.2.7"), from `keepalived --version`; undefined without one. */
export function readKeepalivedVersion(): string | undefined {
  const bin = which('keepalived');
  if (!bin) return undefined;
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  return /Keepalived v(\d+\.\d+\.\d+)/.exec(`${r.stderr ?? ''}${r.stdout ?? ''}`)?.[1];
}
