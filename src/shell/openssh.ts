// OpenSSH's command line for lvssync: a session to a peer's agent, or the watch daemon's kept master
// connection whose socket those sessions go through (ssh.keepConnection). No ssh_config is read.

import path from 'node:path';
import type { Config } from '../core/config.js';
import { which } from './exec.js';

export interface PeerTarget {
  name: string;
  host: string;
  port: number;
}

/** How `name` of lvssync.yaml's nodes is reached. */
export function targetOf(config: Config, name: string): PeerTarget {
  const n = config.nodes[name]!;
  return { name, host: n.address, port: n.port };
}

/** Every other director of lvssync.yaml, in its order. */
export function otherTargets(config: Config, self: string): PeerTarget[] {
  return Object.keys(config.nodes)
    .filter((n) => n !== self)
    .map((n) => targetOf(config, n));
}

export function sshClientOf(config: Config): 'openssh' | 'builtin' {
  return config.ssh.client ?? (which('ssh') ? 'openssh' : 'builtin');
}

/** Quotes argv for the remote shell sshd runs it with. */
export function shellQuote(argv: readonly string[]): string {
  return argv.map((a) => (/^[A-Za-z0-9_./:=@%+-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** Where the watch daemon's kept master connection to `target` listens (ssh.keepConnection). */
export function controlPath(config: Config, target: PeerTarget): string {
  return path.join(config.stateDir, 'ssh', `${target.name.replace(/[^A-Za-z0-9_.-]/g, '_')}.sock`);
}

/**
 * How a session reaches the peer: `default` through the kept master when ssh.keepConnection is on,
 * `fresh` on a connection of its own whatever it says (the ferm guard's proof), `{ master }` through
 * the master (that pid) the watch daemon made for this burst. Through a master whose socket is gone,
 * ssh makes a connection of its own.
 */
export type LinkRoute = 'default' | 'fresh' | { master: number };

/**
 * The options OpenSSH gets: lvssync's settings and nothing from any ssh_config. `command`
 * undefined: the master itself (no session of its own, its control socket listening); otherwise a
 * session, by `route`.
 */
export function openSshArgv(
  config: Config,
  target: PeerTarget,
  command: readonly string[] | undefined,
  route: LinkRoute = 'default',
): string[] {
  const o = (k: string, v: string | number) => ['-o', `${k}=${v}`];
  const sock = process.env.SSH_AUTH_SOCK;
  const control =
    command === undefined
      ? ['-M', '-N', ...o('ControlPath', controlPath(config, target))]
      : typeof route === 'object' || (route === 'default' && config.ssh.keepConnection)
        ? [...o('ControlPath', controlPath(config, target)), ...o('ControlMaster', 'no')]
        : [];
  return [
    '-F',
    'none',
    '-T',
    '-e',
    'none',
    ...o('BatchMode', 'yes'),
    ...o('StrictHostKeyChecking', 'yes'),
    ...o('UserKnownHostsFile', config.ssh.knownHosts),
    ...o('GlobalKnownHostsFile', 'none'),
    ...o('CheckHostIP', 'no'),
    ...o('UpdateHostKeys', 'no'),
    ...o('HostKeyAlgorithms', 'ssh-ed25519,ecdsa-sha2-nistp256,rsa-sha2-512,rsa-sha2-256'),
    ...o('ConnectTimeout', Math.max(1, Math.ceil(config.ssh.connectTimeoutMs / 1000))),
    // a peer that stops answering is given up after 15 s, as with the built-in client
    ...o('ServerAliveInterval', 5),
    ...o('ServerAliveCountMax', 3),
    ...(config.ssh.identityFile ? ['-i', config.ssh.identityFile, ...o('IdentitiesOnly', 'yes')] : []),
    ...o('IdentityAgent', config.ssh.agent && sock ? sock : 'none'),
    ...o('ForwardAgent', 'no'),
    ...o('ForwardX11', 'no'),
    ...o('ClearAllForwardings', 'yes'),
    ...o('PermitLocalCommand', 'no'),
    ...o('LogLevel', 'ERROR'),
    ...control,
    '-p',
    String(target.port),
    '-l',
    config.ssh.user,
    '--',
    target.host,
    ...(command === undefined ? [] : [shellQuote(command)]),
  ];
}
