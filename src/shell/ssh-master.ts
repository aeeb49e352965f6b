// The watch daemon's OpenSSH master connections, one per other director: with ssh.keepConnection
// kept while the daemon is idle; without it made at the start of each burst of edits (when the
// worker is started, so the handshake goes on while the worker starts) and ended with the worker at
// the idle release. The worker's session goes through it, so a push after the idle release opens its
// agent session without a handshake of its own. Each is made with lvssync's key, so every session
// through it is still the peer's forced agent; its socket is in a directory only root may enter.

import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../core/config.js';
import { which } from './exec.js';
import type { Logger } from './logger.js';
import { controlPath, openSshArgv, type PeerTarget, sshClientOf } from './openssh.js';

/** A master that ended (the link cut, the peer down) or could not start is made again this much later. */
export const MASTER_RETRY_MS = 10_000;

/** How long a new session waits for a master still in its handshake before it makes its own connection. */
export const MASTER_WAIT_MS = 1500;

/** One director's master: running (`burst`: made for a burst of edits, never made again), or waiting for its retry. */
type Kept = { child: ChildProcess; burst: boolean } | { retry: NodeJS.Timeout };

export class KeptConnections {
  private readonly kept = new Map<string, Kept>();
  private stopped = false;

  constructor(
    private config: Config,
    private targets: PeerTarget[],
    private readonly log: Logger,
  ) {}

  private get enabled(): boolean {
    return this.config.ssh.keepConnection && sshClientOf(this.config) === 'openssh';
  }

  /**
   * A worker starts (a burst of edits begins): without ssh.keepConnection a master is made to every
   * director now, for the burst. The masters running, by director: their pids, for the worker.
   */
  burst(): Record<string, number> {
    if (!this.stopped && !this.enabled && sshClientOf(this.config) === 'openssh')
      for (const t of this.targets) if (!this.kept.has(t.name)) this.start(t, true);
    const out: Record<string, number> = {};
    for (const [name, k] of this.kept) if ('child' in k && k.child.pid) out[name] = k.child.pid;
    return out;
  }

  /** The burst is over (the worker went at the idle release): the masters made for it end. */
  release(): void {
    for (const [name, k] of [...this.kept]) if ('child' in k && k.burst) this.end(name);
  }

  /** lvssync.yaml read again: masters to directors no longer configured, or any if it is off, end. */
  update(config: Config, targets: PeerTarget[]): void {
    this.config = config;
    this.targets = targets;
    const names = new Set(this.enabled ? targets.map((t) => t.name) : []);
    for (const [name, k] of [...this.kept]) if (!names.has(name) || ('child' in k && k.burst)) this.end(name);
    this.ensure();
  }

  /** Starts a master to every director that has none and is not waiting for its retry. */
  ensure(): void {
    if (this.stopped || !this.enabled) return;
    for (const t of this.targets) if (!this.kept.has(t.name)) this.start(t);
  }

  /** The daemon stops: every master ends. */
  stop(): void {
    this.stopped = true;
    for (const name of this.kept.keys()) this.end(name);
  }

  private end(name: string): void {
    const k = this.kept.get(name);
    this.kept.delete(name);
    if (k && 'retry' in k) clearTimeout(k.retry);
    if (k && 'child' in k) k.child.kill('SIGTERM');
  }

  /** `name`'s master is made again after MASTER_RETRY_MS (its sessions connect on their own meanwhile). */
  private later(name: string): void {
    const retry = setTimeout(() => {
      this.kept.delete(name);
      this.ensure();
    }, MASTER_RETRY_MS);
    retry.unref();
    this.kept.set(name, { retry });
  }

  private start(t: PeerTarget, burst = false): void {
    const sock = controlPath(this.config, t);
    try {
      mkdirSync(path.dirname(sock), { recursive: true, mode: 0o700 });
      chmodSync(path.dirname(sock), 0o700);
      // a socket left by an earlier daemon (its master ends with its connection): ours replaces it
      rmSync(sock, { force: true });
    } catch (e) {
      this.log.warn(
        { peer: t.name, err: e },
        'cannot keep a connection: its socket directory is not writable',
      );
      this.later(t.name);
      return;
    }
    // a process group of its own: a Ctrl-C at the daemon's terminal does not cut the sessions it
    // carries (under systemd, KillMode=mixed sends SIGTERM to the daemon alone, which ends it after
    // the push in hand)
    const child = spawn(which('ssh') ?? 'ssh', openSshArgv(this.config, t, undefined), {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, LC_ALL: 'C' },
      detached: true,
    });
    const k: Kept = { child, burst };
    this.kept.set(t.name, k);
    let said = '';
    child.stderr?.on('data', (b: Buffer) => {
      said = (said + b.toString('utf8')).slice(-2000);
    });
    child.on('error', () => {});
    child.on('close', (code, signal) => {
      if (this.kept.get(t.name) !== k) return;
      // one made for a burst is not made again: the worker's sessions connect by themselves
      if (burst) this.kept.delete(t.name);
      else this.later(t.name);
      this.log.info(
        { peer: t.name, status: signal ?? code, said: said.trim() || undefined },
        'kept connection ended',
      );
    });
    this.log.info({ peer: t.name, pid: child.pid, burst }, 'keeping a connection');
  }
}

/**
 * `sh` arguments that run `argv` (ssh, ignoring SIGTERM, SIGINT and SIGHUP as every session's) once
 * the master `pid` listens on `socket`, or at once when it is gone, or after `waitMs` (a handshake
 * that long is not waited for: ssh then makes a connection of its own).
 */
export function waitForMaster(
  socket: string,
  pid: number,
  waitMs: number,
  argv: readonly string[],
): string[] {
  const script = [
    'trap "" TERM INT HUP',
    'sock=$1; pid=$2; n=$3; shift 3',
    // every 20 ms: each look is a `sleep` process, on the same cores as the worker's check
    'while [ "$n" -gt 0 ] && [ ! -S "$sock" ] && kill -0 "$pid" 2>/dev/null; do sleep 0.02; n=$((n - 1)); done',
    'exec "$@"',
  ].join('\n');
  return ['-c', script, 'sh', socket, String(pid), String(Math.ceil(waitMs / 20)), ...argv];
}
