import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderForNode } from '../../src/core/render.js';
import { FIXTURES } from '../helpers/fixtures.js';

const KA = '/etc/keepalived/keepalived.conf';
const REF = readFileSync(path.join(FIXTURES, 'sets/reference/etc/keepalived/keepalived.conf'), 'utf8');

describe('renderForNode', () => {
  it('rewrites router_id and keeps every other byte of the how-to configuration', () => {
    const r = renderForNode(new Map([[KA, REF]]), [KA], { node: 'lvs2', routerId: 'LVS2', hostLines: [] });
    expect(r.diagnostics).toEqual([]);
    expect(r.files.get(KA)).toBe(REF.replace('router_id LVS1', 'router_id LVS2'));
    expect(r.rewrites).toEqual([{ file: KA, line: 2, what: 'router_id LVS1 -> LVS2' }]);
  });

  it('never shows a per-host secret in the rewrites it reports', () => {
    const text = 'vrrp_instance VI_1 {\n  authentication {\n    auth_pass s3cr3t01\n  }\n}\n';
    const r = renderForNode(new Map([[KA, text]]), [KA], {
      node: 'lvs2',
      hostLines: [{ path: ['vrrp_instance VI_1', 'authentication', 'auth_pass'], value: 'other002' }],
    });
    expect(r.files.get(KA)).toContain('auth_pass other002');
    expect(r.rewrites).toEqual([{ file: KA, line: 3, what: 'auth_pass <redacted> -> <redacted>' }]);
    expect(JSON.stringify(r.rewrites)).not.toMatch(/s3cr3t01|other002/);
  });

  it('sets declared per-host lines inside named blocks, keeps comments and spacing, leaves @id lines alone', () => {
    const text = [
      'global_defs {',
      '  router_id LVS1   ! the primary',
      '@lvs2 router_id OTHER',
      '}',
      'vrrp_instance VI_1 {',
      '\tpriority   150 # higher wins',
      '\tunicast_src_ip 203.0.113.251',
      '}',
      'vrrp_instance VI_2 {',
      '\tpriority 150',
      '}',
      '',
    ].join('\n');
    const r = renderForNode(new Map([[KA, text]]), [KA], {
      node: 'lvs2',
      routerId: 'LVS2',
      hostLines: [
        { path: ['vrrp_instance VI_1', 'priority'], value: '100' },
        { path: ['vrrp_instance VI_1', 'unicast_src_ip'], value: '203.0.113.252' },
      ],
    });
    expect(r.diagnostics).toEqual([]);
    expect(r.files.get(KA)).toBe(
      text
        .replace('router_id LVS1   ! the primary', 'router_id LVS2   ! the primary')
        .replace('priority   150 # higher wins', 'priority   100 # higher wins')
        .replace('203.0.113.251', '203.0.113.252'),
    );
    expect(r.files.get(KA)).toContain('@lvs2 router_id OTHER');
    expect(r.files.get(KA)).toContain('vrrp_instance VI_2 {\n\tpriority 150');
  });

  it('reports a declared per-host line that is not in the configuration', () => {
    const r = renderForNode(new Map([[KA, 'global_defs {\n}\n']]), [KA], {
      node: 'lvs2',
      routerId: 'LVS2',
      hostLines: [{ path: ['vrrp_instance VI_9', 'priority'], value: '1' }],
    });
    expect(r.diagnostics.map((d) => d.code)).toEqual(['RENDER_NO_LINE', 'RENDER_NO_LINE']);
    expect(r.diagnostics[1]!.message).toContain('vrrp_instance VI_9 > priority');
    expect(r.files.get(KA)).toBe('global_defs {\n}\n');
  });

  it('renders per-host lines in included files and passes other files through', () => {
    const inc = '/etc/keepalived/conf.d/vrrp.conf';
    const files = new Map([
      [KA, 'global_defs {\n router_id A\n}\ninclude conf.d/*.conf\n'],
      [inc, 'vrrp_instance X {\n priority 200\n}\n'],
      ['/etc/ferm/ferm.conf', 'router_id looks like this but is ferm\n'],
    ]);
    const r = renderForNode(files, [KA, inc], {
      node: 'b',
      routerId: 'B',
      hostLines: [{ path: ['vrrp_instance X', 'priority'], value: '100' }],
    });
    expect(r.files.get(inc)).toBe('vrrp_instance X {\n priority 100\n}\n');
    expect(r.files.get('/etc/ferm/ferm.conf')).toBe(files.get('/etc/ferm/ferm.conf'));
  });
});
