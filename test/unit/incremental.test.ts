// Re-checking with the owner's CheckMemory must give exactly what a fresh check gives, whatever changed.
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkKeepalived } from '../../src/core/check.js';
import { CheckMemory } from '../../src/core/memory.js';
import { emptySnapshot, FileMap, snapshotOf } from '../../src/core/snapshot.js';
import { changedSinceRead, readKeepalivedSnapshot, rereadSnapshot } from '../../src/shell/read-snapshot.js';
import { Workspace } from '../../src/shell/workspace.js';

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
    const memory = new CheckMemory();
    const cached = (configId: string) => {
      const r = checkKeepalived(snapshotOf(files, ['/etc/keepalived']), ROOT, { configId, memory });
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

// The incremental re-check of one snapshot edited in place (the FileMap tells what changed): a
// seeded random walk of edits of every kind, each result compared with a fresh full check.
describe('re-check of a snapshot edited in place', () => {
  const D = '/etc/keepalived/conf.d';
  const vs = (mark: string, weight = 1, extra = '') =>
    `virtual_server fwmark ${mark} {\n  lb_algo wlc\n  lb_kind DR\n${extra}  real_server 192.0.2.${(Number(mark) % 200) + 1} {\n    weight ${weight}\n  }\n}\n`;
  const base = (): Record<string, string> => {
    const files: Record<string, string> = {
      [ROOT]: `global_defs {\n  router_id LVS1\n}\nvirtual_server_group web {\n  198.51.100.100 80\n}\nvrrp_instance VI_1 {\n  state MASTER\n  interface eth0\n  virtual_router_id 51\n  priority 150\n  virtual_ipaddress {\n    198.51.100.100\n  }\n}\ninclude conf.d/*.conf\n`,
    };
    for (let i = 1; i <= 24; i++) files[`${D}/fwm-${i}.conf`] = vs(String(i), i);
    return files;
  };
  // edits: [name, new text for file i given the current set]
  const edits: [string, (i: number, files: Record<string, string>) => string][] = [
    ['weight', (i) => vs(String(i), 1 + ((i * 7) % 50))],
    ['same text', (i, f) => f[`${D}/fwm-${i}.conf`] ?? vs(String(i))],
    ['back to the original', (i) => vs(String(i), i)],
    ['duplicate of another mark', (i) => vs(String(((i + 3) % 24) + 1))],
    ['out of range weight', (i) => vs(String(i), 70000)],
    ['bad scheduler', (i) => vs(String(i)).replace('wlc', 'wlx')],
    ['unknown keyword', (i) => vs(String(i), 1, '  lb_kindd DR\n')],
    ['protocol on fwmark', (i) => vs(String(i), 1, '  protocol TCP\n')],
    ['hex mark', (i) => vs(`0x${i.toString(16)}`)],
    ['two virtual servers', (i) => vs(String(i)) + vs(String(i + 100))],
    [
      'an instance instead',
      (i) =>
        `vrrp_instance VI_${i + 1} {\n  interface eth0\n  virtual_router_id ${i + 60}\n  virtual_ipaddress {\n    203.0.113.${i}\n  }\n}\n`,
    ],
    [
      'a group service',
      () =>
        'virtual_server group web {\n  lb_kind NAT\n  protocol TCP\n  real_server 192.0.2.9 80 {\n  }\n}\n',
    ],
    ['an unclosed block', (i) => vs(String(i)).slice(0, -2)],
    [
      'a definition used',
      (i) => `$M=${i}\nvirtual_server fwmark $M {\n  lb_kind DR\n  real_server 192.0.2.1 {\n  }\n}\n`,
    ],
    [
      'a conditional line',
      (i) => vs(String(i)).replace('  lb_algo wlc\n', '@lvs2 lb_algo rr\n  lb_algo wlc\n'),
    ],
    ['an include', () => 'include /etc/keepalived/extra.conf\n'],
    ['empty', () => ''],
  ];
  let seed = 12345;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const project = (r: ReturnType<typeof checkKeepalived>) => ({
    diags: [...r.diagnostics]
      .map((d) => `${d.severity} ${d.code} ${d.file}:${d.line}:${d.col} ${d.message}`)
      .sort(),
    vs: r.model.virtualServers.map((v) => [v.label, v.realServers.map((s) => [s.address, s.weight?.value])]),
    instances: r.model.instances.map((x) => x.name),
    directives: r.evaluation.directives.map(
      (d) => `${d.name} ${d.args.join(' ')} ${d.pos.file}:${d.pos.line}`,
    ),
    files: r.evaluation.files,
  });

  it.each([
    ['lvs1', true],
    [undefined, true],
    ['lvs1', false],
  ] as const)('config-id %s, lint %s: every result is what a fresh check finds', (configId, lint) => {
    const files = base();
    const snap = snapshotOf(files, ['/etc/keepalived']);
    const memory = new CheckMemory();
    const opts = { memory, lint, ...(configId ? { configId } : {}) };
    let prev = checkKeepalived(snap, ROOT, opts);
    let incremental = 0;
    for (let step = 0; step < 400; step++) {
      const i = 1 + rnd(24);
      const p = `${D}/fwm-${i}.conf`;
      const kind = rnd(20);
      if (kind === 0) {
        // a mode change (an executable file is skipped by keepalived's include)
        const f = snap.files.get(p);
        if (f) snap.files.set(p, { ...f, mode: f.mode ^ 0o100 });
      } else if (kind === 1) {
        // a file removed, or added back
        if (snap.files.has(p)) snap.files.delete(p);
        else snap.files.set(p, { path: p, text: vs(String(i), i), mode: 0o100644 });
      } else {
        // mostly edits that keep the set clean (the case the re-check is for), else any kind; a
        // file is often set back to its original text afterwards
        const n = 1 + (kind === 2 ? rnd(3) : 0);
        for (let k = 0; k < n; k++) {
          const j = k === 0 ? i : 1 + rnd(24);
          const q = `${D}/fwm-${j}.conf`;
          const f = snap.files.get(q);
          if (!f) continue;
          const pick = rnd(10);
          const [, edit] = pick < 4 ? edits[0]! : pick < 6 ? edits[2]! : edits[rnd(edits.length)]!;
          const current = Object.fromEntries([...snap.files].map(([k2, v]) => [k2, v.text]));
          snap.files.set(q, { ...f, text: edit(j, current) });
        }
      }
      const r = checkKeepalived(snap, ROOT, opts);
      if (r.evaluation.includes === prev.evaluation.includes) incremental++;
      const full = checkKeepalived({ files: new Map(snap.files), dirs: new Set(snap.dirs) }, ROOT, {
        lint,
        ...(configId ? { configId } : {}),
      });
      expect(project(r), `step ${step}`).toEqual(project(full));
      prev = r;
    }
    // the walk must have gone through the incremental path often (62 to 98 of the 400 steps with
    // this seed), and through the full one too
    expect(incremental).toBeGreaterThan(40);
    expect(incremental).toBeLessThan(400);
  });
});

describe('FileMap', () => {
  const f = (p: string, text = 'x') => ({ path: p, text, mode: 0o100644 });
  it('tells which paths changed since a version, until its record no longer reaches back', () => {
    const m = new FileMap();
    const a = f('/a');
    m.set('/a', a);
    const v = m.version;
    const k = m.keysVersion;
    m.set('/a', a); // the same object: no change
    expect(m.version).toBe(v);
    m.set('/a', f('/a', 'y'));
    m.set('/b', f('/b'));
    m.delete('/c'); // absent: no change
    expect(m.changedSince(v)).toEqual(['/a', '/b']);
    expect(m.keysVersion).toBe(k + 1);
    m.delete('/b');
    expect(m.keysVersion).toBe(k + 2);
    expect(m.changedSince(m.version)).toEqual([]);
    expect(m.changedSince(m.version + 1)).toBeUndefined();
    const before = m.version;
    for (let i = 0; i < 5000; i++) m.set('/a', f('/a', String(i)));
    expect(m.changedSince(before)).toBeUndefined();
    expect(m.changedSince(m.version - 10)).toHaveLength(10);
    m.clear();
    expect(m.size).toBe(0);
    expect(m.changedSince(m.version - 1)).toBeUndefined();
  });
});

describe('a snapshot read again in place', () => {
  it('keeps unchanged files, records edits, drops deleted files, and re-checks like a fresh read', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'lvssync-reread-'));
    try {
      const conf = path.join(root, 'etc/keepalived');
      mkdirSync(path.join(conf, 'conf.d'), { recursive: true });
      writeFileSync(path.join(conf, 'keepalived.conf'), 'include conf.d/*.conf\n');
      const vsText = (m: number, w: number) =>
        `virtual_server fwmark ${m} {\n  lb_kind DR\n  real_server 192.0.2.${m} {\n    weight ${w}\n  }\n}\n`;
      for (let m = 1; m <= 5; m++) writeFileSync(path.join(conf, `conf.d/f${m}.conf`), vsText(m, 1));
      // texts are reused by file identity once older than two seconds: make them old
      const old = new Date(Date.now() - 10_000);
      const age = (f: string) => utimesSync(f, old, old);
      for (let m = 1; m <= 5; m++) age(path.join(conf, `conf.d/f${m}.conf`));
      const snap = emptySnapshot();
      const ws = new Workspace();
      const read = async () => {
        await rereadSnapshot(snap, ws, async () => {
          await readKeepalivedSnapshot(snap, root, ROOT, undefined, ws);
        });
        return checkKeepalived(snap, ROOT, { memory: ws });
      };
      const fresh = async () => {
        const s = emptySnapshot();
        await readKeepalivedSnapshot(s, root, ROOT, undefined, new Workspace());
        return checkKeepalived(s, ROOT);
      };
      const first = await read();
      const files = snap.files as FileMap;
      const f2 = snap.files.get('/etc/keepalived/conf.d/f2.conf');
      let v = files.version;
      // nothing changed on disk: same objects, no change recorded
      await read();
      expect(files.version).toBe(v);
      expect(snap.files.get('/etc/keepalived/conf.d/f2.conf')).toBe(f2);
      // one edit: seen on disk before the next read, then one change recorded, the re-check took
      // the incremental path and matches
      expect(changedSinceRead(snap, root, ws)).toBeUndefined();
      writeFileSync(path.join(conf, 'conf.d/f3.conf'), vsText(3, 9));
      expect(changedSinceRead(snap, root, ws)).toBe('/etc/keepalived/conf.d/f3.conf');
      const edited = await read();
      expect(changedSinceRead(snap, root, ws)).toBeUndefined();
      expect(files.changedSince(v)).toEqual(['/etc/keepalived/conf.d/f3.conf']);
      expect(edited.evaluation.includes).toBe(first.evaluation.includes);
      expect(edited.model.virtualServers.map((x) => x.realServers[0]?.weight?.value)).toEqual([
        1, 1, 9, 1, 1,
      ]);
      expect(edited.model.virtualServers.map((x) => x.label)).toEqual(
        (await fresh()).model.virtualServers.map((x) => x.label),
      );
      // a deleted file leaves the snapshot and the result
      v = files.version;
      rmSync(path.join(conf, 'conf.d/f4.conf'));
      const gone = await read();
      expect(snap.files.has('/etc/keepalived/conf.d/f4.conf')).toBe(false);
      expect(gone.model.virtualServers.map((x) => x.label)).toEqual([
        'fwmark 1',
        'fwmark 2',
        'fwmark 3',
        'fwmark 5',
      ]);
      expect(gone.diagnostics).toEqual((await fresh()).diagnostics);
      // a leaf file that gains an include of a directory not read yet: found at the next reading
      // (a reading after leaf edits skips the full evaluation only while every edited file has none)
      mkdirSync(path.join(conf, 'more'));
      writeFileSync(path.join(conf, 'more/m7.conf'), vsText(7, 1));
      age(path.join(conf, 'more/m7.conf'));
      writeFileSync(path.join(conf, 'conf.d/f5.conf'), `${vsText(5, 1)}include ../more/*.conf\n`);
      const grown = await read();
      expect(snap.files.has('/etc/keepalived/more/m7.conf')).toBe(true);
      expect(grown.model.virtualServers.map((x) => x.label)).toContain('fwmark 7');
      expect(grown.diagnostics).toEqual((await fresh()).diagnostics);
      expect(grown.model.virtualServers.map((x) => x.label)).toEqual(
        (await fresh()).model.virtualServers.map((x) => x.label),
      );
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
