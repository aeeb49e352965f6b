// The systemd lab: each director a booted Debian system with systemd as PID 1 (systemd-nspawn), so
// lvssync meets systemd, journald, Debian's own keepalived.service and ferm.service, and its .deb.
// lvs1 runs Debian 12 (bookworm) and lvs2 Debian 13 (trixie) by default: a mixed pair, as during an
// upgrade of the directors.
//
// Root file systems: mmdebstrap (minbase + systemd, sshd, keepalived, ferm, iptables, iproute2,
// nodejs) from the configured Debian mirror, cached as a tarball and its extracted tree under
// /var/cache/lvssync-lab (LVSSYNC_LAB_CACHE); each director boots on an overlay over the tree.
//
// What booting needs on this kind of host (no systemd on the host, cgroup v1 with a cgroup2 mount):
// --register=no --keep-unit, each container started from a cgroup of its own (two in one collide),
// SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1, the network namespace made here (--network-namespace-path)
// with CAP_NET_ADMIN (ferm and keepalived's VIPs), entered with nsenter. The kernel has no IPVS:
// keepalived runs VRRP only (DAEMON_ARGS=--vrrp in /etc/default/keepalived).
//
// Addresses as in the namespaces lab: 198.51.100.0/24 inside, 203.0.113.0/24 crossover; no default
// route. Everything made is recorded in <dir>/lab.json before it is made; stopSystemdLab removes it
// by PID (checked against the start time), mount point, cgroup and namespace.

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  ADDR,
  buildSegments,
  directorConfig,
  LabError,
  nsName,
  DIRECTORS as PAIR,
  procStart,
  type RunResult,
  requirePrograms,
  run,
  sleep,
  waitFor,
} from './lab.js';

/** The systemd lab boots the pair: one director per Debian release. */
export type PairDirector = 'lvs1' | 'lvs2';
type Director = PairDirector;
const DIRECTORS = PAIR as readonly PairDirector[];

export type Release = 'bookworm' | 'trixie';

export const CACHE = process.env.LVSSYNC_LAB_CACHE ?? '/var/cache/lvssync-lab';

/** What each director's root file system holds besides minbase. */
export const ROOTFS_PACKAGES = [
  'systemd',
  'systemd-sysv',
  'dbus',
  'openssh-server',
  'keepalived',
  'ferm',
  'iptables',
  'iproute2',
  'nodejs',
  'ca-certificates',
  'procps',
] as const;

interface Machine {
  release: Release;
  /** systemd-nspawn's PID and start time (a recycled PID is never signalled). */
  pid: number;
  start: string;
  log: string;
}

export interface SystemdLabState {
  name: string;
  dir: string;
  namespaces: string[];
  /** Overlay mount points, unmounted at stop. */
  mounts: string[];
  /** cgroup directories made for the containers, removed (depth first) at stop. */
  cgroups: string[];
  machines: Partial<Record<Director, Machine>>;
  ready: boolean;
  /** Milliseconds from the first container started to both at `systemctl is-system-running`. */
  bootMs?: number;
  readyMs?: number;
}

export interface SystemdLabOptions {
  name?: string;
  dir?: string;
  releases?: Record<Director, Release>;
  log?: (line: string) => void;
}

/** The Debian mirror apt uses on this host (deb822 or one-line sources), else deb.debian.org. */
export function configuredMirror(): string {
  const files = ['/etc/apt/sources.list'];
  try {
    for (const f of readdirSync('/etc/apt/sources.list.d'))
      files.push(path.join('/etc/apt/sources.list.d', f));
  } catch {}
  for (const f of files) {
    let text = '';
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n')) {
      const m = /^URIs:\s*(\S+)/.exec(line) ?? /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+\s/.exec(line.trim());
      if (m?.[1] && !m[1].includes('security')) return m[1];
    }
  }
  return 'http://deb.debian.org/debian';
}

/**
 * The extracted root file system of a release, built once (mmdebstrap, ~30-60 s) and reused. Its
 * name carries a digest of the package list, so a changed list builds a new one.
 */
export async function ensureRootfs(release: Release, log: (l: string) => void = () => {}): Promise<string> {
  const key = `${release}-${createHash('sha256').update(ROOTFS_PACKAGES.join(',')).digest('hex').slice(0, 8)}`;
  const tree = path.join(CACHE, key);
  if (existsSync(path.join(tree, '.lvssync-complete'))) return tree;
  mkdirSync(CACHE, { recursive: true });
  const tar = path.join(CACHE, `${key}.tar`);
  if (!existsSync(tar)) {
    const t0 = Date.now();
    const tmp = `${tar}.${process.pid}.tmp`;
    log(`building the ${release} root file system (mmdebstrap, once; cached in ${CACHE})`);
    const r = await run(
      [
        'mmdebstrap',
        '--quiet',
        '--format=tar',
        '--variant=minbase',
        `--include=${ROOTFS_PACKAGES.join(',')}`,
        release,
        tmp,
        configuredMirror(),
      ],
      { timeoutMs: 15 * 60_000, allowFail: true },
    );
    if (r.code !== 0) {
      rmSync(tmp, { force: true });
      throw new LabError(
        `mmdebstrap ${release} failed (exit ${r.code}): ${r.stderr.trim().split('\n').slice(-5).join(' | ')}`,
      );
    }
    renameSync(tmp, tar);
    log(`${release} root file system built in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }
  const tmpTree = `${tree}.${process.pid}.tmp`;
  rmSync(tmpTree, { recursive: true, force: true });
  mkdirSync(tmpTree, { recursive: true });
  await run(['tar', '-xf', tar, '-C', tmpTree, '--numeric-owner', '--xattrs'], { timeoutMs: 5 * 60_000 });
  writeFileSync(path.join(tmpTree, '.lvssync-complete'), `${key}\n`);
  rmSync(tree, { recursive: true, force: true });
  renameSync(tmpTree, tree);
  return tree;
}

/** lvssync's configuration in the systemd lab: Debian's own services, reloaded through systemctl. */
export const SYSTEMD_LAB_YAML = `# lvssync in the systemd lab: identical on lvs1 and lvs2; each director finds itself by host name.
cluster: lab
primary: lvs1
nodes:
  lvs1:
    address: ${ADDR.crossover.lvs1}
    router_id: LVS1
  lvs2:
    address: ${ADDR.crossover.lvs2}
    router_id: LVS2
ssh:
  user: root
  identityFile: /etc/lvssync/id_ed25519
  knownHosts: /etc/lvssync/known_hosts
  connectTimeoutMs: 5000
stateDir: /var/lib/lvssync
audit:
  # no IPVS in this kernel: the table is recorded output
  ipvsadm: [cat, /etc/lvssync/ipvsadm.txt]
  # often, so that the daemon's audit (its reports, the textfile below) runs while the tests watch
  schedule: '*/20 * * * * *'
  prometheus: /var/lib/prometheus/node-exporter/lvssync.prom
push:
  fermGuardSeconds: 10
`;

export class SystemdLab {
  readonly state: SystemdLabState;

  constructor(state: SystemdLabState) {
    this.state = state;
  }

  get name(): string {
    return this.state.name;
  }

  get dir(): string {
    return this.state.dir;
  }

  /** The director's root file system as seen from this host (the overlay's merged tree). */
  root(host: Director): string {
    return path.join(this.dir, host, 'root');
  }

  pathOn(host: Director, p: string): string {
    return path.join(this.root(host), p);
  }

  readFile(host: Director, p: string): string {
    return readFileSync(this.pathOn(host, p), 'utf8');
  }

  writeFile(host: Director, p: string, text: string): void {
    mkdirSync(path.dirname(this.pathOn(host, p)), { recursive: true });
    writeFileSync(this.pathOn(host, p), text);
  }

  /** PID (on this host) of the director's systemd, PID 1 inside. */
  leader(host: Director): number {
    const m = this.state.machines[host];
    if (!m || procStart(m.pid) !== m.start)
      throw new LabError(`${host} is not running in systemd lab ${this.name}`);
    const children = readFileSync(`/proc/${m.pid}/task/${m.pid}/children`, 'utf8').trim().split(/\s+/);
    const pid = Number(children[0]);
    if (!pid) throw new LabError(`${host}: systemd-nspawn ${m.pid} has no container yet`);
    return pid;
  }

  /** Runs a command inside a director (all its namespaces: mount, PID, network, UTS, IPC, cgroup). */
  exec(
    host: Director,
    argv: string[],
    opts: { input?: string; timeoutMs?: number; allowFail?: boolean } = {},
  ): Promise<RunResult> {
    return run(['nsenter', '-t', String(this.leader(host)), '-a', '--', ...argv], {
      ...opts,
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', HOME: '/root', TERM: 'dumb' },
    });
  }

  systemctl(host: Director, args: string[], allowFail = false): Promise<RunResult> {
    return this.exec(host, ['systemctl', '--no-pager', ...args], { allowFail, timeoutMs: 120_000 });
  }

  /** The journal of a unit on a director, message text only. */
  async journal(host: Director, unit: string): Promise<string> {
    return (await this.exec(host, ['journalctl', '--no-pager', '-o', 'cat', '-u', unit], { allowFail: true }))
      .stdout;
  }

  async isRunning(host: Director): Promise<string> {
    return (await this.systemctl(host, ['is-system-running'], true)).stdout.trim();
  }

  save(): void {
    writeFileSync(path.join(this.dir, 'lab.json'), `${JSON.stringify(this.state, null, 2)}\n`);
  }
}

export function loadSystemdLab(dir: string): SystemdLab | undefined {
  try {
    return new SystemdLab(JSON.parse(readFileSync(path.join(dir, 'lab.json'), 'utf8')) as SystemdLabState);
  } catch {
    return undefined;
  }
}

export async function checkSystemdLabPrerequisites(): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new LabError('the systemd lab needs root (containers, mounts, namespaces)');
  await requirePrograms(['systemd-nspawn', 'mmdebstrap', 'nsenter', 'ip', 'tar', 'ssh-keygen']);
  if (!existsSync('/sys/fs/cgroup/unified/cgroup.procs') && !existsSync('/sys/fs/cgroup/cgroup.procs')) {
    throw new LabError(
      'no cgroup2 hierarchy (/sys/fs/cgroup/unified or /sys/fs/cgroup): systemd in a container needs one',
    );
  }
}

/** Where this host's cgroup2 hierarchy is (hybrid: /sys/fs/cgroup/unified; unified: /sys/fs/cgroup). */
function cgroup2Root(): string {
  return existsSync('/sys/fs/cgroup/unified/cgroup.procs') ? '/sys/fs/cgroup/unified' : '/sys/fs/cgroup';
}

export async function startSystemdLab(opts: SystemdLabOptions = {}): Promise<SystemdLab> {
  const name = opts.name ?? 'lvsd';
  if (!/^[a-z][a-z0-9]{0,7}$/.test(name))
    throw new LabError(`lab name '${name}': 1-8 lower-case letters and digits`);
  const dir = opts.dir ?? path.join(tmpdir(), `lvssync-systemd-lab-${name}`);
  const releases = opts.releases ?? { lvs1: 'bookworm', lvs2: 'trixie' };
  const log = opts.log ?? (() => {});
  await checkSystemdLabPrerequisites();
  if (loadSystemdLab(dir))
    throw new LabError(`systemd lab ${name} already exists (${dir}/lab.json): stop it first`);
  const roots = {
    lvs1: await ensureRootfs(releases.lvs1, log),
    lvs2: await ensureRootfs(releases.lvs2, log),
  };
  const t0 = Date.now();
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const lab = new SystemdLab({
    name,
    dir,
    namespaces: [],
    mounts: [],
    cgroups: [],
    machines: {},
    ready: false,
  });
  lab.save();
  try {
    await buildNetwork(lab);
    for (const d of DIRECTORS) {
      const base = path.join(dir, d);
      for (const sub of ['upper', 'work', 'root']) mkdirSync(path.join(base, sub), { recursive: true });
      lab.state.mounts.push(lab.root(d));
      lab.save();
      await run([
        'mount',
        '-t',
        'overlay',
        `lvssync-lab-${name}-${d}`,
        '-o',
        `lowerdir=${roots[d]},upperdir=${path.join(base, 'upper')},workdir=${path.join(base, 'work')}`,
        lab.root(d),
      ]);
      await prepareDirector(lab, d);
    }
    const tBoot = Date.now();
    for (const d of DIRECTORS) await boot(lab, d, releases[d]);
    await Promise.all(
      DIRECTORS.map((d) =>
        waitFor(
          `${d} to boot (systemctl is-system-running)`,
          async () => {
            try {
              const s = await lab.isRunning(d);
              return s === 'running' || s === 'degraded' ? s : undefined;
            } catch {
              return undefined;
            }
          },
          60_000,
        ),
      ),
    );
    lab.state.bootMs = Date.now() - tBoot;
    for (const d of DIRECTORS) {
      if ((await lab.isRunning(d)) === 'degraded') {
        const failed = (await lab.systemctl(d, ['--failed', '--plain', '--no-legend'], true)).stdout.trim();
        throw new LabError(`${d} booted degraded: ${failed}`);
      }
    }
    lab.state.ready = true;
    lab.state.readyMs = Date.now() - t0;
    lab.save();
    log(
      `systemd lab ${name}: ${DIRECTORS.map((d) => `${d} ${releases[d]}`).join(', ')} booted in ${lab.state.bootMs} ms`,
    );
    return lab;
  } catch (e) {
    log(`systemd lab ${name}: start failed, cleaning up: ${(e as Error).message}`);
    if (process.env.LVSSYNC_LAB_KEEP !== '1') await stopSystemdLab(dir).catch(() => {});
    throw e;
  }
}

async function buildNetwork(lab: SystemdLab): Promise<void> {
  await buildSegments(lab.name, DIRECTORS, (ns) => {
    lab.state.namespaces.push(ns);
    lab.save();
  });
}

/** The director's own files, written into its overlay before it boots. */
async function prepareDirector(lab: SystemdLab, d: Director): Promise<void> {
  const other: Director = d === 'lvs1' ? 'lvs2' : 'lvs1';
  lab.writeFile(d, '/etc/hostname', `${d}\n`);
  lab.writeFile(
    d,
    '/etc/hosts',
    `127.0.0.1\tlocalhost\n127.0.1.1\t${d}\n${ADDR.crossover[d]}\t${d}\n${ADDR.crossover[other]}\t${other}\n`,
  );
  // the kernel has no IPVS: VRRP only
  lab.writeFile(d, '/etc/default/keepalived', 'DAEMON_ARGS="--vrrp"\n');
  // the lab's set: its ferm.conf accepts VRRP (Debian's default one drops protocol 112); the IPVS
  // sync daemon line goes, as it needs IPVS, which this kernel lacks
  for (const [p, text] of directorConfig(d)) {
    lab.writeFile(d, p, text.replace(/^\s*lvs_sync_daemon\S*.*\n/gm, ''));
  }
  lab.writeFile(d, '/etc/lvssync/ipvsadm.txt', LAB_TABLE);
  // each director its own SSH host keys (the cached tree's are shared by every container)
  for (const f of readdirSync(lab.pathOn(d, '/etc/ssh'))) {
    if (f.startsWith('ssh_host_')) rmSync(lab.pathOn(d, `/etc/ssh/${f}`));
  }
  await run(['ssh-keygen', '-A', '-f', lab.root(d)]);
  // lvssync's configuration is there before the package: the operator writes it (README)
  lab.writeFile(d, '/etc/lvssync/lvssync.yaml', SYSTEMD_LAB_YAML);
  mkdirSync(lab.pathOn(d, '/root/.ssh'), { recursive: true, mode: 0o700 });
  // node-exporter's textfile directory, as prometheus-node-exporter makes it
  mkdirSync(lab.pathOn(d, '/var/lib/prometheus/node-exporter'), { recursive: true, mode: 0o755 });
}

const LAB_TABLE = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
FWM  100 wlc
  -> ${ADDR.internal.web1}:0              Route   50     0          0
  -> ${ADDR.internal.web2}:0              Route   50     0          0
`;

async function boot(lab: SystemdLab, d: Director, release: Release): Promise<void> {
  const cgroups = [path.join(cgroup2Root(), `lvssync-lab-${lab.name}-${d}`)];
  if (existsSync('/sys/fs/cgroup/systemd/cgroup.procs')) {
    cgroups.push(`/sys/fs/cgroup/systemd/lvssync-lab-${lab.name}-${d}`);
  }
  for (const cg of cgroups) {
    lab.state.cgroups.push(cg);
    lab.save();
    mkdirSync(cg, { recursive: true });
  }
  const logFile = path.join(lab.dir, `${d}.console.log`);
  const fd = openSync(logFile, 'a');
  // the shell moves itself into the container's own cgroups, then becomes systemd-nspawn
  const script = `${cgroups.map((_, i) => `echo $$ > "$${i + 1}/cgroup.procs"`).join(' && ')} && shift ${cgroups.length} && exec "$@"`;
  const child = spawn(
    'sh',
    [
      '-c',
      script,
      'nspawn',
      ...cgroups,
      'systemd-nspawn',
      '--quiet',
      '--boot',
      '--register=no',
      '--keep-unit',
      `--machine=${d}`,
      `--directory=${lab.root(d)}`,
      `--network-namespace-path=/run/netns/${nsName(lab.name, d)}`,
      '--capability=CAP_NET_ADMIN',
      '--console=passive',
    ],
    {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: { ...process.env, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY: '1' },
    },
  );
  closeSync(fd);
  child.unref();
  if (!child.pid) throw new LabError(`could not start systemd-nspawn for ${d}`);
  const start = await waitFor(`systemd-nspawn of ${d}`, () => procStart(child.pid!), 5000);
  lab.state.machines[d] = { release, pid: child.pid, start, log: logFile };
  lab.save();
  await waitFor(
    `${d}'s container`,
    () => {
      try {
        return lab.leader(d);
      } catch {
        return undefined;
      }
    },
    20_000,
  );
}

/**
 * Stops a systemd lab from its lab.json: each container is shut down the orderly way (SIGTERM to
 * systemd-nspawn: a poweroff inside), killed by PID if it does not end in time; then the overlays,
 * the cgroups, the namespaces and the files. Safe to call twice and after a failed start.
 */
export async function stopSystemdLab(dir: string): Promise<void> {
  const lab = loadSystemdLab(dir);
  if (!lab) {
    rmSync(dir, { recursive: true, force: true });
    return;
  }
  await Promise.all(
    Object.values(lab.state.machines).map(async (m) => {
      if (!m || procStart(m.pid) !== m.start) return;
      try {
        process.kill(m.pid, 'SIGTERM');
      } catch {}
      const until = Date.now() + 20_000;
      while (procStart(m.pid) === m.start && Date.now() < until) await sleep(100);
      if (procStart(m.pid) === m.start) {
        // what is left in its cgroups, by PID, then nspawn itself
        for (const cg of lab.state.cgroups) for (const pid of pidsUnder(cg)) killQuiet(pid);
        killQuiet(m.pid);
        while (procStart(m.pid) === m.start) await sleep(50);
      }
    }),
  );
  for (const mnt of [...lab.state.mounts].reverse()) {
    // nspawn's own mounts below the root go first
    const below = readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[1] ?? '')
      .filter((m) => m === mnt || m.startsWith(`${mnt}/`))
      .sort((a, b) => b.length - a.length);
    for (const m of below) await run(['umount', '-l', m], { allowFail: true });
  }
  for (const cg of [...lab.state.cgroups].reverse()) {
    for (const pid of pidsUnder(cg)) killQuiet(pid);
    removeCgroup(cg);
  }
  for (const ns of lab.state.namespaces) await run(['ip', 'netns', 'del', ns], { allowFail: true });
  rmSync(dir, { recursive: true, force: true });
}

function pidsUnder(cg: string): number[] {
  const out: number[] = [];
  const walk = (d: string) => {
    try {
      for (const p of readFileSync(path.join(d, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean))
        out.push(Number(p));
      for (const e of readdirSync(d, { withFileTypes: true }))
        if (e.isDirectory()) walk(path.join(d, e.name));
    } catch {}
  };
  walk(cg);
  return out;
}

function killQuiet(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {}
}

function removeCgroup(cg: string): void {
  if (!existsSync(cg)) return;
  for (const e of readdirSync(cg, { withFileTypes: true })) {
    if (e.isDirectory()) removeCgroup(path.join(cg, e.name));
  }
  for (let i = 0; i < 50; i++) {
    try {
      rmdirSync(cg);
      return;
    } catch {
      // a cgroup whose last process is still exiting stays busy for a moment
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
  }
}

export function systemdLabDir(name: string): string {
  return path.join(tmpdir(), `lvssync-systemd-lab-${name}`);
}
