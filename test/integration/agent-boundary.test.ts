// The agent as a security boundary, spoken to directly over stdin/stdout as the primary's SSH
// channel would: validation never runs primary-supplied code, never echoes a file outside the
// managed set, refuses malformed and oversized requests with E_PROTOCOL, starts no guard for a
// request that did not earn one, and survives a seeded fuzz of request lines.
import { execFileSync, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO } from '../../scripts/lab/lab.js';
import { PROTOCOL_VERSION } from '../../src/core/protocol.js';
import { MAX_TX_FILES } from '../../src/shell/store.js';
import { requireTools } from '../helpers/tools.js';

const MAIN = path.join(REPO, 'dist', 'src', 'main.js');
const missing = requireTools('keepalived', 'ferm', 'unshare');
const isRoot = process.getuid?.() === 0;

interface Answer {
  id: number;
  ok: boolean;
  result?: Record<string, unknown>;
  error?: { code: string; message: string };
}

describe.skipIf(missing.length > 0 || !isRoot)('lvssync agent as a boundary', () => {
  let dir: string;
  let cfg: string;
  const KA = () => path.join(dir, 'etc/keepalived/keepalived.conf');
  const FERM = () => path.join(dir, 'etc/ferm/ferm.conf');
  const SECRET = 'PRIVATE-KEY-LINE-4f1d2c';

  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'lvssync-agent-'));
    mkdirSync(path.join(dir, 'etc/keepalived/conf.d'), { recursive: true });
    mkdirSync(path.join(dir, 'etc/ferm'), { recursive: true });
    mkdirSync(path.join(dir, 'etc/lvssync'), { recursive: true });
    writeFileSync(KA(), `global_defs {\n  router_id LVS2\n}\ninclude ${dir}/etc/keepalived/conf.d/*.conf\n`);
    writeFileSync(FERM(), 'table filter chain INPUT policy ACCEPT;\n');
    writeFileSync(path.join(dir, 'etc/lvssync/id_ed25519'), `${SECRET}\nsecond ${SECRET}\n`);
    cfg = path.join(dir, 'etc/lvssync/lvssync.yaml');
    writeFileSync(
      cfg,
      [
        'primary: lvs1',
        'nodes:',
        '  lvs1: {address: 192.0.2.1}',
        '  lvs2: {address: 192.0.2.2}',
        'files:',
        `  keepalived: ${KA()}`,
        `  ferm: ${FERM()}`,
        `stateDir: ${dir}/state`,
        'services:',
        '  - name: ferm',
        "    reload: ['true']",
        '  - name: keepalived',
        "    reload: ['true']",
        'push:',
        '  fermGuardSeconds: 5',
        '',
      ].join('\n'),
    );
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /**
   * Runs one agent session with these request lines (a number: a pause of that many ms before the
   * lines after it); its answers, exit status and stderr.
   */
  function session(
    lines: (string | number)[],
    raw = '',
    config = cfg,
  ): Promise<{ answers: Answer[]; alive: number; code: number | null; stderr: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [MAIN, 'agent', '--config', config, '--node', 'lvs2'], {
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => {
        out += d;
      });
      child.stderr.on('data', (d) => {
        err += d;
      });
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`agent hung; stderr: ${err}`));
      }, 60_000);
      child.on('close', (code) => {
        clearTimeout(timer);
        const lines = out
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as Answer | { alive: true });
        resolve({
          // what an agent at work says every 2 s is not an answer
          answers: lines.filter((a): a is Answer => !('alive' in a)),
          alive: lines.length - lines.filter((a) => !('alive' in a)).length,
          code,
          stderr: err,
        });
      });
      child.stdin.on('error', () => {});
      const feed = (rest: (string | number)[]) => {
        const at = rest.findIndex((l) => typeof l === 'number');
        if (at === -1) return child.stdin.end(`${rest.join('\n')}\n${raw}`);
        child.stdin.write(
          rest
            .slice(0, at)
            .map((l) => `${l}\n`)
            .join(''),
        );
        setTimeout(() => feed(rest.slice(at + 1)), rest[at] as number);
      };
      feed(lines);
    });
  }

  const req = (id: number, o: object) => JSON.stringify({ id, ...o });
  const hello = req(1, { op: 'hello', version: PROTOCOL_VERSION, primary: 'lvs1' });
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  /** A well-formed put of `text` (mode 0644). */
  const put = (id: number, txid: string, p: string, text: string) =>
    req(id, { op: 'put', txid, path: p, mode: 0o644, data: b64(text) });

  it('validation never runs a ferm command the primary sent (backticks, command includes, @hook)', async () => {
    const pwned = path.join(dir, 'pwned');
    const txid = 'a1a1a1a1a1a1a1a1';
    const ferm = `@def $X = \`id > ${pwned}; echo 1\`;\n@include 'touch ${pwned}-2|';\n@hook pre "touch ${pwned}-3";\ntable filter chain INPUT policy ACCEPT;\n`;
    const r = await session([
      hello,
      req(2, { op: 'begin', txid }),
      put(3, txid, FERM(), ferm),
      req(4, { op: 'validate', txid }),
      req(5, { op: 'abort', txid, reload: false }),
    ]);
    const v = r.answers.find((a) => a.id === 4)!;
    expect(v.ok).toBe(true);
    expect(v.result?.ok).toBe(false);
    const diags = v.result?.diagnostics as { code: string; line: number }[];
    expect(diags.filter((d) => d.code === 'FERM_COMMAND_REFUSED').map((d) => d.line)).toEqual([1, 2, 3]);
    for (const f of [pwned, `${pwned}-2`, `${pwned}-3`]) expect(existsSync(f)).toBe(false);
  });

  it('nothing the agent answers carries a file outside the managed set (an include of its SSH key)', async () => {
    const txid = 'b2b2b2b2b2b2b2b2';
    const r = await session([
      hello,
      req(2, { op: 'begin', txid }),
      put(
        3,
        txid,
        path.join(dir, 'etc/keepalived/conf.d/zz.conf'),
        `include ${dir}/etc/lvssync/id_ed25519\n`,
      ),
      req(4, { op: 'validate', txid }),
      req(5, { op: 'read', path: path.join(dir, 'etc/lvssync/id_ed25519') }),
      req(6, { op: 'abort', txid, reload: false }),
    ]);
    const all = JSON.stringify(r.answers);
    expect(all).not.toContain(SECRET);
    const v = r.answers.find((a) => a.id === 4)!;
    expect(v.result?.ok).toBe(false);
    expect(v.result?.diagnostics).toContainEqual(
      expect.objectContaining({
        code: 'KA_INCLUDE_OUTSIDE',
        file: path.join(dir, 'etc/keepalived/conf.d/zz.conf'),
        line: 1,
      }),
    );
    expect(r.answers.find((a) => a.id === 5)?.error?.code).toBe('E_PROTOCOL');
  });

  it('malformed requests are E_PROTOCOL, never E_INTERNAL; a reload needs a validated transaction', async () => {
    const txid = 'c3c3c3c3c3c3c3c3';
    const r = await session([
      hello,
      req(2, { op: 'begin', txid }),
      req(3, { op: 'put', txid, path: KA(), mode: null, data: b64('x') }),
      req(4, { op: 'put', txid, path: KA(), mode: 420, data: 17 }),
      req(5, { op: 'put', txid, path: path.join(dir, 'etc/keepalived'), mode: 420, data: b64('x') }),
      req(6, { op: 'reload', txid, service: 'keepalived', guardSeconds: 100000 }),
      req(7, { op: 'nonsense' }),
      '{"id": 8, "op": "put", "txid": 1}',
      'not json at all',
      req(9, { op: 'abort', txid, reload: false }),
    ]);
    for (const id of [3, 4, 6, 7, 8]) {
      const a = r.answers.find((x) => x.id === id);
      expect({ id, code: a?.error?.code }).toEqual({ id, code: 'E_PROTOCOL' });
    }
    expect(r.answers.find((x) => x.id === 5)?.ok).toBe(false);
    expect(r.answers.find((x) => x.id === 5)?.error?.code).not.toBe('E_INTERNAL');
    expect(r.answers.some((x) => x.id === 0 && x.error?.code === 'E_PROTOCOL')).toBe(true);
    expect(r.answers.find((x) => x.id === 6)?.error?.message).toMatch(/before transaction .* validated/);
  });

  it('a flood of reload requests starts at most one ferm guard, bounded by this director’s own setting', async () => {
    const txid = 'd4d4d4d4d4d4d4d4';
    const lines = [
      hello,
      req(2, { op: 'begin', txid }),
      put(3, txid, FERM(), 'table filter chain INPUT policy ACCEPT;\n# x\n'),
      req(4, { op: 'validate', txid }),
      req(5, { op: 'commit', txid }),
    ];
    for (let i = 0; i < 15; i++)
      lines.push(req(10 + i, { op: 'reload', txid, service: 'ferm', guardSeconds: 3600 }));
    lines.push(req(40, { op: 'reload', txid, service: 'nope', guardSeconds: 3600 }));
    lines.push(req(41, { op: 'finish', txid }));
    const before = guards();
    const r = await session(lines);
    expect(r.answers.find((a) => a.id === 4)?.result).toMatchObject({ ok: true });
    expect(r.answers.find((a) => a.id === 40)?.error?.code).toBe('E_PROTOCOL');
    const started = guards().filter((p) => !before.includes(p));
    expect(started.length).toBeLessThanOrEqual(1);
    for (const p of started) expect(readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0')).toContain('5');
  });

  function guards(): string[] {
    const out: string[] = [];
    for (const p of readdirSync('/proc')) {
      if (!/^\d+$/.test(p)) continue;
      try {
        const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8');
        if (cmd.includes('--guard') && cmd.includes(cfg)) out.push(p);
      } catch {}
    }
    return out;
  }

  it('a request larger than the frame limit ends the session with E_PROTOCOL instead of exhausting memory', async () => {
    const huge = 'x'.repeat(30 * 1024 * 1024);
    const r = await session([hello], huge);
    expect(r.code).toBe(0);
    expect(
      r.answers.some(
        (a) => a.id === 0 && a.error?.code === 'E_PROTOCOL' && /more than/.test(a.error.message),
      ),
    ).toBe(true);
  });

  it('survives a seeded fuzz of request lines: every answer is data, never E_INTERNAL, never a crash', async () => {
    let seed = 12345;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    const ops = [
      'hello',
      'manifest',
      'begin',
      'put',
      'remove',
      'validate',
      'commit',
      'reload',
      'confirm',
      'verify',
      'addresses',
      'finish',
      'abort',
      'history',
      'stage-version',
      'read',
      'loaded',
      'services',
      'x',
    ];
    const values = [
      null,
      0,
      -1,
      1e308,
      '',
      'ü',
      '../../etc/passwd',
      KA(),
      FERM(),
      true,
      [],
      {},
      'e5e5e5e5e5e5e5e5',
      '{'.repeat(50),
    ];
    const pick = <T>(a: T[]) => a[Math.floor(rand() * a.length)]!;
    const lines = [hello];
    for (let i = 0; i < 2000; i++) {
      const o: Record<string, unknown> = { id: 100 + i, op: pick(ops) };
      for (const k of ['txid', 'path', 'mode', 'data', 'service', 'version', 'reload', 'since', 'texts'])
        if (rand() < 0.3) o[k] = pick(values);
      let line = JSON.stringify(o);
      if (rand() < 0.05) line = line.slice(0, Math.floor(rand() * line.length));
      lines.push(line);
    }
    const r = await session(lines);
    expect(r.code).toBe(0);
    expect(r.answers.filter((a) => a.error?.code === 'E_INTERNAL')).toEqual([]);
    expect(r.answers.length).toBeGreaterThan(1900);
  }, 120_000);

  it('a full disk during a commit leaves no temporary file, the live files untouched, and the next session recovers', async () => {
    const conf = path.join(dir, 'etc/keepalived/conf.d');
    const keep = path.join(dir, 'keep-conf.d');
    rmSync(keep, { recursive: true, force: true });
    mkdirSync(keep);
    // a 64 KiB file system over conf.d, as a nearly full /etc on a director
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', conf]);
    try {
      writeFileSync(path.join(conf, 'small.conf'), '! small\n');
      const txid = 'f6f6f6f6f6f6f6f6';
      const big = `! ${'x'.repeat(70 * 1024)}\n`;
      const r = await session([
        hello,
        req(2, { op: 'begin', txid }),
        put(3, txid, path.join(conf, 'small.conf'), '! small, new\n'),
        put(4, txid, path.join(conf, 'big.conf'), big),
        req(5, { op: 'validate', txid }),
        req(6, { op: 'commit', txid }),
      ]);
      const commit = r.answers.find((a) => a.id === 6)!;
      expect(commit.ok).toBe(false);
      expect(commit.error?.code).toBe('E_WRITE');
      expect(commit.error?.message).toMatch(/ENOSPC|no space/i);
      // nothing was renamed: the live file is what it was; no temporary file stays in conf.d
      expect(readFileSync(path.join(conf, 'small.conf'), 'utf8')).toBe('! small\n');
      expect(readdirSync(conf)).toEqual(['small.conf']);
      // the next session recovers (its hello rolls the journal back without writing) and can push
      const again = await session([hello, req(2, { op: 'history' })]);
      expect(again.answers[0]?.ok).toBe(true);
      expect(existsSync(path.join(dir, 'state/journal.json'))).toBe(false);
      expect(readFileSync(path.join(conf, 'small.conf'), 'utf8')).toBe('! small\n');
    } finally {
      execFileSync('umount', [conf]);
    }
  });

  it('a directory where the primary has a file is refused at put, not at commit', async () => {
    const p = path.join(dir, 'etc/keepalived/conf.d/d.conf');
    mkdirSync(p, { recursive: true });
    try {
      const txid = 'a7a7a7a7a7a7a7a7';
      const r = await session([
        hello,
        req(2, { op: 'begin', txid }),
        put(3, txid, p, 'x'),
        req(4, { op: 'abort', txid, reload: false }),
      ]);
      expect(r.answers.find((a) => a.id === 3)?.error).toMatchObject({
        code: 'E_PROTOCOL',
        message: expect.stringMatching(/is a directory on this director/),
      });
      expect(r.answers.find((a) => a.id === 4)?.ok).toBe(true);
    } finally {
      rmSync(p, { recursive: true, force: true });
    }
  });

  it('a file in a directory the peer lacks is committed (the directory is made); a name with .lvssync-tmp is a managed file; crash leftovers go', async () => {
    const fermd = path.join(dir, 'etc/ferm/ferm.d');
    rmSync(fermd, { recursive: true, force: true });
    const odd = path.join(dir, 'etc/keepalived/conf.d/x.lvssync-tmp.conf');
    const leftover = path.join(dir, 'etc/ferm/.ferm.conf.lvssync-tmp-0badf00d');
    writeFileSync(leftover, 'half a file');
    const old = new Date(Date.now() - 3_600_000);
    utimesSync(leftover, old, old);
    const txid = 'b8b8b8b8b8b8b8b8';
    const r = await session([
      hello,
      req(2, { op: 'begin', txid }),
      put(3, txid, path.join(fermd, 'web.ferm'), '# web\n'),
      put(4, txid, odd, '! odd name\n'),
      req(5, { op: 'validate', txid }),
      req(6, { op: 'commit', txid }),
      req(7, { op: 'finish', txid }),
      req(8, { op: 'manifest' }),
    ]);
    expect(r.answers.find((a) => a.id === 6)?.ok).toBe(true);
    expect(readFileSync(path.join(fermd, 'web.ferm'), 'utf8')).toBe('# web\n');
    const listed = (r.answers.find((a) => a.id === 8)?.result?.files ?? []) as { path: string }[];
    const files = listed.map((f) => f.path);
    expect(files).toContain(odd);
    expect(files).toContain(path.join(fermd, 'web.ferm'));
    expect(existsSync(leftover)).toBe(false);
    rmSync(odd, { force: true });
    rmSync(fermd, { recursive: true, force: true });
  });

  it('a committed file is its staged copy under a second name; no later transaction, applied or not, writes through it', async () => {
    const live = path.join(dir, 'etc/keepalived/conf.d/linked.conf');
    const staged = path.join(dir, 'state/staging/tree', live);
    const commit = (txid: string, text: string) => [
      hello,
      req(2, { op: 'begin', txid }),
      put(3, txid, live, text),
      req(4, { op: 'validate', txid }),
      req(5, { op: 'commit', txid }),
      req(6, { op: 'finish', txid }),
    ];
    try {
      const r = await session(commit('d1d1d1d1d1d1d1d1', '! one\n'));
      expect(r.answers.find((a) => a.id === 6)?.ok).toBe(true);
      // one file system here: the commit linked the staged file, it did not copy it
      expect(statSync(live).ino).toBe(statSync(staged).ino);
      expect(statSync(live).nlink).toBe(2);
      // a transaction that stages another version and is aborted leaves the live file alone
      const txid = 'd2d2d2d2d2d2d2d2';
      const aborted = await session([
        hello,
        req(2, { op: 'begin', txid }),
        put(3, txid, live, '! two, never applied\n'),
        req(4, { op: 'abort', txid, reload: false }),
      ]);
      expect(aborted.answers.find((a) => a.id === 4)?.ok).toBe(true);
      expect(readFileSync(live, 'utf8')).toBe('! one\n');
      // an edit in place on the director (as nano writes), then a push of the next version
      writeFileSync(live, '! edited here\n');
      await session(commit('d3d3d3d3d3d3d3d3', '! three\n'));
      expect(readFileSync(live, 'utf8')).toBe('! three\n');
      // the history kept the hand edit that push replaced, as it was
      const versions = (await session([hello, req(2, { op: 'history' })])).answers[1]?.result?.versions as {
        version: string;
        paths: string[];
      }[];
      expect(versions.at(-1)?.paths).toContain(live);
    } finally {
      rmSync(live, { force: true });
    }
  });

  it('an agent at work says it is alive every 2 s (a 3 s reload), and only then', async () => {
    const slow = path.join(dir, 'etc/lvssync/slow.yaml');
    writeFileSync(
      slow,
      readFileSync(cfg, 'utf8').replace(
        "  - name: keepalived\n    reload: ['true']",
        "  - name: keepalived\n    reload: ['sleep', '3']",
      ),
    );
    expect(readFileSync(slow, 'utf8')).toContain("reload: ['sleep', '3']");
    const txid = 'e5e5e5e5e5e5e5e5';
    const quick = await session([hello, req(2, { op: 'history' })], '', slow);
    expect(quick.alive).toBe(0);
    const r = await session(
      [
        hello,
        req(2, { op: 'begin', txid }),
        put(3, txid, path.join(dir, 'etc/keepalived/conf.d/alive.conf'), '! alive\n'),
        req(4, { op: 'validate', txid }),
        req(5, { op: 'commit', txid }),
        req(6, { op: 'reload', txid, service: 'keepalived' }),
        req(7, { op: 'finish', txid }),
      ],
      '',
      slow,
    );
    expect(r.answers.find((a) => a.id === 6)?.ok).toBe(true);
    expect(r.alive).toBeGreaterThanOrEqual(1);
    rmSync(path.join(dir, 'etc/keepalived/conf.d/alive.conf'), { force: true });
  });

  it('a transaction stages at most its documented number of files (E_PROTOCOL past it)', async () => {
    const txid = 'c9c9c9c9c9c9c9c9';
    const lines = [hello, req(2, { op: 'begin', txid })];
    const data = b64('! x\n');
    for (let i = 0; i <= MAX_TX_FILES; i++)
      lines.push(
        req(10 + i, {
          op: 'put',
          txid,
          path: path.join(dir, `etc/keepalived/conf.d/f${i}.conf`),
          mode: 0o644,
          data,
        }),
      );
    lines.push(req(5, { op: 'abort', txid, reload: false }));
    const r = await session(lines);
    const refused = r.answers.filter((a) => a.error?.code === 'E_PROTOCOL');
    expect(refused.map((a) => a.id)).toEqual([10 + MAX_TX_FILES]);
    expect(refused[0]?.error?.message).toMatch(/at most 20000 files/);
    expect(r.answers.find((a) => a.id === 5)?.ok).toBe(true);
  }, 120_000);

  it('a director that lists the programs keepalived may run refuses a set that runs another, before anything runs', async () => {
    const strict = path.join(dir, 'etc/lvssync/strict.yaml');
    writeFileSync(strict, `${readFileSync(cfg, 'utf8')}agent:\n  scripts: [/usr/local/lib/keepalived/*]\n`);
    const txid = 'd0d0d0d0d0d0d0d0';
    const evil = 'vrrp_script chk {\n  script "/tmp/evil.sh"\n}\n';
    const r = await session(
      [
        hello,
        req(2, { op: 'begin', txid }),
        put(3, txid, path.join(dir, 'etc/keepalived/conf.d/evil.conf'), evil),
        req(4, { op: 'validate', txid }),
        req(5, { op: 'abort', txid, reload: false }),
      ],
      '',
      strict,
    );
    const v = r.answers.find((a) => a.id === 4)!;
    expect(v.result?.ok).toBe(false);
    expect(v.result?.diagnostics).toContainEqual(
      expect.objectContaining({ code: 'KA_SCRIPT_NOT_ALLOWED', line: 2, severity: 'error' }),
    );
    rmSync(strict);
  });

  it('a set checked ahead of the puts is judged again with them: a put that duplicates an unchanged file is refused', async () => {
    const conf = (f: string) => path.join(dir, 'etc/keepalived/conf.d', f);
    const vs = (port: number) =>
      `virtual_server 192.0.2.10 ${port} {\n  lb_algo rr\n  lb_kind NAT\n  protocol TCP\n  real_server 198.51.100.10 ${port} {\n    TCP_CHECK {\n      connect_timeout 3\n    }\n  }\n}\n`;
    writeFileSync(conf('ahead-a.conf'), vs(80));
    const txid = 'e0e0e0e0e0e0e0e0';
    try {
      const refusedThenAccepted = async (pause: number[]) => {
        const r = await session([
          hello,
          req(2, { op: 'begin', txid }),
          // with a pause, the staged copy is read and checked before the put arrives; without, the
          // put lands while it is read
          ...pause,
          put(4, txid, conf('ahead-b.conf'), vs(80)),
          req(5, { op: 'validate', txid }),
          put(6, txid, conf('ahead-b.conf'), vs(443)),
          req(7, { op: 'validate', txid }),
          req(8, { op: 'abort', txid, reload: false }),
        ]);
        const answer = (id: number) => r.answers.find((a) => a.id === id)!;
        expect(answer(5).result?.ok, JSON.stringify(answer(5))).toBe(false);
        expect(answer(5).result?.diagnostics).toContainEqual(
          expect.objectContaining({ code: 'KA_DUPLICATE_VIRTUAL_SERVER', file: conf('ahead-b.conf') }),
        );
        expect(answer(7).result?.ok, JSON.stringify(answer(7))).toBe(true);
      };
      await refusedThenAccepted([1500]);
      await refusedThenAccepted([]);
    } finally {
      rmSync(conf('ahead-a.conf'));
    }
  });
});
