// The core is pure: no file system, network, child processes, clock or logger, and no state kept in a
// module: what is kept between runs is a value its owner passes in (CheckMemory, Workspace).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { listFiles } from '../helpers/fixtures.js';

const CORE = path.resolve(import.meta.dirname, '..', '..', 'src', 'core');
const FORBIDDEN =
  /from ['"](node:)?(fs|fs\/promises|child_process|net|dgram|http|https|os|ssh2|chokidar|pino|node-cron)['"]/;
const CLOCK = /\b(Date\.now|new Date\(|performance\.now|setTimeout|setInterval|Math\.random)\b/;

describe('src/core', () => {
  it.each(listFiles(CORE).filter((f) => f.endsWith('.ts')))('%s imports no I/O and reads no clock', (f) => {
    const text = readFileSync(f, 'utf8');
    expect(text).not.toMatch(FORBIDDEN);
    expect(text).not.toMatch(CLOCK);
  });

  it.each(listFiles(CORE).filter((f) => f.endsWith('.ts')))('%s keeps no state at module level', (f) => {
    const lines = readFileSync(f, 'utf8').split('\n');
    // a top-level variable, or a collection a function could add to: module state
    expect(lines.filter((l) => /^(export )?(let|var) /.test(l))).toEqual([]);
    const collections = lines.filter((l) =>
      /^(export )?const \w+(: [^=]+)? = new (Map|WeakMap|Set|WeakSet)\b/.test(l),
    );
    // constant tables are allowed, typed read-only so that nothing can change them
    expect(collections.filter((l) => !/^(export )?const \w+: Readonly(Set|Map)</.test(l))).toEqual([]);
  });
});
