// lvssync's own configuration (lvssync.yaml): the schema, defaults and one validation that reports
// every problem at once with its path and rejects unknown keys. Pure.

import path from 'node:path';

export interface NodeConfig {
  /** SSH address of the node (its crossover address). */
  address: string;
  port: number;
  /** Host name that identifies this node when lvssync runs on it (default: the node's name). */
  hostname?: string;
  /** keepalived's -i/--config-id on this node, for @id conditional lines. */
  configId?: string;
  /** Per-host values: router_id and declared per-host lines, rendered into this node's copy. */
  router_id?: string;
  hostLines: HostLine[];
}

/** A keyword whose value differs per node: `vrrp_instance vi_100 > priority` -> `100`. */
export interface HostLine {
  /** Path of keywords (with their first argument where needed): ['vrrp_instance vi_100', 'priority']. */
  path: string[];
  value: string;
}

export interface ServiceConfig {
  name: 'ferm' | 'keepalived' | string;
  /** Command that validates the staged files; `{root}` is replaced by the staging root. */
  check?: string[];
  reload: string[];
  /** Command whose success means the service is running. */
  status?: string[];
}

/** How often an agent at work says it is alive (ssh.agentTimeoutMs is at least twice this). */
export const AGENT_HEARTBEAT_MS = 2000;

export interface Config {
  cluster: string;
  primary: string;
  nodes: Record<string, NodeConfig>;
  ssh: {
    user: string;
    identityFile?: string;
    agent: boolean;
    knownHosts: string;
    connectTimeoutMs: number;
    /**
     * How long a director's agent may go without a word while a request of the push is open (it says
     * it is alive every 2 s while it works): past it the session is closed, the push fails there, and
     * the agent rolls back what it had open when it notices. A stopped or stuck agent never holds a
     * push (and the daemon) for ever.
     */
    agentTimeoutMs: number;
    /**
     * The SSH client: OpenSSH's `ssh` (a process of its own: its handshake goes on while this one
     * checks the set) or the one built into lvssync; unset: OpenSSH when `ssh` is installed.
     */
    client?: 'openssh' | 'builtin';
    /**
     * The watch daemon keeps one OpenSSH master connection to each other director, also while idle
     * (OpenSSH only): a push after the idle release opens its session through it instead of a new
     * handshake. Its socket is in the state directory, root's only.
     */
    keepConnection: boolean;
  };
  files: {
    keepalived: string;
    ferm: string;
    /** Extra files or globs kept identical on both directors. */
    extra: string[];
  };
  services: ServiceConfig[];
  stateDir: string;
  /** How many previous versions of the peer's files to keep for rollback. */
  history: number;
  audit: {
    /** How the live IPVS table is read (run on each director). */
    ipvsadm: string[];
    /** node-cron expression for the daemon's audit (default nightly). */
    schedule: string;
    /** How many reports to keep in stateDir/reports. */
    keep: number;
    /** Command that gets each report on stdin (e.g. [mail, -s, 'lvssync audit', root]). */
    command?: string[];
    /** node_exporter textfile collector file to write (e.g. /var/lib/node_exporter/lvssync.prom). */
    prometheus?: string;
    /** Fetch each HTTP_GET url from each real server and compare with its digest. */
    digests: boolean;
  };
  check: {
    /** Per-code severities: error, warning, or off (lvssync check shows how many were silenced). */
    severity: Record<string, 'error' | 'warning' | 'off'>;
  };
  /** What this director lets a set from the primary make it run (the primary can never write it). */
  agent: {
    /** ferm backticks, command @includes and @hook: ferm runs them even while only validating. */
    fermCommands: boolean;
    /** Globs of the programs a set may make keepalived run (scripts, notify); undefined: any. */
    scripts?: string[];
  };
  push: {
    /** Command the primary asks the peer's sshd to run (an authorized_keys forced command wins). */
    agentCommand: string[];
    /** After a ferm reload the primary must reach the peer again within this time, or it reverts. */
    fermGuardSeconds: number;
    /** How long a service may take to read its files after a reload (keepalived's reload_file). */
    reloadTimeoutSeconds: number;
    /** Without keepalived's reload_file: how long keepalived is given to read its files. */
    reloadSettleMs: number;
  };
}

export const DEFAULTS: Config = {
  cluster: 'lvs',
  primary: 'lvs1',
  nodes: {},
  ssh: {
    user: 'root',
    agent: false,
    knownHosts: '/etc/lvssync/known_hosts',
    connectTimeoutMs: 10_000,
    agentTimeoutMs: 30_000,
    keepConnection: false,
  },
  files: { keepalived: '/etc/keepalived/keepalived.conf', ferm: '/etc/ferm/ferm.conf', extra: [] },
  services: [
    {
      name: 'ferm',
      reload: ['systemctl', 'reload', 'ferm'],
      status: ['systemctl', 'is-active', '--quiet', 'ferm'],
    },
    {
      name: 'keepalived',
      reload: ['systemctl', 'reload', 'keepalived'],
      status: ['systemctl', 'is-active', '--quiet', 'keepalived'],
    },
  ],
  stateDir: '/var/lib/lvssync',
  history: 10,
  audit: { ipvsadm: ['ipvsadm', '-Ln'], schedule: '17 3 * * *', keep: 30, digests: false },
  check: { severity: {} },
  agent: { fermCommands: false },
  push: {
    agentCommand: ['lvssync', 'agent'],
    fermGuardSeconds: 30,
    reloadTimeoutSeconds: 30,
    reloadSettleMs: 1000,
  },
};

type Problems = string[];

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function unknownKeys(
  obj: Record<string, unknown>,
  allowed: string[],
  path: string,
  problems: Problems,
): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k))
      problems.push(`${path}${path ? '.' : ''}${k}: unknown key (allowed: ${allowed.join(', ')})`);
  }
}

function str(
  v: unknown,
  path: string,
  problems: Problems,
  opts: { required?: boolean; fallback?: string } = {},
): string | undefined {
  if (v === undefined || v === null) {
    if (opts.required && opts.fallback === undefined) problems.push(`${path}: is required`);
    return opts.fallback;
  }
  if (typeof v !== 'string' && typeof v !== 'number') {
    problems.push(`${path}: must be a string`);
    return opts.fallback;
  }
  const s = String(v);
  if (s === '' && opts.required) problems.push(`${path}: must not be empty`);
  return s;
}

function int(
  v: unknown,
  path: string,
  problems: Problems,
  min: number,
  max: number,
  fallback: number,
): number {
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    problems.push(`${path}: must be ${min}-${max}`);
    return fallback;
  }
  return v;
}

function strList(v: unknown, path: string, problems: Problems, fallback: string[]): string[] {
  if (v === undefined || v === null) return fallback;
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' && typeof x !== 'number')) {
    problems.push(`${path}: must be a list of strings`);
    return fallback;
  }
  return v.map(String);
}

function absPath(v: string | undefined, path: string, problems: Problems): void {
  if (v !== undefined && !v.startsWith('/')) problems.push(`${path}: must be an absolute path`);
}

function validateNode(raw: unknown, path: string, problems: Problems): NodeConfig {
  const node: NodeConfig = { address: '', port: 22, hostLines: [] };
  if (!isObj(raw)) {
    problems.push(`${path}: must be a mapping`);
    return node;
  }
  unknownKeys(raw, ['address', 'port', 'hostname', 'configId', 'router_id', 'hostLines'], path, problems);
  node.address = str(raw.address, `${path}.address`, problems, { required: true }) ?? '';
  node.port = int(raw.port, `${path}.port`, problems, 1, 65535, 22);
  const hostname = str(raw.hostname, `${path}.hostname`, problems);
  if (hostname !== undefined) node.hostname = hostname;
  const configId = str(raw.configId, `${path}.configId`, problems);
  if (configId !== undefined) node.configId = configId;
  const routerId = str(raw.router_id, `${path}.router_id`, problems);
  if (routerId !== undefined) {
    if (/\s/.test(routerId)) problems.push(`${path}.router_id: must be one word`);
    node.router_id = routerId;
  }
  if (raw.hostLines !== undefined) {
    if (!Array.isArray(raw.hostLines)) problems.push(`${path}.hostLines: must be a list`);
    else
      raw.hostLines.forEach((h, i) => {
        const p = `${path}.hostLines[${i}]`;
        if (!isObj(h)) {
          problems.push(`${p}: must be a mapping with path and value`);
          return;
        }
        unknownKeys(h, ['path', 'value'], p, problems);
        const hp =
          typeof h.path === 'string'
            ? h.path.split('>').map((s) => s.trim())
            : strList(h.path, `${p}.path`, problems, []);
        if (hp.length === 0 || hp.some((s) => s === ''))
          problems.push(`${p}.path: must name a keyword, e.g. 'vrrp_instance vi_100 > priority'`);
        const value = str(h.value, `${p}.value`, problems, { required: true }) ?? '';
        node.hostLines.push({ path: hp, value });
      });
  }
  return node;
}

export function validateConfig(raw: unknown): { config: Config; problems: string[] } {
  const problems: Problems = [];
  const c: Config = structuredClone(DEFAULTS);
  if (raw === undefined || raw === null) return { config: c, problems };
  if (!isObj(raw)) return { config: c, problems: ['(top): must be a mapping'] };
  unknownKeys(
    raw,
    [
      'cluster',
      'primary',
      'nodes',
      'ssh',
      'files',
      'services',
      'stateDir',
      'history',
      'audit',
      'check',
      'agent',
      'push',
    ],
    '',
    problems,
  );
  c.cluster = str(raw.cluster, 'cluster', problems, { fallback: c.cluster }) ?? c.cluster;
  c.primary = str(raw.primary, 'primary', problems, { fallback: c.primary }) ?? c.primary;
  if (raw.nodes !== undefined) {
    if (!isObj(raw.nodes)) problems.push('nodes: must be a mapping of node name to settings');
    else
      for (const [name, n] of Object.entries(raw.nodes))
        c.nodes[name] = validateNode(n, `nodes.${name}`, problems);
  }
  if (Object.keys(c.nodes).length > 0 && !c.nodes[c.primary]) {
    problems.push(`primary: '${c.primary}' is not one of the nodes (${Object.keys(c.nodes).join(', ')})`);
  }
  if (raw.ssh !== undefined) {
    if (!isObj(raw.ssh)) problems.push('ssh: must be a mapping');
    else {
      unknownKeys(
        raw.ssh,
        [
          'user',
          'identityFile',
          'agent',
          'knownHosts',
          'connectTimeoutMs',
          'agentTimeoutMs',
          'client',
          'keepConnection',
        ],
        'ssh',
        problems,
      );
      c.ssh.user = str(raw.ssh.user, 'ssh.user', problems, { fallback: c.ssh.user }) ?? c.ssh.user;
      const idf = str(raw.ssh.identityFile, 'ssh.identityFile', problems);
      absPath(idf, 'ssh.identityFile', problems);
      if (idf !== undefined) c.ssh.identityFile = idf;
      if (raw.ssh.agent !== undefined) {
        if (typeof raw.ssh.agent !== 'boolean') problems.push('ssh.agent: must be true or false');
        else c.ssh.agent = raw.ssh.agent;
      }
      if (raw.ssh.keepConnection !== undefined) {
        if (typeof raw.ssh.keepConnection !== 'boolean')
          problems.push('ssh.keepConnection: must be true or false');
        else c.ssh.keepConnection = raw.ssh.keepConnection;
      }
      c.ssh.knownHosts =
        str(raw.ssh.knownHosts, 'ssh.knownHosts', problems, { fallback: c.ssh.knownHosts }) ??
        c.ssh.knownHosts;
      absPath(c.ssh.knownHosts, 'ssh.knownHosts', problems);
      if (raw.ssh.client !== undefined) {
        if (raw.ssh.client !== 'openssh' && raw.ssh.client !== 'builtin')
          problems.push(`ssh.client: must be openssh or builtin, not ${JSON.stringify(raw.ssh.client)}`);
        else c.ssh.client = raw.ssh.client;
      }
      c.ssh.connectTimeoutMs = int(
        raw.ssh.connectTimeoutMs,
        'ssh.connectTimeoutMs',
        problems,
        100,
        600_000,
        c.ssh.connectTimeoutMs,
      );
      c.ssh.agentTimeoutMs = int(
        raw.ssh.agentTimeoutMs,
        'ssh.agentTimeoutMs',
        problems,
        AGENT_HEARTBEAT_MS * 2,
        3_600_000,
        c.ssh.agentTimeoutMs,
      );
    }
  }
  if (raw.files !== undefined) {
    if (!isObj(raw.files)) problems.push('files: must be a mapping');
    else {
      unknownKeys(raw.files, ['keepalived', 'ferm', 'extra'], 'files', problems);
      c.files.keepalived =
        str(raw.files.keepalived, 'files.keepalived', problems, { fallback: c.files.keepalived }) ??
        c.files.keepalived;
      c.files.ferm = str(raw.files.ferm, 'files.ferm', problems, { fallback: c.files.ferm }) ?? c.files.ferm;
      c.files.extra = strList(raw.files.extra, 'files.extra', problems, []);
      absPath(c.files.keepalived, 'files.keepalived', problems);
      absPath(c.files.ferm, 'files.ferm', problems);
      for (const [i, e] of c.files.extra.entries()) {
        absPath(e, `files.extra[${i}]`, problems);
        // the peer's agent manages exactly these paths: a pattern would let it write anything it matches
        if (/[*?[\]{}]/.test(e))
          problems.push(`files.extra[${i}]: '${e}' is a pattern; list each extra file by its path`);
      }
    }
  }
  if (raw.services !== undefined) {
    if (!Array.isArray(raw.services)) problems.push('services: must be a list (in reload order)');
    else {
      c.services = raw.services.map((s, i) => {
        const p = `services[${i}]`;
        const svc: ServiceConfig = { name: '', reload: [] };
        if (!isObj(s)) {
          problems.push(`${p}: must be a mapping with name and reload`);
          return svc;
        }
        unknownKeys(s, ['name', 'check', 'reload', 'status'], p, problems);
        svc.name = str(s.name, `${p}.name`, problems, { required: true }) ?? '';
        svc.reload = strList(s.reload, `${p}.reload`, problems, []);
        if (svc.reload.length === 0)
          problems.push(`${p}.reload: is required (the command that reloads ${svc.name || 'the service'})`);
        if (s.check !== undefined) svc.check = strList(s.check, `${p}.check`, problems, []);
        if (s.status !== undefined) svc.status = strList(s.status, `${p}.status`, problems, []);
        return svc;
      });
      const names = c.services.map((s) => s.name);
      const fi = names.indexOf('ferm');
      const ki = names.indexOf('keepalived');
      if (fi !== -1 && ki !== -1 && fi > ki)
        problems.push(
          'services: ferm must come before keepalived (marks must exist before the virtual servers use them)',
        );
    }
  }
  c.stateDir = str(raw.stateDir, 'stateDir', problems, { fallback: c.stateDir }) ?? c.stateDir;
  absPath(c.stateDir, 'stateDir', problems);
  c.history = int(raw.history, 'history', problems, 1, 1000, c.history);
  if (raw.audit !== undefined) {
    if (!isObj(raw.audit)) problems.push('audit: must be a mapping');
    else {
      const a = raw.audit;
      unknownKeys(a, ['ipvsadm', 'schedule', 'keep', 'command', 'prometheus', 'digests'], 'audit', problems);
      c.audit.ipvsadm = strList(a.ipvsadm, 'audit.ipvsadm', problems, c.audit.ipvsadm);
      c.audit.schedule =
        str(a.schedule, 'audit.schedule', problems, { fallback: c.audit.schedule }) ?? c.audit.schedule;
      if (
        c.audit.schedule.trim().split(/\s+/).length < 5 ||
        c.audit.schedule.trim().split(/\s+/).length > 6
      ) {
        problems.push(`audit.schedule: '${c.audit.schedule}' is not a cron expression (5 or 6 fields)`);
      }
      c.audit.keep = int(a.keep, 'audit.keep', problems, 1, 100_000, c.audit.keep);
      if (a.command !== undefined) c.audit.command = strList(a.command, 'audit.command', problems, []);
      const prom = str(a.prometheus, 'audit.prometheus', problems);
      absPath(prom, 'audit.prometheus', problems);
      if (prom !== undefined) c.audit.prometheus = prom;
      if (a.digests !== undefined) {
        if (typeof a.digests !== 'boolean') problems.push('audit.digests: must be true or false');
        else c.audit.digests = a.digests;
      }
    }
  }
  if (raw.check !== undefined) {
    if (!isObj(raw.check)) problems.push('check: must be a mapping');
    else {
      unknownKeys(raw.check, ['severity'], 'check', problems);
      const sev = raw.check.severity;
      if (sev !== undefined) {
        if (!isObj(sev))
          problems.push('check.severity: must be a mapping of finding code to error, warning or off');
        else
          for (const [code, v] of Object.entries(sev)) {
            if (!/^[A-Z][A-Z0-9_]*$/.test(code))
              problems.push(`check.severity.${code}: not a finding code (e.g. KA_DEPRECATED)`);
            else if (v !== 'error' && v !== 'warning' && v !== 'off')
              problems.push(`check.severity.${code}: must be error, warning or off`);
            else c.check.severity[code] = v;
          }
      }
    }
  }
  if (raw.agent !== undefined) {
    if (!isObj(raw.agent)) problems.push('agent: must be a mapping');
    else {
      unknownKeys(raw.agent, ['fermCommands', 'scripts'], 'agent', problems);
      if (raw.agent.scripts !== undefined) {
        const scripts = strList(raw.agent.scripts, 'agent.scripts', problems, []);
        for (const [i, g] of scripts.entries()) absPath(g, `agent.scripts[${i}]`, problems);
        c.agent.scripts = scripts;
      }
      if (raw.agent.fermCommands !== undefined) {
        if (typeof raw.agent.fermCommands !== 'boolean')
          problems.push('agent.fermCommands: must be true or false');
        else c.agent.fermCommands = raw.agent.fermCommands;
      }
    }
  }
  if (raw.push !== undefined) {
    if (!isObj(raw.push)) problems.push('push: must be a mapping');
    else {
      unknownKeys(
        raw.push,
        ['agentCommand', 'fermGuardSeconds', 'reloadTimeoutSeconds', 'reloadSettleMs'],
        'push',
        problems,
      );
      c.push.agentCommand = strList(
        raw.push.agentCommand,
        'push.agentCommand',
        problems,
        c.push.agentCommand,
      );
      if (c.push.agentCommand.length === 0) problems.push('push.agentCommand: must not be empty');
      c.push.fermGuardSeconds = int(
        raw.push.fermGuardSeconds,
        'push.fermGuardSeconds',
        problems,
        5,
        3600,
        c.push.fermGuardSeconds,
      );
      c.push.reloadTimeoutSeconds = int(
        raw.push.reloadTimeoutSeconds,
        'push.reloadTimeoutSeconds',
        problems,
        1,
        600,
        c.push.reloadTimeoutSeconds,
      );
      c.push.reloadSettleMs = int(
        raw.push.reloadSettleMs,
        'push.reloadSettleMs',
        problems,
        0,
        60_000,
        c.push.reloadSettleMs,
      );
    }
  }
  if (problems.length === 0) problems.push(...boundaryProblems(c));
  return { config: c, problems };
}

/** Directories that must never become a managed root: the agent may write anything below one. */
const SYSTEM_DIRS: ReadonlySet<string> = new Set([
  '/',
  '/etc',
  '/usr',
  '/var',
  '/bin',
  '/sbin',
  '/lib',
  '/lib64',
  '/root',
  '/home',
  '/boot',
  '/dev',
  '/proc',
  '/sys',
  '/run',
  '/tmp',
  '/opt',
  '/srv',
]);

const under = (p: string, dir: string) => p === dir || p.startsWith(`${dir}/`);
const dirOf = (p: string) => p.replace(/\/[^/]*$/, '') || '/';

/**
 * The cross-field rules that keep lvssync.yaml from opening the peer's boundary: what the agent
 * may write (keepalived's and ferm's directories, files.extra) stays clear of the system's own
 * directories, of lvssync's own files and state, and of each other's roles; each node is another host.
 * `configPath`: where this lvssync.yaml is (loadConfig knows it).
 */
export function boundaryProblems(c: Config, configPath?: string): string[] {
  const out: string[] = [];
  const roots = [
    ['files.keepalived', dirOf(c.files.keepalived)],
    ['files.ferm', dirOf(c.files.ferm)],
  ] as const;
  for (const [key, root] of roots) {
    if (SYSTEM_DIRS.has(root))
      out.push(
        `${key}: ${key === 'files.keepalived' ? c.files.keepalived : c.files.ferm} makes ${root} a managed directory (the peer's agent may write anything below it); keep the file in its own directory, e.g. ${key === 'files.keepalived' ? '/etc/keepalived/keepalived.conf' : '/etc/ferm/ferm.conf'}`,
      );
    if (under(c.stateDir, root) || under(root, c.stateDir))
      out.push(
        `stateDir: ${c.stateDir} and the managed directory ${root} (${key}) must not contain each other`,
      );
  }
  const own = [
    ...(configPath ? [['lvssync.yaml', configPath] as const] : []),
    ...(c.ssh.identityFile ? [['ssh.identityFile', c.ssh.identityFile] as const] : []),
    ['ssh.knownHosts', c.ssh.knownHosts] as const,
  ];
  for (const [key, p] of own) {
    for (const [rkey, root] of roots)
      if (under(p, root))
        out.push(
          `${key}: ${p} is inside the managed directory ${root} (${rkey}): the primary could rewrite it`,
        );
  }
  for (const [i, e] of c.files.extra.entries()) {
    if (under(e, c.stateDir)) out.push(`files.extra[${i}]: ${e} is inside stateDir (${c.stateDir})`);
    for (const [key, p] of own)
      if (e === p) out.push(`files.extra[${i}]: ${e} is ${key}: the primary must never write it`);
  }
  const names = Object.keys(c.nodes);
  const seen = new Map<string, string>();
  for (const n of names) {
    const node = c.nodes[n]!;
    const key = `${node.address}:${node.port}`;
    const other = seen.get(key);
    if (other) out.push(`nodes.${n}.address: ${key} is also ${other}'s: every node is another director`);
    seen.set(key, n);
  }
  return out;
}

/**
 * The directories the daemon writes to (besides the managed files on a peer, which its agent writes):
 * under systemd each must be among the unit's ReadWritePaths. `required`: the daemon cannot work
 * without it.
 */
export function daemonWriteDirs(c: Config): { dir: string; setting: string; required: boolean }[] {
  const out = [{ dir: c.stateDir, setting: 'stateDir', required: true }];
  if (c.audit.prometheus) {
    out.push({ dir: path.posix.dirname(c.audit.prometheus), setting: 'audit.prometheus', required: false });
  }
  return out;
}
