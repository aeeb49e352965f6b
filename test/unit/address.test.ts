// Address helpers against a plain reference (split and regular expressions) on edge cases and on
// random strings over the characters that matter.

import { describe, expect, it } from 'vitest';
import { canonicalIP, isIPv4, isIPv6 } from '../../src/core/address.js';

const refIsIPv4 = (s: string) => {
  const parts = s.split('.');
  return parts.length === 4 && parts.every((p) => /^[0-9]{1,3}$/.test(p) && Number(p) <= 255);
};

describe('isIPv4 and canonicalIP', () => {
  it.each([
    ['192.0.2.1', true, '192.0.2.1'],
    ['0.0.0.0', true, '0.0.0.0'],
    ['255.255.255.255', true, '255.255.255.255'],
    ['010.001.2.00', true, '10.1.2.0'],
    ['192.0.2.01', true, '192.0.2.1'],
    ['192.0.2.10', true, '192.0.2.10'],
    ['256.0.0.1', false, undefined],
    ['1.2.3', false, undefined],
    ['1.2.3.4.5', false, undefined],
    ['1.2.3.', false, undefined],
    ['.1.2.3', false, undefined],
    ['1..2.3', false, undefined],
    ['1.2.3.4 ', false, undefined],
    ['1.2.3.1000', false, undefined],
    ['１.2.3.4', false, undefined],
  ])('%s', (s, ok, canon) => {
    expect(isIPv4(s)).toBe(ok);
    if (canon) expect(canonicalIP(s)).toBe(canon);
  });

  it('agrees with the reference on random strings', () => {
    let seed = 42;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const alphabet = '0123456789.....a:';
    for (let k = 0; k < 20_000; k++) {
      const len = 5 + rnd(12);
      let s = '';
      for (let i = 0; i < len; i++) s += alphabet[rnd(alphabet.length)];
      expect(isIPv4(s), s).toBe(refIsIPv4(s));
      if (refIsIPv4(s)) expect(canonicalIP(s)).toBe(s.split('.').map(Number).join('.'));
    }
  });

  it('leaves IPv6 to its own rules', () => {
    expect(isIPv6('2001:db8::1')).toBe(true);
    expect(canonicalIP('2001:DB8:0:0:0:0:0:1')).toBe('2001:db8::1');
    expect(canonicalIP('::ffff:192.0.2.1')).toBe('::ffff:c000:201');
  });
});
