// The man page and the bash completion come from the command table: every visible command and
// option is in both, hidden ones in neither, and the completion is valid bash that completes them.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { bashCompletion, describeProgram, manPage } from '../../scripts/package/docs.js';
import { defineProgram, VERSION } from '../../src/cli.js';
import { EXIT } from '../../src/errors.js';
import { FIXTURES } from '../helpers/fixtures.js';

const program = await defineProgram({ stdout: () => {}, stderr: () => {}, isTTY: false } as never, () => {});
const { commands } = describeProgram(program);

describe('lvssync(8) and the bash completion', () => {
  it('the source tree says the same version as package.json', () => {
    const pkg = JSON.parse(readFileSync(path.resolve(FIXTURES, '..', '..', 'package.json'), 'utf8'));
    expect(VERSION).toBe(pkg.version);
  });

  it('documents every visible command and option, and no hidden one', () => {
    const man = manPage(program, '9.9', '2026-12-01');
    expect(commands.map((c) => c.name)).toEqual(
      expect.arrayContaining([
        'check',
        'push',
        'diff',
        'rollback',
        'watch',
        'audit',
        'status',
        'init',
        'agent',
      ]),
    );
    expect(commands.map((c) => c.name)).not.toContain('watch-worker');
    for (const c of commands) {
      expect(man).toContain(`.SS "lvssync ${c.name.replace(/-/g, '\\-')}"`);
      for (const o of c.options) expect(man).toContain(`.B ${o.flags.replace(/-/g, '\\-')}`);
    }
    expect(man).not.toMatch(/guard\\-seconds|watch\\-tx/);
    for (const code of Object.values(EXIT)) expect(man).toMatch(new RegExp(`^\\.B ${code}$`, 'm'));
    expect(man).toMatch(/^\.TH LVSSYNC 8 "2026-12-01" "lvssync 9\.9"/);
    // no line starts with a dot or quote that roff would take for a request
    for (const l of man.split('\n'))
      if (!/^\.(TH|SH|SS|TP|B|I|BR|PP|br)\b/.test(l)) expect(l).not.toMatch(/^['.]/);
  });

  const bash = spawnSync('bash', ['--version']).status === 0;
  it.skipIf(!bash)("the completion is valid bash and completes commands and each command's options", () => {
    const script = bashCompletion(program);
    const complete = (words: string[]) =>
      spawnSync(
        'bash',
        [
          '-c',
          `${script}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _lvssync; printf '%s\\n' "\${COMPREPLY[@]}"`,
        ],
        { encoding: 'utf8' },
      );
    const top = complete(['lvssync', '']);
    expect(top.status, top.stderr).toBe(0);
    expect(top.stdout.split('\n')).toEqual(expect.arrayContaining(commands.map((c) => c.name)));
    expect(complete(['lvssync', 'push', '--dr']).stdout.trim()).toBe('--dry-run');
    expect(complete(['lvssync', 'check', '--no-e']).stdout.trim()).toBe('--no-external');
    expect(complete(['lvssync', 'agent', '--g']).stdout.trim()).toBe('');
  });
});
