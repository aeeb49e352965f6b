// Runs inside a lab director (lvs1): pushes one edited conf.d file at a time the way the watch daemon
// does (one SSH session and agent kept open, parse and validator caches kept), and prints the stage
// timings of each push as JSON. Used by bench/push.ts; not part of lvssync itself.
//   node dist/bench/push-driver.js EDITS N [validate|transfer]

import { writeFileSync } from 'node:fs';
import { emptySnapshot } from '../src/core/snapshot.js';
import { loadConfig, requireSelfNode } from '../src/shell/load-config.js';
import { PeerKeeper, peerOf } from '../src/shell/peer.js';
import { runPush } from '../src/shell/push.js';
import { Workspace } from '../src/shell/workspace.js';
import { virtualServerFile } from './gen.js';

async function main(): Promise<void> {
  const edits = Number(process.argv[2] ?? 5);
  const n = Number(process.argv[3] ?? 1000);
  const mode = process.argv[4] ?? 'validate';
  const { config } = await loadConfig(undefined);
  const self = requireSelfNode(config, undefined);
  const keeper = new PeerKeeper(config, peerOf(config, self), self);
  const keepers = () => keeper;
  const workspace = new Workspace();
  const snapshot = emptySnapshot();
  const out: Record<string, number>[] = [];
  try {
    // warm-up: the daemon's first push after it starts (session opened, everything parsed once)
    const first = await runPush({ config, self, workspace, snapshot, keepers, reload: false });
    if (first.result !== 'pushed' && first.result !== 'in-sync')
      throw new Error(`warm-up push: ${first.result} ${first.error?.message ?? ''}`);
    for (let i = 1; i <= edits; i++) {
      const mark = 100 + ((i * 211) % n);
      writeFileSync(
        `/etc/keepalived/conf.d/fwm-${mark}.conf`,
        virtualServerFile(mark, (Date.now() % 1_000_000_000) + i),
      );
      const r = await runPush({
        config,
        self,
        workspace,
        snapshot,
        keepers,
        reload: false,
        ...(mode === 'transfer' ? { external: false } : {}),
      });
      if (r.result !== 'pushed') throw new Error(`push ${i}: ${r.result} ${r.error?.message ?? ''}`);
      const peer = Object.entries(r.peers[0]?.peerTimings ?? {}).map(([k, v]) => [`peer ${k}`, v]);
      const local = Object.entries(r.local?.timings ?? {}).map(([k, v]) => [`here ${k}`, v]);
      out.push({ ...r.timings, ...Object.fromEntries(local), ...Object.fromEntries(peer) });
    }
  } finally {
    keeper.close();
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? e.stack : e}\n`);
  process.exit(1);
});
