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
import { controlPath, openSshArgv, type PeerTarget, sshClientOf } from './openssh.js';

/** A master that ended (the link cut, the peer down) or could not start is made again this much later. */
export const MASTER_RETRY_MS = 10_000;

/** One director's master: running, or waiting for its retry. */
type Kept = { child: ChildProcess } | { retry: NodeJS.Timeout };

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

  /** lvssync.yaml read again: masters to directors no longer configured, or any if it is off, end. */
  update(config: Config, targets: PeerTarget[]): void {
    this.config = config;
    this.targets = targets;
    const names = new Set(this.enabled ? targets.map((t) => t.name) : []);
    for (const name of this.kept.keys()) if (!names.has(name)) this.end(name);
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
      this.later(t.name);
      return;
    }
    const child = spawn(which('ssh') ?? 'ssh', openSshArgv(this.config, t, undefined), {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, LC_ALL: 'C' },
    });
    const k: Kept = { child };
    this.kept.set(t.name, k);
    let said = '';
    child.stderr?.on('data', (b: Buffer) => {
      said = (said + b.toString('utf8')).slice(-2000);
    });
    child.on('error', () => {});
    child.on('close', (code, signal) => {
      if (this.kept.get(t.name) !== k) return;
      this.later(t.name);
      this.log.info(
        { peer: t.name, status: signal ?? code, said: said.trim() || undefined },
        'kept connection ended',
      );
    });
    this.log.info({ peer: t.name, pid: child.pid }, 'keeping a connection');
  }
}
