// The watch daemon's kept OpenSSH master connections (ssh.keepConnection): one per other director,
// kept while the daemon is idle, so that a push after the idle release opens its agent session
// through it instead of paying a new handshake. Each is made with lvssync's key, so every session
// through it is still the peer's forced agent; its socket is in a directory only root may enter.

import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../core/config.js';
import { which } from './exec.js';
import type { Logger } from './logger.js';
import { controlPath, openSshArgv, type PeerTarget } from './openssh.js';

/** A master that ended (the link cut, the peer down) is made again this much later. */
export const MASTER_RETRY_MS = 10_000;

interface Kept {
  child: ChildProcess | undefined;
  retryAt: number;
  retry?: NodeJS.Timeout;
}

export class KeptConnections {
  private readonly kept = new Map<string, Kept>();
  private stopped = false;

  constructor(
    private config: Config,
    private targets: PeerTarget[],
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether this configuration keeps connections at all (OpenSSH only). */
  get enabled(): boolean {
    return (
      this.config.ssh.keepConnection && this.config.ssh.client !== 'builtin' && which('ssh') !== undefined
    );
  }

  /** lvssync.yaml read again: masters to directors no longer configured, or any if it is off, end. */
  update(config: Config, targets: PeerTarget[]): void {
    this.config = config;
    this.targets = targets;
    const names = new Set(this.enabled ? targets.map((t) => t.name) : []);
    for (const [name, k] of this.kept) if (!names.has(name)) this.end(name, k);
    this.ensure();
  }

  /** Starts a master to every director that has none (one that ended waits for MASTER_RETRY_MS). */
  ensure(): void {
    if (this.stopped || !this.enabled) return;
    for (const t of this.targets) {
      const k = this.kept.get(t.name);
      if (k?.child || (k && this.now() < k.retryAt)) continue;
      if (k?.retry) clearTimeout(k.retry);
      this.start(t);
    }
  }

  /** The daemon stops: every master ends. */
  stop(): void {
    this.stopped = true;
    for (const [name, k] of this.kept) this.end(name, k);
  }

  /** PIDs of the running masters, by director. */
  pids(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, k] of this.kept) if (k.child?.pid) out[name] = k.child.pid;
    return out;
  }

  private end(name: string, k: Kept): void {
    this.kept.delete(name);
    if (k.retry) clearTimeout(k.retry);
    k.child?.kill('SIGTERM');
  }

  /** The master to `name` is made again after MASTER_RETRY_MS (its sessions connect on their own meanwhile). */
  private later(k: Kept): void {
    k.retryAt = this.now() + MASTER_RETRY_MS;
    k.retry = setTimeout(() => {
      k.retry = undefined;
      this.ensure();
    }, MASTER_RETRY_MS);
    k.retry.unref();
  }

  private start(t: PeerTarget): void {
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
      this.kept.set(t.name, { child: undefined, retryAt: this.now() + MASTER_RETRY_MS });
      return;
    }
    const child = spawn(which('ssh') ?? 'ssh', openSshArgv(this.config, t, undefined), {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, LC_ALL: 'C' },
    });
    const k: Kept = { child, retryAt: 0 };
    this.kept.set(t.name, k);
    let said = '';
    child.stderr?.on('data', (b: Buffer) => {
      said = (said + b.toString('utf8')).slice(-2000);
    });
    child.on('error', () => {});
    child.on('close', (code, signal) => {
      if (this.kept.get(t.name) !== k) return;
      k.child = undefined;
      this.later(k);
      this.log.info(
        { peer: t.name, status: signal ?? code, said: said.trim() || undefined },
        'kept connection ended',
      );
    });
    this.log.info({ peer: t.name, pid: child.pid }, 'keeping a connection');
  }
}
