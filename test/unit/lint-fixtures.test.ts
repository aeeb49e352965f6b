// One fixture folder per lint case (test/fixtures/lint/<case>): the folder is the director's
// /etc/keepalived; expected.json lists the findings {code, file, line} lvssync must report, no more.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkKeepalived } from '../../src/core/check.js';
import { FIXTURES, keepalivedFolderSnapshot, subdirs } from '../helpers/fixtures.js';

const LINT = path.join(FIXTURES, 'lint');

describe('keepalived lints by fixture', () => {
  it.each(subdirs(LINT))('%s', (name) => {
    const dir = path.join(LINT, name);
    const expected = JSON.parse(readFileSync(path.join(dir, 'expected.json'), 'utf8')) as {
      code: string;
      file: string;
      line: number;
    }[];
    const snapshot = keepalivedFolderSnapshot(dir);
    const r = checkKeepalived(snapshot, '/etc/keepalived/keepalived.conf', { configId: 'lvs1' });
    const got = r.diagnostics
      .map((d) => ({ code: d.code, file: path.posix.relative('/etc/keepalived', d.file), line: d.line }))
      .sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.code.localeCompare(b.code));
    const want = [...expected].sort(
      (a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.code.localeCompare(b.code),
    );
    expect(got).toEqual(want);
    for (const d of r.diagnostics) {
      expect(d.line).toBeGreaterThan(0);
      expect(d.col).toBeGreaterThan(0);
      expect(d.message.length).toBeGreaterThan(10);
    }
  });
});
