// Typed view of an evaluated keepalived configuration: the parts lvssync reasons about. Pure.
// Built from the Directive tree (evaluate.ts); every element keeps the position it came from.

import type { Position } from '../diagnostic.js';
import type { CheckMemory } from '../memory.js';
import { argAt, type Directive } from './evaluate.js';

export interface Valued<T> {
  value: T;
  pos: Position;
}

export interface VipEntry {
  /** The address as written (may carry /len). */
  text: string;
  address: string;
  prefix?: number;
  dev?: string;
  pos: Position;
}

export interface VrrpInstance {
  name: string;
  pos: Position;
  interface?: Valued<string>;
  state?: Valued<string>;
  priority?: Valued<number>;
  virtualRouterId?: Valued<number>;
  authType?: Valued<string>;
  authPass?: Valued<string>;
  nopreempt: boolean;
  vips: VipEntry[];
  excludedVips: VipEntry[];
  trackInterfaces: Valued<string>[];
  trackScripts: Valued<string>[];
  unicastSrcIp?: Valued<string>;
  unicastPeers: Valued<string>[];
  directive: Directive;
}

export interface HttpUrl {
  path?: Valued<string>;
  digest?: Valued<string>;
  statusCode?: Valued<string>;
  virtualhost?: Valued<string>;
  pos: Position;
}

export interface Checker {
  type: string;
  pos: Position;
  connectIp?: Valued<string>;
  connectPort?: Valued<number>;
  connectTimeout?: Valued<number>;
  urls: HttpUrl[];
  virtualhost?: Valued<string>;
}

export interface RealServer {
  address: string;
  port?: number;
  pos: Position;
  weight?: Valued<number>;
  lvsMethod?: Valued<string>;
  checkers: Checker[];
  directive: Directive;
}

export type VirtualServerKey =
  | { kind: 'ip'; address: string; port?: number }
  | { kind: 'fwmark'; mark: number; raw: string }
  | { kind: 'group'; name: string };

export interface VirtualServer {
  key: VirtualServerKey;
  pos: Position;
  lvsSched?: Valued<string>;
  lvsMethod?: Valued<string>;
  protocol?: Valued<string>;
  persistenceTimeout?: Valued<number>;
  sorryServer?: Valued<{ address: string; port?: number }>;
  virtualhost?: Valued<string>;
  delayLoop?: Valued<number>;
  quorum?: Valued<number>;
  realServers: RealServer[];
  directive: Directive;
  /** `fwmark 100`, `198.51.100.100:80`, `group web` (virtualServerLabel of key). */
  label: string;
}

export interface VirtualServerGroup {
  name: string;
  pos: Position;
  entries: Valued<string[]>[];
}

/** What global_defs says about how keepalived reloads (keepalived.conf(5), 2.2.0 and later). */
export interface ReloadSettings {
  /** Where global_defs is (the place to add what is missing), when there is one. */
  globalDefs?: Position;
  /** `reload_check_config [LOG_FILE]`: keepalived validates a new configuration before reloading. */
  checkConfig?: Position;
  /**
   * `reload_file [PATH]`: keepalived creates (truncates) it before reading its files and removes it
   * once they are read; the path keepalived uses, or undefined where it depends on the instance name.
   */
  file?: Valued<string | undefined> & { named?: boolean };
  /** `enable_script_security`: keepalived runs scripts as an unprivileged user unless told otherwise. */
  scriptSecurity?: Position;
}

export interface KeepalivedModel {
  routerId?: Valued<string>;
  reload: ReloadSettings;
  instances: VrrpInstance[];
  syncGroups: { name: string; pos: Position; members: Valued<string>[] }[];
  scripts: { name: string; pos: Position; hasCommand: boolean }[];
  virtualServerGroups: VirtualServerGroup[];
  virtualServers: VirtualServer[];
}

const at = (d: Directive, i = 0): Position => argAt(d, i);
const num = (s: string | undefined): number =>
  s !== undefined && /^-?\d+(\.\d+)?$/.test(s) ? Number(s) : Number.NaN;

function find(d: Directive, name: string): Directive | undefined {
  let found: Directive | undefined;
  for (const c of d.children ?? []) if (c.name === name) found = c;
  return found;
}

function val(d: Directive | undefined): Valued<string> | undefined {
  if (!d || d.args.length === 0) return undefined;
  return { value: d.args[0]!, pos: at(d) };
}

function numVal(d: Directive | undefined): Valued<number> | undefined {
  const v = val(d);
  return v ? { value: num(v.value), pos: v.pos } : undefined;
}

/** Lines of a value block (`{ a b c }` contents): each child directive is one line of words. */
export function blockLines(d: Directive | undefined): { words: string[]; pos: Position }[] {
  if (!d?.children) return [];
  return d.children.map((c) => ({ words: [c.name, ...c.args], pos: c.pos }));
}

function vipEntries(d: Directive | undefined): VipEntry[] {
  return blockLines(d).map(({ words, pos }) => {
    const text = words[0]!;
    const [address, len] = text.split('/');
    const e: VipEntry = { text, address: address!, pos };
    if (len !== undefined && /^\d+$/.test(len)) e.prefix = Number(len);
    const devIdx = words.indexOf('dev');
    if (devIdx !== -1 && words[devIdx + 1]) e.dev = words[devIdx + 1]!;
    return e;
  });
}

function checker(d: Directive): Checker {
  const c: Checker = { type: d.name, pos: d.pos, urls: [] };
  const ci = val(find(d, 'connect_ip'));
  if (ci) c.connectIp = ci;
  const cp = numVal(find(d, 'connect_port'));
  if (cp) c.connectPort = cp;
  const ct = numVal(find(d, 'connect_timeout'));
  if (ct) c.connectTimeout = ct;
  const vh = val(find(d, 'virtualhost'));
  if (vh) c.virtualhost = vh;
  for (const u of d.children ?? []) {
    if (u.name !== 'url') continue;
    const url: HttpUrl = { pos: u.pos };
    const p = val(find(u, 'path'));
    if (p) url.path = p;
    const dg = val(find(u, 'digest'));
    if (dg) url.digest = dg;
    const sc = val(find(u, 'status_code'));
    if (sc) url.statusCode = sc;
    const uvh = val(find(u, 'virtualhost'));
    if (uvh) url.virtualhost = uvh;
    c.urls.push(url);
  }
  return c;
}

export const CHECKER_TYPES: ReadonlySet<string> = new Set([
  'HTTP_GET',
  'SSL_GET',
  'TCP_CHECK',
  'SMTP_CHECK',
  'DNS_CHECK',
  'MISC_CHECK',
  'BFD_CHECK',
  'PING_CHECK',
  'UDP_CHECK',
  'FILE_CHECK',
]);

function realServer(d: Directive): RealServer {
  const rs: RealServer = { address: d.args[0] ?? '', pos: d.pos, checkers: [], directive: d };
  if (d.args[1] !== undefined) rs.port = num(d.args[1]);
  const w = numVal(find(d, 'weight'));
  if (w) rs.weight = w;
  const m = val(find(d, 'lvs_method') ?? find(d, 'lb_kind'));
  if (m) rs.lvsMethod = m;
  for (const c of d.children ?? []) if (CHECKER_TYPES.has(c.name)) rs.checkers.push(checker(c));
  return rs;
}

/** How keepalived reads `virtual_server fwmark N`: strtoul base 10, so `0x64` is not 100. */
export function parseFwmark(raw: string): number {
  return /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
}

function virtualServer(d: Directive): VirtualServer {
  const [a0, a1] = d.args;
  let key: VirtualServerKey;
  if (a0 === 'fwmark') key = { kind: 'fwmark', mark: parseFwmark(a1 ?? ''), raw: a1 ?? '' };
  else if (a0 === 'group') key = { kind: 'group', name: a1 ?? '' };
  else {
    key = { kind: 'ip', address: a0 ?? '' };
    if (a1 !== undefined) key.port = num(a1);
  }
  const vs: VirtualServer = {
    key,
    pos: d.pos,
    realServers: [],
    directive: d,
    label: virtualServerLabel(key),
  };
  const sched = val(find(d, 'lvs_sched') ?? find(d, 'lb_algo'));
  if (sched) vs.lvsSched = sched;
  const method = val(find(d, 'lvs_method') ?? find(d, 'lb_kind'));
  if (method) vs.lvsMethod = method;
  const proto = val(find(d, 'protocol'));
  if (proto) vs.protocol = proto;
  const pt = find(d, 'persistence_timeout');
  if (pt) vs.persistenceTimeout = { value: pt.args[0] === undefined ? 360 : num(pt.args[0]), pos: at(pt) };
  const ss = find(d, 'sorry_server');
  if (ss?.args[0]) {
    const v: { address: string; port?: number } = { address: ss.args[0] };
    if (ss.args[1] !== undefined) v.port = num(ss.args[1]);
    vs.sorryServer = { value: v, pos: at(ss) };
  }
  const vh = val(find(d, 'virtualhost'));
  if (vh) vs.virtualhost = vh;
  const dl = numVal(find(d, 'delay_loop'));
  if (dl) vs.delayLoop = dl;
  const q = numVal(find(d, 'quorum'));
  if (q) vs.quorum = q;
  for (const c of d.children ?? []) if (c.name === 'real_server') vs.realServers.push(realServer(c));
  return vs;
}

function vrrpInstance(d: Directive): VrrpInstance {
  const inst: VrrpInstance = {
    name: d.args[0] ?? '',
    pos: d.pos,
    nopreempt: Boolean(find(d, 'nopreempt')),
    vips: vipEntries(find(d, 'virtual_ipaddress')),
    excludedVips: vipEntries(find(d, 'virtual_ipaddress_excluded')),
    trackInterfaces: blockLines(find(d, 'track_interface')).map((l) => ({ value: l.words[0]!, pos: l.pos })),
    trackScripts: blockLines(find(d, 'track_script')).map((l) => ({ value: l.words[0]!, pos: l.pos })),
    unicastPeers: blockLines(find(d, 'unicast_peer')).map((l) => ({ value: l.words[0]!, pos: l.pos })),
    directive: d,
  };
  const set = <K extends keyof VrrpInstance>(k: K, v: VrrpInstance[K] | undefined) => {
    if (v !== undefined) inst[k] = v;
  };
  set('interface', val(find(d, 'interface')));
  set('state', val(find(d, 'state')));
  set('priority', numVal(find(d, 'priority')));
  set('virtualRouterId', numVal(find(d, 'virtual_router_id')));
  set('unicastSrcIp', val(find(d, 'unicast_src_ip')));
  const auth = find(d, 'authentication');
  if (auth) {
    set('authType', val(find(auth, 'auth_type')));
    set('authPass', val(find(auth, 'auth_pass')));
  }
  return inst;
}

// Directives are immutable once evaluated and the evaluator reuses them for unchanged files, so with
// the owner's CheckMemory the model of a directive is computed once (memoised on object identity).
function memo<T>(table: WeakMap<Directive, T> | undefined, d: Directive, build: (d: Directive) => T): T {
  if (!table) return build(d);
  let v = table.get(d);
  if (v === undefined) {
    v = build(d);
    table.set(d, v);
  }
  return v;
}

/** keepalived's default reload file (global_data.c): /run, or /run/keepalived with use_pid_dir. */
function reloadSettings(d: Directive, prev: ReloadSettings): ReloadSettings {
  const out: ReloadSettings = { ...prev, globalDefs: prev.globalDefs ?? d.pos };
  const check = find(d, 'reload_check_config');
  if (check) out.checkConfig = check.pos;
  const security = find(d, 'enable_script_security');
  if (security) out.scriptSecurity = security.pos;
  const file = find(d, 'reload_file');
  if (file) {
    const named = file.args[0];
    const pidDir = find(d, 'use_pid_dir') !== undefined;
    out.file = {
      value: named ?? (pidDir ? '/run/keepalived/keepalived.reload' : '/run/keepalived.reload'),
      pos: file.pos,
      ...(named ? { named: true } : {}),
    };
  }
  return out;
}

export function buildModel(directives: readonly Directive[], memory?: CheckMemory): KeepalivedModel {
  const m: KeepalivedModel = {
    instances: [],
    syncGroups: [],
    scripts: [],
    virtualServerGroups: [],
    virtualServers: [],
    reload: {},
  };
  for (const d of directives) {
    switch (d.name) {
      case 'global_defs': {
        const r = val(find(d, 'router_id'));
        if (r) m.routerId = r;
        m.reload = reloadSettings(d, m.reload);
        break;
      }
      case 'vrrp_instance':
        m.instances.push(memo(memory?.instances, d, vrrpInstance));
        break;
      case 'vrrp_sync_group':
        m.syncGroups.push({
          name: d.args[0] ?? '',
          pos: d.pos,
          members: blockLines(find(d, 'group')).flatMap((l) =>
            l.words.map((w) => ({ value: w, pos: l.pos })),
          ),
        });
        break;
      case 'vrrp_script':
        m.scripts.push({ name: d.args[0] ?? '', pos: d.pos, hasCommand: find(d, 'script') !== undefined });
        break;
      case 'virtual_server_group':
        m.virtualServerGroups.push({
          name: d.args[0] ?? '',
          pos: d.pos,
          entries: blockLines(d).map((l) => ({ value: l.words, pos: l.pos })),
        });
        break;
      case 'virtual_server':
        m.virtualServers.push(memo(memory?.virtualServers, d, virtualServer));
        break;
    }
  }
  // keepalived names the default reload file after a top-level `instance` (global_data.c)
  if (m.reload.file && !m.reload.file.named && directives.some((d) => d.name === 'instance'))
    m.reload.file = { value: undefined, pos: m.reload.file.pos };
  return m;
}

/** A short human name for a virtual server: `fwmark 100`, `198.51.100.100:80`, `group web`. */
export function virtualServerLabel(key: VirtualServerKey): string {
  switch (key.kind) {
    case 'fwmark':
      return `fwmark ${key.raw}`;
    case 'group':
      return `group ${key.name}`;
    case 'ip':
      return key.port === undefined ? key.address : `${key.address}:${key.port}`;
  }
}
