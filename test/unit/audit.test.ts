import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  auditDrift,
  auditIpvs,
  auditIpvsPair,
  auditMarks,
  auditVips,
  exitCodeOf,
} from '../../src/core/audit.js';
import { parseFermLines } from '../../src/core/ferm/marks.js';
import { parseIpvsadm } from '../../src/core/ipvsadm.js';
import { evaluateKeepalived } from '../../src/core/keepalived/evaluate.js';
import { buildModel } from '../../src/core/keepalived/model.js';
import { snapshotOf } from '../../src/core/snapshot.js';
import { FIXTURES } from '../helpers/fixtures.js';

const LAB = path.resolve(FIXTURES, '..', '..', 'config', 'lab', 'keepalived');
const KA = '/etc/keepalived/keepalived.conf';
const FWM = '/etc/keepalived/conf.d/fwm-100.conf';
const model = () =>
  buildModel(
    evaluateKeepalived(
      snapshotOf(
        {
          [KA]: readFileSync(path.join(LAB, 'keepalived.conf'), 'utf8'),
          [FWM]: readFileSync(path.join(LAB, 'conf.d', 'fwm-100.conf'), 'utf8'),
        },
        ['/etc/keepalived'],
      ),
      KA,
    ).directives,
  );
const table = (f: string) => parseIpvsadm(readFileSync(path.join(FIXTURES, 'ipvsadm', f), 'utf8'));

describe('auditIpvs', () => {
  it('the lab configuration against a matching table: only the persistence the config lacks', () => {
    const f = auditIpvs('lvs1', model(), table('list-fwm-persistent.txt'));
    expect(f.map((x) => `${x.code} ${x.file}:${x.line}`)).toEqual([`IPVS_PERSISTENCE ${FWM}:1`]);
    expect(exitCodeOf(f)).toBe(1);
  });

  it('a real server out of the table is an expected absence while its health check fails', () => {
    const t = table('list-fwm-persistent.txt');
    t.services[0]!.reals.pop();
    t.services[0]!.reals[0]!.weight = 0;
    const f = auditIpvs('lvs1', model(), t);
    const codes = f.map((x) => x.code);
    expect(codes).toContain('IPVS_REAL_ABSENT');
    expect(codes).toContain('IPVS_REAL_INHIBITED');
    expect(f.find((x) => x.code === 'IPVS_REAL_ABSENT')!.message).toContain('fails its HTTP_GET check');
    expect(f.find((x) => x.code === 'IPVS_REAL_ABSENT')!.line).toBe(23);
  });

  it('another table: the configured service is missing (critical), the others are stale', () => {
    const f = auditIpvs('lvs2', model(), table('list-all-variants.txt'));
    expect(f.filter((x) => x.severity === 'critical').map((x) => x.code)).toEqual(['IPVS_SERVICE_MISSING']);
    expect(f.filter((x) => x.code === 'IPVS_SERVICE_STALE')).toHaveLength(6);
    expect(exitCodeOf(f)).toBe(2);
  });

  it('compares the two directors tables', () => {
    expect(
      auditIpvsPair('lvs1', table('list-fwm-persistent.txt'), 'lvs2', table('stats.txt')).map((x) => x.code),
    ).toEqual(['IPVS_PAIR_DIFFERS']);
    expect(
      auditIpvsPair('lvs1', table('list-all-variants.txt'), 'lvs2', table('save.txt')).length,
    ).toBeGreaterThan(0);
    expect(
      auditIpvsPair('lvs1', table('list-fwm-persistent.txt'), 'lvs2', table('list-fwm-persistent.txt')),
    ).toEqual([]);
  });
});

describe('auditVips', () => {
  it('exactly one holder is ok; none is an outage; two is split brain', () => {
    const m = model();
    const one = auditVips(
      m,
      new Map([
        ['lvs1', ['198.51.100.250', '198.51.100.100']],
        ['lvs2', []],
      ]),
    );
    expect(one.map((f) => f.code)).toEqual(['VIP_OK', 'VIP_OK']);
    const both = auditVips(
      m,
      new Map([
        ['lvs1', ['198.51.100.250', '198.51.100.100']],
        ['lvs2', ['198.51.100.250']],
      ]),
    );
    expect(both.map((f) => f.code)).toEqual(['VIP_SPLIT_BRAIN', 'VIP_OK']);
    expect(both[0]).toMatchObject({ severity: 'critical', file: KA, line: 24 });
    const none = auditVips(
      m,
      new Map([
        ['lvs1', []],
        ['lvs2', []],
      ]),
    );
    expect(none.map((f) => f.code)).toEqual(['VIP_NONE', 'VIP_NONE']);
  });
});

describe('auditDrift and auditMarks', () => {
  it('missing, different and extra files, with redacted diffs', () => {
    const wanted = new Map([
      [KA, 'global_defs {\n router_id LVS2\n}\nauth_pass s3cret\n'],
      [FWM, 'x\n'],
    ]);
    const actual = new Map([
      [KA, 'global_defs {\n router_id LVS2\n}\nauth_pass other!\n'],
      ['/etc/keepalived/conf.d/old.conf', 'y\n'],
    ]);
    const f = auditDrift('lvs2', wanted, actual, 'salt');
    expect(f.map((x) => `${x.code} ${x.file}`)).toEqual([
      `DRIFT_MISSING ${FWM}`,
      `DRIFT_DIFFERENT ${KA}`,
      'DRIFT_EXTRA /etc/keepalived/conf.d/old.conf',
    ]);
    expect(f[1]!.line).toBe(4);
    expect(f[1]!.diff).not.toContain('s3cret');
    expect(f[1]!.diff).not.toContain('other!');
    expect(f[1]!.diff).toMatch(/-auth_pass <redacted:\w+>\n\+auth_pass <redacted:\w+>/);
  });

  it('marks of ferm.conf not live (ferm not reloaded) and stale live marks', () => {
    const want = parseFermLines(
      '*mangle\n-A PREROUTING --destination 198.51.100.100 --protocol tcp --jump MARK --set-mark 0x0064\n-A PREROUTING --destination 198.51.100.100 --protocol tcp --jump MARK --set-mark 200\nCOMMIT\n',
    );
    const live = parseFermLines(
      '*mangle\n-A PREROUTING -d 198.51.100.100/32 -p tcp -j MARK --set-xmark 0x64/0xffffffff\n-A PREROUTING -d 198.51.100.100/32 -p tcp -j MARK --set-xmark 0x12c/0xffffffff\nCOMMIT\n',
    );
    const f = auditMarks('lvs2', want, live, '/etc/ferm/ferm.conf');
    expect(f.map((x) => x.code)).toEqual(['MARK_NOT_LIVE', 'MARK_STALE']);
    expect(f[0]!.message).toContain('MARK 200 (0xc8)');
  });
});

describe('auditKeepalivedLoad', () => {
  it('flags keepalived files changed after keepalived last read them, not others', async () => {
    const { auditKeepalivedLoad } = await import('../../src/core/audit.js');
    const f = auditKeepalivedLoad(
      'lvs2',
      { [KA]: 10_000, [FWM]: 50_000, '/etc/ferm/ferm.conf': 90_000 },
      20_000,
      new Set([KA, FWM]),
    );
    expect(f.map((x) => `${x.code} ${x.file}`)).toEqual([`KEEPALIVED_RELOAD_PENDING ${FWM}`]);
    expect(f[0]!.message).toContain('30 s after keepalived last read');
    expect(auditKeepalivedLoad('lvs2', { [FWM]: 50_000 }, undefined, new Set([FWM]))).toEqual([]);
  });
});
