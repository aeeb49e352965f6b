// Re-checking with a parse cache must give exactly what a fresh check gives, whatever changed.
import { describe, expect, it } from 'vitest';
import { checkKeepalived } from '../../src/core/check.js';
import type { ParseCacheEntry } from '../../src/core/keepalived/evaluate.js';
import { snapshotOf } from '../../src/core/snapshot.js';

const ROOT = '/etc/keepalived/keepalived.conf';

function fresh(files: Record<string, string>, configId?: string) {
  const opts = configId === undefined ? {} : { configId };
  const r = checkKeepalived(snapshotOf(files, ['/etc/keepalived']), ROOT, opts);
  return { vs: r.model.virtualServers.map((v) => [v.label, v.realServers.length]), diags: r.diagnostics };
}

describe('incremental re-check', () => {
  it('matches a fresh check after edits to a self-contained file, a definition and the config-id', () => {
    const files: Record<string, string> = {
      [ROOT]: '$W=7\ninclude conf.d/*.conf\n',
      '/etc/keepalived/conf.d/a.conf':
        'virtual_server fwmark 1 {\n  lb_kind DR\n  real_server 192.0.2.1 0 {\n    weight 1\n  }\n}\n',
      '/etc/keepalived/conf.d/b.conf':
        'virtual_server fwmark 2 {\n  lb_kind DR\n  real_server 192.0.2.2 0 {\n    weight $W\n  }\n}\n',
      '/etc/keepalived/conf.d/c.conf':
        'virtual_server fwmark 3 {\n  lb_kind DR\n@lvs1  real_server 192.0.2.3 0 {\n    weight 1\n  }\n}\n',
    };
    const cache = new Map<string, ParseCacheEntry>();
    const cached = (configId: string) => {
      const r = checkKeepalived(snapshotOf(files, ['/etc/keepalived']), ROOT, { configId, cache });
      return { vs: r.model.virtualServers.map((v) => [v.label, v.realServers.length]), diags: r.diagnostics };
    };
    expect(cached('lvs1')).toEqual(fresh(files, 'lvs1'));
    // a self-contained file changes: its new content is used, the others come from the cache
    files['/etc/keepalived/conf.d/a.conf'] = files['/etc/keepalived/conf.d/a.conf']!.replace(
      'weight 1',
      'weight 70000',
    );
    const afterEdit = cached('lvs1');
    expect(afterEdit).toEqual(fresh(files, 'lvs1'));
    expect(afterEdit.diags.map((d) => d.code)).toContain('KA_OUT_OF_RANGE');
    // a definition in keepalived.conf changes: b.conf (which uses it) is evaluated again
    files[ROOT] = '$W=90000\ninclude conf.d/*.conf\n';
    const afterDef = cached('lvs1');
    expect(afterDef).toEqual(fresh(files, 'lvs1'));
    expect(afterDef.diags.filter((d) => d.file.endsWith('b.conf')).map((d) => d.code)).toEqual([
      'KA_OUT_OF_RANGE',
    ]);
    // another config-id: c.conf's conditional real server disappears
    const other = cached('lvs2');
    expect(other).toEqual(fresh(files, 'lvs2'));
    expect(other.vs).toContainEqual(['fwmark 3', 0]);
    // a file removed from the set
    delete files['/etc/keepalived/conf.d/b.conf'];
    expect(cached('lvs1')).toEqual(fresh(files, 'lvs1'));
  });
});
