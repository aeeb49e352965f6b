// `lvssync check` against real ferm and keepalived on temporary roots.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runMain } from '../../src/cli.js';
import { emptySnapshot } from '../../src/core/snapshot.js';
import { checkDirector } from '../../src/shell/check-director.js';
import { Workspace } from '../../src/shell/workspace.js';
import { FIXTURES } from '../helpers/fixtures.js';
import { captureIo, requireTools, tempRoot } from '../helpers/tools.js';

const REFERENCE = path.join(FIXTURES, 'sets', 'reference');
const missing = requireTools('ferm', 'keepalived', 'unshare');
const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

function root(from = REFERENCE) {
  const r = tempRoot(from);
  cleanups.push(r.cleanup);
  return r.root;
}

async function check(rootDir: string, ...extra: string[]) {
  const c = captureIo();
  const code = await runMain(
    ['check', '--root', rootDir, '--config', path.join(FIXTURES, 'config', 'empty.yaml'), ...extra],
    c.io,
  );
  return { code, out: c.stdout(), err: c.stderr() };
}

describe.skipIf(missing.length > 0)('lvssync check (real ferm, keepalived -t)', () => {
  it('passes the how-to configuration with exactly the warnings it deserves', async () => {
    const r = await check(root(), '--json');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.ok).toBe(true);
    expect(j.files).toEqual([
      '/etc/keepalived/keepalived.conf',
      '/etc/keepalived/conf.d/fwm-100.conf',
      '/etc/ferm/ferm.conf',
    ]);
    expect(
      j.diagnostics.map(
        (d: { code: string; file: string; line: number }) => `${d.code} ${path.basename(d.file)}:${d.line}`,
      ),
    ).toEqual([
      'KA_PROTOCOL_ON_FWMARK fwm-100.conf:5',
      'KA_DEPRECATED fwm-100.conf:17',
      'KA_DEPRECATED fwm-100.conf:32',
      'KA_NO_RELOAD_CHECK_CONFIG keepalived.conf:1',
      'KA_NO_RELOAD_FILE keepalived.conf:1',
      'KA_DEPRECATED keepalived.conf:7',
      'KA_AUTH_PASS_TRUNCATED keepalived.conf:19',
    ]);
    for (const d of j.diagnostics)
      expect(Object.keys(d).sort()).toEqual(['code', 'col', 'file', 'line', 'message', 'severity']);
  });

  it('reports a ferm syntax error at its file and line, with the line and a caret', async () => {
    const r0 = root();
    writeFileSync(
      path.join(r0, 'etc/ferm/ferm.conf'),
      readFileSync(path.join(r0, 'etc/ferm/ferm.conf'), 'utf8') +
        'table mangle chain PREROUTING {\n  daddr 192.0.2.1 proto tcp BOGUS set-mark 7;\n}\n',
    );
    const r = await check(r0);
    expect(r.code).toBe(1);
    expect(r.out).toContain('/etc/ferm/ferm.conf:7:');
    expect(r.out).toMatch(/ferm: .*BOGUS.*\[FERM_ERROR\]/);
    expect(r.out).toContain('    daddr 192.0.2.1 proto tcp BOGUS set-mark 7;');
    expect(r.out).toMatch(/\n {30}\^/);
  });

  it('catches the hex/decimal fwmark trap through the real ferm, naming both files', async () => {
    const r0 = root();
    const vs = path.join(r0, 'etc/keepalived/conf.d/fwm-100.conf');
    writeFileSync(
      vs,
      readFileSync(vs, 'utf8').replace('virtual_server fwmark 100', 'virtual_server fwmark 64'),
    );
    const r = await check(r0, '--json');
    expect(r.code).toBe(1);
    const j = JSON.parse(r.out);
    const trap = j.diagnostics.filter((d: { code: string }) => d.code === 'XC_FWMARK_BASE_MISMATCH');
    expect(trap.map((d: { file: string; line: number }) => `${d.file}:${d.line}`)).toEqual([
      '/etc/ferm/ferm.conf:5',
      '/etc/keepalived/conf.d/fwm-100.conf:1',
    ]);
  });

  it('resolves absolute includes of ferm and keepalived inside the root, not on this host', async () => {
    const r0 = root();
    mkdirSync(path.join(r0, 'etc/ferm/ferm.d'));
    writeFileSync(
      path.join(r0, 'etc/ferm/ferm.d/web.conf'),
      'domain ip table mangle chain PREROUTING daddr 192.168.1.101 proto tcp dport 443 MARK set-mark 200;\n',
    );
    writeFileSync(
      path.join(r0, 'etc/ferm/ferm.conf'),
      readFileSync(path.join(r0, 'etc/ferm/ferm.conf'), 'utf8') + "@include '/etc/ferm/ferm.d/';\n",
    );
    writeFileSync(
      path.join(r0, 'etc/keepalived/conf.d/fwm-200.conf'),
      'virtual_server fwmark 200 {\n    lvs_sched wlc\n    lvs_method DR\n    real_server 192.168.1.10 443 {\n        weight 1\n    }\n}\n',
    );
    const r = await check(r0, '--json');
    const j = JSON.parse(r.out);
    expect(
      j.diagnostics.filter((d: { code: string }) => d.code.startsWith('XC_') || d.code.startsWith('FERM')),
    ).toEqual([]);
    expect(j.files).toContain('/etc/keepalived/conf.d/fwm-200.conf');
    expect(j.files).toContain('/etc/ferm/ferm.d/web.conf');
    expect(r.code).toBe(0);
  });

  it('folds in what only keepalived -t finds, as a second opinion', async () => {
    const r0 = root();
    const k = path.join(r0, 'etc/keepalived/keepalived.conf');
    // vrrp_version takes 2 or 3; lvssync's table accepts any value here, keepalived -t does not.
    writeFileSync(
      k,
      readFileSync(k, 'utf8').replace('router_id LVS1', 'router_id LVS1\n        vrrp_version 4'),
    );
    const r = await check(r0, '--json');
    const j = JSON.parse(r.out);
    const theirs = j.diagnostics.filter((d: { code: string }) => d.code === 'KEEPALIVED_T');
    expect(theirs.length).toBeGreaterThan(0);
    expect(theirs[0]).toMatchObject({ file: '/etc/keepalived/keepalived.conf', line: 3 });
  });

  it('--no-external skips the real tools and still runs every lvssync lint', async () => {
    const r0 = root();
    const vs = path.join(r0, 'etc/keepalived/conf.d/fwm-100.conf');
    writeFileSync(vs, readFileSync(vs, 'utf8').replace('weight 50', 'weight 70000'));
    const r = await check(r0, '--json', '--no-external');
    const j = JSON.parse(r.out);
    expect(j.ok).toBe(false);
    expect(j.diagnostics.map((d: { code: string }) => d.code)).toContain('KA_OUT_OF_RANGE');
  });

  it('the built binary prints findings with carets and exits 1 on errors, 2 on usage errors', () => {
    const bin = path.resolve(FIXTURES, '..', '..', 'dist', 'src', 'main.js');
    if (!existsSync(bin)) throw new Error(`${bin} is missing: npm test builds it (npm run build)`);
    const r0 = root();
    const vs = path.join(r0, 'etc/keepalived/conf.d/fwm-100.conf');
    writeFileSync(vs, readFileSync(vs, 'utf8').replace('lb_algo wlc', 'lb_algo wlcc'));
    const run = spawnSync(
      'node',
      [bin, 'check', '--root', r0, '--config', path.join(FIXTURES, 'config', 'empty.yaml')],
      { encoding: 'utf8' },
    );
    expect(run.status).toBe(1);
    expect(run.stdout).toContain(
      "/etc/keepalived/conf.d/fwm-100.conf:3:17: error: lb_algo: 'wlcc' is not one of",
    );
    expect(run.stdout).toContain('keepalived would silently fall back to wlc');
    expect(run.stdout).toMatch(/lb_algo wlcc\n {20}\^\n/);
    const usage = spawnSync('node', [bin, 'check', '--bogus'], { encoding: 'utf8' });
    expect(usage.status).toBe(2);
    expect(usage.stderr).toContain("unknown option '--bogus'");
  });

  it('a kept snapshot starts ferm early and never reuses a verdict for a file that is gone', async () => {
    // the daemon and the agent keep a snapshot and ferm's verdicts; ferm starts as soon as its own
    // files are read, and a file of the last reading that is not read again is not part of its input
    const r0 = root();
    const ferm = path.join(r0, 'etc/ferm/ferm.conf');
    const extra = path.join(r0, 'etc/ferm/marks.ferm');
    const fermText = readFileSync(ferm, 'utf8');
    writeFileSync(extra, '# marks kept apart\n');
    writeFileSync(ferm, `@include 'marks.ferm';\n${fermText}`);
    const snapshot = emptySnapshot();
    const workspace = new Workspace();
    const run = () =>
      checkDirector({
        root: r0,
        snapshot,
        workspace,
        keepalivedPath: '/etc/keepalived/keepalived.conf',
        fermPath: '/etc/ferm/ferm.conf',
      });
    const codes = (r: Awaited<ReturnType<typeof run>>) =>
      r.diagnostics.filter((d) => d.severity === 'error').map((d) => d.code);
    const first = await run();
    expect(codes(first)).toEqual([]);
    expect(first.ferm?.cached).toBeFalsy();
    expect((await run()).ferm?.cached).toBe(true);
    rmSync(extra);
    const gone = await run();
    expect(gone.ferm?.cached).toBeFalsy();
    expect(codes(gone)).toContain('FERM_ERROR');
    expect(gone.diagnostics.find((d) => d.code === 'FERM_ERROR')?.file).toBe('/etc/ferm/ferm.conf');
    writeFileSync(extra, '# marks kept apart\n');
    expect(codes(await run())).toEqual([]);
  });

  it('escape hatches: an ignore comment on the line or above it, check.severity, counted as suppressed; the boundary cannot be silenced', async () => {
    const r0 = root();
    const fwm = path.join(r0, 'etc/keepalived/conf.d/fwm-100.conf');
    const text = readFileSync(fwm, 'utf8');
    // fwm-100.conf: protocol on a fwmark (line 5), nb_get_retry twice (lines 17 and 32)
    const lines = text.split('\n');
    lines[4] = `${lines[4]} # lvssync: ignore KA_PROTOCOL_ON_FWMARK the how-to writes it`;
    lines.splice(16, 0, '        # lvssync: ignore KA_DEPRECATED');
    writeFileSync(fwm, lines.join('\n'));
    const cfg = path.join(r0, 'lvssync.yaml');
    writeFileSync(
      cfg,
      'check:\n  severity:\n    KA_AUTH_PASS_TRUNCATED: off\n    KA_NO_RELOAD_FILE: error\n',
    );
    const c = captureIo();
    const code = await runMain(['check', '--root', r0, '--config', cfg, '--json'], c.io);
    const j = JSON.parse(c.stdout()) as {
      ok: boolean;
      diagnostics: { code: string; line: number; severity: string }[];
      suppressed: { code: string; line: number; by: string; reason?: string }[];
    };
    expect(j.suppressed.map((x) => `${x.code}:${x.line}:${x.by}`).sort()).toEqual([
      'KA_AUTH_PASS_TRUNCATED:19:config',
      'KA_DEPRECATED:18:comment',
      'KA_PROTOCOL_ON_FWMARK:5:comment',
    ]);
    expect(j.suppressed.find((x) => x.code === 'KA_PROTOCOL_ON_FWMARK')?.reason).toBe('the how-to writes it');
    // the second nb_get_retry is not covered by the comment above the first
    expect(j.diagnostics.filter((d) => d.code === 'KA_DEPRECATED').map((d) => d.line)).toContain(33);
    expect(j.diagnostics).toContainEqual(
      expect.objectContaining({ code: 'KA_NO_RELOAD_FILE', severity: 'error' }),
    );
    expect(code).toBe(1);
    // text output says how many were silenced
    const t = captureIo();
    await runMain(['check', '--root', r0, '--config', cfg], t.io);
    expect(t.stdout()).toMatch(/suppressed: 3\)/);
    // what guards the peer's boundary stays, whatever the comment says
    const ka = path.join(r0, 'etc/keepalived/keepalived.conf');
    writeFileSync(
      ka,
      `${readFileSync(ka, 'utf8')}include /etc/lvssync/x.conf # lvssync: ignore KA_INCLUDE_OUTSIDE\n`,
    );
    const b = await check(r0, '--json');
    expect(JSON.parse(b.out).diagnostics).toContainEqual(
      expect.objectContaining({ code: 'KA_INCLUDE_OUTSIDE' }),
    );
    expect(b.code).toBe(1);
  });

  it('a missing keepalived is exit 8 with its name, not a passed check', () => {
    const r0 = root();
    const empty = path.join(r0, 'not-a-program');
    writeFileSync(empty, '', { mode: 0o644 });
    const keepalived = spawnSync('sh', ['-c', 'command -v keepalived || echo /usr/sbin/keepalived'])
      .stdout.toString()
      .trim();
    const main = path.join(path.dirname(FIXTURES), '..', 'dist', 'src', 'main.js');
    const r = spawnSync(
      'unshare',
      [
        '--mount',
        '--propagation',
        'private',
        'sh',
        '-c',
        `mount --bind "$1" "$2" && exec "$3" "$4" check --root "$5" --config "$6"`,
        'x',
        empty,
        keepalived,
        process.execPath,
        main,
        r0,
        path.join(FIXTURES, 'config', 'empty.yaml'),
      ],
      { encoding: 'utf8' },
    );
    expect({ status: r.status, err: r.stderr }).toEqual({
      status: 8,
      err: expect.stringMatching(/keepalived not installed/),
    });
  });

  it('an unknown keyword that the installed keepalived -t accepts is a warning showing both opinions', () => {
    const r0 = root();
    const ka = path.join(r0, 'etc/keepalived/keepalived.conf');
    writeFileSync(
      ka,
      readFileSync(ka, 'utf8').replace('router_id LVS1', 'router_id LVS1\n        brand_new_keyword 1'),
    );
    const main = path.join(path.dirname(FIXTURES), '..', 'dist', 'src', 'main.js');
    const run = (env: NodeJS.ProcessEnv) =>
      spawnSync(
        process.execPath,
        [main, 'check', '--root', r0, '--json', '--config', path.join(FIXTURES, 'config', 'empty.yaml')],
        {
          encoding: 'utf8',
          env,
        },
      );
    // the real keepalived -t does not know it either: an error
    const real = JSON.parse(run(process.env).stdout) as { diagnostics: { code: string; severity: string }[] };
    expect(real.diagnostics).toContainEqual(
      expect.objectContaining({ code: 'KA_UNKNOWN_KEYWORD', severity: 'error' }),
    );
    // a keepalived that accepts it (a newer one, here a stand-in that says nothing): a warning
    const fake = path.join(r0, 'bin');
    mkdirSync(fake);
    writeFileSync(path.join(fake, 'keepalived'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    const r = run({ ...process.env, PATH: `${fake}:${process.env.PATH}` });
    const j = JSON.parse(r.stdout) as { diagnostics: { code: string; severity: string; message: string }[] };
    expect(j.diagnostics).toContainEqual(
      expect.objectContaining({
        code: 'KA_UNKNOWN_KEYWORD',
        severity: 'warning',
        message: expect.stringMatching(/keepalived -t accepts it here/),
      }),
    );
    expect(r.status).toBe(0);
  });

  it('a symlink out of --root is bad input (exit 1) naming the file, not a configuration error', async () => {
    const r0 = root();
    const fwm = path.join(r0, 'etc/keepalived/conf.d/fwm-100.conf');
    rmSync(fwm);
    symlinkSync('/etc/hostname', fwm);
    const r = await check(r0);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/conf.d\/fwm-100.conf is a symlink that points outside/);
  });

  it('a keyword newer than the installed keepalived is an error that names the versions', async () => {
    const r0 = root();
    const ka = path.join(r0, 'etc/keepalived/keepalived.conf');
    writeFileSync(
      ka,
      readFileSync(ka, 'utf8').replace('router_id LVS1', 'router_id LVS1\n        json_version 2'),
    );
    const installed = /Keepalived v(\d+\.\d+\.\d+)/.exec(
      `${spawnSync('keepalived', ['--version'], { encoding: 'utf8' }).stderr}`,
    )?.[1];
    const r = await check(r0, '--json');
    const found = JSON.parse(r.out).diagnostics.filter(
      (d: { code: string }) => d.code === 'KA_NEEDS_VERSION',
    );
    if (installed && installed < '2.2.8') {
      expect(found).toEqual([
        expect.objectContaining({
          line: 3,
          severity: 'error',
          message: expect.stringContaining(`needs keepalived >= 2.2.8; this director runs ${installed}`),
        }),
      ]);
      expect(r.code).toBe(1);
    } else expect(found).toEqual([]);
  });

  it('an include of a system tree (/usr/share/*.conf) is refused at its line without reading the tree', async () => {
    const r0 = root();
    const ka = path.join(r0, 'etc/keepalived/keepalived.conf');
    writeFileSync(ka, `${readFileSync(ka, 'utf8')}include /usr/share/*.conf\n`);
    const t0 = Date.now();
    const r = await check(r0, '--json', '--no-external');
    expect(Date.now() - t0).toBeLessThan(5_000);
    const j = JSON.parse(r.out) as { diagnostics: { code: string; line: number }[]; files: string[] };
    expect(j.diagnostics).toContainEqual(expect.objectContaining({ code: 'KA_INCLUDE_OUTSIDE' }));
    expect(j.files.some((f) => f.startsWith('/usr/share/'))).toBe(false);
    expect(r.code).toBe(1);
  });
});
