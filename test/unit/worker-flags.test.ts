// The watch worker's node flags, as node takes them: the daemon's memory-saving flags do not reach
// it, and it starts with the large young generation a cold check of a whole set needs.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { workerEnv, workerExecArgv } from '../../src/commands/watch.js';

const NEW_SPACE =
  "const s = require('v8').getHeapSpaceStatistics().find((x) => x.space_name === 'new_space'); " +
  "process.stdout.write(JSON.stringify({ size: s.space_size, jitless: process.execArgv.includes('--jitless') }))";

function newSpaceOf(execArgv: string[], env: NodeJS.ProcessEnv): { size: number; jitless: boolean } {
  return JSON.parse(
    execFileSync(process.execPath, [...execArgv, '-e', NEW_SPACE], {
      env,
      encoding: 'utf8',
      // (node warns that --jitless turns WebAssembly off: the daemon's case, not this test's output)
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
}

describe('the watch worker’s node flags', () => {
  it('a daemon started lean (the unit’s NODE_OPTIONS, --jitless) forks a worker with a 64 MiB young generation', () => {
    const daemonArgv = ['--jitless', '--max-semi-space-size=1', '--no-opt', '--stack-size=900'];
    const daemonEnv = { ...process.env, NODE_OPTIONS: '--max-semi-space-size=1 --trace-warnings' };
    const argv = workerExecArgv(daemonArgv);
    expect(argv).toContain('--stack-size=900');
    const env = workerEnv(daemonEnv);
    expect(env.NODE_OPTIONS).toBe('--trace-warnings');
    const worker = newSpaceOf(argv, env);
    expect(worker.jitless).toBe(false);
    expect(worker.size).toBeGreaterThanOrEqual(64 * 1024 * 1024);
    // and the daemon's own flags do shrink it (the comparison is not vacuous)
    expect(newSpaceOf(daemonArgv, daemonEnv).size).toBeLessThanOrEqual(2 * 1024 * 1024);
  });
});
