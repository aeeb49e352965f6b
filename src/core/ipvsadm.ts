// Reads the live IPVS table as ipvsadm prints it: `ipvsadm -Ln` (also with --stats, --rate,
// --exact, --persistent-conn, and -L with service names), `ipvsadm -Sn` (the save format) and the
// kernel's /proc/net/ip_vs (hex). Pure; never throws: what belongs to another IPVS (the Alibaba and
// DPVS forks' FullNat/SNAT) or is not a service table comes back in `unsupported`, named as such;
// any other line it cannot read in `unparsed`, with its line number.

import { canonicalIP } from './address.js';

export type IpvsProtocol = 'TCP' | 'UDP' | 'SCTP' | 'FWM';
export type IpvsForward = 'Route' | 'Masq' | 'Tunnel' | 'Local';

export interface IpvsRealServer {
  address: string;
  port: number;
  forward: IpvsForward;
  weight: number;
  activeConn?: number;
  inactConn?: number;
  line: number;
}

export interface IpvsService {
  protocol: IpvsProtocol;
  /** Address for TCP/UDP/SCTP (IPv6 without brackets); undefined for FWM. */
  address?: string;
  port?: number;
  fwmark?: number;
  family: 'ipv4' | 'ipv6';
  scheduler: string;
  persistent?: number;
  netmask?: string;
  flags: string[];
  reals: IpvsRealServer[];
  line: number;
}

export interface IpvsTable {
  services: IpvsService[];
  unparsed: { line: number; text: string }[];
  /** Lines read but not usable for a comparison with keepalived's configuration, with the reason. */
  unsupported: { line: number; text: string; reason: string }[];
}

/** Forwarding methods of IPVS forks (Alibaba LVS, DPVS) that the Linux kernel and keepalived lack. */
const FORK_FORWARD: Record<string, string> = {
  FullNat: 'forwarding method FullNat (Alibaba LVS / DPVS fork of IPVS, not the Linux kernel)',
  SNAT: 'forwarding method SNAT (DPVS fork of IPVS, not the Linux kernel)',
  '(null)': "forwarding method '(null)' (an ipvsadm of an IPVS fork, FullNat in the Alibaba/DPVS builds)",
};

/** Service names ipvsadm -L prints without -n, for the ports LVS sites balance most. */
const PORT_NAMES: Record<string, number> = {
  ftp: 21,
  ssh: 22,
  smtp: 25,
  domain: 53,
  http: 80,
  pop3: 110,
  imap2: 143,
  ldap: 389,
  https: 443,
  submission: 587,
  ldaps: 636,
  imaps: 993,
  pop3s: 995,
  'ms-sql-s': 1433,
  mysql: 3306,
  postgresql: 5432,
  'http-alt': 8080,
};

const FORWARD_OF_SAVE: Record<string, IpvsForward> = { '-g': 'Route', '-m': 'Masq', '-i': 'Tunnel' };

/** `192.0.2.1:80`, `[2001:db8::1]:80` -> address and port. */
function splitHostPort(s: string): { address: string; port: number } | undefined {
  const v6 = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(s);
  if (v6) return { address: v6[1]!.toLowerCase(), port: Number(v6[2]) };
  const v4 = /^([0-9.]+|[A-Za-z0-9.-]+):(\d+|[A-Za-z][\w-]*)$/.exec(s);
  if (!v4) return undefined;
  const port = v4[2]!;
  return { address: v4[1]!, port: /^\d+$/.test(port) ? Number(port) : (PORT_NAMES[port] ?? Number.NaN) };
}

/** /proc/net/ip_vs: `C0A80016:0CEA`, `[2620:0000:...:0001]:0050` (hex address and port). */
function splitProcHostPort(s: string): { address: string; port: number } | undefined {
  const v4 = /^([0-9A-F]{8}):([0-9A-F]{4})$/.exec(s);
  if (v4) {
    const n = Number.parseInt(v4[1]!, 16);
    const address = [24, 16, 8, 0].map((b) => (n >>> b) & 255).join('.');
    return { address, port: Number.parseInt(v4[2]!, 16) };
  }
  const v6 = /^\[((?:[0-9a-f]{4}:){7}[0-9a-f]{4})\]:([0-9A-F]{4})$/i.exec(s);
  if (v6) return { address: canonicalIP(v6[1]!), port: Number.parseInt(v6[2]!, 16) };
  return undefined;
}

/** Whether a listing is the kernel's /proc/net/ip_vs (hex) rather than ipvsadm's. */
function isProcListing(lines: string[]): boolean {
  for (const l of lines) {
    const m = /^(TCP|UDP|SCTP)\s+(\S+)/.exec(l);
    if (m) return splitProcHostPort(m[2]!) !== undefined;
  }
  return false;
}

/** Sets a service's address and port from `addr:port` or `[v6]:port`; false when unreadable. */
function placeService(svc: IpvsService, where: string, proc = false): boolean {
  const hp = proc ? splitProcHostPort(where) : splitHostPort(where);
  if (!hp) return false;
  svc.address = hp.address;
  svc.port = hp.port;
  if (hp.address.includes(':')) svc.family = 'ipv6';
  return true;
}

/** A counter as ipvsadm prints it without --exact: 1234, 12K, 3M, 4G. */
export function parseCount(s: string): number {
  const m = /^(\d+)([KMGT]?)$/.exec(s);
  if (!m) return Number.NaN;
  const mult = { '': 1, K: 1e3, M: 1e6, G: 1e9, T: 1e12 }[m[2] as '' | 'K' | 'M' | 'G' | 'T'];
  return Number(m[1]) * mult;
}

function parseServiceFlags(words: string[], svc: IpvsService): boolean {
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    if (w === 'persistent') {
      svc.persistent = Number(words[++i]);
      if (!Number.isFinite(svc.persistent)) return false;
    } else if (w === 'mask') {
      svc.netmask = words[++i] ?? '';
    } else if (w === 'IPv6') {
      svc.family = 'ipv6';
    } else svc.flags.push(w);
  }
  return true;
}

/** `ipvsadm -Ln` (any of its list variants). */
export function parseIpvsadmList(text: string): IpvsTable {
  const services: IpvsService[] = [];
  const unparsed: IpvsTable['unparsed'] = [];
  const unsupported: IpvsTable['unsupported'] = [];
  let mode: 'list' | 'stats' | 'rate' = 'list';
  let current: IpvsService | undefined;
  const lines = text.split('\n');
  const proc = isProcListing(lines);
  const first = lines.findIndex((l) => l.trim() !== '');
  const head = lines[first]?.trim() ?? '';
  // whole outputs that are not a service table: said once, for their first line
  if (head === 'IPVS connection entries' || /^Total\s+Incoming\s+Outgoing/.test(head)) {
    unsupported.push({
      line: first + 1,
      text: lines[first]!,
      reason:
        head === 'IPVS connection entries'
          ? 'the connection table (ipvsadm -Lc), not the service table'
          : 'the totals of /proc/net/ip_vs_stats, not the service table',
    });
    return { services, unparsed, unsupported };
  }
  lines.forEach((raw, i) => {
    const line = i + 1;
    const t = raw.trim();
    if (t === '' || t.startsWith('IP Virtual Server version')) return;
    if (t.startsWith('Prot LocalAddress:Port')) {
      mode = / Conns /.test(t) ? 'stats' : / CPS /.test(t) ? 'rate' : 'list';
      return;
    }
    if (/^-> RemoteAddress:Port/.test(t)) return;
    const svcMatch = /^(TCP|UDP|SCTP|FWM)\s+(\S+)\s*(.*)$/.exec(t);
    if (svcMatch && !raw.startsWith(' ')) {
      const [, proto, where, rest] = svcMatch;
      const words = rest!.split(/\s+/).filter(Boolean);
      const svc: IpvsService = {
        protocol: proto as IpvsProtocol,
        family: 'ipv4',
        scheduler: '',
        flags: [],
        reals: [],
        line,
      };
      if (proto === 'FWM') {
        // the kernel's /proc/net/ip_vs prints the mark in hex (%08X)
        svc.fwmark = proc && /^[0-9A-F]{8}$/.test(where!) ? Number.parseInt(where!, 16) : Number(where);
        if (!Number.isInteger(svc.fwmark)) {
          unparsed.push({ line, text: raw });
          return;
        }
      } else if (where!.startsWith('[(null)]')) {
        unsupported.push({
          line,
          text: raw,
          reason: "address '(null)' (the ipvsadm of DPVS, which this kernel's IPVS does not print)",
        });
        svc.address = '(null)';
        svc.port = Number(/:(\d+)$/.exec(where!)?.[1]);
      } else {
        if (!placeService(svc, where!, proc)) {
          unparsed.push({ line, text: raw });
          return;
        }
        if (!proc && Number.isNaN(svc.port))
          unsupported.push({
            line,
            text: raw,
            reason: 'a service name lvssync does not know instead of a port: run ipvsadm with -n',
          });
      }
      if (mode === 'list') {
        if (proto === 'FWM' && words[0] === 'IPv6') {
          svc.family = 'ipv6';
          words.shift();
        }
        svc.scheduler = words.shift() ?? '';
        if (!parseServiceFlags(words, svc)) {
          unparsed.push({ line, text: raw });
          return;
        }
      }
      services.push(svc);
      current = svc;
      return;
    }
    const rs = /^->\s+(\S+)\s*(.*)$/.exec(t);
    if (rs && current) {
      const hp = rs[1]!.startsWith('[(null)]')
        ? { address: '(null)', port: Number(/:(\d+)$/.exec(rs[1]!)?.[1]) }
        : proc
          ? splitProcHostPort(rs[1]!)
          : splitHostPort(rs[1]!);
      if (!hp) {
        unparsed.push({ line, text: raw });
        return;
      }
      const words = rs[2]!.split(/\s+/).filter(Boolean);
      if (mode !== 'list') {
        // stats/rate lines carry counters only; the list output carries the real server's settings
        if (!current.reals.some((r) => r.address === hp.address && r.port === hp.port)) {
          current.reals.push({
            address: hp.address,
            port: hp.port,
            forward: 'Route',
            weight: Number.NaN,
            line,
          });
        }
        return;
      }
      const [fwd, weight, active, inact] = words;
      if (fwd && FORK_FORWARD[fwd]) {
        unsupported.push({ line, text: raw, reason: FORK_FORWARD[fwd]! });
        return;
      }
      if (!fwd || !['Route', 'Masq', 'Tunnel', 'Local'].includes(fwd)) {
        unparsed.push({ line, text: raw });
        return;
      }
      const r: IpvsRealServer = {
        address: hp.address,
        port: hp.port,
        forward: fwd as IpvsForward,
        weight: Number(weight),
        line,
      };
      if (active !== undefined) r.activeConn = parseCount(active);
      if (inact !== undefined) r.inactConn = parseCount(inact);
      current.reals.push(r);
      return;
    }
    unparsed.push({ line, text: raw });
  });
  return { services, unparsed, unsupported };
}

/** `ipvsadm -Sn`: `-A -t 192.0.2.1:80 -s wlc -p 300` and `-a -t ... -r 198.51.100.10:80 -g -w 50`. */
export function parseIpvsadmSave(text: string): IpvsTable {
  const services: IpvsService[] = [];
  const unparsed: IpvsTable['unparsed'] = [];
  const unsupported: IpvsTable['unsupported'] = [];
  const key = (s: IpvsService) => `${s.protocol}|${s.address ?? ''}|${s.port ?? ''}|${s.fwmark ?? ''}`;
  text.split('\n').forEach((raw, i) => {
    const line = i + 1;
    const words = raw.trim().split(/\s+/).filter(Boolean);
    if (words.length === 0) return;
    const op = words[0];
    if (op !== '-A' && op !== '-a') {
      unparsed.push({ line, text: raw });
      return;
    }
    const svc: IpvsService = { protocol: 'TCP', family: 'ipv4', scheduler: '', flags: [], reals: [], line };
    let real: IpvsRealServer | undefined;
    for (let k = 1; k < words.length; k++) {
      const w = words[k]!;
      const v = words[k + 1];
      if (w === '-t' || w === '-u' || w === '--sctp-service') {
        svc.protocol = w === '-t' ? 'TCP' : w === '-u' ? 'UDP' : 'SCTP';
        if (!placeService(svc, v ?? '')) {
          unparsed.push({ line, text: raw });
          return;
        }
        k++;
      } else if (w === '-f') {
        svc.protocol = 'FWM';
        svc.fwmark = Number(v);
        k++;
      } else if (w === '-6') svc.family = 'ipv6';
      else if (w === '-s') {
        svc.scheduler = v ?? '';
        k++;
      } else if (w === '-p') {
        svc.persistent = Number(v);
        k++;
      } else if (w === '-M') {
        svc.netmask = v ?? '';
        k++;
      } else if (w === '-b') {
        svc.flags.push(...(v ?? '').split(','));
        k++;
      } else if (w === '-r') {
        const hp = splitHostPort(v ?? '');
        if (!hp) {
          unparsed.push({ line, text: raw });
          return;
        }
        real = { address: hp.address, port: hp.port, forward: 'Route', weight: 1, line };
        k++;
      } else if (FORWARD_OF_SAVE[w]) {
        if (real) real.forward = FORWARD_OF_SAVE[w];
      } else if (FORK_FORWARD[w]) {
        unsupported.push({ line, text: raw, reason: FORK_FORWARD[w]! });
        return;
      } else if (w === '-w') {
        if (real) real.weight = Number(v);
        k++;
      } else if (w === '-x' || w === '-y' || w === '--tun-type' || w === '--tun-port') {
        k++;
      } else if (w === '-o' || w === '--ops') svc.flags.push('ops');
      else if (w === '--pe') {
        svc.flags.push(`pe-${v ?? ''}`);
        k++;
      } else if (w === '--tun-nocsum' || w === '--tun-csum' || w === '--tun-remcsum') {
        // tunnel checksum options of a real server: nothing keepalived's comparison uses
      } else {
        unparsed.push({ line, text: raw });
        return;
      }
    }
    if (op === '-A') services.push(svc);
    else {
      const owner = services.find((s) => key(s) === key(svc));
      if (!owner || !real) {
        unparsed.push({ line, text: raw });
        return;
      }
      owner.reals.push(real);
    }
  });
  return { services, unparsed, unsupported };
}

/** Either format, told apart by its first meaningful line. */
export function parseIpvsadm(text: string): IpvsTable {
  const first =
    text
      .split('\n')
      .find((l) => l.trim() !== '')
      ?.trim() ?? '';
  return first.startsWith('-A') || first.startsWith('-a') ? parseIpvsadmSave(text) : parseIpvsadmList(text);
}

export function serviceLabel(s: IpvsService): string {
  if (s.protocol === 'FWM') return `FWM ${s.fwmark}${s.family === 'ipv6' ? ' IPv6' : ''}`;
  const host = s.family === 'ipv6' ? `[${s.address}]` : s.address;
  return `${s.protocol} ${host}:${s.port}`;
}
