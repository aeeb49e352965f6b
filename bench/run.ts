// `npm run bench`: runs lvssync's benchmarks and prints each next to the peer tool measured in the
// same run. `npm run bench -- check` runs one group. Exit status 0 even when a target is missed (the
// table says PASS/MISS); non-zero only when a benchmark could not run.

import { execFileSync } from 'node:child_process';
import { benchAudit } from './audit.js';
import { benchCheck, printCheck } from './check.js';
import { benchCheckCli } from './check-cli.js';
import { benchPush } from './push.js';
import { benchWatch } from './watch.js';

function which(name: string): string | undefined {
  try {
    return execFileSync(
      'sh',
      ['-c', `command -v ${name} || ls /usr/sbin/${name} /sbin/${name} 2>/dev/null`],
      {
        encoding: 'utf8',
      },
    )
      .trim()
      .split('\n')[0];
  } catch {
    return undefined;
  }
}

async function main(): Promise<void> {
  const groups = process.argv.slice(2);
  const want = (g: string) => groups.length === 0 || groups.includes(g);
  console.log(`lvssync benchmarks, node ${process.version}, ${new Date().toISOString()}`);
  if (want('check')) {
    const keepalived = which('keepalived');
    if (!keepalived)
      console.log('keepalived is not installed: ratios are not available (run scripts/setup-host.sh)');
    const results = [];
    for (const n of [1_000, 10_000]) results.push(await benchCheck(n, keepalived));
    printCheck(results);
  }
  if (want('check-cli')) await benchCheckCli(which('keepalived'));
  for (const [group, run] of [
    ['push', benchPush],
    ['audit', benchAudit],
    ['watch', benchWatch],
  ] as const) {
    if (!want(group)) continue;
    if (process.getuid?.() !== 0) console.log(`\n${group}: skipped (the lab needs root)`);
    else await run();
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.stack : e);
  process.exit(1);
});
