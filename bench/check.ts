// Benchmark of lvssync's own validation (parse, evaluate, lint) on generated sets of 1,000 and 10,000
// `virtual_server fwmark` files, next to `keepalived -t -f` on the same files in the same run.
// Targets: the 10,000-server check at least 4x faster than keepalived -t; re-checking after one changed
// file, with the other files' parse trees cached, under 10 ms.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { checkKeepalived } from '../src/core/check.js';
import { emptySnapshot } from '../src/core/snapshot.js';
import { readKeepalivedSnapshot } from '../src/shell/read-snapshot.js';
import { Workspace } from '../src/shell/workspace.js';
import { generateSet, virtualServerFile, writeSet } from './gen.js';
import { fmtMs, median, nowMs, percentile, printTable, timeCommand, verdict } from './util.js';

const CONF = '/etc/keepalived/keepalived.conf';

export interface CheckBenchResult {
  n: number;
  oursMs: number;
  keepalivedMs: number;
  ratio: number;
  recheckP50: number;
  recheckP95: number;
  /** Re-check after an edit that brings a finding, or removes it (a full check from cached parses). */
  findingP50: number;
}

export async function benchCheck(n: number, keepalived: string | undefined): Promise<CheckBenchResult> {
  const root = mkdtempSync(path.join(tmpdir(), `lvssync-bench-check-${n}-`));
  try {
    writeSet(root, generateSet(n));
    // Full check from disk, cold: read every file, parse, evaluate includes, build the model, lint.
    const full: number[] = [];
    let errors = -1;
    for (let i = 0; i < 3; i++) {
      const t0 = nowMs();
      const snap = emptySnapshot();
      // One workspace for reading and checking, as `lvssync check` does: each file is parsed once.
      const once = new Workspace();
      await readKeepalivedSnapshot(snap, root, CONF, undefined, once);
      const r = checkKeepalived(snap, CONF, { memory: once });
      full.push(nowMs() - t0);
      errors = r.diagnostics.filter((d) => d.severity === 'error').length;
      if (r.model.virtualServers.length !== n)
        throw new Error(`model has ${r.model.virtualServers.length} of ${n}`);
    }
    if (errors !== 0) throw new Error(`generated set has ${errors} errors`);

    // keepalived -t on the same tree (relative include, so no mount namespace is needed).
    const theirs: number[] = [];
    if (keepalived) {
      for (let i = 0; i < 3; i++) {
        theirs.push(timeCommand([keepalived, '-t', '-l', '-n', '-f', path.join(root, CONF)], [0, 1, 5]).ms);
      }
    }

    // Re-check after one changed file (a weight and a comment): the snapshot tells which file
    // changed, its parse, model and lints are redone, the rest of the previous result stands.
    const snap = emptySnapshot();
    const ws = new Workspace();
    await readKeepalivedSnapshot(snap, root, CONF, undefined, ws);
    checkKeepalived(snap, CONF, { memory: ws });
    const recheck: number[] = [];
    for (let i = 1; i <= 40; i++) {
      const mark = 100 + ((i * 37) % n);
      const p = `/etc/keepalived/conf.d/fwm-${mark}.conf`;
      const text = virtualServerFile(mark, i).replace(/weight \d+/, `weight ${1 + (i % 99)}`);
      writeFileSync(path.join(root, p), text);
      const t0 = nowMs();
      snap.files.set(p, { path: p, text, mode: 0o100644 });
      const r = checkKeepalived(snap, CONF, { memory: ws });
      recheck.push(nowMs() - t0);
      if (r.model.virtualServers.length !== n) throw new Error('re-check lost servers');
      if (!r.model.virtualServers.some((v) => v.realServers.some((s) => s.weight?.value === 1 + (i % 99))))
        throw new Error('re-check did not see the edit');
    }
    // An edit that brings a finding (and its fix) is re-checked in full, from the cached parses.
    const withFinding: number[] = [];
    for (let i = 1; i <= 10; i++) {
      const mark = 100 + ((i * 53) % n);
      const p = `/etc/keepalived/conf.d/fwm-${mark}.conf`;
      const good = snap.files.get(p)!.text;
      for (const text of [good.replace(/weight \d+/, 'weight 70000'), good]) {
        const t0 = nowMs();
        snap.files.set(p, { path: p, text, mode: 0o100644 });
        const r = checkKeepalived(snap, CONF, { memory: ws });
        withFinding.push(nowMs() - t0);
        const out = r.diagnostics.some((d) => d.code === 'KA_OUT_OF_RANGE');
        if (out !== text.includes('70000')) throw new Error('re-check missed the finding or its fix');
      }
    }
    const oursMs = median(full);
    const keepalivedMs = theirs.length ? median(theirs) : Number.NaN;
    return {
      n,
      oursMs,
      keepalivedMs,
      ratio: keepalivedMs / oursMs,
      recheckP50: percentile(recheck, 50),
      recheckP95: percentile(recheck, 95),
      findingP50: percentile(withFinding, 50),
    };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

export function printCheck(results: CheckBenchResult[]): boolean {
  let ok = true;
  for (const r of results) {
    const big = r.n >= 10_000;
    const ratioOk = !big || r.ratio >= 4;
    const recheckOk = !big || r.recheckP50 < 10;
    if (big) ok &&= ratioOk && recheckOk;
    printTable(`check: ${r.n.toLocaleString('en')} virtual_server fwmark files`, [
      { name: 'lvssync parse+evaluate+lint (median of 3)', value: fmtMs(r.oursMs) },
      { name: 'keepalived -t -f (median of 3)', value: fmtMs(r.keepalivedMs) },
      {
        name: 'ratio keepalived -t / lvssync',
        value: `${r.ratio.toFixed(1)}x`,
        note: big ? verdict(ratioOk, '>= 4x') : '',
      },
      {
        name: 're-check after one changed file p50',
        value: fmtMs(r.recheckP50),
        note: big ? verdict(recheckOk, '< 10 ms') : '',
      },
      { name: 're-check after one changed file p95', value: fmtMs(r.recheckP95) },
      {
        name: 're-check after an edit that adds or removes a finding p50 (in full, cached parses)',
        value: fmtMs(r.findingP50),
      },
    ]);
  }
  return ok;
}
