// The audit's judgements, over data the shell gathered from both directors: configuration drift
// (each managed file against what the primary renders for that director), live IPVS against the
// keepalived configuration and between the directors, VIP placement, live MARK rules against
// ferm.conf. Findings are data; each names the host, the file:line it relates to, and why. Pure.

import { canonicalIP } from './address.js';
import type { MarkRule } from './ferm/marks.js';
import { type IpvsService, type IpvsTable, serviceLabel } from './ipvsadm.js';
import type { KeepalivedModel, VirtualServer } from './keepalived/model.js';
import type { ServiceState } from './protocol.js';
import { diffRedacted } from './redact.js';

export type Severity = 'ok' | 'warning' | 'critical' | 'unknown';

export interface Finding {
  check: 'drift' | 'ipvs' | 'vip' | 'marks' | 'pending-reload' | 'digest' | 'peer' | 'services';
  severity: Severity;
  host: string;
  code: string;
  message: string;
  file?: string;
  line?: number;
  /** A unified diff (secrets redacted) for drift. */
  diff?: string;
}

const RANK: Record<Severity, number> = { ok: 0, warning: 1, unknown: 2, critical: 3 };

/** Nagios/Icinga convention: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. */
export function exitCodeOf(findings: readonly Finding[]): number {
  const worst = worstOf(findings);
  return { ok: 0, warning: 1, critical: 2, unknown: 3 }[worst];
}

export function worstOf(findings: readonly Finding[]): Severity {
  let w: Severity = 'ok';
  for (const f of findings) if (RANK[f.severity] > RANK[w]) w = f.severity;
  return w;
}

// --- drift -----------------------------------------------------------------------------------

/**
 * `wanted`: what the primary renders for `host`; `actual`: what `host` has (managed files only).
 * `salt` makes the redaction hashes of one report unlinkable to another's.
 */
export function auditDrift(
  host: string,
  wanted: ReadonlyMap<string, string>,
  actual: ReadonlyMap<string, string>,
  salt: string,
): Finding[] {
  const out: Finding[] = [];
  for (const [p, text] of [...wanted].sort()) {
    const have = actual.get(p);
    if (have === undefined) {
      out.push({
        check: 'drift',
        severity: 'critical',
        host,
        code: 'DRIFT_MISSING',
        file: p,
        message: `${p} is missing on ${host}`,
        diff: diffRedacted(p, null, text, { before: host, after: 'primary (rendered)' }, salt),
      });
    } else if (have !== text) {
      const line = firstDifferentLine(have, text);
      out.push({
        check: 'drift',
        severity: 'critical',
        host,
        code: 'DRIFT_DIFFERENT',
        file: p,
        line,
        message: `${p} on ${host} differs from what the primary renders for it (first at line ${line})`,
        diff: diffRedacted(p, have, text, { before: host, after: 'primary (rendered)' }, salt),
      });
    }
  }
  for (const [p, text] of [...actual].sort()) {
    if (!wanted.has(p)) {
      out.push({
        check: 'drift',
        severity: 'warning',
        host,
        code: 'DRIFT_EXTRA',
        file: p,
        message: `${p} exists on ${host} but not on the primary`,
        diff: diffRedacted(p, text, null, { before: host, after: 'primary (rendered)' }, salt),
      });
    }
  }
  return out;
}

function firstDifferentLine(a: string, b: string): number {
  const x = a.split('\n');
  const y = b.split('\n');
  for (let i = 0; i < Math.max(x.length, y.length); i++) if (x[i] !== y[i]) return i + 1;
  return 1;
}

// --- VIPs ------------------------------------------------------------------------------------

/** Every VIP of the configuration on exactly one director. `addresses`: host -> its addresses. */
export function auditVips(
  model: KeepalivedModel,
  addresses: ReadonlyMap<string, readonly string[]>,
): Finding[] {
  const out: Finding[] = [];
  const holders = (ip: string) =>
    [...addresses].filter(([, a]) => a.map(canonicalIP).includes(ip)).map(([h]) => h);
  for (const inst of model.instances) {
    for (const v of [...inst.vips, ...inst.excludedVips]) {
      const ip = canonicalIP(v.address);
      const h = holders(ip);
      const base = { check: 'vip' as const, host: h.join(',') || '-', file: v.pos.file, line: v.pos.line };
      if (h.length === 1)
        out.push({
          ...base,
          severity: 'ok',
          code: 'VIP_OK',
          message: `${v.address} (${inst.name}) is on ${h[0]}`,
        });
      else if (h.length === 0)
        out.push({
          ...base,
          severity: 'critical',
          code: 'VIP_NONE',
          message: `${v.address} (${inst.name}) is on no director: outage`,
        });
      else
        out.push({
          ...base,
          severity: 'critical',
          code: 'VIP_SPLIT_BRAIN',
          message: `${v.address} (${inst.name}) is on ${h.join(' and ')}: split brain`,
        });
    }
  }
  return out;
}

// --- marks -----------------------------------------------------------------------------------

const markKey = (m: MarkRule) =>
  `${m.table}/${m.chain}/${m.mark}/${(m.destination ?? '*').replace(/\/32$/, '')}/${m.protocol ?? '*'}/${m.dports.join(',')}`;

/** The MARK rules ferm.conf makes (`ferm --noexec --lines`) against the live mangle table. */
export function auditMarks(
  host: string,
  wanted: readonly MarkRule[],
  live: readonly MarkRule[],
  fermFile: string,
): Finding[] {
  const out: Finding[] = [];
  const have = new Set(live.map(markKey));
  const want = new Set(wanted.map(markKey));
  for (const m of wanted) {
    if (!have.has(markKey(m))) {
      out.push({
        check: 'pending-reload',
        severity: 'critical',
        host,
        code: 'MARK_NOT_LIVE',
        file: fermFile,
        message: `MARK ${m.mark} (0x${m.mark.toString(16)}) for ${m.destination ?? 'any'} is in ${fermFile} but not in ${host}'s live mangle table: ferm was not reloaded`,
      });
    }
  }
  for (const m of live) {
    if (!want.has(markKey(m))) {
      out.push({
        check: 'pending-reload',
        severity: 'warning',
        host,
        code: 'MARK_STALE',
        file: fermFile,
        message: `live MARK ${m.mark} for ${m.destination ?? 'any'} on ${host} is not in ${fermFile} (stale rule: ferm was not reloaded)`,
      });
    }
  }
  return out;
}

// --- keepalived reload ---------------------------------------------------------------------

/**
 * keepalived files modified after keepalived last read its configuration (its start, or the last
 * reload lvssync made): the running VRRP/IPVS state is not what the files say.
 */
export function auditKeepalivedLoad(
  host: string,
  mtimes: Readonly<Record<string, number>>,
  loadedAt: number | undefined,
  keepalivedFiles: ReadonlySet<string>,
): Finding[] {
  if (loadedAt === undefined) return [];
  const out: Finding[] = [];
  for (const [p, m] of Object.entries(mtimes).sort()) {
    if (!keepalivedFiles.has(p) || m <= loadedAt + 1000) continue;
    out.push({
      check: 'pending-reload',
      severity: 'warning',
      host,
      code: 'KEEPALIVED_RELOAD_PENDING',
      file: p,
      message: `${p} on ${host} changed ${Math.round((m - loadedAt) / 1000)} s after keepalived last read its configuration: reload pending`,
    });
  }
  return out;
}

/**
 * Files whose content differs from what each service last loaded through lvssync (a file edited and
 * put back is not pending). keepalived without such a record falls back to auditKeepalivedLoad.
 */
export function auditPendingByContent(
  host: string,
  pending: Readonly<Record<string, { at: number; changed: readonly string[] }>>,
): Finding[] {
  const out: Finding[] = [];
  for (const [service, p] of Object.entries(pending).sort()) {
    for (const file of p.changed) {
      out.push({
        check: 'pending-reload',
        severity: 'warning',
        host,
        code: `${service.toUpperCase().replace(/[^A-Z0-9]+/g, '_')}_RELOAD_PENDING`,
        file,
        message: `${file} on ${host} is not what ${service} loaded (its last reload by lvssync): reload pending`,
      });
    }
  }
  return out;
}

/** A service that is not running on a director is an outage in the making, whatever else is in sync. */
export function auditServices(
  host: string,
  services: readonly ServiceState[],
  iso: (ms: number) => string,
): Finding[] {
  return services
    .filter((s) => s.up === false)
    .map((s) => ({
      check: 'services' as const,
      severity: 'critical' as const,
      host,
      code: 'SERVICE_DOWN',
      message: `${s.service} is not running on ${host}${s.since ? ` (seen down since ${iso(s.since)})` : ''}${s.lastReload ? `; the last reload lvssync made of it was at ${iso(s.lastReload)}` : ''}${s.detail ? `: ${s.detail}` : ''}`,
    }));
}

// --- IPVS ------------------------------------------------------------------------------------

const METHOD_OF: Record<string, string> = { DR: 'Route', NAT: 'Masq', TUN: 'Tunnel' };

function vsKey(vs: VirtualServer): string | undefined {
  const k = vs.key;
  if (k.kind === 'fwmark') return Number.isFinite(k.mark) ? `FWM ${k.mark}` : undefined;
  if (k.kind === 'ip') {
    const proto = (vs.protocol?.value ?? 'UDP').toUpperCase();
    const host = canonicalIP(k.address).includes(':')
      ? `[${canonicalIP(k.address)}]`
      : canonicalIP(k.address);
    return `${proto} ${host}:${k.port ?? 0}`;
  }
  return undefined;
}

function ipvsKey(s: IpvsService): string {
  if (s.protocol === 'FWM') return `FWM ${s.fwmark}`;
  const a = canonicalIP(s.address ?? '');
  return `${s.protocol} ${a.includes(':') ? `[${a}]` : a}:${s.port}`;
}

/**
 * The live table of `host` against the configuration: services present with their scheduler and
 * persistence, real servers with weight and forwarding method, stale services, sorry servers.
 */
export function auditIpvs(host: string, model: KeepalivedModel, table: IpvsTable): Finding[] {
  const out: Finding[] = [];
  const live = new Map(table.services.map((s) => [ipvsKey(s), s]));
  const configured = new Set<string>();
  for (const u of table.unparsed) {
    out.push({
      check: 'ipvs',
      severity: 'unknown',
      host,
      code: 'IPVS_UNREADABLE',
      message: `ipvsadm output line ${u.line} not understood: ${u.text.trim()}`,
    });
  }
  for (const u of table.unsupported) {
    out.push({
      check: 'ipvs',
      severity: 'unknown',
      host,
      code: 'IPVS_UNSUPPORTED',
      message: `ipvsadm output line ${u.line} is ${u.reason}; it is not compared: ${u.text.trim()}`,
    });
  }
  for (const vs of model.virtualServers) {
    const key = vsKey(vs);
    if (!key) continue;
    configured.add(key);
    const at = { file: vs.pos.file, line: vs.pos.line };
    const s = live.get(key);
    if (!s) {
      out.push({
        check: 'ipvs',
        severity: 'critical',
        host,
        code: 'IPVS_SERVICE_MISSING',
        ...at,
        message: `virtual_server ${vs.label} is not in ${host}'s IPVS table: keepalived did not load it (reload pending or refused)`,
      });
      continue;
    }
    const sched = vs.lvsSched?.value ?? 'wlc';
    if (s.scheduler && s.scheduler !== sched) {
      out.push({
        check: 'ipvs',
        severity: 'warning',
        host,
        code: 'IPVS_SCHEDULER',
        ...at,
        message: `${vs.label}: live scheduler ${s.scheduler}, configured ${sched} (reload pending)`,
      });
    }
    const pt = vs.persistenceTimeout?.value;
    if ((pt ?? undefined) !== (s.persistent ?? undefined)) {
      out.push({
        check: 'ipvs',
        severity: 'warning',
        host,
        code: 'IPVS_PERSISTENCE',
        ...at,
        message: `${vs.label}: live persistence ${s.persistent ?? 'none'}, configured ${pt ?? 'none'}`,
      });
    }
    const liveReals = new Map(s.reals.map((r) => [`${canonicalIP(r.address)}:${r.port}`, r]));
    const wantReals = new Set<string>();
    for (const rs of vs.realServers) {
      const k = `${canonicalIP(rs.address)}:${rs.port ?? 0}`;
      wantReals.add(k);
      const r = liveReals.get(k);
      const rat = { file: rs.pos.file, line: rs.pos.line };
      const checker = rs.checkers[0];
      if (!r) {
        out.push({
          check: 'ipvs',
          severity: 'warning',
          host,
          code: 'IPVS_REAL_ABSENT',
          ...rat,
          message: `${vs.label}: real server ${rs.address} is not in the table${checker ? `: expected while it fails its ${checker.type} check` : ''}`,
        });
        continue;
      }
      const weight = rs.weight?.value ?? 1;
      if (Number.isFinite(r.weight) && r.weight !== weight) {
        out.push({
          check: 'ipvs',
          severity: 'warning',
          host,
          code: r.weight === 0 ? 'IPVS_REAL_INHIBITED' : 'IPVS_WEIGHT',
          ...rat,
          message:
            r.weight === 0
              ? `${vs.label}: real server ${rs.address} has weight 0: inhibited after a failing health check`
              : `${vs.label}: real server ${rs.address} has live weight ${r.weight}, configured ${weight}`,
        });
      }
      const method = METHOD_OF[(rs.lvsMethod ?? vs.lvsMethod)?.value.toUpperCase() ?? 'NAT'];
      if (method && r.forward !== method && r.forward !== 'Local') {
        out.push({
          check: 'ipvs',
          severity: 'warning',
          host,
          code: 'IPVS_FORWARD',
          ...rat,
          message: `${vs.label}: real server ${rs.address} forwards by ${r.forward}, configured ${method}`,
        });
      }
    }
    for (const [k, r] of liveReals) {
      const ss = vs.sorryServer?.value;
      const isSorry = ss && `${canonicalIP(ss.address)}:${ss.port ?? 0}` === k;
      if (!wantReals.has(k) && !isSorry) {
        out.push({
          check: 'ipvs',
          severity: 'warning',
          host,
          code: 'IPVS_REAL_STALE',
          ...at,
          message: `${vs.label}: live real server ${r.address}:${r.port} is not in the configuration (stale)`,
        });
      }
    }
    if (vs.sorryServer && s.reals.length === 0) {
      out.push({
        check: 'ipvs',
        severity: 'critical',
        host,
        code: 'IPVS_SORRY_MISSING',
        file: vs.sorryServer.pos.file,
        line: vs.sorryServer.pos.line,
        message: `${vs.label}: no real server and no sorry server in the table: the service answers nobody`,
      });
    } else if (vs.realServers.length > 0 && s.reals.length === 0 && !vs.sorryServer) {
      out.push({
        check: 'ipvs',
        severity: 'critical',
        host,
        code: 'IPVS_NO_REAL',
        ...at,
        message: `${vs.label}: every real server is out of the table and there is no sorry_server`,
      });
    }
  }
  for (const s of table.services) {
    if (!configured.has(ipvsKey(s))) {
      out.push({
        check: 'ipvs',
        severity: 'warning',
        host,
        code: 'IPVS_SERVICE_STALE',
        message: `live ${serviceLabel(s)} is not in the configuration (stale virtual service)`,
      });
    }
  }
  return out;
}

/** The two directors' tables against each other (what a failover would change). */
export function auditIpvsPair(a: string, ta: IpvsTable, b: string, tb: IpvsTable): Finding[] {
  const out: Finding[] = [];
  const fmt = (s: IpvsService) =>
    `${ipvsKey(s)} ${s.scheduler} p=${s.persistent ?? '-'} [${s.reals
      .map((r) => `${canonicalIP(r.address)}:${r.port}/${r.forward}/${r.weight}`)
      .sort()
      .join(' ')}]`;
  const ma = new Map(ta.services.map((s) => [ipvsKey(s), fmt(s)]));
  const mb = new Map(tb.services.map((s) => [ipvsKey(s), fmt(s)]));
  for (const k of new Set([...ma.keys(), ...mb.keys()])) {
    if (ma.get(k) !== mb.get(k)) {
      out.push({
        check: 'ipvs',
        severity: 'warning',
        host: `${a},${b}`,
        code: 'IPVS_PAIR_DIFFERS',
        message: `${k} differs between ${a} (${ma.get(k) ?? 'absent'}) and ${b} (${mb.get(k) ?? 'absent'})`,
      });
    }
  }
  return out;
}
