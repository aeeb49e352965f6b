import { describe, expect, it } from 'vitest';
import { evaluateKeepalived } from '../../src/core/keepalived/evaluate.js';
import { buildModel } from '../../src/core/keepalived/model.js';
import { snapshotOf } from '../../src/core/snapshot.js';

const ROOT = '/etc/keepalived/keepalived.conf';

describe('evaluateKeepalived', () => {
  it('splices relative and absolute glob includes in sorted order, inside the including block', () => {
    const s = snapshotOf(
      {
        [ROOT]: 'include conf.d/*.conf\nvirtual_server fwmark 1 {\n  include /etc/keepalived/rs/*.inc\n}\n',
        '/etc/keepalived/conf.d/b.conf': 'virtual_server fwmark 3 {\n}\n',
        '/etc/keepalived/conf.d/a.conf': 'virtual_server fwmark 2 {\n}\n',
        '/etc/keepalived/conf.d/.hidden.conf': 'virtual_server fwmark 9 {\n}\n',
        '/etc/keepalived/rs/web1.inc': 'real_server 192.0.2.10 0 {\n  weight 1\n}\n',
      },
      ['/etc/keepalived'],
    );
    const ev = evaluateKeepalived(s, ROOT);
    expect(ev.diagnostics).toEqual([]);
    expect(ev.files).toEqual([
      ROOT,
      '/etc/keepalived/conf.d/a.conf',
      '/etc/keepalived/conf.d/b.conf',
      '/etc/keepalived/rs/web1.inc',
    ]);
    const m = buildModel(ev.directives);
    expect(m.virtualServers.map((v) => v.key.kind === 'fwmark' && v.key.mark)).toEqual([2, 3, 1]);
    expect(m.virtualServers[2]!.realServers[0]).toMatchObject({
      address: '192.0.2.10',
      pos: { file: '/etc/keepalived/rs/web1.inc', line: 1 },
    });
  });

  it('asks for directories it has not seen instead of guessing', () => {
    const s = snapshotOf({ [ROOT]: 'include /usr/local/etc/keepalived/*.conf\n' }, ['/etc/keepalived']);
    const ev = evaluateKeepalived(s, ROOT);
    expect(ev.unknownDirs).toEqual(['/usr/local/etc/keepalived']);
    expect(ev.diagnostics).toEqual([]);
  });

  it('skips executable include matches as keepalived does, with a warning', () => {
    const s = snapshotOf(
      [
        { path: ROOT, text: 'include conf.d/*.conf\n', mode: 0o100644 },
        { path: '/etc/keepalived/conf.d/x.conf', text: 'virtual_server fwmark 5 {\n}\n', mode: 0o100755 },
      ],
      ['/etc/keepalived'],
    );
    const ev = evaluateKeepalived(s, ROOT);
    expect(ev.diagnostics.map((d) => d.code)).toEqual(['KA_INCLUDE_EXECUTABLE', 'KA_INCLUDE_NO_MATCH']);
    expect(buildModel(ev.directives).virtualServers).toEqual([]);
  });

  it('reports include cycles', () => {
    const s = snapshotOf(
      { [ROOT]: 'include a.conf\n', '/etc/keepalived/a.conf': 'include keepalived.conf\n' },
      ['/etc/keepalived'],
    );
    const ev = evaluateKeepalived(s, ROOT);
    expect(ev.diagnostics.map((d) => [d.code, d.file, d.line])).toEqual([
      ['KA_INCLUDE_CYCLE', '/etc/keepalived/a.conf', 1],
    ]);
  });

  it.each([
    ['lvs1', 'LVS1', 100],
    ['lvs2', 'LVS2', 90],
    [undefined, undefined, 90],
  ])('applies @id/@^id lines and definitions for config-id %s', (id, routerId, prio) => {
    const text = [
      '@lvs1 $PRIO=100',
      '@^lvs1 $PRIO=90',
      'global_defs {',
      '  @lvs1 router_id LVS1',
      '  @lvs2 router_id LVS2',
      '}',
      'vrrp_instance VI_1 {',
      '  priority $PRIO',
      '  virtual_router_id 1',
      '}',
    ].join('\n');
    const s = snapshotOf({ [ROOT]: text }, ['/etc/keepalived']);
    const m = buildModel(evaluateKeepalived(s, ROOT, id === undefined ? {} : { configId: id }).directives);
    expect(m.routerId?.value).toBe(routerId);
    expect(m.instances[0]!.priority?.value).toBe(prio);
    expect(m.instances[0]!.priority?.pos).toEqual({ file: ROOT, line: 8, col: 12 });
  });

  it('substitutes recursively at use time, as keepalived.conf(5) describes', () => {
    const text = [
      '$BASE=192.0.2.${SUB}',
      '$SUB=10',
      'virtual_server ${BASE} 80 {',
      '}',
      '$SUB=20',
      'virtual_server ${BASE} 80 {',
      '}',
    ].join('\n');
    const m = buildModel(
      evaluateKeepalived(snapshotOf({ [ROOT]: text }, ['/etc/keepalived']), ROOT).directives,
    );
    expect(m.virtualServers.map((v) => v.key.kind === 'ip' && v.key.address)).toEqual([
      '192.0.2.10',
      '192.0.2.20',
    ]);
  });

  it('expands multi-line definitions and ~SEQ at the place of use', () => {
    const text = [
      '$RS=real_server 192.0.2.10 0 { \\',
      '  weight 7 \\',
      '}',
      'virtual_server fwmark 100 {',
      '  $RS',
      '  ~SEQ(n, 11, 13) real_server 192.0.2.$n 0 { weight 1 }',
      '}',
    ].join('\n');
    const ev = evaluateKeepalived(snapshotOf({ [ROOT]: text }, ['/etc/keepalived']), ROOT);
    expect(ev.diagnostics).toEqual([]);
    const vs = buildModel(ev.directives).virtualServers[0]!;
    expect(vs.realServers.map((r) => [r.address, r.weight?.value])).toEqual([
      ['192.0.2.10', 7],
      ['192.0.2.11', 1],
      ['192.0.2.12', 1],
      ['192.0.2.13', 1],
    ]);
    expect(vs.realServers[0]!.pos.line).toBe(5);
    expect(vs.realServers[3]!.pos.line).toBe(6);
  });

  it('expands ~LST with one or several variables, blanks for missing values, and rejects what keepalived rejects', () => {
    const text = [
      'virtual_server fwmark 100 {',
      '  ~LST(h, 10, 11) real_server 192.0.2.$h 0 { weight 1 }',
      '  ~LST({h, w}, {20, 5}, {21}) real_server 192.0.2.$h 0 { weight 1$w }',
      '}',
      '~LST(x) vrrp_script bad {',
    ].join('\n');
    const ev = evaluateKeepalived(snapshotOf({ [ROOT]: text }, ['/etc/keepalived']), ROOT);
    const vs = buildModel(ev.directives).virtualServers[0]!;
    expect(vs.realServers.map((r) => [r.address, r.weight?.value])).toEqual([
      ['192.0.2.10', 1],
      ['192.0.2.11', 1],
      ['192.0.2.20', 15],
      ['192.0.2.21', 1],
    ]);
    expect(ev.diagnostics.map((d) => `${d.code}:${d.line}`)).toEqual(['KA_BAD_SEQ:5']);
  });

  it('takes the rest of an include line as the path: brace expansion, includer/includem/... variants', () => {
    const text = 'include conf.d/{a,c}.conf\nincluder conf.d/b.conf\n';
    const snap = snapshotOf(
      {
        [ROOT]: text,
        '/etc/keepalived/conf.d/a.conf': 'vrrp_script a {\n  script /bin/true\n}\n',
        '/etc/keepalived/conf.d/b.conf': 'vrrp_script b {\n  script /bin/true\n}\n',
        '/etc/keepalived/conf.d/c.conf': 'vrrp_script c {\n  script /bin/true\n}\n',
      },
      ['/etc/keepalived', '/etc/keepalived/conf.d'],
    );
    const ev = evaluateKeepalived(snap, ROOT);
    expect(ev.diagnostics).toEqual([]);
    expect(ev.files).toEqual([
      ROOT,
      '/etc/keepalived/conf.d/a.conf',
      '/etc/keepalived/conf.d/c.conf',
      '/etc/keepalived/conf.d/b.conf',
    ]);
  });

  it('an undefined ${NAME} as written is an error (keepalived reads its braces as a block); keepalived’s own and defined names are not', () => {
    const text =
      '@low $NAME=low\n$A=x\nglobal_defs {\n  router_id ${NAME}\n  notification_email_from ${A}@${_PWD}\n}\n';
    const snap = snapshotOf({ [ROOT]: text }, ['/etc/keepalived']);
    expect(
      evaluateKeepalived(snap, ROOT, { configId: 'lvs1' }).diagnostics.map((d) => `${d.code}:${d.line}`),
    ).toEqual(['KA_UNDEFINED_DEFINITION:4']);
    expect(evaluateKeepalived(snap, ROOT, { configId: 'low' }).diagnostics).toEqual([]);
  });
});
