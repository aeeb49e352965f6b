import { createHmac, generateKeyPairSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { fingerprint, keyTypeOf, parseKnownHosts, verifyHostKey } from '../../src/core/known-hosts.js';
import { diffRedacted } from '../../src/core/redact.js';
import { redactSecrets } from '../../src/core/secrets.js';

describe('redactSecrets', () => {
  it('masks auth_pass values (also on @id lines) and shows that they changed', () => {
    const a = 'authentication {\n    auth_type PASS\n    auth_pass $up3r$3(r37\n@lvs2 auth_pass other\n}\n';
    const r = redactSecrets(a, 'salt');
    expect(r).not.toContain('$up3r');
    expect(r).not.toContain('other');
    expect(r).toContain('auth_type PASS');
    expect(r).toMatch(/ {4}auth_pass <redacted:[0-9a-f]{6}>\n/);
    const d = diffRedacted(
      '/etc/keepalived/keepalived.conf',
      a,
      a.replace('$up3r$3(r37', 'n3w'),
      undefined,
      's',
    );
    expect(d).not.toContain('n3w');
    expect(d).toMatch(/-\s+auth_pass <redacted:\w+>\n\+\s+auth_pass <redacted:\w+>/);
  });
});

/** An SSH ed25519 public key blob. */
function ed25519Blob(): Buffer {
  const { publicKey } = generateKeyPairSync('ed25519');
  const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  const t = Buffer.from('ssh-ed25519');
  const len = (b: Buffer) => {
    const l = Buffer.alloc(4);
    l.writeUInt32BE(b.length);
    return l;
  };
  return Buffer.concat([len(t), t, len(raw), raw]);
}

describe('known_hosts', () => {
  const k1 = ed25519Blob();
  const k2 = ed25519Blob();
  it('matches plain, [host]:port and hashed names; reports unknown and changed keys', () => {
    const salt = randomBytes(20);
    const hashed = `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update('203.0.113.9').digest('base64')}`;
    const kh = parseKnownHosts(
      [
        '# comment',
        `203.0.113.252 ssh-ed25519 ${k1.toString('base64')}`,
        `[203.0.113.253]:2222 ssh-ed25519 ${k2.toString('base64')}`,
        `${hashed} ssh-ed25519 ${k2.toString('base64')}`,
        `@revoked * ssh-ed25519 ${ed25519Blob().toString('base64')}`,
      ].join('\n'),
    );
    expect(verifyHostKey(kh, '203.0.113.252', 22, k1)).toEqual({ kind: 'match', line: 2 });
    expect(verifyHostKey(kh, '203.0.113.252', 22, k2)).toEqual({ kind: 'changed', lines: [2] });
    expect(verifyHostKey(kh, '203.0.113.253', 2222, k2).kind).toBe('match');
    expect(verifyHostKey(kh, '203.0.113.253', 22, k2).kind).toBe('unknown');
    expect(verifyHostKey(kh, '203.0.113.9', 22, k2).kind).toBe('match');
    expect(verifyHostKey(kh, '203.0.113.9', 22, k1).kind).toBe('changed');
    expect(keyTypeOf(k1)).toBe('ssh-ed25519');
    expect(fingerprint(k1)).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
  });
});
