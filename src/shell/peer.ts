// The primary's connection to a peer: one ssh2 connection, host key checked against the pinned
// known_hosts (an unknown or changed key is refused), key from a file or ssh-agent, and the agent
// protocol spoken over one exec channel. Shell: wraps ssh2.
// connectPeer throws E_SSH_CONNECT, E_HOST_KEY or E_SSH_AUTH; request() throws E_TRANSFER when the
// connection is lost and the agent's own error code when it refuses.

import { readFileSync } from 'node:fs';
import { Client, type ClientChannel, type ConnectConfig } from 'ssh2';
import type { Config } from '../core/config.js';
import {
  fingerprint,
  keyTypeOf,
  knownHostName,
  parseKnownHosts,
  verifyHostKey,
} from '../core/known-hosts.js';
import type { RemoteFile } from '../core/plan.js';
import {
  applyManifestDelta,
  LineSplitter,
  type Op,
  PROTOCOL_VERSION,
  type Request,
  type Responses,
} from '../core/protocol.js';
import { LvssyncError } from '../errors.js';
import { readClaim } from './primary.js';

export interface PeerTarget {
  name: string;
  host: string;
  port: number;
}

/** Quotes argv for the remote shell sshd runs it with. */
function shellQuote(argv: readonly string[]): string {
  return argv.map((a) => (/^[A-Za-z0-9_./:=@%+-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

export async function connectSsh(config: Config, target: PeerTarget): Promise<Client> {
  let known: ReturnType<typeof parseKnownHosts>;
  try {
    known = parseKnownHosts(readFileSync(config.ssh.knownHosts, 'utf8'));
  } catch (e) {
    throw new LvssyncError(
      'E_HOST_KEY',
      `cannot read the pinned known_hosts ${config.ssh.knownHosts}: ${(e as Error).message} (lvssync init --peer ${target.name} creates it)`,
      { cause: e },
    );
  }
  const cfg: ConnectConfig = {
    host: target.host,
    port: target.port,
    username: config.ssh.user,
    readyTimeout: config.ssh.connectTimeoutMs,
    keepaliveInterval: 5000,
    keepaliveCountMax: 3,
    algorithms: { serverHostKey: ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'rsa-sha2-512', 'rsa-sha2-256'] },
  };
  let hostKeyProblem: LvssyncError | undefined;
  cfg.hostVerifier = (key: Buffer) => {
    const v = verifyHostKey(known, target.host, target.port, key);
    if (v.kind === 'match') return true;
    const fp = `${keyTypeOf(key)} ${fingerprint(key)}`;
    const where = `${knownHostName(target.host, target.port)} in ${config.ssh.knownHosts}`;
    hostKeyProblem = new LvssyncError(
      'E_HOST_KEY',
      v.kind === 'unknown'
        ? `${target.name} presented host key ${fp}, which is not pinned (${where}): refused; pin it with lvssync init --peer ${target.name}`
        : v.kind === 'revoked'
          ? `${target.name} presented a revoked host key ${fp}: refused`
          : `HOST KEY CHANGED: ${target.name} presented ${fp}, which differs from the key pinned at ${config.ssh.knownHosts}:${v.lines.join(',')}: refused (if the peer was reinstalled, pin the new key with lvssync init)`,
    );
    return false;
  };
  if (config.ssh.identityFile) {
    try {
      cfg.privateKey = readFileSync(config.ssh.identityFile);
    } catch (e) {
      throw new LvssyncError(
        'E_SSH_AUTH',
        `cannot read ssh.identityFile ${config.ssh.identityFile}: ${(e as Error).message}`,
        {
          cause: e,
        },
      );
    }
  }
  if (config.ssh.agent) {
    const sock = process.env.SSH_AUTH_SOCK;
    if (!sock) throw new LvssyncError('E_SSH_AUTH', 'ssh.agent is on but SSH_AUTH_SOCK is not set');
    cfg.agent = sock;
  }
  const client = new Client();
  return new Promise<Client>((resolve, reject) => {
    client.once('ready', () => resolve(client));
    client.once('error', (e: Error & { level?: string }) => {
      client.end();
      if (hostKeyProblem) reject(hostKeyProblem);
      else if (e.level === 'client-authentication') {
        reject(
          new LvssyncError(
            'E_SSH_AUTH',
            `${target.name} (${target.host}:${target.port}) refused the key of ${config.ssh.user} (${config.ssh.identityFile ?? 'ssh-agent'}): is it in the peer's authorized_keys? (lvssync init prints the line)`,
            { cause: e },
          ),
        );
      } else {
        reject(
          new LvssyncError(
            'E_SSH_CONNECT',
            `cannot reach ${target.name} at ${target.host}:${target.port}: ${e.message}`,
            {
              cause: e,
            },
          ),
        );
      }
    });
    client.connect(cfg);
  });
}

/** An open agent session on a peer. */
export class PeerSession {
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void; op: Op }
  >();
  private closed: LvssyncError | undefined;
  stderr = '';

  private constructor(
    readonly target: PeerTarget,
    private readonly client: Client,
    private readonly channel: ClientChannel,
  ) {
    const split = new LineSplitter();
    channel.setEncoding('utf8');
    channel.on('data', (chunk: string) => {
      for (const line of split.push(chunk)) this.onLine(line);
    });
    channel.stderr.on('data', (b: Buffer) => {
      this.stderr = (this.stderr + b.toString('utf8')).slice(-8000);
    });
    const lost = (why: string) => {
      if (this.closed) return;
      this.closed = new LvssyncError(
        'E_TRANSFER',
        `connection to ${target.name} lost (${why})${this.stderr.trim() ? `: ${this.stderr.trim().split('\n').slice(-3).join(' / ')}` : ''}`,
      );
      for (const p of this.pending.values()) p.reject(this.closed);
      this.pending.clear();
    };
    channel.on('close', () => lost('agent channel closed'));
    client.on('close', () => lost('ssh connection closed'));
    client.on('error', (e: Error) => lost(e.message));
  }

  /** `connected`: called once the SSH handshake is done, before the agent has started. */
  static async open(
    config: Config,
    target: PeerTarget,
    primary: string,
    connected?: () => void,
    /**
     * Called once the hello is written, before its answer: requests made here reach the agent right
     * behind it (it answers them in order, and the answer to the hello is still checked first), so
     * the caller's thread, busy with its own work meanwhile, never holds the peer up.
     */
    pipeline?: (s: PeerSession) => void,
  ): Promise<PeerSession> {
    const client = await connectSsh(config, target);
    connected?.();
    let channel: ClientChannel;
    try {
      channel = await new Promise<ClientChannel>((resolve, reject) => {
        client.exec(shellQuote(config.push.agentCommand), (err, ch) => {
          if (err)
            reject(
              new LvssyncError('E_SSH_CONNECT', `cannot start the agent on ${target.name}: ${err.message}`, {
                cause: err,
              }),
            );
          else resolve(ch);
        });
      });
    } catch (e) {
      client.end();
      throw e;
    }
    const s = new PeerSession(target, client, channel);
    // who this director takes for the primary travels with every hello (core/primary.ts)
    const claim = readClaim(config);
    const helloing = s.request({
      op: 'hello',
      version: PROTOCOL_VERSION,
      primary,
      leader: claim.primary,
      epoch: claim.epoch,
    });
    pipeline?.(s);
    let hello: Responses['hello'];
    try {
      hello = await helloing;
    } catch (e) {
      // a hello that fails (the agent's recovery, a refused protocol) must not leave the connection open
      s.close();
      throw e;
    }
    if (hello.version !== PROTOCOL_VERSION) {
      s.close();
      throw new LvssyncError(
        'E_PROTOCOL',
        `${target.name}'s agent speaks protocol ${hello.version}, this lvssync ${PROTOCOL_VERSION}`,
      );
    }
    s.hello = hello;
    return s;
  }

  hello: Responses['hello'] | undefined;

  private onLine(line: string): void {
    let msg: { id: number; ok: boolean; result?: unknown; error?: { code: string; message: string } };
    try {
      msg = JSON.parse(line);
    } catch {
      this.stderr += `\n(unparsable agent output: ${line.slice(0, 200)})`;
      return;
    }
    const p = this.pending.get(msg.id);
    if (!p) return;
    this.pending.delete(msg.id);
    if (msg.ok) p.resolve(msg.result);
    else {
      const code = (msg.error?.code ?? 'E_PROTOCOL') as ConstructorParameters<typeof LvssyncError>[0];
      p.reject(new LvssyncError(code, `${this.target.name}: ${msg.error?.message ?? 'agent error'}`));
    }
  }

  request<R extends Request>(req: R): Promise<Responses[R['op']]> {
    if (this.closed) return Promise.reject(this.closed);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, op: req.op });
      this.channel.write(`${JSON.stringify({ id, ...req })}\n`);
    });
  }

  get isClosed(): boolean {
    return this.closed !== undefined;
  }

  /** The last manifest of this session: the next is asked for as a difference from it. */
  private known: { id: number; files: Map<string, RemoteFile> } | undefined;

  /** The peer's files (every one), fetched as a difference from the last manifest of this session. */
  async manifest(): Promise<RemoteFile[]> {
    const known = this.known;
    const r = await this.request(known ? { op: 'manifest', since: known.id } : { op: 'manifest' });
    let files: Map<string, RemoteFile>;
    if (r.base === undefined) files = new Map(r.files.map((f) => [f.path, f]));
    else if (known && r.base === known.id) files = applyManifestDelta(known.files, r);
    else {
      this.known = undefined;
      return this.manifest();
    }
    this.known = r.id === undefined ? undefined : { id: r.id, files };
    return [...files.values()];
  }

  close(): void {
    try {
      this.channel.end();
    } catch {}
    this.client.end();
  }
}

/**
 * One agent session kept open across pushes (the watch daemon's): the peer's agent keeps its parsed
 * files and validators' verdicts between pushes, and no push waits for a new SSH handshake or a cold
 * agent. A session that closed is replaced on the next get().
 */
export class PeerKeeper {
  private session: PeerSession | undefined;
  private opening: Promise<PeerSession> | undefined;

  constructor(
    private readonly config: Config,
    readonly target: PeerTarget,
    private readonly primary: string,
    /** Told of each new session (the daemon logs it). */
    private readonly onOpen?: (s: PeerSession) => void,
  ) {}

  /** True when this keeper's session goes to `t`. */
  serves(t: PeerTarget): boolean {
    return t.name === this.target.name && t.host === this.target.host && t.port === this.target.port;
  }

  get(): Promise<PeerSession> {
    if (this.session && !this.session.isClosed) return Promise.resolve(this.session);
    this.session = undefined;
    this.opening ??= PeerSession.open(this.config, this.target, this.primary).then(
      (s) => {
        this.opening = undefined;
        this.session = s;
        this.onOpen?.(s);
        return s;
      },
      (e: unknown) => {
        this.opening = undefined;
        throw e;
      },
    );
    return this.opening;
  }

  /** Closes the session (the agent rolls back anything left open); the next get() opens a new one. */
  reset(): void {
    this.session?.close();
    this.session = undefined;
  }

  close(): void {
    this.reset();
    void this.opening?.then((s) => s.close()).catch(() => undefined);
  }
}

export function peerOf(config: Config, self: string, explicit?: string): PeerTarget {
  const names = Object.keys(config.nodes).filter((n) => n !== self);
  const name = explicit ?? names[0];
  if (!name || !config.nodes[name]) {
    throw new LvssyncError(
      'E_CONFIG',
      explicit
        ? `--peer ${explicit} is not a configured node (${Object.keys(config.nodes).join(', ')})`
        : `no peer configured: lvssync.yaml needs a node for every director, two at least (this one is ${self})`,
    );
  }
  if (name === self) throw new LvssyncError('E_USAGE', `--peer ${name} is this director`);
  const n = config.nodes[name]!;
  return { name, host: n.address, port: n.port };
}

/** The other directors a command goes to: every node but this one (lvssync.yaml's order), or `explicit`. */
export function peersOf(config: Config, self: string, explicit?: string): PeerTarget[] {
  if (explicit) return [peerOf(config, self, explicit)];
  const names = Object.keys(config.nodes).filter((n) => n !== self);
  // no other node: peerOf says what lvssync.yaml lacks
  return names.length ? names.map((n) => peerOf(config, self, n)) : [peerOf(config, self)];
}
