// `lvssync init`: what a new pair needs, on the primary. Creates lvssync's SSH key when missing,
// pins the peer's host key from a first connection the operator confirms (fingerprint shown), and
// prints the authorized_keys line for the peer and, without a config file, the example config.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline/promises';
import { fileURLToPath } from 'node:url';
import { Client } from 'ssh2';
import {
  fingerprint,
  keyTypeOf,
  knownHostName,
  parseKnownHosts,
  verifyHostKey,
} from '../core/known-hosts.js';
import { EXIT, LvssyncError } from '../errors.js';
import type { Io } from '../io.js';
import { execTool } from '../shell/exec.js';
import { DEFAULT_CONFIG_PATH, loadConfig, requireSelfNode } from '../shell/load-config.js';
import { peersOf } from '../shell/peer.js';

export interface InitOptions {
  config?: string;
  node?: string;
  peer?: string;
  yes?: boolean;
}

/** Connects only far enough to read the server's host key. */
function fetchHostKey(host: string, port: number, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const c = new Client();
    let key: Buffer | undefined;
    c.on('error', (e) => {
      if (key) resolve(key);
      else
        reject(new LvssyncError('E_SSH_CONNECT', `cannot reach ${host}:${port}: ${e.message}`, { cause: e }));
    });
    c.connect({
      host,
      port,
      username: 'lvssync-init',
      readyTimeout: timeoutMs,
      algorithms: { serverHostKey: ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'rsa-sha2-512', 'rsa-sha2-256'] },
      hostVerifier: (k: Buffer) => {
        key = k;
        return false; // stop here: nothing is sent before the operator trusts this key
      },
    });
  });
}

export async function runInit(opts: InitOptions, io: Io): Promise<number> {
  const configPath = opts.config ?? DEFAULT_CONFIG_PATH;
  if (!existsSync(configPath)) {
    // the source tree's (dist/src/commands -> config/), else the Debian package's
    const example =
      [
        path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../config/lvssync.example.yaml'),
        '/usr/share/doc/lvssync/examples/lvssync.example.yaml',
      ].find((f) => existsSync(f)) ?? '';
    io.stdout(`No ${configPath} yet. Start from the example (the same file goes on both directors):\n\n`);
    io.stdout(example ? readFileSync(example, 'utf8') : `see config/lvssync.example.yaml\n`);
    io.stdout(`\nWrite it to ${configPath}, set nodes, then run lvssync init again.\n`);
    return EXIT.CONFIG;
  }
  const { config } = await loadConfig(configPath);
  const self = requireSelfNode(config, opts.node);
  const targets = peersOf(config, self, opts.peer);

  // 1. lvssync's own key
  const keyFile = config.ssh.identityFile;
  if (!keyFile && !config.ssh.agent)
    throw new LvssyncError('E_CONFIG', 'ssh.identityFile is not set (and ssh.agent is off)');
  if (keyFile && !existsSync(keyFile)) {
    mkdirSync(path.dirname(keyFile), { recursive: true, mode: 0o700 });
    const r = await execTool([
      'ssh-keygen',
      '-q',
      '-t',
      'ed25519',
      '-N',
      '',
      '-C',
      `lvssync@${self}`,
      '-f',
      keyFile,
    ]);
    if (r.code !== 0) throw new LvssyncError('E_TOOL_FAILED', `ssh-keygen failed: ${r.stderr.trim()}`);
    io.stdout(`created ${keyFile} (ed25519)\n`);
  } else if (keyFile) io.stdout(`key: ${keyFile} (exists)\n`);

  // 2. each peer's host key, pinned after confirmation
  for (const target of targets) {
    const key = await fetchHostKey(target.host, target.port, config.ssh.connectTimeoutMs);
    const fp = `${keyTypeOf(key)} ${fingerprint(key)}`;
    let known: ReturnType<typeof parseKnownHosts> = [];
    try {
      known = parseKnownHosts(readFileSync(config.ssh.knownHosts, 'utf8'));
    } catch {}
    const verdict = verifyHostKey(known, target.host, target.port, key);
    if (verdict.kind === 'match') {
      io.stdout(`${target.name}'s host key ${fp} is already pinned in ${config.ssh.knownHosts}\n`);
    } else {
      io.stdout(`${target.name} (${target.host}:${target.port}) presents host key ${fp}\n`);
      if (verdict.kind === 'changed') {
        io.stdout(
          `WARNING: ${config.ssh.knownHosts} pins a DIFFERENT key for it (line ${verdict.lines.join(', ')}).\n`,
        );
      }
      let ok = opts.yes === true;
      if (!ok) {
        if (!io.isTTY)
          throw new LvssyncError(
            'E_USAGE',
            'confirm the fingerprint on a terminal, or pass --yes after checking it out of band',
          );
        const rl = createInterface({ input: process.stdin, output: process.stdout });
        ok = /^y(es)?$/i.test(
          (
            await rl.question(
              'Compare it with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the peer. Pin it? [y/N] ',
            )
          ).trim(),
        );
        rl.close();
      }
      if (!ok) {
        io.stdout('not pinned\n');
        return EXIT.PEER;
      }
      const name = knownHostName(target.host, target.port);
      const kept =
        verdict.kind === 'changed'
          ? readFileSync(config.ssh.knownHosts, 'utf8')
              .split('\n')
              .filter((_l, i) => !verdict.lines.includes(i + 1))
              .join('\n')
          : existsSync(config.ssh.knownHosts)
            ? readFileSync(config.ssh.knownHosts, 'utf8')
            : '';
      mkdirSync(path.dirname(config.ssh.knownHosts), { recursive: true, mode: 0o700 });
      writeFileSync(
        config.ssh.knownHosts,
        `${kept}${kept && !kept.endsWith('\n') ? '\n' : ''}${name} ${keyTypeOf(key)} ${key.toString('base64')}\n`,
        { mode: 0o644 },
      );
      io.stdout(`pinned in ${config.ssh.knownHosts}\n`);
    }
  }

  // 3. what the peers need
  if (keyFile) {
    const pub = readFileSync(`${keyFile}.pub`, 'utf8').trim();
    const agent = config.push.agentCommand.join(' ');
    const cfg = configPath === DEFAULT_CONFIG_PATH ? '' : ` --config ${configPath}`;
    io.stdout(
      `\nOn ${targets.length > 1 ? `each of ${targets.map((t) => t.name).join(', ')}` : targets[0]!.name}, add this line to ~${config.ssh.user}/.ssh/authorized_keys (the key can run the agent and nothing else):\n\n`,
    );
    io.stdout(`command="${agent}${cfg}",restrict ${pub}\n\n`);
    io.stdout(`and install the same ${configPath} there. Then: lvssync diff\n`);
  }
  return EXIT.OK;
}
