// Lints for an evaluated keepalived configuration: the keyword table (directives.ts) applied to every
// line, then whole-configuration rules over the typed model. Pure; returns Diagnostics, never throws.

import { canonicalIP, expandRange, isIP, parseCidr } from '../address.js';
import { type Diagnostic, diag, type Position } from '../diagnostic.js';
import type { CheckMemory } from '../memory.js';
import { type ArgRule, LVS_SCHEDULERS, type Spec, TOP } from './directives.js';
import { argAt, type Directive } from './evaluate.js';
import { type KeepalivedModel, type VipEntry, type VirtualServer, virtualServerLabel } from './model.js';

const rel = (pos: Position, message: string) => ({ file: pos.file, line: pos.line, col: pos.col, message });

function checkArg(rule: ArgRule, raw: string, keyword: string, at: () => Position): Diagnostic | undefined {
  // keepalived reads numbers with strtoul/strtod, which skip leading blanks ("  64" in quotes is 64)
  const value = rule.kind === 'int' || rule.kind === 'number' ? raw.replace(/^[ \t]+/, '') : raw;
  switch (rule.kind) {
    case 'int': {
      if (!/^-?\d+$/.test(value)) {
        return diag('error', 'KA_INVALID_NUMBER', at(), `${keyword}: '${value}' is not a whole number`);
      }
      const n = Number(value);
      if (n < rule.min || n > rule.max) {
        return diag(
          'error',
          'KA_OUT_OF_RANGE',
          at(),
          `${keyword} ${value} is out of range: ${rule.what ?? 'value'} must be ${rule.min}-${rule.max}`,
        );
      }
      return undefined;
    }
    case 'number': {
      if (!/^\d+(\.\d+)?$/.test(value)) {
        return diag('error', 'KA_INVALID_NUMBER', at(), `${keyword}: '${value}' is not a number`);
      }
      const n = Number(value);
      if (n < rule.min || n > rule.max) {
        return diag(
          'error',
          'KA_OUT_OF_RANGE',
          at(),
          `${keyword} ${value} is out of range: must be ${rule.min}-${rule.max}`,
        );
      }
      return undefined;
    }
    case 'port': {
      if (!/^\d+$/.test(value) || Number(value) > 65535) {
        return diag('error', 'KA_OUT_OF_RANGE', at(), `${keyword}: '${value}' is not a port (0-65535)`);
      }
      return undefined;
    }
    case 'enum': {
      const ok = rule.caseInsensitive
        ? rule.values.some((v) => v.toLowerCase() === value.toLowerCase())
        : rule.values.includes(value);
      if (ok) return undefined;
      const sched = rule.values === LVS_SCHEDULERS;
      return diag(
        'error',
        sched ? 'KA_INVALID_SCHEDULER' : 'KA_INVALID_VALUE',
        at(),
        `${keyword}: '${value}' is not one of ${rule.values.join(', ')}` +
          (sched ? ' (keepalived would silently fall back to wlc)' : ''),
      );
    }
    case 'bool':
      return ['on', 'off', 'true', 'false', 'yes', 'no'].includes(value)
        ? undefined
        : diag(
            'error',
            'KA_INVALID_VALUE',
            at(),
            `${keyword}: '${value}' is not one of on, off, true, false, yes, no`,
          );
    case 'digest':
      return /^[0-9a-fA-F]{32}$/.test(value)
        ? undefined
        : diag(
            'error',
            'KA_BAD_DIGEST',
            at(),
            `digest '${value}' is not an MD5 sum (32 hex digits); genhash prints the right one`,
          );
    case 'any':
      return undefined;
  }
}

// Keyword tables as Maps: a keyword read from a file is a fresh string, and looking it up as an object
// property costs a trip through V8's string table each time, where a Map lookup only hashes it once.
// Built once at load from the constant tables (TOP and every table nested in it), never changed.
const TABLE_MAPS: ReadonlyMap<Readonly<Record<string, Spec>>, ReadonlyMap<string, Spec>> = (() => {
  const maps = new Map<Readonly<Record<string, Spec>>, ReadonlyMap<string, Spec>>();
  const add = (table: Readonly<Record<string, Spec>>) => {
    if (maps.has(table)) return;
    maps.set(table, new Map(Object.entries(table)));
    for (const spec of Object.values(table)) if (spec.children) add(spec.children);
  };
  add(TOP);
  return maps;
})();

function specOf(table: Readonly<Record<string, Spec>>, name: string): Spec | undefined {
  const m = TABLE_MAPS.get(table);
  return m ? m.get(name) : Object.hasOwn(table, name) ? table[name] : undefined;
}

function checkDirectives(
  nodes: readonly Directive[],
  table: Readonly<Record<string, Spec>>,
  context: string,
  out: Diagnostic[],
  memoTop?: WeakMap<Directive, Diagnostic[]>,
): void {
  let seenUnique: Map<string, Directive> | undefined;
  for (const d of nodes) {
    const spec = specOf(table, d.name);
    if (!spec) {
      out.push(
        diag(
          'error',
          'KA_UNKNOWN_KEYWORD',
          d.pos,
          `unknown keyword '${d.name}' in ${context} (keepalived ignores it${suggest(d.name, table)})`,
        ),
      );
      // nothing of its own is looked for: none, which the kept findings can say too
      memoTop?.set(d, []);
      continue;
    }
    if (spec.deprecated) {
      out.push(diag('warning', 'KA_DEPRECATED', d.pos, `'${d.name}' is deprecated: use ${spec.deprecated}`));
    }
    if (spec.unique) {
      seenUnique ??= new Map();
      const prev = seenUnique.get(d.name);
      if (prev) {
        out.push(
          diag(
            'warning',
            'KA_DUPLICATE_KEYWORD',
            d.pos,
            `'${d.name}' given twice in ${context}; the last one wins`,
            [rel(prev.pos, 'first given here')],
          ),
        );
      }
      seenUnique.set(d.name, d);
    }
    if (memoTop) {
      let own = memoTop.get(d);
      if (!own) {
        own = [];
        checkOne(d, spec, own);
        memoTop.set(d, own);
      }
      for (const x of own) out.push(x);
    } else checkOne(d, spec, out);
  }
}

function checkOne(d: Directive, spec: Spec, out: Diagnostic[]): void {
  {
    const n = d.args.length;
    if (spec.minArgs !== undefined && n < spec.minArgs) {
      out.push(
        diag(
          'error',
          'KA_MISSING_ARGUMENT',
          d.pos,
          `'${d.name}' needs ${spec.minArgs === 1 ? 'a value' : `${spec.minArgs} values`}`,
        ),
      );
    } else if (spec.maxArgs !== undefined && n > spec.maxArgs) {
      const extra = argAt(d, spec.maxArgs);
      out.push(
        diag(
          spec.maxArgs === 0 ? 'warning' : 'error',
          'KA_EXTRA_ARGUMENT',
          extra,
          `'${d.name}' takes ${spec.maxArgs === 0 ? 'no value' : `at most ${spec.maxArgs}`}; '${d.args.slice(spec.maxArgs).join(' ')}' is extra`,
        ),
      );
    }
    spec.args?.forEach((rule, i) => {
      const v = d.args[i];
      if (v === undefined) return;
      const problem = checkArg(rule, v, d.name, () => argAt(d, i));
      if (problem) out.push(problem);
    });
    if (d.children && !spec.block) {
      out.push(diag('error', 'KA_UNEXPECTED_BLOCK', d.pos, `'${d.name}' does not take a { } block`));
    } else if (!d.children && spec.block && !spec.blockOptional) {
      out.push(diag('error', 'KA_MISSING_BLOCK', d.pos, `'${d.name}' needs a { } block`));
    }
    if (d.children && spec.block === 'keywords' && spec.children) {
      const label = d.args.length > 0 ? `${d.name} ${d.args.join(' ')}` : d.name;
      checkDirectives(d.children, spec.children, label, out);
    }
  }
}

function suggest(word: string, table: Readonly<Record<string, Spec>>): string {
  let best: string | undefined;
  let bestDist = 3;
  for (const k of Object.keys(table)) {
    const dist = editDistance(word, k);
    if (dist < bestDist) {
      best = k;
      bestDist = dist;
    }
  }
  return best ? `; did you mean '${best}'?` : '';
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 3) return 99;
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diagPrev = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diagPrev + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagPrev = tmp;
    }
  }
  return prev[b.length]!;
}

function checkVipList(entries: VipEntry[], out: Diagnostic[]): void {
  for (const e of entries) {
    if (!parseCidr(e.text) && !expandRange(e.text)) {
      out.push(
        diag('error', 'KA_BAD_ADDRESS', e.pos, `'${e.text}' is not an IP address (with optional /prefix)`),
      );
    }
  }
}

function vipAddresses(e: VipEntry): string[] {
  return (expandRange(e.text) ?? [e.address]).map(canonicalIP);
}

/** Rules over the whole configuration (every file of one director together). */
function checkModel(m: KeepalivedModel, out: Diagnostic[], memory?: CheckMemory): void {
  const vrids = new Map<string, { name: string; pos: Position; peers: string[] }>();
  const vips = new Map<string, { name: string; pos: Position }>();
  const instanceNames = new Map<string, Position>();
  const scriptNames = new Set(m.scripts.map((s) => s.name));
  for (const sc of m.scripts) {
    if (!sc.hasCommand) {
      out.push(
        diag(
          'error',
          'KA_SCRIPT_NO_COMMAND',
          sc.pos,
          `vrrp_script ${sc.name} has no 'script' line: keepalived removes it, and every track_script naming it is ignored`,
        ),
      );
    }
  }
  for (const inst of m.instances) {
    const prevName = instanceNames.get(inst.name);
    if (prevName) {
      out.push(
        diag('error', 'KA_DUPLICATE_INSTANCE', inst.pos, `vrrp_instance ${inst.name} is defined twice`, [
          rel(prevName, 'first defined here'),
        ]),
      );
    }
    instanceNames.set(inst.name, inst.pos);
    if (!inst.virtualRouterId) {
      out.push(
        diag(
          'error',
          'KA_MISSING_VRID',
          inst.pos,
          `vrrp_instance ${inst.name} has no virtual_router_id (keepalived refuses it)`,
        ),
      );
    }
    if (!inst.interface && !inst.unicastSrcIp && inst.unicastPeers.length === 0) {
      out.push(
        diag(
          'warning',
          'KA_NO_INTERFACE',
          inst.pos,
          `vrrp_instance ${inst.name} has no interface: keepalived uses the default interface`,
        ),
      );
    }
    if (inst.authPass && inst.authPass.value.length > 8) {
      out.push(
        diag(
          'warning',
          'KA_AUTH_PASS_TRUNCATED',
          inst.authPass.pos,
          `auth_pass is ${inst.authPass.value.length} characters; keepalived uses only the first 8`,
        ),
      );
    }
    if (inst.state?.value === 'MASTER' && inst.authType?.value === 'AH') {
      out.push(
        diag(
          'warning',
          'KA_AH_MASTER',
          inst.state.pos,
          `vrrp_instance ${inst.name}: keepalived clears state MASTER when auth_type is AH and starts as BACKUP`,
        ),
      );
    }
    if (inst.state?.value === 'MASTER' && inst.nopreempt) {
      out.push(
        diag(
          'warning',
          'KA_NOPREEMPT_MASTER',
          inst.state.pos,
          `nopreempt has no effect with state MASTER: use state BACKUP on both directors`,
        ),
      );
    }
    if (inst.virtualRouterId && Number.isFinite(inst.virtualRouterId.value)) {
      // keepalived's check_vrid_conflicts (vrrp.c): one VRID space per address family, interface and
      // multicast or unicast; unicast instances clash only when they also share a peer
      const family =
        inst.directive.children?.some((c) => c.name === 'native_ipv6') || inst.vips[0]?.address.includes(':')
          ? 'ipv6'
          : 'ipv4';
      const unicast = inst.unicastPeers.length > 0;
      const key = `${family}/${unicast ? 'unicast' : 'multicast'}/${inst.interface?.value ?? '(default)'}/${inst.virtualRouterId.value}`;
      const clash = vrids.get(key);
      const prev =
        clash &&
        (!unicast || clash.peers.some((p) => inst.unicastPeers.some((q) => canonicalIP(q.value) === p)))
          ? clash
          : undefined;
      if (prev) {
        out.push(
          diag(
            'error',
            'KA_DUPLICATE_VRID',
            inst.virtualRouterId.pos,
            `virtual_router_id ${inst.virtualRouterId.value} is used by both ${prev.name} and ${inst.name} on interface ${inst.interface?.value ?? '(default)'}`,
            [rel(prev.pos, `${prev.name} uses it here`)],
          ),
        );
      } else if (!clash)
        vrids.set(key, {
          name: inst.name,
          pos: inst.virtualRouterId.pos,
          peers: inst.unicastPeers.map((q) => canonicalIP(q.value)),
        });
    }
    checkVipList(inst.vips, out);
    checkVipList(inst.excludedVips, out);
    for (const e of [...inst.vips, ...inst.excludedVips]) {
      for (const a of vipAddresses(e)) {
        const prev = vips.get(a);
        if (prev && prev.name !== inst.name) {
          out.push(
            diag(
              'error',
              'KA_DUPLICATE_VIP',
              e.pos,
              `address ${a} is in both ${prev.name} and ${inst.name}`,
              [rel(prev.pos, `${prev.name} has it here`)],
            ),
          );
        } else if (prev) {
          out.push(
            diag('warning', 'KA_DUPLICATE_VIP', e.pos, `address ${a} is listed twice in ${inst.name}`, [
              rel(prev.pos, 'first listed here'),
            ]),
          );
        } else vips.set(a, { name: inst.name, pos: e.pos });
      }
    }
    if (inst.vips.length === 0 && inst.excludedVips.length === 0) {
      out.push(
        diag(
          'warning',
          'KA_NO_VIP',
          inst.pos,
          `vrrp_instance ${inst.name} has no virtual_ipaddress: failing over moves nothing`,
        ),
      );
    }
    for (const s of inst.trackScripts) {
      if (!scriptNames.has(s.value)) {
        out.push(diag('error', 'KA_UNKNOWN_SCRIPT', s.pos, `track_script '${s.value}' names no vrrp_script`));
      }
    }
  }
  for (const g of m.syncGroups) {
    if (g.members.length === 1) {
      out.push(
        diag(
          'warning',
          'KA_SYNC_GROUP_SINGLE',
          g.pos,
          `vrrp_sync_group ${g.name} has only one member: it synchronises nothing`,
        ),
      );
    }
    for (const member of g.members) {
      if (!instanceNames.has(member.value)) {
        out.push(
          diag(
            'error',
            'KA_UNKNOWN_INSTANCE',
            member.pos,
            `vrrp_sync_group ${g.name} names vrrp_instance '${member.value}', which is not defined`,
          ),
        );
      }
    }
  }
  const groups = new Set(m.virtualServerGroups.map((g) => g.name));
  const seenVs = new Map<string, Position>();
  for (const vs of m.virtualServers) {
    const label = vs.label;
    if (vs.key.kind === 'group' && !groups.has(vs.key.name)) {
      out.push(
        diag(
          'error',
          'KA_UNKNOWN_GROUP',
          vs.pos,
          `virtual_server group '${vs.key.name}' names no virtual_server_group`,
        ),
      );
    }
    for (const x of virtualServerFindings(vs, memory)) out.push(x);
    const vsKey = virtualServerIdentity(vs);
    const prev = seenVs.get(vsKey);
    if (prev) {
      out.push(
        diag('error', 'KA_DUPLICATE_VIRTUAL_SERVER', vs.pos, `virtual_server ${label} is defined twice`, [
          rel(prev, 'first defined here'),
        ]),
      );
    } else seenVs.set(vsKey, vs.pos);
  }
}

// A virtual server's own findings (everything but duplicates and group references): with the
// owner's memory, once per directive (its model is built once per directive too).
function virtualServerFindings(vs: VirtualServer, memory?: CheckMemory): Diagnostic[] {
  let own = memory?.virtualServerFindings.get(vs.directive);
  if (!own) {
    own = [];
    checkVirtualServer(vs, own);
    memory?.virtualServerFindings.set(vs.directive, own);
  }
  return own;
}

/**
 * What makes two virtual servers the same service for keepalived (a second one is refused): the
 * label, and for address services the protocol (keepalived ignores protocol on fwmark services and
 * defaults it to UDP elsewhere, 2.2).
 */
export function virtualServerIdentity(vs: VirtualServer): string {
  return vs.key.kind === 'fwmark' ? vs.label : `${vs.label}/${vs.protocol?.value.toUpperCase() ?? 'UDP'}`;
}

/**
 * Whether a top-level virtual_server directive (with its model) has no finding of its own: the
 * keyword table's checks of its lines and the virtual server's own rules. Findings that depend on
 * the rest of the configuration (duplicates, group references) are not included.
 */
export function virtualServerIsClean(d: Directive, vs: VirtualServer, memory?: CheckMemory): boolean {
  const spec = specOf(TOP, d.name);
  if (!spec || spec.deprecated || spec.unique) return false;
  let own = memory?.topFindings.get(d);
  if (!own) {
    own = [];
    checkOne(d, spec, own);
    memory?.topFindings.set(d, own);
  }
  return own.length === 0 && virtualServerFindings(vs, memory).length === 0;
}

function checkVirtualServer(vs: VirtualServer, out: Diagnostic[]): void {
  {
    const label = virtualServerLabel(vs.key);
    const key = vs.key;
    if (key.kind === 'fwmark') {
      if (!Number.isFinite(key.mark)) {
        const hex = /^0x[0-9a-f]+$/i.test(key.raw)
          ? ` (keepalived reads fwmark in decimal: ${key.raw} is ${Number(key.raw)})`
          : '';
        out.push(
          diag(
            'error',
            'KA_BAD_FWMARK',
            argAt(vs.directive, 1),
            `fwmark '${key.raw}' is not a decimal number${hex}`,
          ),
        );
      } else if (key.mark === 0 || key.mark > 4294967295) {
        out.push(
          diag(
            'error',
            'KA_OUT_OF_RANGE',
            argAt(vs.directive, 1),
            `fwmark ${key.raw} is out of range: must be 1-4294967295`,
          ),
        );
      }
      if (vs.protocol) {
        out.push(
          diag(
            'warning',
            'KA_PROTOCOL_ON_FWMARK',
            vs.protocol.pos,
            `protocol is ignored on a fwmark virtual_server (the ferm rule decides what is marked)`,
          ),
        );
      }
    } else if (key.kind === 'group') {
      // Checked against the virtual_server_groups of the whole configuration, in checkModel.
    } else {
      if (!isIP(key.address))
        out.push(
          diag(
            'error',
            'KA_BAD_ADDRESS',
            vs.pos,
            `virtual_server address '${key.address}' is not an IP address`,
          ),
        );
      if (key.port !== undefined && !(Number.isInteger(key.port) && key.port >= 0 && key.port <= 65535)) {
        out.push(
          diag(
            'error',
            'KA_OUT_OF_RANGE',
            argAt(vs.directive, 1),
            `virtual_server port '${vs.directive.args[1]}' is not a port (0-65535)`,
          ),
        );
      }
    }
    if (key.kind !== 'fwmark' && !vs.protocol) {
      out.push(
        diag(
          'warning',
          'KA_NO_PROTOCOL',
          vs.pos,
          `virtual_server ${label} has no protocol: keepalived 2.2 picks one for you (UDP); write protocol TCP or UDP`,
        ),
      );
    }
    if (!vs.lvsMethod) {
      out.push(
        diag(
          'warning',
          'KA_NO_LVS_METHOD',
          vs.pos,
          `virtual_server ${label} has no lvs_method (lb_kind): keepalived defaults to NAT, the reference setup uses DR`,
        ),
      );
    }
    if (vs.realServers.length === 0 && !vs.sorryServer) {
      out.push(
        diag(
          'warning',
          'KA_NO_REAL_SERVER',
          vs.pos,
          `virtual_server ${label} has no real_server and no sorry_server`,
        ),
      );
    }
    const seenRs = new Map<string, Position>();
    for (const rs of vs.realServers) {
      if (!isIP(rs.address)) {
        out.push(
          diag('error', 'KA_BAD_ADDRESS', rs.pos, `real_server address '${rs.address}' is not an IP address`),
        );
      }
      if (rs.port !== undefined && !(Number.isInteger(rs.port) && rs.port >= 0 && rs.port <= 65535)) {
        out.push(
          diag(
            'error',
            'KA_OUT_OF_RANGE',
            argAt(rs.directive, 1),
            `real_server port '${rs.directive.args[1]}' is not a port (0-65535)`,
          ),
        );
      }
      const method = (rs.lvsMethod ?? vs.lvsMethod)?.value.toUpperCase();
      if (key.kind === 'fwmark' && rs.port && (method === 'DR' || method === 'TUN')) {
        out.push(
          diag(
            'warning',
            'KA_FWMARK_RS_PORT',
            argAt(rs.directive, 1),
            `real_server ${rs.address} port ${rs.port} is ignored: a fwmark service with lvs_method ${method} ` +
              `forwards to the port the client asked for, and keepalived clears this one; leave the port out`,
          ),
        );
      }
      const rsKey = `${canonicalIP(rs.address)}:${rs.port ?? 0}`;
      const prevRs = seenRs.get(rsKey);
      if (prevRs) {
        out.push(
          diag(
            'error',
            'KA_DUPLICATE_REAL_SERVER',
            rs.pos,
            `real_server ${rs.address} ${rs.port ?? ''} appears twice in virtual_server ${label}`.replace(
              '  ',
              ' ',
            ),
            [rel(prevRs, 'first listed here')],
          ),
        );
      } else seenRs.set(rsKey, rs.pos);
      for (const c of rs.checkers) {
        if ((c.type === 'HTTP_GET' || c.type === 'SSL_GET') && c.urls.length === 0) {
          out.push(
            diag(
              'error',
              'KA_CHECKER_NO_URL',
              c.pos,
              `${c.type} has no url block: keepalived has nothing to check`,
            ),
          );
        }
        if (
          key.kind === 'fwmark' &&
          (rs.port ?? 0) === 0 &&
          !c.connectPort &&
          ['HTTP_GET', 'SSL_GET', 'TCP_CHECK', 'SMTP_CHECK'].includes(c.type)
        ) {
          out.push(
            diag(
              'error',
              'KA_CHECKER_NO_PORT',
              c.pos,
              `${c.type} on a port-0 real server of a fwmark service needs connect_port`,
            ),
          );
        }
      }
    }
  }
}

/** What keepalived needs for a reload to be safe from a bad or half-saved file (see ReloadSettings). */
function checkReloadSettings(m: KeepalivedModel, first: Position | undefined, out: Diagnostic[]): void {
  const at = m.reload.globalDefs ?? first;
  if (!at) return;
  const where = m.reload.globalDefs ? 'global_defs' : 'this configuration (no global_defs)';
  if (!m.reload.checkConfig) {
    out.push(
      diag(
        'warning',
        'KA_NO_RELOAD_CHECK_CONFIG',
        at,
        `${where} has no reload_check_config: a reload that reads an invalid file makes keepalived exit, and the other director takes its VIPs; add the line \`reload_check_config\` to global_defs so that keepalived (>= 2.2.0) checks a new configuration first and keeps running the old one otherwise (it then refuses any configuration keepalived -t prints a message for, warnings included: clear them first)`,
      ),
    );
  }
  if (!m.reload.file) {
    out.push(
      diag(
        'warning',
        'KA_NO_RELOAD_FILE',
        at,
        `${where} has no reload_file: lvssync cannot tell when keepalived has finished reading its files after a reload, so a file saved meanwhile may be loaded unchecked; add the line \`reload_file /run/keepalived.reload\` to global_defs (keepalived >= 2.2.0)`,
      ),
    );
  } else if (m.reload.file.value === undefined) {
    out.push(
      diag(
        'warning',
        'KA_NO_RELOAD_FILE',
        m.reload.file.pos,
        'reload_file without a path under an instance name: give it a path (reload_file /run/keepalived/NAME.reload) so that lvssync knows which file keepalived removes',
      ),
    );
  }
}

/** The keywords that make keepalived run a program (keepalived.conf(5)). */
export const RUNS_SCRIPT: ReadonlySet<string> = new Set([
  'script',
  'notify',
  'notify_master',
  'notify_backup',
  'notify_fault',
  'notify_stop',
  'notify_deleted',
  'notify_master_rx_lower_pri',
  'notify_up',
  'notify_down',
  'misc_path',
]);

/** The first directive that makes keepalived run a program, breadth-first, without recursion. */
function firstScript(directives: readonly Directive[]): Directive | undefined {
  const queue = [...directives];
  for (let i = 0; i < queue.length && i < 100_000; i++) {
    const d = queue[i]!;
    if (RUNS_SCRIPT.has(d.name)) return d;
    if (d.children) queue.push(...d.children);
  }
  return undefined;
}

/** Scripts run as root unless enable_script_security says otherwise: what a push can make a peer run. */
function checkScriptSecurity(m: KeepalivedModel, directives: readonly Directive[], out: Diagnostic[]): void {
  if (m.reload.scriptSecurity) return;
  const d = firstScript(directives);
  if (!d) return;
  out.push(
    diag(
      'warning',
      'KA_NO_SCRIPT_SECURITY',
      d.pos,
      `'${d.name}' makes keepalived run a program, as root while global_defs has no enable_script_security: whoever can push this set can run commands as root on both directors; add \`enable_script_security\` (and script_user) to global_defs`,
    ),
  );
}

export function validateKeepalived(
  directives: readonly Directive[],
  model: KeepalivedModel,
  memory?: CheckMemory,
): Diagnostic[] {
  const out: Diagnostic[] = [];
  checkDirectives(directives, TOP, 'the top level', out, memory?.topFindings);
  checkModel(model, out, memory);
  checkReloadSettings(model, directives[0]?.pos, out);
  checkScriptSecurity(model, directives, out);
  return out;
}

/** -1, 0, 1: keepalived versions compared field by field ("2.2.7" < "2.2.10" < "2.3.0"). */
export function compareVersions(a: string, b: string): number {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return 0;
}

/** The directives of a set whose keyword came after keepalived 2.2.7, with the release that added it. */
export function versionedKeywords(directives: readonly Directive[]): { d: Directive; since: string }[] {
  const out: { d: Directive; since: string }[] = [];
  const queue: [readonly Directive[], Readonly<Record<string, Spec>>][] = [[directives, TOP]];
  for (let q = 0; q < queue.length && q < 100_000; q++) {
    const [nodes, table] = queue[q]!;
    for (const d of nodes) {
      const spec = specOf(table, d.name);
      if (!spec) continue;
      if (spec.since) out.push({ d, since: spec.since });
      if (d.children && spec.children) queue.push([d.children, spec.children]);
    }
  }
  return out;
}

/**
 * Keywords newer than the keepalived installed on a director (`version`, from keepalived --version;
 * `host` names the director in the message): a real error there, as keepalived would not read them.
 */
export function checkVersions(
  found: readonly { d: Directive; since: string }[],
  version: string,
  host: string,
): Diagnostic[] {
  return found
    .filter(({ since }) => compareVersions(version, since) < 0)
    .map(({ d, since }) =>
      diag(
        'error',
        'KA_NEEDS_VERSION',
        d.pos,
        `'${d.name}' needs keepalived >= ${since}; ${host} runs ${version}, which does not read it`,
      ),
    );
}
