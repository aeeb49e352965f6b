// The core is pure: no file system, network, child processes, clock or logger.
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
});
