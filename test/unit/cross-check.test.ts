import { describe, expect, it } from 'vitest';
import { validateMarks } from '../../src/core/cross-check.js';
import type { MarkRule } from '../../src/core/ferm/marks.js';
import { evaluateKeepalived } from '../../src/core/keepalived/evaluate.js';
import { buildModel } from '../../src/core/keepalived/model.js';
import { snapshotOf } from '../../src/core/snapshot.js';

const ROOT = '/etc/keepalived/keepalived.conf';
const model = (text: string) =>
  buildModel(evaluateKeepalived(snapshotOf({ [ROOT]: text }, ['/etc/keepalived']), ROOT).directives);
const rule = (markText: string, mark: number, destination = '192.0.2.100'): MarkRule => ({
  family: 'ip',
  table: 'mangle',
  chain: 'PREROUTING',
  destination,
  protocol: 'tcp',
  dports: [],
  mark,
  markText,
  rule: '',
});
const FERM = { file: '/etc/ferm/ferm.conf', line: 5, col: 26 };

describe('validateMarks', () => {
  it('accepts the how-to: ferm 0x0064 and virtual_server fwmark 100', () => {
    expect(
      validateMarks(model('virtual_server fwmark 100 {\n}\n'), [{ rule: rule('0x0064', 100), pos: FERM }]),
    ).toEqual([]);
  });

  it('reports the hex/decimal trap with both locations', () => {
    const diags = validateMarks(model('\nvirtual_server fwmark 64 {\n}\n'), [
      { rule: rule('0x64', 100), pos: FERM },
    ]);
    expect(diags.map((d) => [d.code, d.file, d.line, d.col])).toEqual([
      ['XC_FWMARK_BASE_MISMATCH', ROOT, 2, 23],
      ['XC_FWMARK_BASE_MISMATCH', FERM.file, 5, 26],
    ]);
    expect(diags[0]!.related).toEqual([{ ...FERM, message: 'ferm sets mark 0x64 (= 100) here' }]);
    expect(diags[0]!.message).toContain('fwmark 100');
    expect(diags[1]!.related?.[0]).toMatchObject({ file: ROOT, line: 2 });
  });

  it('reports a virtual server nothing marks, and a mark no virtual server uses', () => {
    const diags = validateMarks(model('virtual_server fwmark 300 {\n}\n'), [
      { rule: rule('200', 200), pos: FERM },
    ]);
    expect(diags.map((d) => [d.code, d.severity])).toEqual([
      ['XC_FWMARK_NO_RULE', 'error'],
      ['XC_RULE_NO_FWMARK', 'warning'],
    ]);
  });

  it('counts fwmarks of virtual_server_group entries', () => {
    const m = model('virtual_server_group G {\n  fwmark 7\n}\nvirtual_server group G {\n}\n');
    expect(validateMarks(m, [{ rule: rule('7', 7), pos: FERM }])).toEqual([]);
  });
});
