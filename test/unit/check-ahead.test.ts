// The agent reads and checks its staged copy ahead of a validation: what arrives while it does (the
// primary's puts, the validation itself) is answered between the reading and the lints, and a
// validation that comes while the check ahead still lints starts its validators first and takes
// what the check ahead leaves.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { emptySnapshot } from '../../src/core/snapshot.js';
import { checkAhead, checkDirector } from '../../src/shell/check-director.js';
import type { FermRun, ToolRun } from '../../src/shell/tools.js';
import { ToolCache, Workspace } from '../../src/shell/workspace.js';

const root = mkdtempSync(path.join(tmpdir(), 'lvssync-ahead-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const KA = '/etc/keepalived/keepalived.conf';
const FERM = '/etc/ferm/ferm.conf';
const write = (p: string, text: string) => {
  mkdirSync(path.dirname(path.join(root, p)), { recursive: true });
  writeFileSync(path.join(root, p), text);
};
const server = (mark: number, weight = 1) =>
  `virtual_server fwmark ${mark} {\n    lb_algo rr\n    lb_kind DR\n    real_server 198.51.100.${mark % 250} {\n        weight ${weight}\n    }\n}\n`;

write(KA, 'global_defs {\n    router_id LVS2\n}\ninclude conf.d/*.conf\n');
const marks: string[] = [];
for (let m = 1; m <= 300; m++) {
  write(`/etc/keepalived/conf.d/fwm-${m}.conf`, server(m));
  marks.push(`    proto tcp dport 80 daddr 192.0.2.10 MARK set-mark ${m};`);
}
write(FERM, `domain ip table mangle chain PREROUTING {\n${marks.join('\n')}\n}\n`);

/** The order in which the validators were asked for, with the events of the test. */
class Recording extends ToolCache {
  readonly events: string[] = [];
  override get<T extends FermRun | ToolRun>(tool: string, key: string, run: () => Promise<T>): Promise<T> {
    this.events.push(tool);
    return super.get(tool, key, run);
  }
}

const options = (ws: Workspace, snapshot = emptySnapshot()) => ({
  root,
  keepalivedPath: KA,
  fermPath: FERM,
  snapshot,
  workspace: ws,
  external: true,
  untrusted: true,
  hostSpecific: 'drop' as const,
  boundary: { managed: { roots: ['/etc/keepalived', '/etc/ferm'], extra: [] }, fermCommands: false },
  keepalivedDirs: ['/etc/keepalived', '/etc/ferm'],
});

describe('the check ahead', () => {
  it('answers what came in while it read before it lints', async () => {
    const ws = new Workspace();
    const snapshot = emptySnapshot();
    let read = false;
    let answeredBeforeLints: boolean | undefined;
    const ahead = checkAhead(options(ws, snapshot), () => {
      read = true;
      // a request that came in during the reading: answered in the next turn, before the lints
      setImmediate(() => {
        answeredBeforeLints = ws.checks.get(snapshot) === undefined;
      });
    });
    await ahead;
    expect(read).toBe(true);
    expect(answeredBeforeLints).toBe(true);
    expect(ws.checks.get(snapshot)).toBeDefined();
  });

  it('lets a validation that came while it lints start its validators first, with the same verdict', async () => {
    write('/etc/keepalived/conf.d/fwm-7.conf', server(7, 3));
    const plain = await checkDirector(options(new Workspace()));
    const tools = new Recording();
    const ws = new Workspace(tools);
    let release!: () => void;
    const lints = new Promise<void>((resolve) => {
      release = resolve;
    });
    const validation = checkDirector({ ...options(ws), lintsAfter: lints });
    // keepalived -t and ferm are asked for while the lints still wait
    for (let i = 0; i < 200 && !tools.events.includes('keepalived'); i++)
      await new Promise((r) => setTimeout(r, 5));
    expect(tools.events).toEqual(expect.arrayContaining(['ferm', 'keepalived']));
    tools.events.push('lints released');
    release();
    const r = await validation;
    expect(tools.events.at(-1)).toBe('lints released');
    expect(r.diagnostics).toEqual(plain.diagnostics);
    expect(r.model.virtualServers).toHaveLength(300);
  });
});
