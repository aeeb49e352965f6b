// The pieces that make a push from the daemon fast: the agent protocol's line framing, the real
// validators' verdict cache, and the agent's staging mirror (kept between pushes, re-copying only
// what changed). The mirror runs on a temporary tree through the Store's path prefix.

import { createHash } from 'node:crypto';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/core/config.js';
import { applyManifestDelta, LineSplitter, manifestDelta } from '../../src/core/protocol.js';
import { Store } from '../../src/shell/store.js';
import type { ToolRun } from '../../src/shell/tools.js';
import { ToolCache } from '../../src/shell/workspace.js';

describe('LineSplitter', () => {
  it('gives back whole lines however the chunks fall, and drops empty ones', () => {
    const text = `${JSON.stringify({ id: 1, big: 'x'.repeat(100_000) })}\n\n{"id":2}\n{"id":3}\n`;
    for (const size of [1, 7, 4096, text.length]) {
      const s = new LineSplitter();
      const lines: string[] = [];
      for (let i = 0; i < text.length; i += size) lines.push(...s.push(text.slice(i, i + size)));
      expect(lines.map((l) => (JSON.parse(l) as { id: number }).id)).toEqual([1, 2, 3]);
      expect(lines[0]!.length).toBe(text.indexOf('\n'));
    }
  });

  it('keeps an unfinished line until its end arrives', () => {
    const s = new LineSplitter();
    expect(s.push('{"a":')).toEqual([]);
    expect(s.push('1}')).toEqual([]);
    expect(s.push('\n{"b"')).toEqual(['{"a":1}']);
  });
});

describe('manifest differences', () => {
  const f = (p: string, sha: string, extra: object = {}) => ({
    path: p,
    sha256: sha,
    mode: 0o644,
    size: 1,
    ...extra,
  });
  it('carry exactly what changed, and rebuild the whole manifest from the previous one', () => {
    const prev = [f('/a', '1'), f('/b', '2'), f('/c', '3'), f('/d', '4', { written: '4' })];
    const next = [f('/a', '1'), f('/b', '9'), f('/d', '4'), f('/e', '5'), { ...f('/c', '3'), mode: 0o600 }];
    const prevMap = new Map(prev.map((x) => [x.path, x]));
    const d = manifestDelta(prevMap, next);
    expect(d.files.map((x) => x.path).sort()).toEqual(['/b', '/c', '/d', '/e']);
    expect(d.removed).toEqual([]);
    const rebuilt = applyManifestDelta(prevMap, d);
    expect([...rebuilt.values()].sort((x, y) => x.path.localeCompare(y.path))).toEqual(
      [...next].sort((x, y) => x.path.localeCompare(y.path)),
    );
    const gone = manifestDelta(rebuilt, [f('/a', '1')]);
    expect(gone.files).toEqual([]);
    expect(gone.removed.sort()).toEqual(['/b', '/c', '/d', '/e']);
    expect([...applyManifestDelta(rebuilt, gone).keys()]).toEqual(['/a']);
  });
});

describe('ToolCache', () => {
  const run = (n: number): ToolRun => ({ available: true, diagnostics: [], durationMs: n });

  it('reuses a verdict for the same input within its lifetime, and only then', async () => {
    let now = 0;
    const cache = new ToolCache(1000, () => now);
    let runs = 0;
    const exec = async () => run(++runs);
    expect((await cache.get('keepalived', 'k1', exec)).durationMs).toBe(1);
    const again = await cache.get('keepalived', 'k1', exec);
    expect(again.durationMs).toBe(1);
    expect(again.cached).toBe(true);
    expect((await cache.get('keepalived', 'k2', exec)).durationMs).toBe(2); // other input
    expect((await cache.get('ferm', 'k2', exec)).durationMs).toBe(3); // other tool
    now = 1500; // expired
    expect((await cache.get('ferm', 'k2', exec)).durationMs).toBe(4);
    expect(runs).toBe(4);
  });
});

describe('ToolCache kept in the state directory', () => {
  let dir: string;
  const pathBefore = process.env.PATH;
  afterEach(() => {
    process.env.PATH = pathBefore;
    rmSync(dir, { recursive: true, force: true });
  });

  it('a new process (a new cache on the same file) reuses a verdict for the same input, the same program, within its lifetime', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'lvssync-verdicts-'));
    // a validator program of the test's own: its identity (path, size, mtime) is part of the verdict
    const bin = path.join(dir, 'bin');
    mkdirSync(bin);
    const prog = path.join(bin, 'lvssync-test-validator');
    writeFileSync(prog, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    process.env.PATH = `${bin}:${pathBefore}`;
    const file = path.join(dir, 'verdicts.json');
    let now = 1_000_000;
    let runs = 0;
    const exec = async (): Promise<ToolRun> => ({
      available: true,
      diagnostics: [{ severity: 'error', code: 'T', file: '/f', line: 1, col: 1, message: `run ${++runs}` }],
      durationMs: runs,
    });
    const fresh = () => new ToolCache(1000, () => now, file);
    expect((await fresh().get('lvssync-test-validator', 'k1', exec)).durationMs).toBe(1);
    const kept = await fresh().get('lvssync-test-validator', 'k1', exec);
    expect(kept.cached).toBe(true);
    expect(kept.diagnostics[0]!.message).toBe('run 1');
    expect(runs).toBe(1);
    // other input: run, and that verdict is the one kept
    expect((await fresh().get('lvssync-test-validator', 'k2', exec)).durationMs).toBe(2);
    expect((await fresh().get('lvssync-test-validator', 'k2', exec)).cached).toBe(true);
    // the program changed (an upgrade): the verdict is not reused
    utimesSync(prog, new Date(2_000_000_000_000), new Date(2_000_000_000_000));
    expect((await fresh().get('lvssync-test-validator', 'k2', exec)).durationMs).toBe(3);
    // its lifetime is over
    now += 1001;
    expect((await fresh().get('lvssync-test-validator', 'k2', exec)).durationMs).toBe(4);
    // a clock set back is not "within the lifetime"
    now -= 5000;
    expect((await fresh().get('lvssync-test-validator', 'k2', exec)).durationMs).toBe(5);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    // a torn file is read as no verdicts
    writeFileSync(file, '{"lvssync-test-vali');
    expect((await fresh().get('lvssync-test-validator', 'k2', exec)).durationMs).toBe(6);
    expect((await fresh().get('lvssync-test-validator', 'k2', exec)).cached).toBe(true);
    // a verdict another lvssync version asked for is not reused
    const kept2 = JSON.parse(readFileSync(file, 'utf8'));
    kept2['lvssync-test-validator'].by = '0.0.1';
    writeFileSync(file, JSON.stringify(kept2));
    expect((await fresh().get('lvssync-test-validator', 'k2', exec)).durationMs).toBe(7);
  });

  it('a run of a program that is not installed is not kept', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'lvssync-verdicts-'));
    const file = path.join(dir, 'verdicts.json');
    let runs = 0;
    const missing = async (): Promise<ToolRun> => ({ available: false, diagnostics: [], durationMs: ++runs });
    await new ToolCache(1000, Date.now, file).get('lvssync-no-such-validator', 'k', missing);
    await new ToolCache(1000, Date.now, file).get('lvssync-no-such-validator', 'k', missing);
    expect(runs).toBe(2);
    // nor when another validator's verdict is written beside it
    const both = new ToolCache(1000, Date.now, file);
    await both.get('lvssync-no-such-validator', 'k', missing);
    await both.get('sh', 'k', async () => ({ available: true, diagnostics: [], durationMs: 1 }));
    expect(Object.keys(JSON.parse(readFileSync(file, 'utf8')))).toEqual(['sh']);
    await new ToolCache(1000, Date.now, file).get('lvssync-no-such-validator', 'k', missing);
    expect(runs).toBe(4);
  });
});

describe('Store staging mirror', () => {
  let dir: string;
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  function setup(): Store {
    dir = mkdtempSync(path.join(tmpdir(), 'lvssync-store-'));
    mkdirSync(path.join(dir, 'etc/keepalived/conf.d'), { recursive: true });
    mkdirSync(path.join(dir, 'etc/ferm'), { recursive: true });
    writeFileSync(path.join(dir, 'etc/keepalived/keepalived.conf'), 'global_defs {\n}\n', { mode: 0o640 });
    for (let i = 0; i < 5; i++)
      writeFileSync(path.join(dir, `etc/keepalived/conf.d/fwm-${i}.conf`), `! ${i}\n`, { mode: 0o644 });
    writeFileSync(path.join(dir, 'etc/ferm/ferm.conf'), '# ferm\n');
    const { config, problems } = validateConfig({
      nodes: { lvs1: { address: '192.0.2.1' }, lvs2: { address: '192.0.2.2' } },
    });
    expect(problems).toEqual([]);
    return new Store(config, { prefix: dir });
  }

  const staged = (store: Store, txid: string, p: string) =>
    readFileSync(path.join(store.stagingRoot(txid), dir, p), 'utf8');
  const live = (p: string) => path.join(dir, p);

  it('stages a copy of every managed file, then copies again only what changed', async () => {
    const store = setup();
    // what changed in the staging tree since the agent last read it (all: read it in full)
    const changes = () => {
      const c = store.takeStagedChanges();
      return { all: c.all, paths: c.paths.sort() };
    };
    const t1 = 'aaaaaaaa01';
    store.begin(t1);
    expect(changes().all).toBe(true);
    expect(changes()).toEqual({ all: false, paths: [] });
    expect(staged(store, t1, 'etc/keepalived/conf.d/fwm-3.conf')).toBe('! 3\n');
    const tree = path.join(store.stagingRoot(t1), dir, 'etc/keepalived');
    expect(statSync(path.join(tree, 'keepalived.conf')).mode & 0o777).toBe(0o640);
    // a transaction that commits: the staged file becomes the live one
    store.put(t1, live('etc/keepalived/conf.d/fwm-1.conf'), 0o644, Buffer.from('! one\n'));
    store.remove(t1, live('etc/keepalived/conf.d/fwm-4.conf'));
    expect(changes()).toEqual({
      all: false,
      paths: [live('etc/keepalived/conf.d/fwm-1.conf'), live('etc/keepalived/conf.d/fwm-4.conf')],
    });
    await store.commit(t1);
    expect(readFileSync(live('etc/keepalived/conf.d/fwm-1.conf'), 'utf8')).toBe('! one\n');
    const untouched = statSync(path.join(tree, 'conf.d/fwm-2.conf')).ino;

    // an edit made by hand on this director meanwhile, and a transaction that is thrown away
    writeFileSync(live('etc/keepalived/conf.d/fwm-0.conf'), '! zero, by hand\n');
    const t2 = 'aaaaaaaa02';
    store.begin(t2);
    // the commit changed nothing in the staging tree; the hand edit was copied in
    expect(changes()).toEqual({ all: false, paths: [live('etc/keepalived/conf.d/fwm-0.conf')] });
    expect(staged(store, t2, 'etc/keepalived/conf.d/fwm-0.conf')).toBe('! zero, by hand\n');
    expect(readdirSync(path.join(tree, 'conf.d')).sort()).toEqual([
      'fwm-0.conf',
      'fwm-1.conf',
      'fwm-2.conf',
      'fwm-3.conf',
    ]);
    // unchanged files were not copied again
    expect(statSync(path.join(tree, 'conf.d/fwm-2.conf')).ino).toBe(untouched);
    store.put(t2, live('etc/keepalived/conf.d/fwm-9.conf'), 0o644, Buffer.from('! nine\n'));
    store.put(t2, live('etc/keepalived/conf.d/fwm-2.conf'), 0o644, Buffer.from('! two, staged\n'));
    store.discard(t2);

    // the next transaction sees the live files again, not what the thrown-away one staged
    const t3 = 'aaaaaaaa03';
    // the thrown-away transaction's files left the staging tree when it was discarded
    expect(changes()).toEqual({
      all: false,
      paths: [live('etc/keepalived/conf.d/fwm-2.conf'), live('etc/keepalived/conf.d/fwm-9.conf')],
    });
    store.begin(t3);
    // and the live one is copied in again
    expect(changes()).toEqual({ all: false, paths: [live('etc/keepalived/conf.d/fwm-2.conf')] });
    expect(staged(store, t3, 'etc/keepalived/conf.d/fwm-2.conf')).toBe('! 2\n');
    expect(readdirSync(path.join(store.stagingRoot(t3), dir, 'etc/keepalived/conf.d'))).not.toContain(
      'fwm-9.conf',
    );
    store.discard(t3);
    store.dropStaging();
    expect(readdirSync(path.join(dir, 'var/lib/lvssync'))).not.toContain('staging');
    expect(changes().all).toBe(true);
  });

  it('keeps the staging mirror for the next session, and builds it anew after a transaction that stopped half-way', async () => {
    const store = setup();
    const { config } = validateConfig({
      nodes: { lvs1: { address: '192.0.2.1' }, lvs2: { address: '192.0.2.2' } },
    });
    const session = () => new Store(config, { prefix: dir });
    const fwm = (i: number) => live(`etc/keepalived/conf.d/fwm-${i}.conf`);
    const t1 = 'bbbbbbbb01';
    store.begin(t1);
    store.put(t1, fwm(1), 0o644, Buffer.from('! one\n'));
    await store.commit(t1);
    const tree = path.join(store.stagingRoot(t1), dir, 'etc/keepalived/conf.d');
    const ino = statSync(path.join(tree, 'fwm-2.conf')).ino;

    // a new session takes the tree as it is: nothing is copied again, but it reads the set in full
    const b = session();
    const t2 = 'bbbbbbbb02';
    b.begin(t2);
    expect(statSync(path.join(tree, 'fwm-2.conf')).ino).toBe(ino);
    expect(b.takeStagedChanges().all).toBe(true);
    // it pushes; the first session's map is now stale and it takes the kept one instead
    b.put(t2, fwm(3), 0o644, Buffer.from('! three\n'));
    await b.commit(t2);
    const t3 = 'bbbbbbbb03';
    store.takeStagedChanges();
    store.begin(t3);
    expect(store.takeStagedChanges().all).toBe(true);
    expect(readFileSync(path.join(tree, 'fwm-3.conf'), 'utf8')).toBe('! three\n');
    expect(statSync(path.join(tree, 'fwm-2.conf')).ino).toBe(ino);

    // a transaction that stops after staging a file (the agent killed): the next session builds the
    // tree anew from the live files, so the staged file does not linger
    store.put(t3, fwm(4), 0o644, Buffer.from('! staged, never committed\n'));
    // (and a staged copy spoilt meanwhile, which a kept tree would keep)
    writeFileSync(path.join(tree, 'fwm-2.conf'), '! X\n');
    const c = session();
    c.begin('bbbbbbbb04');
    expect(readFileSync(path.join(tree, 'fwm-4.conf'), 'utf8')).toBe('! 4\n');
    expect(readFileSync(path.join(tree, 'fwm-2.conf'), 'utf8')).toBe('! 2\n');
    c.discard('bbbbbbbb04');
  });

  it('keeps file checksums between sessions (checksums.json), trusted while a file keeps its identity', () => {
    const store = setup();
    const old = new Date(Date.now() - 10_000);
    const fwm1 = live('etc/keepalived/conf.d/fwm-1.conf');
    for (const f of readdirSync(live('etc/keepalived/conf.d')))
      utimesSync(live(`etc/keepalived/conf.d/${f}`), old, old);
    const shaOf = (m: { path: string; sha256: string }[]) => m.find((f) => f.path === fwm1)!.sha256;
    const sha = (t: string) => createHash('sha256').update(t).digest('hex');
    expect(shaOf(store.manifest())).toBe(sha('! 1\n'));
    const saved = path.join(dir, 'var/lib/lvssync/checksums.json');
    const entries = JSON.parse(readFileSync(saved, 'utf8')) as [string, string, string][];
    expect(entries.map((e) => e[0])).toContain(fwm1);
    // a new session takes the kept checksum without reading the file (shown by a forged one)
    writeFileSync(
      saved,
      JSON.stringify(entries.map((e) => (e[0] === fwm1 ? [e[0], e[1], 'f'.repeat(64)] : e))),
    );
    const { config } = validateConfig({
      nodes: { lvs1: { address: '192.0.2.1' }, lvs2: { address: '192.0.2.2' } },
    });
    expect(shaOf(new Store(config, { prefix: dir }).manifest())).toBe('f'.repeat(64));
    // a file that changed is read again; a torn cache file is ignored
    writeFileSync(fwm1, '! one\n');
    utimesSync(fwm1, old, old);
    expect(shaOf(new Store(config, { prefix: dir }).manifest())).toBe(sha('! one\n'));
    writeFileSync(saved, '[["x"');
    expect(shaOf(new Store(config, { prefix: dir }).manifest())).toBe(sha('! one\n'));
  });

  it('prunes the confirmation records of old transactions only', () => {
    const store = setup();
    const state = path.join(dir, 'var/lib/lvssync');
    mkdirSync(state, { recursive: true });
    const now = Date.now();
    const old = store.confirmPath('bbbbbbbb01');
    const recent = store.confirmPath('bbbbbbbb02');
    writeFileSync(old, 'finished\n');
    writeFileSync(recent, 'finished\n');
    writeFileSync(path.join(state, 'confirm-notatxid'), 'x\n');
    utimesSync(old, new Date(now - 7_200_000), new Date(now - 7_200_000));
    expect(store.pruneConfirmations(3_600_000, now)).toBe(1);
    expect(
      readdirSync(state)
        .filter((f) => f.startsWith('confirm-'))
        .sort(),
    ).toEqual(['confirm-bbbbbbbb02', 'confirm-notatxid']);
  });
});
