// The direct scanner (scan.ts) must give exactly the directives of the lossless path (cst.ts +
// evaluate.ts) whenever it accepts a file, and must decline every file it cannot read that way.
// Checked on every known keepalived file and on thousands of deterministic mutations of them.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { Position } from '../../src/core/diagnostic.js';
import { type Directive, evaluateKeepalived } from '../../src/core/keepalived/evaluate.js';
import { scanDirectives } from '../../src/core/keepalived/scan.js';
import { emptySnapshot } from '../../src/core/snapshot.js';
import { keepalivedFiles } from '../helpers/fixtures.js';

const P = '/etc/keepalived/keepalived.conf';

interface Plain {
  name: string;
  args: string[];
  pos: Position;
  argPos: Position[];
  children?: Plain[];
}

function plain(ds: readonly Directive[]): Plain[] {
  return ds.map((d) => {
    const p: Plain = {
      name: d.name,
      args: [...d.args],
      pos: { ...d.pos },
      argPos: d.argPos.map((a) => ({ ...a })),
    };
    if (d.children) p.children = plain(d.children);
    return p;
  });
}

/** The lossless path's reading of one file, or undefined when it reports anything or follows an include. */
function lossless(text: string): Plain[] | undefined {
  const s = emptySnapshot();
  s.files.set(P, { path: P, text, mode: 0o100644 });
  s.dirs.add('/etc/keepalived');
  const ev = evaluateKeepalived(s, P, { direct: false });
  if (ev.diagnostics.length > 0 || ev.includes.length > 0) return undefined;
  return plain(ev.directives);
}

/** Deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PIECES = [
  '{',
  '}',
  '"',
  '#',
  '!',
  '\\',
  '\\#',
  '\r\n',
  '\n',
  ' ',
  '\t',
  '@x ',
  'a"b"',
  '"q q"',
  '{ }',
  'w',
];

function mutate(text: string, r: () => number): string {
  let t = text;
  const edits = 1 + Math.floor(r() * 3);
  for (let k = 0; k < edits; k++) {
    const at = Math.floor(r() * (t.length + 1));
    if (r() < 0.3 && t.length > 0) t = t.slice(0, at) + t.slice(at + 1 + Math.floor(r() * 3));
    else t = t.slice(0, at) + PIECES[Math.floor(r() * PIECES.length)] + t.slice(at);
  }
  return t;
}

describe('scanDirectives', () => {
  const files = keepalivedFiles();

  it('reads a plain file with positions of keyword and arguments', () => {
    const text = 'virtual_server fwmark  100 {\n  real_server "198.51.100.10" 80 { weight 2 }\n}\n';
    const ds = scanDirectives(text, P)!;
    expect(plain(ds)).toEqual(lossless(text));
    expect(ds[0]!.argPos[1]).toEqual({ file: P, line: 1, col: 24 });
    expect(ds[0]!.children![0]!.args).toEqual(['198.51.100.10', '80']);
    expect(ds[0]!.children![0]!.argPos[1]).toEqual({ file: P, line: 2, col: 31 });
  });

  it.each([
    ['a definition', '$X=1\nfoo $X\n'],
    ['an include', 'include conf.d/*.conf\n'],
    ['a conditional line', '@lvs1 router_id A\n'],
    ['~SEQ', '~SEQ(i, 1, 3) foo $i\n'],
    ['an unclosed block', 'a {\n b 1\n'],
    ['an extra brace', 'a 1\n}\n'],
    ['a block with no keyword', '{\n a 1\n}\n'],
    ['an unterminated string', 'a "b\n'],
    ['a glued comment', 'a b#c\n'],
  ])('declines %s', (_what, text) => {
    expect(scanDirectives(text, P)).toBeUndefined();
  });

  it.each(files)('agrees with the lossless path: %s', (f) => {
    const text = readFileSync(f, 'utf8');
    const direct = scanDirectives(text, P);
    const slow = lossless(text);
    if (direct) expect(plain(direct)).toEqual(slow);
  });

  it('agrees with the lossless path on 4,000 mutated files, and reads most clean ones', () => {
    const r = rng(20261125);
    let accepted = 0;
    let compared = 0;
    const texts = files.map((f) => readFileSync(f, 'utf8')).filter((t) => t.length < 20_000);
    let cleanAccepted = 0;
    let clean = 0;
    for (const t of texts) {
      if (lossless(t) !== undefined) {
        clean++;
        if (scanDirectives(t, P)) cleanAccepted++;
      }
    }
    for (let k = 0; k < 4000; k++) {
      const text = mutate(texts[k % texts.length]!, r);
      const direct = scanDirectives(text, P);
      if (!direct) continue;
      accepted++;
      const slow = lossless(text);
      // Accepted means the lossless path reads it without a finding, to the same directives.
      expect(slow, text).toBeDefined();
      expect(plain(direct), text).toEqual(slow);
      compared++;
    }
    expect(compared).toBe(accepted);
    expect(accepted).toBeGreaterThan(500);
    expect(cleanAccepted).toBeGreaterThan(clean / 2);
  });
});
