// Differential test: the real `keepalived -t` and lvssync's own checks, on every lint fixture, the
// how-to configuration, keepalived's own samples and the shared corpus (when present). Every
// disagreement is printed with its reason; a disagreement without a reason fails the test, so a new
// corpus file that exposes a gap in either checker is noticed.
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkKeepalived, equivalentCodes } from '../../src/core/check.js';
import type { Diagnostic } from '../../src/core/diagnostic.js';
import { execKeepalivedTest } from '../../src/shell/tools.js';
import { FIXTURES, keepalivedFolderSnapshot, SHARED, subdirs } from '../helpers/fixtures.js';
import { requireTools, tempRoot } from '../helpers/tools.js';

const missing = requireTools('keepalived', 'unshare');
const SAMPLES = '/usr/share/doc/keepalived/samples';

/** keepalived -t messages lvssync deliberately does not repeat, with the reason. */
const THEIRS_ONLY_REASONS: ReadonlyArray<readonly [RegExp, string]> = [
  [
    /no scheduler set, setting default 'wlc'/,
    "a missing lb_algo is keepalived's documented default (wlc); lvssync flags a misspelt one",
  ],
  [/Unknown keyword '}'/, "keepalived's echo of the same stray brace, on the same line"],
  [
    /for routes is deprecated|Rule has no preference|Invalid rule to address|VRRP parsed invalid IP .*skipping|Invalid \w+ \S+ for route/,
    'inside virtual_routes / virtual_rules, whose ip-route and ip-rule grammar lvssync passes through unchecked',
  ],
  [
    /Unable to set (default user|uid\/gid) for|Error setting global script uid\/gid|Failed to set uid\/gid for misc checker script/,
    'about the machine the test runs on (the script user or the script file is missing here), not the file; lvssync shows it as keepalived -t’s second opinion',
  ],
  [
    /track script .* not found|Disabling track script .* since not found|track file .* not found|No file set for track_file/,
    'a script or track file keepalived disabled on this machine (the message before it says why); shown as its second opinion',
  ],
  [
    /quorum \d+ for .* exceeds total weight/,
    'keepalived’s own arithmetic on quorum and real server weights (it lowers the quorum and says so); shown as its second opinion',
  ],
  [
    /ports don't match|has port specified - port will be ignored/,
    'keepalived -t says it once per virtual_server_group member; lvssync flags the fwmark case at the real_server line (KA_FWMARK_REAL_SERVER_PORT) and shows these as keepalived’s second opinion',
  ],
  [
    /malformed (src|unicast peer) address|Invalid smtp server|has no neighbor address set/,
    'a placeholder address of a published (anonymised) file; keepalived skips the line, and lvssync reports unparsable addresses where its table checks them',
  ],
  [
    /Config files missing '\/home\//,
    'an include of a path on the machine where the corpus file was written: nothing there here; lvssync asks for that directory and, on a director, refuses it as outside the managed paths',
  ],
  [
    /Strict mode does not support authentication|State MASTER must match being address owner/,
    'keepalived’s checks under vrrp_strict; shown as its second opinion',
  ],
  [
    /iptables not supported, using nftables|specified for garp_group doesn't exist/,
    'about this machine (its firewall backend, its interfaces), not the file',
  ],
];

/** Disagreements of one corpus set that follow from an earlier finding, with the reason. */
const SET_REASONS: ReadonlyArray<readonly [RegExp, RegExp, string]> = [
  [
    /configs__955p\.conf$/,
    /number '4294967295' outside range \[0\., 960000\.\]/,
    'the rtt of a route in virtual_routes (line 126), whose ip-route grammar lvssync passes through unchecked',
  ],
  [
    /configs__(751|notify2)\.conf$/,
    /Unexpected '\{' - ignoring|Unknown keyword/,
    'with this config-id $NAME is undefined: keepalived reads the braces of ${NAME} at line 16 as a block (KA_UNDEFINED_DEFINITION there), global_defs ends early and every later global keyword is unknown to it',
  ],
];

/** lvssync findings keepalived -t does not make, with the reason. */
const OURS_ONLY_REASONS: Readonly<Record<string, string>> = {
  KA_DUPLICATE_VRID:
    'keepalived -t checks each instance alone; a VRID clash on one interface shows only at run time',
  KA_DUPLICATE_VIP:
    'keepalived -t does not compare VIP lists; a VIP listed twice, or in two instances, shows only at run time',
  KA_GLUED_COMMENT: "keepalived takes 'value#comment' as one word silently; lvssync points at it",
  KA_UNKNOWN_GROUP: 'keepalived -t accepts a virtual_server group that names no virtual_server_group',
  KA_INCLUDE_NO_MATCH: 'keepalived -t is silent about a glob include that matches nothing',
  KA_DEPRECATED: 'keepalived 2.2.7 accepts some deprecated keywords silently',
  KA_AUTH_PASS_TRUNCATED: 'keepalived -t truncates silently when the instance is not started',
  KA_BAD_DIGEST: 'keepalived -t only checks the digest length, not that it is hexadecimal',
  KA_NO_INTERFACE: 'keepalived -t defaults the interface silently',
  KA_CHECKER_NO_URL: 'keepalived -t accepts an HTTP_GET with no url block',
  KA_CHECKER_NO_PORT: 'keepalived -t falls back to the real server port silently',
  KA_NOPREEMPT_MASTER: 'keepalived -t accepts nopreempt with state MASTER and ignores it at run time',
  KA_DUPLICATE_KEYWORD: 'keepalived -t keeps the last of two values silently',
  KA_EXTRA_ARGUMENT: 'keepalived -t ignores trailing words on many keywords',
  KA_UNKNOWN_SCRIPT: 'keepalived -t prints the missing track_script without a position on some paths',
  KA_DUPLICATE_VIRTUAL_SERVER: 'keepalived -t merges or keeps both virtual servers silently',
  KA_NO_RELOAD_CHECK_CONFIG:
    'a recommendation for reload safety (keepalived exits on a bad reload without it), not a fault of the file',
  KA_BAD_ADDRESS:
    "lvssync right: keepalived 2.2.7 -t passes some addresses it cannot parse (an anonymised 'xxx.xxx.xxx.xxx' real_server) and drops them when it starts",
  KA_DUPLICATE_REAL_SERVER:
    'lvssync right: keepalived -t accepts the same real server twice in one virtual_server and keeps one at run time',
  KA_SCRIPT_NO_COMMAND:
    "lvssync right: with this config-id no 'script' line applies (@id lines) and keepalived -t is silent; keepalived drops the vrrp_script and ignores every track_script naming it",
  KA_NO_SCRIPT_SECURITY:
    'keepalived 2.2.7 warns about scripts run as root only when it starts them, never under -t',
  KA_NO_RELOAD_FILE:
    'a recommendation for reload safety (lvssync then knows when keepalived has read its files), not a fault of the file',
};

interface Disagreement {
  set: string;
  side: 'keepalived -t only' | 'lvssync only';
  severity: Diagnostic['severity'];
  at: string;
  what: string;
  reason?: string;
}

const report: Disagreement[] = [];
afterAll(() => {
  if (report.length === 0) return;
  const lines = report.map(
    (d) => `  ${d.set}: ${d.side} at ${d.at}: ${d.what}\n      ${d.reason ?? 'UNEXPLAINED'}`,
  );
  console.log(`differential: ${report.length} disagreement(s) with keepalived -t\n${lines.join('\n')}`);
});

async function compare(set: string, folder: string, files?: string[]): Promise<Disagreement[]> {
  const snapshot = keepalivedFolderSnapshot(folder);
  if (files) for (const f of [...snapshot.files.keys()]) if (!files.includes(f)) snapshot.files.delete(f);
  const ours = checkKeepalived(snapshot, '/etc/keepalived/keepalived.conf', { configId: 'lvs1' }).diagnostics;
  const r = tempRoot();
  try {
    const { mkdirSync, writeFileSync } = await import('node:fs');
    mkdirSync(path.join(r.root, 'etc', 'keepalived'), { recursive: true });
    for (const [p, f] of snapshot.files) {
      mkdirSync(path.dirname(path.join(r.root, p)), { recursive: true });
      writeFileSync(path.join(r.root, p), f.text);
    }
    const run = await execKeepalivedTest(
      r.root,
      '/etc/keepalived/keepalived.conf',
      [...snapshot.files.keys()],
      'lvs1',
    );
    expect(run.available).toBe(true);
    return diff(set, ours, dedupe(run.diagnostics));
  } finally {
    r.cleanup();
  }
}

function dedupe(ds: Diagnostic[]): Diagnostic[] {
  const seen = new Set<string>();
  return ds.filter((d) => {
    const k = `${d.file}:${d.line}:${d.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

const located = (d: Diagnostic) => !d.message.startsWith('keepalived -t (no line given):');

function diff(set: string, ours: Diagnostic[], theirs: Diagnostic[]): Disagreement[] {
  const out: Disagreement[] = [];
  const ourLines = new Set(ours.map((d) => `${d.file}:${d.line}`));
  const ourCodes = new Set(ours.map((d) => d.code));
  const theirLines = new Set(theirs.map((d) => `${d.file}:${d.line}`));
  const sameFinding = new Set<string>();
  for (const t of theirs) {
    const msg = t.message.replace(/^keepalived -t( \(no line given\))?: /, '');
    const eq = equivalentCodes(msg);
    for (const c of eq) sameFinding.add(c);
    if (ourLines.has(`${t.file}:${t.line}`) && located(t)) continue;
    if (eq.some((c) => ourCodes.has(c))) continue;
    const reason =
      THEIRS_ONLY_REASONS.find(([re]) => re.test(msg))?.[1] ??
      SET_REASONS.find(([setRe, re]) => setRe.test(set) && re.test(msg))?.[2];
    out.push({
      set,
      side: 'keepalived -t only',
      severity: t.severity,
      at: `${t.file}:${t.line}`,
      what: msg,
      reason,
    });
  }
  for (const o of ours) {
    if (theirLines.has(`${o.file}:${o.line}`) || sameFinding.has(o.code)) continue;
    out.push({
      set,
      side: 'lvssync only',
      severity: o.severity,
      at: `${o.file}:${o.line}`,
      what: `${o.code} ${o.message}`,
      reason: OURS_ONLY_REASONS[o.code],
    });
  }
  return out;
}

/**
 * Every keepalived configuration of the shared corpus, whatever its layout: a folder holding a
 * keepalived.conf is a set; any other file under corpus/keepalived is checked alone as keepalived.conf.
 */
function corpusKeepalived(): { name: string; dir: string; file?: string }[] {
  const base = path.join(SHARED, 'corpus');
  const out: { name: string; dir: string; file?: string }[] = [];
  const walk = (d: string, flat: boolean) => {
    let entries: string[];
    try {
      entries = readdirSync(d).sort();
    } catch {
      return;
    }
    const isSet = entries.includes('keepalived.conf');
    if (isSet) out.push({ name: path.relative(base, d), dir: d });
    for (const e of entries) {
      const p = path.join(d, e);
      if (statSync(p).isDirectory()) walk(p, flat || e === 'keepalived');
      else if (flat && !isSet && !/\.md$/i.test(e))
        out.push({ name: path.relative(base, p), dir: d, file: p });
    }
  };
  walk(base, false);
  return out;
}

describe.skipIf(missing.length > 0)('keepalived -t versus lvssync', () => {
  const cases: { name: string; dir: string; files?: string[] }[] = [
    ...subdirs(path.join(FIXTURES, 'lint')).map((n) => ({
      name: `lint/${n}`,
      dir: path.join(FIXTURES, 'lint', n),
    })),
    { name: 'how-to reference', dir: path.join(FIXTURES, 'sets', 'reference', 'etc', 'keepalived') },
    ...corpusKeepalived()
      .filter((c) => !c.file)
      .map((c) => ({ name: `corpus/${c.name}`, dir: c.dir })),
  ];

  it.each(cases)('$name', async ({ name, dir }) => {
    const found = await compare(name, dir);
    report.push(...found);
    expect(found.filter((d) => !d.reason)).toEqual([]);
  });

  const flat = corpusKeepalived().filter((c) => c.file);
  it('finds the shared corpus and its flat files', () => {
    expect(safeExists(path.join(SHARED, 'corpus')), `the shared corpus is missing under ${SHARED}`).toBe(
      true,
    );
    expect(flat.length).toBeGreaterThan(0);
  });

  it.each(flat)('corpus file $name', async ({ name, file }) => {
    const { mkdtempSync, copyFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const d = mkdtempSync(path.join(tmpdir(), 'lvssync-corpus-'));
    try {
      copyFileSync(file!, path.join(d, 'keepalived.conf'));
      const found = await compare(`corpus/${name}`, d);
      report.push(...found);
      // a finding that would block a push where keepalived -t sees nothing needs its reason (lvssync
      // right, and the risk it names); every other disagreement is printed with the report
      expect(found.filter((x) => !x.reason && x.side === 'lvssync only' && x.severity === 'error')).toEqual(
        [],
      );
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  it('agrees on the checks both make, on a fixture where each finding has a position', async () => {
    // numbers-out-of-range: keepalived -t and lvssync both flag lines 3, 4 and 12.
    const found = await compare(
      'lint/numbers-out-of-range',
      path.join(FIXTURES, 'lint', 'numbers-out-of-range'),
    );
    const at = found.map((d) => d.at);
    for (const l of [3, 4, 12]) expect(at).not.toContain(`/etc/keepalived/keepalived.conf:${l}`);
  });
});

describe.skipIf(missing.length > 0 || !safeExists(SAMPLES))("keepalived's own samples", () => {
  const samples = safeExists(SAMPLES)
    ? readdirSync(SAMPLES).filter((f) => f.startsWith('keepalived.conf.'))
    : [];
  it.each(samples)('%s', async (sample) => {
    const { mkdtempSync, copyFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const d = mkdtempSync(path.join(tmpdir(), 'lvssync-sample-'));
    try {
      copyFileSync(path.join(SAMPLES, sample), path.join(d, 'keepalived.conf'));
      const found = await compare(`samples/${sample}`, d);
      report.push(...found);
      expect(found.filter((x) => !x.reason)).toEqual([]);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});

function safeExists(p: string): boolean {
  try {
    statSync(p);
    return true;
  } catch {
    return false;
  }
}
