// OpenSSH known_hosts: parsing and host-key matching (plain and hashed `|1|salt|hmac` host names,
// `[host]:port`, markers). Used to pin the peer's host key: an unknown or changed key is refused. Pure.

import { createHash, createHmac } from 'node:crypto';

export interface KnownHost {
  patterns: string[];
  hashed?: { salt: Buffer; hash: Buffer };
  keyType: string;
  key: Buffer;
  marker?: '@revoked' | '@cert-authority';
  line: number;
}

export function parseKnownHosts(text: string): KnownHost[] {
  const out: KnownHost[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const parts = line.split(/\s+/);
    let marker: KnownHost['marker'];
    if (parts[0] === '@revoked' || parts[0] === '@cert-authority')
      marker = parts.shift() as KnownHost['marker'];
    const [hosts, keyType, key] = parts;
    if (!hosts || !keyType || !key) return;
    const entry: KnownHost = {
      patterns: hosts.split(','),
      keyType,
      key: Buffer.from(key, 'base64'),
      line: i + 1,
    };
    if (marker) entry.marker = marker;
    const h = /^\|1\|([^|]+)\|(.+)$/.exec(hosts);
    if (h) entry.hashed = { salt: Buffer.from(h[1]!, 'base64'), hash: Buffer.from(h[2]!, 'base64') };
    out.push(entry);
  });
  return out;
}

/** The name known_hosts uses for host:port. */
export function knownHostName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

function nameMatches(e: KnownHost, name: string): boolean {
  if (e.hashed) {
    const mac = createHmac('sha1', e.hashed.salt).update(name).digest();
    return mac.equals(e.hashed.hash);
  }
  let ok = false;
  for (const p of e.patterns) {
    const neg = p.startsWith('!');
    const re = new RegExp(
      `^${(neg ? p.slice(1) : p)
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*/g, '.*')
        .replace(/\?/g, '.')}$`,
    );
    if (re.test(name)) {
      if (neg) return false;
      ok = true;
    }
  }
  return ok;
}

export type HostKeyVerdict =
  | { kind: 'match'; line: number }
  | { kind: 'unknown' }
  | { kind: 'changed'; lines: number[] }
  | { kind: 'revoked'; line: number };

/** Judges the key a server presented (`key`: the raw public key blob). */
export function verifyHostKey(
  entries: readonly KnownHost[],
  host: string,
  port: number,
  key: Buffer,
): HostKeyVerdict {
  const name = knownHostName(host, port);
  const mine = entries.filter((e) => e.marker !== '@cert-authority' && nameMatches(e, name));
  const revoked = mine.find((e) => e.marker === '@revoked' && e.key.equals(key));
  if (revoked) return { kind: 'revoked', line: revoked.line };
  const match = mine.find((e) => !e.marker && e.key.equals(key));
  if (match) return { kind: 'match', line: match.line };
  const others = mine.filter((e) => !e.marker);
  if (others.length > 0) return { kind: 'changed', lines: others.map((e) => e.line) };
  return { kind: 'unknown' };
}

/** SHA256 fingerprint as OpenSSH prints it. */
export function fingerprint(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}

/** The key type name inside an SSH public key blob (e.g. ssh-ed25519). */
export function keyTypeOf(key: Buffer): string {
  const n = key.readUInt32BE(0);
  return key.subarray(4, 4 + n).toString('latin1');
}
