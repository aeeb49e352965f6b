// The escape hatches of a check (core/suppress.ts): comments and configured severities.
import { describe, expect, it } from 'vitest';
import { diag } from '../../src/core/diagnostic.js';
import { applySuppressions } from '../../src/core/suppress.js';

const F = '/etc/keepalived/keepalived.conf';
const at = (line: number) => ({ file: F, line, col: 1 });

describe('applySuppressions', () => {
  const lines = [
    'a # lvssync: ignore KA_X, KA_Y because',
    '! lvssync: ignore KA_Z',
    'b',
    'c # lvssync: ignore KA_INCLUDE_OUTSIDE',
    'd',
  ];
  const linesOf = () => lines;

  it('silences the codes a comment names on its line, or alone on the line above', () => {
    const r = applySuppressions(
      [
        diag('error', 'KA_X', at(1), 'x'),
        diag('error', 'KA_Y', at(1), 'y'),
        diag('error', 'KA_Z', at(3), 'z'),
        diag('error', 'KA_Q', at(3), 'q'),
      ],
      linesOf,
    );
    expect(r.diagnostics.map((d) => d.code)).toEqual(['KA_Q']);
    expect(r.suppressed.map((s) => `${s.diagnostic.code}:${s.by}:${s.reason ?? ''}`)).toEqual([
      'KA_X:comment:because',
      'KA_Y:comment:because',
      'KA_Z:comment:',
    ]);
  });

  it('a comment at the end of a line with text does not reach the next line', () => {
    expect(applySuppressions([diag('error', 'KA_X', at(2), 'x')], linesOf).diagnostics).toHaveLength(1);
  });

  it('applies per-code severities and off, and never silences the boundary', () => {
    const r = applySuppressions(
      [
        diag('error', 'KA_W', at(5), 'w'),
        diag('warning', 'KA_V', at(5), 'v'),
        diag('error', 'KA_INCLUDE_OUTSIDE', at(4), 'i'),
      ],
      linesOf,
      { KA_W: 'warning', KA_V: 'off', KA_INCLUDE_OUTSIDE: 'off' },
    );
    expect(r.diagnostics.map((d) => `${d.code}:${d.severity}`)).toEqual([
      'KA_W:warning',
      'KA_INCLUDE_OUTSIDE:error',
    ]);
    expect(r.suppressed.map((s) => `${s.diagnostic.code}:${s.by}`)).toEqual(['KA_V:config']);
  });
});
