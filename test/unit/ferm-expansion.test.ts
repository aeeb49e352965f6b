// The kept expansion of ferm.conf (audit and reload checks): reused only while every file in ferm's
// directory and the ferm binary are what they were, never for a set that asks the host for something.
// The shell half runs the real ferm.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/core/config.js';
import { fermExpansionKey, fermUncacheable } from '../../src/core/ferm/expansion-key.js';
import { which } from '../../src/shell/exec.js';
import { expandFerm } from '../../src/shell/ferm-expand.js';

const DIR = '/etc/ferm';
const set = (files: Record<string, string>) => new Map(Object.entries(files));

describe('fermUncacheable', () => {
  it('takes a plain set, with includes inside ferm’s directory', () => {
    const files = set({
      '/etc/ferm/ferm.conf': "@include 'conf.d/';\n@include '/etc/ferm/lvs.ferm';\n# `date` in a comment\n",
      '/etc/ferm/lvs.ferm': 'table mangle chain PREROUTING daddr 192.0.2.10 MARK set-mark 100;\n',
    });
    expect(fermUncacheable(files, DIR)).toBeUndefined();
  });

  it.each([
    ['backticks', '@def $IP = `hostname -i`;\n', /backticks/],
    ['@resolve', 'daddr @resolve(www.example.com) ACCEPT;\n', /@resolve/],
    ['a command', "@include 'genrules |';\n", /command's output/],
    ['a file outside', "@include '/srv/rules.ferm';\n", /outside/],
    ['a path going up', "@include '../rules.ferm';\n", /outside/],
    ['a computed path', '@include $RULES;\n', /computed/],
  ])('refuses a set with %s, naming the file', (_name, text, why) => {
    const reason = fermUncacheable(set({ '/etc/ferm/ferm.conf': text }), DIR);
    expect(reason).toMatch(why);
    expect(reason).toContain('/etc/ferm/ferm.conf');
  });

  it('keys on every path, every text and the binary', () => {
    const a = set({ '/etc/ferm/ferm.conf': 'x', '/etc/ferm/b': 'y' });
    const k = fermExpansionKey(a, 'ferm:1');
    expect(fermExpansionKey(set({ '/etc/ferm/b': 'y', '/etc/ferm/ferm.conf': 'x' }), 'ferm:1')).toBe(k);
    expect(fermExpansionKey(set({ '/etc/ferm/ferm.conf': 'x', '/etc/ferm/b': 'y ' }), 'ferm:1')).not.toBe(k);
    expect(fermExpansionKey(set({ '/etc/ferm/ferm.conf': 'x', '/etc/ferm/c': 'y' }), 'ferm:1')).not.toBe(k);
    expect(fermExpansionKey(a, 'ferm:2')).not.toBe(k);
  });
});

describe.skipIf(!which('ferm'))('expandFerm (real ferm)', () => {
  let dir = '';
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const rules = (mark: number) =>
    `domain ip table mangle chain PREROUTING daddr 192.0.2.10 proto tcp dport 80 MARK set-mark ${mark};\n`;

  it('runs ferm once per content, and again after any change to its directory', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'lvssync-ferm-'));
    const ferm = path.join(dir, 'ferm', 'ferm.conf');
    const state = path.join(dir, 'state');
    const { config, problems } = validateConfig({
      nodes: { lvs1: { address: '192.0.2.1' }, lvs2: { address: '192.0.2.2' } },
      files: { ferm },
    });
    expect(problems).toEqual([]);
    const { mkdirSync } = await import('node:fs');
    mkdirSync(path.dirname(ferm));
    writeFileSync(ferm, rules(100));
    const first = await expandFerm(config, state);
    expect(first).toMatchObject({ ok: true, cached: false });
    expect(first.lines).toMatch(/--set-mark 100\b/);
    const again = await expandFerm(config, state);
    expect(again).toMatchObject({ ok: true, cached: true, lines: first.lines });
    // a change to ferm.conf, then a new file beside it: ferm runs again each time
    writeFileSync(ferm, rules(101));
    const changed = await expandFerm(config, state);
    expect(changed.cached).toBe(false);
    expect(changed.lines).toMatch(/--set-mark 101\b/);
    writeFileSync(path.join(dir, 'ferm', 'extra.ferm'), '# nothing\n');
    expect((await expandFerm(config, state)).cached).toBe(false);
    expect((await expandFerm(config, state)).cached).toBe(true);
    // a set with backticks is expanded every time
    writeFileSync(ferm, `@def $M = \`echo 102\`;\n${rules(100).replace('set-mark 100', 'set-mark $M')}`);
    for (let i = 0; i < 2; i++) {
      const r = await expandFerm(config, state);
      expect(r).toMatchObject({ ok: true, cached: false });
      expect(r.lines).toMatch(/--set-mark 102\b/);
    }
    // a failing set is reported, never kept
    writeFileSync(ferm, 'table mangle chain PREROUTING {\n');
    const bad = await expandFerm(config, state);
    expect(bad.ok).toBe(false);
    expect(bad.error).toBeTruthy();
    expect(JSON.parse(readFileSync(path.join(state, 'ferm-expansion.json'), 'utf8')).lines).toMatch(
      /set-mark 101\b/,
    );
  });
});
