// The lab: the reference's LVS directors (two, or up to four with --directors) and two web servers
// on one machine, in network namespaces. Each director runs a real OpenSSH sshd, a real keepalived (VRRP) and real ferm/iptables,
// with its own /etc/keepalived, /etc/ferm and /run (a private mount namespace per host, held open by
// a "holder" process; commands enter it with nsenter). Everything made is recorded in <dir>/lab.json
// before it is made, so stopLab() removes it all, by PID and by namespace, even after a crashed start.
//
//   internal segment 198.51.100.0/24 (bridge "bri" in the switch namespace):
//     lvsN eth0 .25N, web1 eth0 .10, web2 eth0 .20; VIPs .250 (cluster) and .100 (service)
//   crossover 203.0.113.0/24 (bridge "brx"): lvsN eth1 .25N (VRRP and SSH)
//
// No namespace has a default route; nothing is sent outside the lab's own namespaces.

import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  cpSync,
  type Dirent,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export type Director = 'lvs1' | 'lvs2' | 'lvs3' | 'lvs4';
export type WebHost = 'web1' | 'web2';
export type LabHost = Director | WebHost;

/** The pair of the reference, the lab's default. */
export const DIRECTORS: readonly Director[] = ['lvs1', 'lvs2'];
export const WEB_HOSTS: readonly WebHost[] = ['web1', 'web2'];
export const MAX_DIRECTORS = 4;

/** lvs1 .. lvsN. */
export function directorsOf(n: number): Director[] {
  if (!Number.isInteger(n) || n < 2 || n > MAX_DIRECTORS)
    throw new LabError(`--directors ${n}: the lab runs 2 to ${MAX_DIRECTORS} directors`);
  return Array.from({ length: n }, (_, i) => `lvs${i + 1}` as Director);
}

export const isDirector = (h: string): h is Director => /^lvs[1-4]$/.test(h);

export const ADDR = {
  internal: {
    lvs1: '198.51.100.251',
    lvs2: '198.51.100.252',
    lvs3: '198.51.100.253',
    lvs4: '198.51.100.254',
    web1: '198.51.100.10',
    web2: '198.51.100.20',
  },
  crossover: { lvs1: '203.0.113.251', lvs2: '203.0.113.252', lvs3: '203.0.113.253', lvs4: '203.0.113.254' },
  clusterVip: '198.51.100.250',
  serviceVip: '198.51.100.100',
  prefix: 24,
} as const;

/** The health-check page's body; its MD5 is the digest in config/lab's fwm-100.conf. */
export const LB_BODY = 'lvssync lab: OK';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** The repository (this file is at scripts/lab/lab.ts or dist/scripts/lab/lab.js). */
export const REPO = path.resolve(HERE, HERE.includes(`${path.sep}dist${path.sep}`) ? '../../..' : '../..');
export const LAB_CONFIG = path.join(REPO, 'config', 'lab');
/** Left in a mount point the lab had to create on the host, so that the last lab to stop removes it. */
const LAB_MARK = '.lvssync-lab-mount-point';

export interface ProcRecord {
  pid: number;
  /** Field 22 of /proc/PID/stat: tells a recycled PID from ours. */
  start: string;
  host: LabHost | 'switch';
  what: string;
}

export interface LabState {
  name: string;
  dir: string;
  /** Namespaces this lab created (or was about to create). */
  namespaces: string[];
  holders: Partial<Record<LabHost, number>>;
  /** The directors of this lab (lvs1 .. lvsN; absent in a state written before: the pair). */
  directors?: Director[];
  procs: ProcRecord[];
  ready: boolean;
  program?: LabProgram;
  startedAt?: string;
  readyMs?: number;
}

export interface LabOptions {
  /** Prefix of every namespace; two labs with different names run side by side. */
  name?: string;
  /** Where the hosts' files live (default: <tmpdir>/lvssync-lab-<name>). */
  dir?: string;
  /** Print progress lines. */
  log?: (line: string) => void;
  /**
   * The lvssync program the directors' agents run (default: the source tree's dist/src/main.js);
   * the benchmarks pass the Debian package's launcher, with its code cache directory.
   */
  program?: LabProgram;
  /** How many directors (2 to 4; default 2). */
  directors?: number;
}

export interface LabProgram {
  path: string;
  env?: Record<string, string>;
}

export class LabError extends Error {
  override name = 'LabError';
}

export function nsName(lab: string, host: LabHost | 'sw'): string {
  return `${lab}-${host}`;
}

export function defaultDir(name: string): string {
  return path.join(tmpdir(), `lvssync-lab-${name}`);
}

// ---------------------------------------------------------------------------------------------
// Small process helpers

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function run(
  argv: string[],
  opts: { input?: string; timeoutMs?: number; allowFail?: boolean; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      argv[0]!,
      argv.slice(1),
      { encoding: 'utf8', timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024, env: opts.env },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        if (code !== 0 && !opts.allowFail) {
          reject(new LabError(`${argv.join(' ')} failed (exit ${code}): ${(stderr || stdout).trim()}`));
          return;
        }
        resolve({ code, stdout, stderr });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

/** The start time of a live process (undefined when gone or a zombie awaiting its reaper). */
export function procStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm (field 2) may hold spaces: split after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
    return fields[19];
  } catch {
    return undefined;
  }
}

function alive(p: ProcRecord): boolean {
  return procStart(p.pid) === p.start;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > until) throw new LabError(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

// ---------------------------------------------------------------------------------------------
// Preconditions

/** Fails with the names of the programs not installed here (on PATH or in /usr/sbin). */
export async function requirePrograms(names: readonly string[]): Promise<void> {
  const missing: string[] = [];
  for (const n of names) {
    const r = await run(['sh', '-c', `command -v ${n} || test -x /usr/sbin/${n}`], { allowFail: true });
    if (r.code !== 0) missing.push(n);
  }
  if (missing.length > 0) {
    throw new LabError(`missing programs: ${missing.join(', ')} (scripts/setup-host.sh installs them)`);
  }
}

export async function checkPrerequisites(): Promise<void> {
  if (process.getuid?.() !== 0) {
    throw new LabError('the lab needs root (network namespaces, veth pairs, mounts): run it as root');
  }
  const need = ['ip', 'nsenter', 'unshare', 'keepalived', 'ferm', 'iptables', 'sshd', 'ssh-keygen', 'ssh'];
  await requirePrograms(need);
  const probe = `lvssync-probe-${process.pid}`;
  const r = await run(['ip', 'netns', 'add', probe], { allowFail: true });
  if (r.code !== 0) throw new LabError(`network namespaces are not available here: ${r.stderr.trim()}`);
  await run(['ip', 'netns', 'del', probe], { allowFail: true });
}

// ---------------------------------------------------------------------------------------------
// The lab object

export class Lab {
  readonly state: LabState;

  constructor(state: LabState) {
    this.state = state;
  }

  get name(): string {
    return this.state.name;
  }
  get dir(): string {
    return this.state.dir;
  }
  get directors(): readonly Director[] {
    return this.state.directors ?? DIRECTORS;
  }
  get hosts(): readonly LabHost[] {
    return [...this.directors, ...WEB_HOSTS];
  }

  /** Host path of a host's own directory (its etc/keepalived, etc/ferm, run, ssh, ...). */
  hostDir(host: LabHost): string {
    return path.join(this.dir, host);
  }

  /** Where a director path (e.g. /etc/keepalived/keepalived.conf) of `host` lives on this machine. */
  pathOn(host: LabHost, directorPath: string): string {
    for (const top of ['/etc/keepalived', '/etc/ferm', '/etc/lvssync', '/var/lib/lvssync', '/run']) {
      if (directorPath === top || directorPath.startsWith(`${top}/`)) {
        return path.join(this.hostDir(host), top.slice(1), directorPath.slice(top.length));
      }
    }
    return directorPath;
  }

  readFile(host: LabHost, directorPath: string): string {
    return readFileSync(this.pathOn(host, directorPath), 'utf8');
  }

  writeFile(host: LabHost, directorPath: string, text: string, mode?: number): void {
    const p = this.pathOn(host, directorPath);
    mkdirSync(path.dirname(p), { recursive: true });
    writeFileSync(p, text);
    if (mode !== undefined) chmodSync(p, mode);
  }

  /** argv that runs a command "on" a host: inside its network and mount namespaces. */
  argvOn(host: LabHost, argv: string[]): string[] {
    const holder = this.state.holders[host];
    if (!holder) throw new LabError(`${host} is not running in lab ${this.name}`);
    return ['nsenter', '-t', String(holder), '-m', '-n', '-u', '--', ...argv];
  }

  exec(
    host: LabHost,
    argv: string[],
    opts: { input?: string; timeoutMs?: number; allowFail?: boolean; env?: NodeJS.ProcessEnv } = {},
  ): Promise<RunResult> {
    return run(this.argvOn(host, argv), opts);
  }

  /** `ip -j addr` of a host: interface name -> IPv4 addresses. */
  async addresses(host: LabHost): Promise<Record<string, string[]>> {
    const r = await this.exec(host, ['ip', '-j', '-4', 'addr', 'show']);
    const out: Record<string, string[]> = {};
    for (const l of JSON.parse(r.stdout) as { ifname: string; addr_info?: { local: string }[] }[]) {
      out[l.ifname] = (l.addr_info ?? []).map((a) => a.local);
    }
    return out;
  }

  /** Which directors hold `vip` on eth0. */
  async holdersOf(vip: string): Promise<Director[]> {
    const out: Director[] = [];
    for (const d of this.directors) if ((await this.addresses(d)).eth0?.includes(vip)) out.push(d);
    return out;
  }

  /** Waits until exactly one director holds both VIPs; returns it. */
  async waitForVipHolder(timeoutMs = 15_000, not?: Director): Promise<Director> {
    return waitFor(
      not ? `the VIPs to move away from ${not}` : 'one director to hold the VIPs',
      async () => {
        const a = await this.holdersOf(ADDR.clusterVip);
        const b = await this.holdersOf(ADDR.serviceVip);
        if (a.length === 1 && b.length === 1 && a[0] === b[0] && a[0] !== not) return a[0];
        return undefined;
      },
      timeoutMs,
    );
  }

  private record(p: ChildProcess, host: LabHost, what: string): ProcRecord {
    if (!p.pid) throw new LabError(`could not start ${what} on ${host}`);
    const start = procStart(p.pid);
    if (!start) throw new LabError(`${what} on ${host} exited at once (see ${this.logFile(host, what)})`);
    const rec: ProcRecord = { pid: p.pid, start, host, what };
    this.state.procs.push(rec);
    this.save();
    return rec;
  }

  logFile(host: LabHost, what: string): string {
    return path.join(this.hostDir(host), 'log', `${what}.log`);
  }

  /** Starts a long-running command on a host, detached, output to its log file; records its PID. */
  spawnOn(host: LabHost, what: string, argv: string[]): ProcRecord {
    const log = this.logFile(host, what);
    mkdirSync(path.dirname(log), { recursive: true });
    const fd = openSync(log, 'a');
    const child = spawn(this.argvOn(host, argv)[0]!, this.argvOn(host, argv).slice(1), {
      detached: true,
      stdio: ['ignore', fd, fd],
    });
    closeSync(fd);
    child.unref();
    return this.record(child, host, what);
  }

  proc(host: LabHost, what: string): ProcRecord | undefined {
    return this.state.procs.filter((p) => p.host === host && p.what === what && alive(p)).at(-1);
  }

  async killProc(rec: ProcRecord, signal: NodeJS.Signals = 'SIGTERM', waitMs = 5000): Promise<void> {
    if (!alive(rec)) return;
    try {
      process.kill(rec.pid, signal);
    } catch {}
    const until = Date.now() + waitMs;
    while (alive(rec) && Date.now() < until) await sleep(50);
    if (alive(rec)) {
      try {
        process.kill(rec.pid, 'SIGKILL');
      } catch {}
      while (alive(rec)) await sleep(20);
    }
    this.state.procs = this.state.procs.filter((p) => p !== rec);
    this.save();
  }

  // --- services on a director -------------------------------------------------------------

  /** Command that (re)generates keepalived's lab copy of the config and starts keepalived. */
  keepalivedStartArgv(host: Director): string[] {
    return ['sh', path.join(this.hostDir(host), 'etc', 'lvssync', 'lab', 'keepalived-start')];
  }

  async startKeepalived(host: Director): Promise<ProcRecord> {
    const running = this.proc(host, 'keepalived');
    if (running) return running;
    const rec = this.spawnOn(host, 'keepalived', this.keepalivedStartArgv(host));
    await waitFor(
      `keepalived on ${host} to start`,
      () => existsSync(this.pathOn(host, '/run/keepalived.pid')) && alive(rec),
      10_000,
    );
    return rec;
  }

  async stopKeepalived(host: Director): Promise<void> {
    const rec = this.proc(host, 'keepalived');
    if (rec) await this.killProc(rec);
    rmSync(this.pathOn(host, '/run/keepalived.pid'), { force: true });
  }

  /** Applies the director's /etc/ferm/ferm.conf for real (iptables in its namespace). */
  async applyFerm(host: Director): Promise<void> {
    await this.exec(host, ['ferm', '/etc/ferm/ferm.conf']);
  }

  /** The rules as ferm sees them: ferm prefers the legacy xtables tools when they are installed. */
  async iptablesSave(host: Director, table = 'mangle'): Promise<string> {
    const script = `if [ -x /usr/sbin/iptables-legacy-save ]; then exec iptables-legacy-save -t "$1"; else exec iptables-save -t "$1"; fi`;
    return (await this.exec(host, ['sh', '-c', script, 'iptables-save', table])).stdout;
  }

  // --- the crossover link ----------------------------------------------------------------

  /** Cuts the crossover segment at `host`'s port (every director by default): VRRP and SSH stop. */
  async cutCrossover(hosts: readonly Director[] = this.directors): Promise<void> {
    const sw = nsName(this.name, 'sw');
    for (const h of hosts) await run(['ip', '-n', sw, 'link', 'set', `x-${h}`, 'nomaster']);
  }

  async restoreCrossover(hosts: readonly Director[] = this.directors): Promise<void> {
    const sw = nsName(this.name, 'sw');
    for (const h of hosts) await run(['ip', '-n', sw, 'link', 'set', `x-${h}`, 'master', 'brx']);
  }

  // --- web servers ----------------------------------------------------------------------

  setWebBody(host: WebHost, body: string): void {
    writeFileSync(path.join(this.hostDir(host), 'lb.php'), body);
  }

  async startWeb(host: WebHost): Promise<ProcRecord> {
    const running = this.proc(host, 'web');
    if (running) return running;
    const server = path.join(REPO, 'dist', 'scripts', 'lab', 'web-server.js');
    const log = this.logFile(host, 'web');
    const from = existsSync(log) ? statSync(log).size : 0;
    const rec = this.spawnOn(host, 'web', [
      process.execPath,
      server,
      '--port',
      '80',
      '--body-file',
      path.join(this.hostDir(host), 'lb.php'),
      '--name',
      host,
    ]);
    await waitFor(
      `the web server on ${host}`,
      () => readFileSync(log).subarray(from).toString('utf8').includes('listening'),
      10_000,
    );
    return rec;
  }

  async stopWeb(host: WebHost): Promise<void> {
    const rec = this.proc(host, 'web');
    if (rec) await this.killProc(rec);
  }

  /** HTTP GET from inside a host (e.g. a director fetching /lb.php like keepalived's HTTP_GET). */
  async httpGet(from: LabHost, url: string): Promise<{ status: number; body: string }> {
    const js =
      'const u=process.argv[1];require("http").get(u,{timeout:3000},r=>{let b=[];r.on("data",c=>b.push(c));' +
      'r.on("end",()=>{process.stdout.write(JSON.stringify({status:r.statusCode,body:Buffer.concat(b).toString("latin1")}))})})' +
      '.on("error",e=>{process.stderr.write(String(e));process.exit(2)})';
    const r = await this.exec(from, [process.execPath, '-e', js, url]);
    return JSON.parse(r.stdout) as { status: number; body: string };
  }

  save(): void {
    writeFileSync(path.join(this.dir, 'lab.json'), `${JSON.stringify(this.state, null, 2)}\n`);
  }

  /** A text overview: what runs where, addresses, VIP holder. */
  async describe(): Promise<string> {
    const lines = [`lab ${this.name} (files in ${this.dir})`];
    for (const h of this.hosts) {
      const addrs = await this.addresses(h).catch(() => ({}) as Record<string, string[]>);
      const ifs = Object.entries(addrs)
        .filter(([i]) => i !== 'lo' || (addrs.lo ?? []).length > 1)
        .map(([i, a]) => `${i} ${a.join(',')}`)
        .join('  ');
      const procs = this.state.procs
        .filter((p) => p.host === h && alive(p))
        .map((p) => `${p.what}[${p.pid}]`)
        .join(' ');
      lines.push(`  ${h.padEnd(5)} netns ${nsName(this.name, h).padEnd(14)} ${ifs}  ${procs}`);
    }
    const holder = await this.holdersOf(ADDR.clusterVip);
    lines.push(`  VIPs ${ADDR.clusterVip} and ${ADDR.serviceVip}: held by ${holder.join(', ') || 'nobody'}`);
    lines.push(
      `  run a command on a director:  nsenter -t ${this.state.holders.lvs1} -m -n -u -- <command>  (lvs1)`,
    );
    return lines.join('\n');
  }
}

// ---------------------------------------------------------------------------------------------
// Start and stop

export function loadLab(dir: string): Lab | undefined {
  try {
    return new Lab(JSON.parse(readFileSync(path.join(dir, 'lab.json'), 'utf8')) as LabState);
  } catch {
    return undefined;
  }
}

export async function startLab(opts: LabOptions = {}): Promise<Lab> {
  const name = opts.name ?? 'lvl';
  if (!/^[a-z][a-z0-9]{0,7}$/.test(name)) {
    throw new LabError(
      `lab name '${name}' must be 1-8 lower-case letters and digits, starting with a letter`,
    );
  }
  const dir = opts.dir ?? defaultDir(name);
  const log = opts.log ?? (() => {});
  await checkPrerequisites();
  const existing = loadLab(dir);
  if (existing) {
    throw new LabError(`lab ${name} already exists (${dir}/lab.json): stop it first (npm run lab -- stop)`);
  }
  const t0 = Date.now();
  const clash = (await run(['ip', 'netns', 'list'])).stdout
    .split('\n')
    .map((l) => l.split(' ')[0])
    .filter((n) => n?.startsWith(`${name}-`));
  if (clash.length > 0) {
    throw new LabError(
      `namespaces ${clash.join(', ')} exist but no lab state in ${dir}: remove them or pick another name`,
    );
  }
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const lab = new Lab({
    name,
    dir,
    namespaces: [],
    holders: {},
    procs: [],
    ready: false,
    directors: directorsOf(opts.directors ?? 2),
    ...(opts.program ? { program: opts.program } : {}),
  });
  lab.state.startedAt = new Date().toISOString();
  lab.save();
  try {
    await buildNetwork(lab, log);
    await prepareFiles(lab);
    for (const h of lab.hosts) await startHolder(lab, h);
    await startServices(lab, log);
    const holder = await lab.waitForVipHolder(20_000);
    lab.state.ready = true;
    lab.state.readyMs = Date.now() - t0;
    lab.save();
    log(`lab ${name} ready in ${(lab.state.readyMs / 1000).toFixed(1)} s; VIPs on ${holder}`);
    return lab;
  } catch (e) {
    log(`lab ${name}: start failed, cleaning up: ${(e as Error).message}`);
    await stopLab(dir, { keepFiles: process.env.LVSSYNC_LAB_KEEP === '1' }).catch(() => {});
    throw e;
  }
}

/**
 * The lab's two segments for `hosts`: a namespace each plus the switch's, the bridges "bri" (inside,
 * eth0 of every host) and "brx" (crossover, eth1 of the directors). `record` is told each namespace
 * before it is made, so that a failed start still removes it.
 */
export async function buildSegments(
  name: string,
  hosts: readonly LabHost[],
  record: (ns: string) => void,
): Promise<string[]> {
  const sw = nsName(name, 'sw');
  const all = [sw, ...hosts.map((h) => nsName(name, h))];
  for (const ns of all) {
    record(ns);
    await run(['ip', 'netns', 'add', ns]);
    await run(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
  }
  for (const br of ['bri', 'brx']) {
    await run(['ip', '-n', sw, 'link', 'add', br, 'type', 'bridge']);
    await run(['ip', '-n', sw, 'link', 'set', br, 'up']);
  }
  const plug = async (host: LabHost, ifname: string, port: string, bridge: string, addr: string) => {
    const ns = nsName(name, host);
    await run(['ip', '-n', sw, 'link', 'add', port, 'type', 'veth', 'peer', 'name', ifname, 'netns', ns]);
    await run(['ip', '-n', sw, 'link', 'set', port, 'master', bridge, 'up']);
    await run(['ip', '-n', ns, 'addr', 'add', `${addr}/${ADDR.prefix}`, 'dev', ifname]);
    await run(['ip', '-n', ns, 'link', 'set', ifname, 'up']);
  };
  for (const h of hosts) await plug(h, 'eth0', `i-${h}`, 'bri', ADDR.internal[h]);
  for (const d of hosts.filter(isDirector)) await plug(d, 'eth1', `x-${d}`, 'brx', ADDR.crossover[d]);
  return all;
}

async function buildNetwork(lab: Lab, log: (l: string) => void): Promise<void> {
  const all = await buildSegments(lab.name, lab.hosts, (ns) => {
    lab.state.namespaces.push(ns);
    lab.save();
  });
  // Real servers of LVS-DR: the service VIP on the loopback, with the reference's ARP settings.
  for (const w of WEB_HOSTS) {
    const ns = nsName(lab.name, w);
    await run(['ip', '-n', ns, 'addr', 'add', `${ADDR.serviceVip}/32`, 'dev', 'lo']);
    for (const kv of [
      'net.ipv4.conf.lo.rp_filter=0',
      'net.ipv4.conf.all.arp_announce=2',
      'net.ipv4.conf.all.arp_ignore=1',
    ]) {
      await run(['ip', 'netns', 'exec', ns, 'sysctl', '-q', '-w', kv]);
    }
  }
  log(`network: ${all.join(', ')}`);
}

/** The reference configuration for a director, as in config/lab, with its own router_id. */
export function directorConfig(host: Director): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (hostDir: string, directorDir: string) => {
    for (const e of readdirSyncSafe(hostDir)) {
      const hp = path.join(hostDir, e.name);
      const dp = `${directorDir}/${e.name}`;
      if (e.isDirectory()) walk(hp, dp);
      else files.set(dp, readFileSync(hp, 'utf8'));
    }
  };
  walk(path.join(LAB_CONFIG, 'keepalived'), '/etc/keepalived');
  walk(path.join(LAB_CONFIG, 'ferm'), '/etc/ferm');
  const k = '/etc/keepalived/keepalived.conf';
  files.set(k, files.get(k)!.replace(/router_id LVS1/, `router_id ${host.toUpperCase()}`));
  return files;
}

function readdirSyncSafe(dir: string): Dirent[] {
  try {
    return readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
}

/** An ed25519 key pair without passphrase. */
async function keygen(file: string, comment: string): Promise<void> {
  await run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file]);
}

async function prepareFiles(lab: Lab): Promise<void> {
  const digest = createHash('md5').update(LB_BODY).digest('hex');
  for (const h of lab.hosts) {
    for (const d of [
      'etc/keepalived',
      'etc/ferm',
      'etc/lvssync',
      'var/lib/lvssync',
      'etc/lvssync/lab',
      'run/sshd',
      'log',
      'ssh',
    ]) {
      mkdirSync(path.join(lab.hostDir(h), d), { recursive: true, mode: 0o755 });
    }
  }
  const directors = lab.directors;
  for (const d of directors) {
    for (const [p, text] of directorConfig(d)) {
      lab.writeFile(d, p, text, p.endsWith('keepalived.conf') ? 0o640 : 0o644);
    }
    if (!lab.readFile(d, '/etc/keepalived/conf.d/fwm-100.conf').includes(digest)) {
      throw new LabError(
        `config/lab's fwm-100.conf does not carry the digest of the lab's /lb.php (${digest})`,
      );
    }
    writeFileSync(
      path.join(lab.hostDir(d), 'etc', 'lvssync', 'lab', 'keepalived-start'),
      [
        '#!/bin/sh',
        '# The kernel here has no IPVS: keepalived runs VRRP only (-P). The IPVS sync daemon keywords',
        '# (lvs_sync_daemon*) make the VRRP process need IPVS too, so the copy keepalived reads has them',
        '# commented out (line numbers unchanged). /etc/keepalived itself is untouched.',
        'set -e',
        "sed -E 's/^([[:space:]]*)(lvs_sync_daemon)/\\1! lab, no IPVS: \\2/' /etc/keepalived/keepalived.conf > /run/keepalived-lab.conf",
        'exec keepalived --dont-fork --log-console --log-detail --vrrp --use-file /run/keepalived-lab.conf',
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    writeFileSync(
      path.join(lab.hostDir(d), 'etc', 'lvssync', 'lab', 'keepalived-reload'),
      [
        '#!/bin/sh',
        '# Reload as `systemctl reload keepalived` would (SIGHUP), after refreshing the lab copy.',
        'set -e',
        "sed -E 's/^([[:space:]]*)(lvs_sync_daemon)/\\1! lab, no IPVS: \\2/' /etc/keepalived/keepalived.conf > /run/keepalived-lab.conf",
        'kill -HUP "$(cat /run/keepalived.pid)"',
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    writeFileSync(
      path.join(lab.hostDir(d), 'etc', 'lvssync', 'lab', 'keepalived-status'),
      ['#!/bin/sh', 'kill -0 "$(cat /run/keepalived.pid 2>/dev/null)" 2>/dev/null', ''].join('\n'),
      { mode: 0o755 },
    );
  }
  for (const w of WEB_HOSTS) lab.setWebBody(w, LB_BODY);
  // SSH: a host key and a client key per director; each trusts the others' keys and pins their host keys.
  for (const d of directors) {
    const ssh = path.join(lab.hostDir(d), 'ssh');
    await keygen(path.join(ssh, 'ssh_host_ed25519_key'), `${d} host`);
    await keygen(path.join(ssh, 'id_ed25519'), `root@${d}`);
  }
  for (const d of directors) {
    await keygen(path.join(lab.hostDir(d), 'etc/lvssync/id_ed25519'), `lvssync@${d}`);
  }
  const pinned = directors
    .map((d) => {
      const k = readFileSync(path.join(lab.hostDir(d), 'ssh', 'ssh_host_ed25519_key.pub'), 'utf8').split(' ');
      return `${ADDR.crossover[d]},${ADDR.internal[d]} ${k[0]} ${k[1]}\n`;
    })
    .join('');
  for (const d of directors) {
    writeFileSync(path.join(lab.hostDir(d), 'etc/lvssync/known_hosts'), pinned);
    writeFileSync(path.join(lab.hostDir(d), 'etc/lvssync/lvssync.yaml'), labYaml(directors));
    writeFileSync(path.join(lab.hostDir(d), 'etc/lvssync/lab/ipvsadm.txt'), LAB_IPVSADM);
  }
  const program = lab.state.program ?? { path: path.join(REPO, 'dist', 'src', 'main.js') };
  const env = Object.entries(program.env ?? {})
    .map(([k, v]) => `${k}=${v} `)
    .join('');
  const agent = `${env}${process.execPath} ${program.path} agent`;
  for (const d of directors) {
    const others = directors.filter((o) => o !== d);
    const ssh = path.join(lab.hostDir(d), 'ssh');
    const known = others.map((o) => {
      const hostKey = readFileSync(
        path.join(lab.hostDir(o), 'ssh', 'ssh_host_ed25519_key.pub'),
        'utf8',
      ).split(' ');
      return `${ADDR.crossover[o]} ${hostKey[0]} ${hostKey[1]}\n`;
    });
    writeFileSync(path.join(ssh, 'known_hosts'), known.join(''));
    // The other directors' admin keys get a shell (for tests); their lvssync keys only the agent.
    writeFileSync(
      path.join(ssh, 'authorized_keys'),
      others
        .map(
          (o) =>
            `${readFileSync(path.join(lab.hostDir(o), 'ssh', 'id_ed25519.pub'), 'utf8').trim()}\n` +
            `command="${agent}",restrict ${readFileSync(path.join(lab.hostDir(o), 'etc/lvssync/id_ed25519.pub'), 'utf8').trim()}\n`,
        )
        .join(''),
      { mode: 0o600 },
    );
    writeFileSync(
      path.join(ssh, 'sshd_config'),
      [
        `# sshd of lab director ${d}: key authentication only, on its crossover and internal addresses.`,
        `ListenAddress ${ADDR.crossover[d]}`,
        // also on the internal segment: a second path between the directors (tests of split brain)
        `ListenAddress ${ADDR.internal[d]}`,
        'Port 22',
        `HostKey ${path.join(ssh, 'ssh_host_ed25519_key')}`,
        `AuthorizedKeysFile ${path.join(ssh, 'authorized_keys')}`,
        'PidFile /run/sshd.pid',
        'PermitRootLogin prohibit-password',
        'PubkeyAuthentication yes',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        // the lab's files live in a temporary directory whose parents sshd's StrictModes would question
        'StrictModes no',
        'PrintMotd no',
        'Subsystem sftp internal-sftp',
        '',
      ].join('\n'),
    );
  }
}

/** lvssync's configuration in the lab: the same file on every director (each knows itself by host name). */
export function labYaml(directors: readonly Director[]): string {
  const nodes = directors
    .map((d) => `  ${d}:\n    address: ${ADDR.crossover[d]}\n    router_id: ${d.toUpperCase()}\n`)
    .join('');
  return `# lvssync in the lab: identical on ${directors.join(', ')}; each director finds itself by host name.
cluster: lab
primary: lvs1
nodes:
${nodes}ssh:
  user: root
  identityFile: /etc/lvssync/id_ed25519
  knownHosts: /etc/lvssync/known_hosts
  connectTimeoutMs: 5000
services:
  # ferm before keepalived: the marks must exist before the virtual servers use them
  - name: ferm
    reload: [ferm, /etc/ferm/ferm.conf]
  - name: keepalived
    # keepalived runs VRRP only here (no IPVS in this kernel): see etc/lvssync/lab/keepalived-start
    reload: [sh, /etc/lvssync/lab/keepalived-reload]
    status: [sh, /etc/lvssync/lab/keepalived-status]
stateDir: /var/lib/lvssync
audit:
  # no IPVS in this kernel: each director's table is recorded output (etc/lvssync/lab/ipvsadm.txt)
  ipvsadm: [cat, /etc/lvssync/lab/ipvsadm.txt]
  schedule: '17 3 * * *'
push:
  fermGuardSeconds: 10
`;
}

/** The pair's lvssync.yaml. */
export const LVSSYNC_YAML = labYaml(DIRECTORS);

/** What ipvsadm -Ln prints on a director running the lab's configuration (two DR real servers). */
export const LAB_IPVSADM = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
FWM  100 wlc
  -> ${ADDR.internal.web1}:0              Route   50     0          0
  -> ${ADDR.internal.web2}:0              Route   50     0          0
`;

async function startHolder(lab: Lab, host: LabHost): Promise<void> {
  const ns = nsName(lab.name, host);
  const hd = lab.hostDir(host);
  const binds = isDirector(host)
    ? ['/etc/keepalived', '/etc/ferm', '/etc/lvssync', '/var/lib/lvssync', '/run'].map((t) => [
        path.join(hd, t.slice(1)),
        t,
      ])
    : [[path.join(hd, 'run'), '/run']];
  for (const [, target] of binds) {
    if (!existsSync(target!)) {
      // A mount point lvssync's defaults need (/etc/lvssync, /var/lib/lvssync): made empty, and
      // removed again by stopLab when still empty.
      if (target === '/etc/lvssync' || target === '/var/lib/lvssync') {
        mkdirSync(target, { recursive: true, mode: 0o755 });
        writeFileSync(path.join(target, LAB_MARK), 'empty mount point made by the lvssync lab\n');
      } else throw new LabError(`${target} does not exist on this machine (is the package installed?)`);
    }
  }
  const script = `hostname ${host} && ${binds.map((_, i) => `mount --bind "\${${2 * i + 1}}" "\${${2 * i + 2}}"`).join(' && ')} && echo ready && exec sleep infinity`;
  const log = path.join(hd, 'log', 'holder.log');
  const fd = openSync(log, 'a');
  const child = spawn(
    'ip',
    [
      'netns',
      'exec',
      ns,
      'unshare',
      '--mount',
      '--uts',
      '--propagation',
      'private',
      'sh',
      '-c',
      script,
      'holder',
      ...binds.flat(),
    ],
    { detached: true, stdio: ['ignore', fd, fd] },
  );
  closeSync(fd);
  child.unref();
  if (!child.pid) throw new LabError(`could not start the namespace holder of ${host}`);
  // record before waiting, so that a failure here is still cleaned up
  const start = await waitFor(`holder of ${host}`, () => procStart(child.pid!), 5000);
  lab.state.procs.push({ pid: child.pid, start, host, what: 'holder' });
  lab.state.holders[host] = child.pid;
  lab.save();
  await waitFor(`the mounts of ${host}`, () => readFileSync(log, 'utf8').includes('ready'), 5000);
}

async function startServices(lab: Lab, log: (l: string) => void): Promise<void> {
  const webs = WEB_HOSTS.map((w) => lab.startWeb(w));
  for (const d of lab.directors) {
    await lab.applyFerm(d);
    lab.spawnOn(d, 'sshd', [
      '/usr/sbin/sshd',
      '-D',
      '-e',
      '-f',
      path.join(lab.hostDir(d), 'ssh', 'sshd_config'),
    ]);
  }
  for (const d of lab.directors) await lab.startKeepalived(d);
  for (const d of lab.directors) {
    await waitFor(
      `sshd on ${d}`,
      () => readFileSync(lab.logFile(d, 'sshd'), 'utf8').includes('Server listening'),
      10_000,
    );
  }
  await Promise.all(webs);
  log(`services: sshd, keepalived (VRRP), ferm on ${lab.directors.join('/')}; web servers on web1/web2`);
}

/**
 * Stops everything a lab made, using its lab.json: recorded processes (checked against their start
 * time, so a recycled PID is never signalled), then every process still inside one of its namespaces
 * (by PID, from `ip netns pids`), then the namespaces (their veths go with them), then its files.
 * Safe to call twice and after a failed start.
 */
export async function stopLab(dir: string, opts: { keepFiles?: boolean } = {}): Promise<void> {
  const lab = loadLab(dir);
  if (!lab) {
    rmSync(dir, { recursive: true, force: true });
    return;
  }
  const procs = [...lab.state.procs].reverse().filter((p) => p.what !== 'holder');
  for (const p of procs) await lab.killProc(p, 'SIGTERM', 5000);
  for (const ns of lab.state.namespaces) {
    const r = await run(['ip', 'netns', 'pids', ns], { allowFail: true });
    for (const pid of r.stdout.split(/\s+/).filter(Boolean).map(Number)) {
      const rec = { pid, start: procStart(pid) ?? '', host: 'switch' as const, what: 'leftover' };
      if (rec.start) await lab.killProc(rec, 'SIGTERM', 3000);
    }
  }
  for (const p of lab.state.procs.filter((x) => x.what === 'holder')) await lab.killProc(p, 'SIGKILL', 1000);
  for (const ns of lab.state.namespaces) await run(['ip', 'netns', 'del', ns], { allowFail: true });
  // Removing a mount point detaches the mounts on it in every namespace: leave it while another lab
  // runs. rmdir also refuses when something was put in it meanwhile.
  const otherLabs = (await run(['ip', 'netns', 'list'])).stdout
    .split('\n')
    .some((l) => /^\S+-lvs[1-4]\b/.test(l));
  if (!otherLabs) {
    for (const d of ['/etc/lvssync', '/var/lib/lvssync']) {
      if (existsSync(path.join(d, LAB_MARK))) {
        rmSync(path.join(d, LAB_MARK), { force: true });
        rmdirQuiet(d);
      }
    }
  }
  if (opts.keepFiles) {
    rmSync(path.join(dir, 'lab.json'), { force: true });
  } else {
    rmSync(dir, { recursive: true, force: true });
  }
}

function rmdirQuiet(d: string): void {
  try {
    rmdirSync(d);
  } catch {}
}

/** Copies a lab host's configuration out (for debugging a failed test). */
export function copyHostFiles(lab: Lab, host: LabHost, to: string): void {
  cpSync(lab.hostDir(host), to, { recursive: true });
}
