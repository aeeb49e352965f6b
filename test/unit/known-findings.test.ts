// lvssync's findings kept per file digest (Workspace.kept: findings.json in the state directory): a
// new process takes them for the files whose text is the one judged, and lints every other file.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkKeepalived } from '../../src/core/check.js';
import { evaluateKeepalived } from '../../src/core/keepalived/evaluate.js';
import { emptySnapshot, type Snapshot } from '../../src/core/snapshot.js';
import { FINDINGS_FILE, Workspace } from '../../src/shell/workspace.js';
import { VERSION } from '../../src/version.js';
import { keepalivedFiles } from '../helpers/fixtures.js';

const CONF = '/etc/keepalived/keepalived.conf';
const LEAF = '/etc/keepalived/conf.d/web.conf';
const dirs: string[] = [];
const stateDir = () => {
  const d = mkdtempSync(path.join(tmpdir(), 'lvssync-findings-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function snapshotOf(files: Record<string, string>): Snapshot {
  const s = emptySnapshot();
  for (const [p, text] of Object.entries(files)) s.files.set(p, { path: p, text, mode: 0o100644 });
  s.dirs.add('/etc/keepalived');
  s.dirs.add('/etc/keepalived/conf.d');
  return s;
}

/** A check as a new process makes it: a fresh workspace on the state directory, read, primed, linted. */
function check(dir: string, snapshot: Snapshot, configId?: string) {
  const ws = Workspace.kept(dir);
  const opts = configId === undefined ? { memory: ws } : { memory: ws, configId };
  evaluateKeepalived(snapshot, CONF, opts);
  const primed = ws.primeFindings();
  const r = checkKeepalived(snapshot, CONF, opts);
  ws.saveFindings();
  return { primed, diagnostics: r.diagnostics, ws };
}

const SET = {
  [CONF]: 'global_defs {\n    router_id LVS1\n}\ninclude conf.d/*.conf\n',
  [LEAF]: [
    'virtual_server 192.0.2.10 80 {',
    '    lb_algo rr',
    '    lb_kind DR',
    '    protocol TCP',
    '    real_server 198.51.100.11 80 {',
    '        weight 1',
    '    }',
    '}',
    '',
  ].join('\n'),
};

/** The kept findings file with a finding of lvssync's own making put into one file's first directive. */
function plant(dir: string, file: string, by = VERSION, part: 'top' | 'vs' = 'top'): void {
  const p = path.join(dir, FINDINGS_FILE);
  const kept = JSON.parse(readFileSync(p, 'utf8'));
  kept.by = by;
  kept.files[file][part][0] = [
    { severity: 'error', code: 'KA_PLANTED', file, line: 1, col: 1, message: 'planted', source: 'lvssync' },
  ];
  writeFileSync(p, JSON.stringify(kept));
}

describe('findings kept per file digest', () => {
  it('a new process takes a file’s kept findings while its text is the one judged, and only then', () => {
    const dir = stateDir();
    const first = check(dir, snapshotOf(SET));
    expect(first.primed).toBe(0);
    plant(dir, LEAF);
    // the kept finding is taken as found: the file's lints did not run again
    const second = check(dir, snapshotOf(SET));
    expect(second.primed).toBeGreaterThan(0);
    expect(second.diagnostics.map((d) => d.code)).toContain('KA_PLANTED');
    // the same file with another text is linted again (and the planted finding is gone for good)
    const edited = { ...SET, [LEAF]: SET[LEAF].replace('weight 1', 'weight 2') };
    const third = check(dir, snapshotOf(edited));
    expect(third.diagnostics.map((d) => d.code)).not.toContain('KA_PLANTED');
    expect(third.diagnostics).toEqual(first.diagnostics);
    // a virtual server's own findings (its model's rules) are kept the same way
    check(dir, snapshotOf(SET));
    plant(dir, LEAF, VERSION, 'vs');
    expect(check(dir, snapshotOf(SET)).diagnostics.map((d) => d.code)).toContain('KA_PLANTED');
  });

  it('a file with @id lines is judged again for another config-id', () => {
    const dir = stateDir();
    const withId = {
      ...SET,
      [LEAF]: SET[LEAF].replace('    lb_algo rr', '@lvs1     lb_algo rr\n@lvs2     lb_algo wlc'),
    };
    check(dir, snapshotOf(withId), 'lvs1');
    plant(dir, LEAF);
    expect(check(dir, snapshotOf(withId), 'lvs1').diagnostics.map((d) => d.code)).toContain('KA_PLANTED');
    expect(check(dir, snapshotOf(withId), 'lvs2').diagnostics.map((d) => d.code)).not.toContain('KA_PLANTED');
  });

  it('findings kept by another lvssync version, or a torn file, are not taken', () => {
    const dir = stateDir();
    const first = check(dir, snapshotOf(SET));
    plant(dir, LEAF, '0.0.0-other');
    expect(check(dir, snapshotOf(SET)).diagnostics).toEqual(first.diagnostics);
    writeFileSync(path.join(dir, FINDINGS_FILE), '{"by":"');
    const torn = check(dir, snapshotOf(SET));
    expect(torn.primed).toBe(0);
    expect(torn.diagnostics).toEqual(first.diagnostics);
    // and the next process has them again
    expect(check(dir, snapshotOf(SET)).primed).toBeGreaterThan(0);
  });

  // Every keepalived configuration the tests know (fixtures, Debian's samples, the shared corpus):
  // what a process finds with the kept findings is what it finds without them.
  it.each(keepalivedFiles())('%s: the same findings from the kept ones', (file) => {
    const dir = stateDir();
    const snapshot = () => snapshotOf({ [CONF]: readFileSync(file, 'utf8') });
    const fresh = checkKeepalived(snapshot(), CONF, { memory: new Workspace() }).diagnostics;
    const first = check(dir, snapshot());
    const second = check(dir, snapshot());
    expect(first.diagnostics).toEqual(fresh);
    expect(second.diagnostics).toEqual(fresh);
    // a self-contained file with directives is one the kept findings cover: they were taken
    const ev = second.ws.parse.get(CONF)?.evaluated;
    expect(second.primed).toBe(ev && ev.directives.length > 0 ? 1 : 0);
  });
});
