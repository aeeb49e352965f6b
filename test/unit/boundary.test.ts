// What a set may make a director read or run (core/boundary.ts), secrets in findings, and the
// checker's robustness: a seeded fuzz of keepalived files (deep nesting, huge lines, random bytes)
// through the whole pure pipeline and its text output, which must never throw.
import { describe, expect, it } from 'vitest';
import {
  checkFermFiles,
  checkIncludes,
  checkScripts,
  insideManaged,
  scanFerm,
} from '../../src/core/boundary.js';
import { checkKeepalived } from '../../src/core/check.js';
import { diag } from '../../src/core/diagnostic.js';
import { formatDiagnostics } from '../../src/core/format.js';
import { evaluateKeepalived } from '../../src/core/keepalived/evaluate.js';
import { redactLine, redactSecrets } from '../../src/core/secrets.js';
import { snapshotOf } from '../../src/core/snapshot.js';

const managed = { roots: ['/etc/keepalived', '/etc/ferm'], extra: ['/usr/local/bin/notify.sh'] };
const KA = '/etc/keepalived/keepalived.conf';

describe('managed paths', () => {
  it.each([
    ['/etc/keepalived/conf.d/a.conf', true],
    ['/etc/keepalived/../lvssync/id_ed25519', false],
    ['/etc/keepalived', false],
    ['/etc/keepalivedx/a', false],
    ['/usr/local/bin/notify.sh', true],
    ['/etc/lvssync/id_ed25519', false],
  ])('%s inside: %s', (p, want) => expect(insideManaged(p, managed)).toBe(want));

  it('an include outside the managed paths is an error at its line; inside is not', () => {
    const ev = evaluateKeepalived(
      snapshotOf({ [KA]: 'include /etc/lvssync/id_ed25519\ninclude /etc/keepalived/conf.d/*.conf\n' }, [
        '/etc/keepalived',
      ]),
      KA,
    );
    expect(checkIncludes(ev.includes, managed).map((d) => `${d.code}:${d.line}`)).toEqual([
      'KA_INCLUDE_OUTSIDE:1',
    ]);
  });
});

describe('ferm commands and includes', () => {
  it('finds backticks, command includes and hooks, not what is in comments or quotes', () => {
    const s = scanFerm(
      "# `not this`\n@def $X = `id`;\n@include 'cmd|';\n@include 'conf.d/';\n@hook pre \"ipset -N x\";\nproto tcp dport ssh ACCEPT; # @include '/etc/x'\n@def $Y = 'a `b` c';\n",
    );
    expect(s.commands.map((c) => `${c.line}:${c.what}`)).toEqual(['2:`id`', "3:@include 'cmd|'", '5:@hook']);
    expect(s.includes.map((i) => `${i.line}:${i.target}`)).toEqual(['4:conf.d/']);
  });

  it('refuses commands unless allowed, and includes outside the managed paths always', () => {
    const files = [
      {
        path: '/etc/ferm/ferm.conf',
        text: "@def $X = `id`;\n@include '../lvssync/id_ed25519';\n@include $F;\n@include 'ferm.d/';\n",
      },
    ];
    expect(checkFermFiles(files, managed, false).map((d) => `${d.code}:${d.line}`)).toEqual([
      'FERM_COMMAND_REFUSED:1',
      'FERM_INCLUDE_OUTSIDE:2',
      'FERM_INCLUDE_OUTSIDE:3',
    ]);
    expect(checkFermFiles(files, managed, true).map((d) => d.code)).toEqual([
      'FERM_INCLUDE_OUTSIDE',
      'FERM_INCLUDE_OUTSIDE',
    ]);
  });
});

describe('the programs keepalived may be made to run', () => {
  it('a script, notify or misc_path outside agent.scripts is an error at its line', () => {
    const text =
      'vrrp_script a {\n  script "/usr/local/lib/ka/check.sh arg"\n}\nvrrp_instance v {\n  notify_master /tmp/evil.sh\n}\nvirtual_server 192.0.2.1 80 {\n  real_server 192.0.2.2 80 {\n    MISC_CHECK {\n      misc_path "/bin/sh -c id"\n    }\n  }\n}\n';
    const ev = evaluateKeepalived(snapshotOf({ [KA]: text }, ['/etc/keepalived']), KA);
    expect(checkScripts(ev.directives, ['/usr/local/lib/ka/*']).map((d) => `${d.code}:${d.line}`)).toEqual([
      'KA_SCRIPT_NOT_ALLOWED:5',
      'KA_SCRIPT_NOT_ALLOWED:10',
    ]);
    expect(checkScripts(ev.directives, ['/usr/local/lib/ka/*', '/tmp/*', '/bin/sh'])).toEqual([]);
  });
});

describe('secrets in findings', () => {
  it('a one-line authentication block is redacted in the source line, the message and diffs', () => {
    const line = '  authentication { auth_type PASS auth_pass ONELINE1 }';
    expect(redactLine(line)).toBe('  authentication { auth_type PASS auth_pass <redacted> }');
    expect(redactSecrets(line)).not.toContain('ONELINE1');
    const d = diag('error', 'X', { file: KA, line: 1, col: 1 }, "'auth_pass ONELINE1' is extra");
    expect(d.message).toBe("'auth_pass <redacted>' is extra");
    expect(redactLine('    auth_pass s3cret')).toBe('    auth_pass <redacted>');
  });
});

describe('check never throws', () => {
  it('3,500 nested braces: an error at the first brace too deep, no stack overflow', () => {
    const text = `global_defs ${'{ '.repeat(3500)}${'} '.repeat(3500)}\n`;
    const r = checkKeepalived(snapshotOf({ [KA]: text }, ['/etc/keepalived']), KA);
    expect(r.diagnostics.filter((d) => d.code === 'KA_TOO_DEEP')).toHaveLength(1);
  });

  it('a 3 MB line is shown cut around its column, once split', () => {
    const big = `${'x'.repeat(3_000_000)} auth_pass hunter2`;
    const d = diag('error', 'X', { file: KA, line: 1, col: 2_999_990 }, 'here');
    const out = formatDiagnostics(Array(200).fill(d), () => big);
    expect(out.split('\n')[1]!.length).toBeLessThan(200);
    expect(out).not.toContain('hunter2');
  });

  it('survives a seeded fuzz of mutated configurations, and formats every finding', () => {
    let seed = 20261201;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    const base = `global_defs {\n  router_id A\n}\n$DEF=1\n@lvs1 vrrp_instance v {\n  interface eth0\n  virtual_router_id 5\n  priority 100\n  authentication {\n    auth_type PASS\n    auth_pass secret\n  }\n  virtual_ipaddress {\n    192.0.2.5/24 dev eth0\n  }\n}\nvirtual_server fwmark 100 {\n  lb_algo wlc\n  real_server 192.0.2.10 80 {\n    weight 1\n    HTTP_GET {\n      url {\n        path /\n        digest 0123\n      }\n    }\n  }\n}\ninclude /etc/keepalived/conf.d/*.conf\n~SEQ(i,1,3) vrrp_script s$i {\n}\n`;
    const pieces = [
      '{',
      '}',
      '"',
      '\\',
      '#',
      '!',
      '$',
      '@',
      '@^',
      '~SEQ(',
      '\n',
      ' ',
      '\t',
      'include ',
      '$DEF',
      '{ '.repeat(200),
      'x'.repeat(50_000),
      '\u0000',
      'é',
      '\r\n',
    ];
    for (let i = 0; i < 3000; i++) {
      let text = base;
      const edits = 1 + Math.floor(rand() * 6);
      for (let e = 0; e < edits; e++) {
        const at = Math.floor(rand() * (text.length + 1));
        const r = rand();
        if (r < 0.4) text = text.slice(0, at) + pieces[Math.floor(rand() * pieces.length)] + text.slice(at);
        else if (r < 0.7) text = text.slice(0, at) + text.slice(at + Math.floor(rand() * 40));
        else text = text.slice(0, at) + String.fromCharCode(Math.floor(rand() * 0x3000)) + text.slice(at);
      }
      const snap = snapshotOf({ [KA]: text, '/etc/keepalived/conf.d/a.conf': text.slice(0, 300) }, [
        '/etc/keepalived',
        '/etc/keepalived/conf.d',
      ]);
      const r = checkKeepalived(snap, KA, { configId: 'lvs1' });
      formatDiagnostics(r.diagnostics, (f) => snap.files.get(f)?.text);
      for (const d of r.diagnostics) expect(d.line).toBeGreaterThan(0);
    }
  }, 120_000);
});
