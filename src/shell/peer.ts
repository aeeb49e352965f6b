// The primary's connection to a peer: an SSH session, host key checked against the pinned
// known_hosts (an unknown or changed key is refused), key from a file or ssh-agent, and the agent
// protocol spoken over the remote command's input and output. The client is OpenSSH's `ssh` (a
// process of its own: its handshake proceeds while this process checks the set) or the built-in
// one (ssh2). Shell: wraps both.
// PeerSession.open throws E_SSH_CONNECT, E_HOST_KEY or E_SSH_AUTH; request() throws E_TRANSFER when
// the connection is lost and the agent's own error code when it refuses.

import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import type { Client, ClientChannel, ConnectConfig } from 'ssh2';
import { type Config, DEFAULTS } from '../core/config.js';
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
import { classifySshFailure } from '../core/ssh-failure.js';
import { LvssyncError } from '../errors.js';
import { which } from './exec.js';
import {
  controlPath,
  type LinkRoute,
  openSshArgv,
  type PeerTarget,
  shellQuote,
  sshClientOf,
  targetOf,
} from './openssh.js';
import { readClaim } from './primary.js';
import { MASTER_WAIT_MS, waitForMaster } from './ssh-master.js';

export type { PeerTarget } from './openssh.js';

/** The pinned host keys: a file that cannot be read refuses every connection. */
function readPinned(config: Config, target: PeerTarget): string {
  try {
    return readFileSync(config.ssh.knownHosts, 'utf8');
  } catch (e) {
    throw new LvssyncError(
      'E_HOST_KEY',
      `cannot read the pinned known_hosts ${config.ssh.knownHosts}: ${(e as Error).message} (lvssync init --peer ${target.name} creates it)`,
      { cause: e },
    );
  }
}

/** The client a session uses: ssh.client, or OpenSSH when `ssh` is installed. */

export async function connectSsh(config: Config, target: PeerTarget): Promise<Client> {
  const known = parseKnownHosts(readPinned(config, target));
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
  const { Client } = await import('ssh2');
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

/**
 * The byte streams to one agent and how they end: what a PeerSession speaks the protocol over,
 * whichever SSH client carries it.
 */
interface AgentLink {
  readonly input: Writable;
  readonly output: Readable;
  readonly errors: Readable;
  /** `why` the link ended; `failure`: OpenSSH's own reason when it never reached the agent. */
  onClose(cb: (why: string, failure?: LvssyncError) => void): void;
  close(): void;
}

/** The agent over OpenSSH: `ssh` runs as a child; what it printed says why it never got there. */
function openSshLink(config: Config, target: PeerTarget, route: LinkRoute): AgentLink {
  readPinned(config, target);
  if (config.ssh.identityFile) {
    let mode: number;
    try {
      mode = statSync(config.ssh.identityFile).mode;
      readFileSync(config.ssh.identityFile);
    } catch (e) {
      throw new LvssyncError(
        'E_SSH_AUTH',
        `cannot read ssh.identityFile ${config.ssh.identityFile}: ${(e as Error).message}`,
        { cause: e },
      );
    }
    if (mode & 0o077)
      throw new LvssyncError(
        'E_SSH_AUTH',
        `ssh.identityFile ${config.ssh.identityFile} is readable by others (mode ${(mode & 0o777).toString(8)}): OpenSSH refuses such a key; chmod 600 it`,
      );
  }
  if (config.ssh.agent && !process.env.SSH_AUTH_SOCK)
    throw new LvssyncError('E_SSH_AUTH', 'ssh.agent is on but SSH_AUTH_SOCK is not set');
  const ssh = which('ssh');
  if (!ssh)
    throw new LvssyncError(
      'E_SSH_CONNECT',
      `OpenSSH's ssh is not installed: install openssh-client, or set ssh.client: builtin`,
    );
  // ssh ignores SIGTERM, SIGINT and SIGHUP (an ignored signal stays ignored across exec, and ssh
  // keeps it so): systemctl stop or a Ctrl-C reaches lvssync, which finishes or ends the session
  // itself, and not the connection under a push that is committing or reloading.
  const argv = openSshArgv(config, target, config.push.agentCommand, route);
  // through a master still in its handshake: the shell waits for its socket, whatever this process
  // is busy with meanwhile (the worker checks the set), and ssh starts the moment it listens
  const child: ChildProcessWithoutNullStreams = spawn(
    'sh',
    typeof route === 'object'
      ? waitForMaster(controlPath(config, target), route.master, MASTER_WAIT_MS, [ssh, ...argv])
      : ['-c', 'trap "" TERM INT HUP; exec "$0" "$@"', ssh, ...argv],
    { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } },
  );
  let said = '';
  child.stderr.on('data', (b: Buffer) => {
    said = (said + b.toString('utf8')).slice(-8000);
  });
  child.stdin.on('error', () => {});
  const closers: ((why: string, failure?: LvssyncError) => void)[] = [];
  let ended = false;
  const end = (why: string, failure?: LvssyncError) => {
    if (ended) return;
    ended = true;
    for (const c of closers) c(why, failure);
  };
  child.on('error', (e: Error) =>
    end(e.message, new LvssyncError('E_SSH_CONNECT', `cannot run ssh: ${e.message}`, { cause: e })),
  );
  child.on('close', (code) => {
    const f = classifySshFailure(said, code, {
      name: target.name,
      host: target.host,
      port: target.port,
      user: config.ssh.user,
      identity: config.ssh.agent && !config.ssh.identityFile ? undefined : config.ssh.identityFile,
      knownHosts: config.ssh.knownHosts,
    });
    end(
      code === null ? 'ssh was killed' : `ssh exited with status ${code}`,
      new LvssyncError(f.code, f.message),
    );
  });
  return {
    input: child.stdin,
    output: child.stdout,
    errors: child.stderr,
    onClose: (cb) => closers.push(cb),
    close: () => {
      // end of input: the agent rolls back what is open and exits, and ssh with it
      child.stdin.end();
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      t.unref();
      child.once('close', () => clearTimeout(t));
    },
  };
}

/** The agent over the built-in client (ssh2): one connection, one exec channel. */
async function builtinLink(config: Config, target: PeerTarget, connected?: () => void): Promise<AgentLink> {
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
  return {
    input: channel,
    output: channel,
    errors: channel.stderr,
    onClose: (cb) => {
      channel.on('close', () => cb('agent channel closed'));
      client.on('close', () => cb('ssh connection closed'));
      client.on('error', (e: Error) => cb(e.message));
    },
    close: () => {
      try {
        channel.end();
      } catch {}
      client.end();
    },
  };
}

/** An open agent session on a peer. */
export class PeerSession {
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void; op: Op }
  >();
  private closed: LvssyncError | undefined;
  /** Whether the agent has said anything: a link that ends before that never reached it. */
  private heard = false;
  stderr = '';
  /** Armed while a request is open: the agent's silence past agentTimeoutMs closes the session. */
  private silence: NodeJS.Timeout | undefined;

  private constructor(
    readonly target: PeerTarget,
    private readonly link: AgentLink,
    onFirstOutput?: () => void,
    /** ssh.agentTimeoutMs (an agent at work says it is alive every AGENT_HEARTBEAT_MS). */
    private readonly silenceMs = DEFAULTS.ssh.agentTimeoutMs,
  ) {
    const split = new LineSplitter();
    link.output.setEncoding('utf8');
    link.output.on('data', (chunk: string) => {
      if (!this.heard) {
        this.heard = true;
        onFirstOutput?.();
      }
      for (const line of split.push(chunk)) this.onLine(line);
      this.watch();
    });
    link.errors.on('data', (b: Buffer) => {
      this.stderr = (this.stderr + b.toString('utf8')).slice(-8000);
    });
    link.onClose((why, failure) => {
      if (this.closed) return;
      this.closed =
        !this.heard && failure
          ? failure
          : new LvssyncError(
              'E_TRANSFER',
              `connection to ${target.name} lost (${why})${this.stderr.trim() ? `: ${this.stderr.trim().split('\n').slice(-3).join(' / ')}` : ''}`,
            );
      for (const p of this.pending.values()) p.reject(this.closed);
      this.pending.clear();
      this.watch();
    });
  }

  /** (Re)arms the silence watch while requests are open; disarms it when none is. */
  private watch(): void {
    if (this.silence) clearTimeout(this.silence);
    this.silence = undefined;
    // (before the agent's first word, the SSH client's own timeouts govern: an unreachable
    // director stays unreachable, not a session lost)
    if (this.pending.size === 0 || this.closed || !this.heard) return;
    this.silence = setTimeout(() => {
      const ops = [...new Set([...this.pending.values()].map((p) => p.op))].join(', ');
      const why = new LvssyncError(
        'E_TRANSFER',
        `${this.target.name}'s agent has not answered (${ops}) nor said it is alive for ${Math.round(this.silenceMs / 1000)} s: it may be stopped or stuck; the session is closed, and ${this.target.name} rolls back what it had open when its agent notices`,
      );
      this.closed = why;
      for (const p of this.pending.values()) p.reject(why);
      this.pending.clear();
      this.link.close();
    }, this.silenceMs);
    this.silence.unref();
  }

  /**
   * `connected`: called once the SSH handshake is done (OpenSSH: once the agent first answers, the
   * handshake being inside ssh).
   */
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
    /** How OpenSSH reaches the peer: `fresh` never through a master (the ferm guard proves one gets through). */
    route: LinkRoute = 'default',
  ): Promise<PeerSession> {
    const openssh = sshClientOf(config) === 'openssh';
    const link = openssh ? openSshLink(config, target, route) : await builtinLink(config, target, connected);
    const s = new PeerSession(target, link, openssh ? connected : undefined, config.ssh.agentTimeoutMs);
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
      this.link.input.write(`${JSON.stringify({ id, ...req })}\n`);
      if (this.pending.size === 1) this.watch();
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
    this.gone = r.gone ?? [];
    return [...files.values()];
  }

  /** With the last manifest: files lvssync wrote there that were deleted since. */
  gone: readonly { path: string; written: string }[] = [];

  close(): void {
    if (this.silence) clearTimeout(this.silence);
    this.silence = undefined;
    this.link.close();
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
    /** The pid of the watch daemon's master to this peer, if it made one: sessions go through it. */
    private readonly master?: number,
  ) {}

  /** True when this keeper's session goes to `t`. */
  serves(t: PeerTarget): boolean {
    return t.name === this.target.name && t.host === this.target.host && t.port === this.target.port;
  }

  /**
   * The kept session, or a new one. `pipeline` is called once with it, before the promise resolves
   * (a new session's: right behind its hello).
   */
  get(pipeline?: (s: PeerSession) => void): Promise<PeerSession> {
    if (this.session && !this.session.isClosed) {
      pipeline?.(this.session);
      return Promise.resolve(this.session);
    }
    this.session = undefined;
    if (this.opening)
      return this.opening.then((s) => {
        pipeline?.(s);
        return s;
      });
    const route: LinkRoute = this.master === undefined ? 'default' : { master: this.master };
    this.opening = PeerSession.open(this.config, this.target, this.primary, undefined, pipeline, route).then(
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
  return targetOf(config, name);
}

/** The other directors a command goes to: every node but this one (lvssync.yaml's order), or `explicit`. */
export function peersOf(config: Config, self: string, explicit?: string): PeerTarget[] {
  if (explicit) return [peerOf(config, self, explicit)];
  const names = Object.keys(config.nodes).filter((n) => n !== self);
  // no other node: peerOf says what lvssync.yaml lacks
  return names.length ? names.map((n) => peerOf(config, self, n)) : [peerOf(config, self)];
}
