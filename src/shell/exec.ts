// Runs a program and collects its output. Shell: wraps child_process.
// execTool never throws for a non-zero exit (that is a result); it throws E_TOOL_MISSING when the
// program does not exist and E_TOOL_FAILED when it cannot be started or times out.

import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { LvssyncError } from '../errors.js';

export interface ExecResult {
  code: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  durationMs: number;
}

export interface ExecOptions {
  timeoutMs?: number;
  input?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export function execTool(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const [cmd, ...args] = argv;
  if (!cmd) throw new LvssyncError('E_INTERNAL', 'execTool called with an empty command');
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: opts.env ?? { ...process.env, LC_ALL: 'C' },
      cwd: opts.cwd,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 60_000);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (e.code === 'ENOENT') {
        reject(new LvssyncError('E_TOOL_MISSING', `${cmd} is not installed (or not on PATH)`, { cause: e }));
      } else reject(new LvssyncError('E_TOOL_FAILED', `could not run ${cmd}: ${e.message}`, { cause: e }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) {
        reject(
          new LvssyncError('E_TOOL_FAILED', `${cmd} did not finish within ${opts.timeoutMs ?? 60_000} ms`),
        );
        return;
      }
      resolve({
        code: code ?? 128,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        durationMs: performance.now() - started,
      });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

/**
 * Finds a program on PATH (and the sbin directories, which a non-root PATH may lack), each time: a few
 * access() calls, and a program installed or moved since is found where it is now. Synchronous on
 * purpose: a tool started "at once" (keepalived -t beside lvssync's own reading) must not wait for
 * the reading to give the event loop back before it can even be found.
 */
export function which(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin', '/usr/local/sbin'];
  for (const d of dirs) {
    if (!d) continue;
    try {
      accessSync(`${d}/${name}`, constants.X_OK);
      return `${d}/${name}`;
    } catch {}
  }
  return undefined;
}
