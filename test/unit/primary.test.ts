// Who the primary is (core/primary.ts), and how a director adopts a later handover (shell/primary.ts):
// lvssync.yaml's primary rewritten in place with its comments, the file before kept, the handover's
// number recorded.
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { validateConfig } from '../../src/core/config.js';
import { compareClaims, describeClaim, settleClaims } from '../../src/core/primary.js';
import { adoptClaim, readClaim, withPrimary } from '../../src/shell/primary.js';

describe('compareClaims and settleClaims', () => {
  it('the later handover wins; the same handover naming two primaries is a conflict', () => {
    const a = { primary: 'lvs1', epoch: 0 };
    expect(compareClaims(a, { primary: 'lvs2', epoch: 1 })).toBe('theirs-newer');
    expect(compareClaims({ primary: 'lvs2', epoch: 2 }, a)).toBe('mine-newer');
    expect(compareClaims(a, { primary: 'lvs1', epoch: 0 })).toBe('same');
    expect(compareClaims({ primary: 'lvs2', epoch: 3 }, { primary: 'lvs3', epoch: 3 })).toBe('conflict');
  });

  it('settles on the latest handover, or names who disagrees', () => {
    expect(
      settleClaims(
        new Map([
          ['lvs1', { primary: 'lvs1', epoch: 0 }],
          ['lvs2', { primary: 'lvs2', epoch: 1 }],
          ['lvs3', { primary: 'lvs2', epoch: 1 }],
        ]),
      ),
    ).toEqual({ claim: { primary: 'lvs2', epoch: 1 } });
    const split = settleClaims(
      new Map([
        ['lvs2', { primary: 'lvs2', epoch: 2 }],
        ['lvs3', { primary: 'lvs3', epoch: 2 }],
      ]),
    );
    expect(split).toEqual({
      conflict: expect.stringMatching(/handover 2 \(lvs2 says lvs2, lvs3 says lvs3\)/),
    });
    expect(describeClaim({ primary: 'lvs1', epoch: 0 })).toBe('lvs1');
    expect(describeClaim({ primary: 'lvs2', epoch: 4 })).toBe('lvs2 (handover 4)');
  });
});

describe('adoptClaim', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  function setup() {
    const dir = mkdtempSync(path.join(tmpdir(), 'lvssync-primary-'));
    dirs.push(dir);
    const file = path.join(dir, 'lvssync.yaml');
    const text = [
      '# the same file on every director',
      'cluster: lab',
      '',
      '# where people edit',
      'primary: lvs1   # moved by lvssync primary',
      'nodes:',
      '  lvs1: { address: 192.0.2.1 }',
      '  lvs2:',
      '    address: 192.0.2.2',
      `stateDir: ${path.join(dir, 'state')}`,
      '',
    ].join('\n');
    writeFileSync(file, text, { mode: 0o640 });
    const config = validateConfig(parse(text)).config;
    return { dir, file, text, config };
  }

  it('rewrites primary in place (comments and layout kept), keeps the file before, records the handover', () => {
    const { dir, file, text, config } = setup();
    expect(readClaim(config)).toEqual({ primary: 'lvs1', epoch: 0 });
    const changed = adoptClaim(config, file, { primary: 'lvs2', epoch: 1 }, 'lvs3');
    expect(changed).toBe('primary lvs1 -> lvs2 (handover 1, learnt from lvs3)');
    const after = readFileSync(file, 'utf8');
    expect(after).toContain('# where people edit');
    expect(after).toMatch(/^primary: lvs2 +# moved by lvssync primary$/m);
    expect(after).toContain('lvs1: { address: 192.0.2.1 }');
    expect(after.replace(/^primary: lvs2/m, 'primary: lvs1')).toBe(text);
    expect(statSync(file).mode & 0o777).toBe(0o640);
    expect(validateConfig(parse(after)).config.primary).toBe('lvs2');
    // the file before, beside the state; the number of the handover
    expect(readFileSync(path.join(dir, 'state', 'primary-0.lvssync.yaml'), 'utf8')).toBe(text);
    expect(config.primary).toBe('lvs2');
    expect(readClaim(config)).toEqual({ primary: 'lvs2', epoch: 1 });
    // the same again changes nothing
    expect(adoptClaim(config, file, { primary: 'lvs2', epoch: 1 }, 'lvs3')).toBe('');
    expect(readdirSync(path.join(dir, 'state')).filter((f) => f.endsWith('.lvssync.yaml'))).toEqual([
      'primary-0.lvssync.yaml',
    ]);
  });

  it('a file without primary gets the key; a quoted value is replaced alone', () => {
    expect(withPrimary('cluster: lab\nnodes: {}\n', 'lvs2')).toBe('cluster: lab\nnodes: {}\nprimary: lvs2\n');
    expect(withPrimary('primary: "lvs1" # here\ncluster: x\n', 'lvs3')).toBe(
      'primary: lvs3 # here\ncluster: x\n',
    );
  });

  it('a later handover back to the same name only moves the number on', () => {
    const { file, config } = setup();
    adoptClaim(config, file, { primary: 'lvs1', epoch: 5 }, 'lvs2');
    expect(readFileSync(file, 'utf8')).toMatch(/^primary: lvs1/m);
    expect(readClaim(config)).toEqual({ primary: 'lvs1', epoch: 5 });
  });
});
