// IP address helpers for config values. Pure.

export function isIPv4(s: string): boolean {
  // four dot-separated groups of 1-3 ASCII digits, each at most 255 (a config has thousands: no split)
  const n = s.length;
  if (n < 7 || n > 15) return false;
  let groups = 0;
  let digits = 0;
  let value = 0;
  for (let i = 0; i <= n; i++) {
    const c = i < n ? s.charCodeAt(i) : 46;
    if (c === 46) {
      if (digits === 0 || value > 255) return false;
      groups++;
      digits = 0;
      value = 0;
    } else if (c >= 48 && c <= 57) {
      if (++digits > 3) return false;
      value = value * 10 + (c - 48);
    } else return false;
  }
  return groups === 4;
}

/** An IPv4 address with a group written with a leading zero (`010`), which canonicalIP rewrites. */
function hasLeadingZero(s: string): boolean {
  for (let i = 0; i < s.length - 1; i++) {
    if (s.charCodeAt(i) === 48 && (i === 0 || s.charCodeAt(i - 1) === 46) && s.charCodeAt(i + 1) !== 46)
      return true;
  }
  return false;
}

export function isIPv6(s: string): boolean {
  if (!/^[0-9a-fA-F:.]+$/.test(s) || s.indexOf(':') === -1) return false;
  let body = s;
  let groupsFromV4 = 0;
  const lastColon = s.lastIndexOf(':');
  const tail = s.slice(lastColon + 1);
  if (tail.includes('.')) {
    if (!isIPv4(tail)) return false;
    body = `${s.slice(0, lastColon + 1)}0`;
    groupsFromV4 = 1;
  }
  const dbl = body.split('::');
  if (dbl.length > 2) return false;
  const groups = (x: string) => (x === '' ? [] : x.split(':'));
  const left = groups(dbl[0]!);
  const right = dbl.length === 2 ? groups(dbl[1]!) : [];
  const all = [...left, ...right];
  if (!all.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return false;
  const count = all.length + groupsFromV4;
  return dbl.length === 2 ? count <= 7 : count === 8;
}

export function isIP(s: string): boolean {
  return isIPv4(s) || isIPv6(s);
}

/** Splits `addr/len` and checks both parts. */
export function parseCidr(s: string): { address: string; prefix?: number } | undefined {
  const [address, len, extra] = s.split('/');
  if (extra !== undefined || address === undefined || !isIP(address)) return undefined;
  if (len === undefined) return { address };
  if (!/^\d+$/.test(len)) return undefined;
  const prefix = Number(len);
  if (prefix > (isIPv4(address) ? 32 : 128)) return undefined;
  return { address, prefix };
}

/** keepalived's virtual_ipaddress range form `192.0.2.10-20` (last octet range). */
export function expandRange(s: string): string[] | undefined {
  const m = /^(\d+\.\d+\.\d+\.)(\d+)-(\d+)$/.exec(s);
  if (!m) return undefined;
  const a = Number(m[2]);
  const b = Number(m[3]);
  if (a > 255 || b > 255 || b < a) return undefined;
  const out: string[] = [];
  for (let i = a; i <= b; i++) out.push(`${m[1]}${i}`);
  return out;
}

/** Canonical text for comparing addresses (lower-case IPv6, no zero padding in IPv4). */
export function canonicalIP(s: string): string {
  if (isIPv4(s)) return hasLeadingZero(s) ? s.split('.').map(Number).join('.') : s;
  return expandIPv6(s) ?? s.toLowerCase();
}

function expandIPv6(s: string): string | undefined {
  if (!isIPv6(s)) return undefined;
  let body = s.toLowerCase();
  const lastColon = body.lastIndexOf(':');
  const tail = body.slice(lastColon + 1);
  if (tail.includes('.')) {
    const [a, b, c, d] = tail.split('.').map(Number) as [number, number, number, number];
    body = `${body.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [l, r] = body.split('::') as [string, string | undefined];
  const left = l === '' ? [] : l.split(':');
  const right = r === undefined || r === '' ? [] : r.split(':');
  const fill = r === undefined ? [] : new Array(8 - left.length - right.length).fill('0');
  const groups = [...left, ...fill, ...right].map((g) => Number.parseInt(g, 16).toString(16));
  // RFC 5952 style: compress the longest run of zero groups.
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best === -1) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}
