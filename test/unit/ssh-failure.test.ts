// OpenSSH's own words (OpenSSH 9.2, LogLevel=ERROR, as lvssync runs it) become the same errors as the
// built-in client's; the argv gives ssh lvssync's settings and nothing from any ssh_config.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULTS } from '../../src/core/config.js';
import { classifySshFailure } from '../../src/core/ssh-failure.js';
import { openSshArgv } from '../../src/shell/openssh.js';
import { waitForMaster } from '../../src/shell/ssh-master.js';

const ctx = {
  name: 'lvs2',
  host: '203.0.113.252',
  port: 22,
  user: 'root',
  identity: '/etc/lvssync/id_ed25519',
  knownHosts: '/etc/lvssync/known_hosts',
};

const CHANGED = `@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
Someone could be eavesdropping on you right now (man-in-the-middle attack)!
It is also possible that a host key has just been changed.
The fingerprint for the ED25519 key sent by the remote host is
SHA256:zk2FIDfwjp+VTQ2xHA3kSPxCsygOHolsbNgZ+N8fqQs.
Please contact your system administrator.
Add correct host key in /etc/lvssync/known_hosts to get rid of this message.
Offending ED25519 key in /etc/lvssync/known_hosts:2
  remove with:
  ssh-keygen -f "/etc/lvssync/known_hosts" -R "203.0.113.252"
Host key for 203.0.113.252 has changed and you have requested strict checking.
Host key verification failed.
`;

describe('classifySshFailure', () => {
  it('a changed host key: HOST KEY CHANGED with the key presented and the pinned line', () => {
    const f = classifySshFailure(CHANGED, 255, ctx);
    expect(f.code).toBe('E_HOST_KEY');
    expect(f.message).toBe(
      'HOST KEY CHANGED: lvs2 presented ssh-ed25519 SHA256:zk2FIDfwjp+VTQ2xHA3kSPxCsygOHolsbNgZ+N8fqQs, which differs from the key pinned at /etc/lvssync/known_hosts:2: refused (if the peer was reinstalled, pin the new key with lvssync init)',
    );
  });

  it('an unknown host key: not pinned, with where it would be and how to pin it', () => {
    const f = classifySshFailure(
      'No ED25519 host key is known for [203.0.113.252]:2222 and you have requested strict checking.\nHost key verification failed.\n',
      255,
      { ...ctx, port: 2222 },
    );
    expect(f.code).toBe('E_HOST_KEY');
    expect(f.message).toMatch(
      /^lvs2 presented an ssh-ed25519 host key, which is not pinned \(\[203\.0\.113\.252\]:2222 in \/etc\/lvssync\/known_hosts\): refused; pin it with lvssync init --peer lvs2$/,
    );
  });

  it('a revoked host key is refused as revoked', () => {
    const f = classifySshFailure(
      '@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n@       WARNING: REVOKED HOST KEY DETECTED!               @\n@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\nThe ED25519 host key for 203.0.113.252 is marked as revoked.\nHost key verification failed.\n',
      255,
      ctx,
    );
    expect(f).toEqual({ code: 'E_HOST_KEY', message: 'lvs2 presented a revoked host key: refused' });
  });

  it('a refused key: E_SSH_AUTH naming the key and the user', () => {
    const f = classifySshFailure('root@203.0.113.252: Permission denied (publickey).\n', 255, ctx);
    expect(f.code).toBe('E_SSH_AUTH');
    expect(f.message).toContain('refused the key of root (/etc/lvssync/id_ed25519)');
    expect(
      classifySshFailure('Permission denied (publickey).', 255, { ...ctx, identity: undefined }).message,
    ).toContain('(ssh-agent)');
  });

  it('not reached: E_SSH_CONNECT with what ssh saw', () => {
    expect(
      classifySshFailure('ssh: connect to host 203.0.113.252 port 2: Connection refused\n', 255, ctx),
    ).toEqual({
      code: 'E_SSH_CONNECT',
      message: 'cannot reach lvs2 at 203.0.113.252:22: Connection refused',
    });
    expect(
      classifySshFailure('ssh: connect to host 192.0.2.77 port 22: Network is unreachable\n', 255, ctx)
        .message,
    ).toBe('cannot reach lvs2 at 203.0.113.252:22: Network is unreachable');
    expect(classifySshFailure('', 255, ctx).message).toBe(
      'cannot reach lvs2 at 203.0.113.252:22: ssh failed',
    );
  });

  it('a status other than 255 is the remote command failing: the agent did not start', () => {
    const f = classifySshFailure('sh: 1: lvssync: not found\n', 127, ctx);
    expect(f.code).toBe('E_SSH_CONNECT');
    expect(f.message).toBe(
      'cannot start the agent on lvs2: it exited with status 127: sh: 1: lvssync: not found',
    );
  });
});

describe('openSshArgv', () => {
  const config = {
    ...DEFAULTS,
    ssh: { ...DEFAULTS.ssh, identityFile: '/etc/lvssync/id_ed25519', connectTimeoutMs: 2500 },
  };
  const argv = openSshArgv(config, { name: 'lvs2', host: '203.0.113.252', port: 2222 }, ['lvssync', 'agent']);
  const opt = (k: string) => {
    const i = argv.findIndex((a) => a.startsWith(`${k}=`));
    return argv[i - 1] === '-o' ? argv[i] : undefined;
  };

  it('reads no ssh_config and checks the pinned known_hosts strictly, never asking', () => {
    expect(argv.slice(0, 2)).toEqual(['-F', 'none']);
    expect(opt('StrictHostKeyChecking')).toBe('StrictHostKeyChecking=yes');
    expect(opt('UserKnownHostsFile')).toBe('UserKnownHostsFile=/etc/lvssync/known_hosts');
    expect(opt('GlobalKnownHostsFile')).toBe('GlobalKnownHostsFile=none');
    expect(opt('BatchMode')).toBe('BatchMode=yes');
    expect(opt('ConnectTimeout')).toBe('ConnectTimeout=3');
  });

  it('logs in with the configured key only, forwards nothing, and runs the agent command', () => {
    expect(argv).toContain('-i');
    expect(argv[argv.indexOf('-i') + 1]).toBe('/etc/lvssync/id_ed25519');
    expect(opt('IdentitiesOnly')).toBe('IdentitiesOnly=yes');
    expect(opt('IdentityAgent')).toBe('IdentityAgent=none');
    expect(opt('ForwardAgent')).toBe('ForwardAgent=no');
    expect(opt('ClearAllForwardings')).toBe('ClearAllForwardings=yes');
    expect(argv.slice(-7)).toEqual(['-p', '2222', '-l', 'root', '--', '203.0.113.252', 'lvssync agent']);
  });

  it('goes through the kept master only with ssh.keepConnection; the master itself runs no command and listens on its socket', () => {
    expect(argv.some((a) => a.startsWith('ControlPath='))).toBe(false);
    const kept = { ...config, stateDir: '/var/lib/lvssync', ssh: { ...config.ssh, keepConnection: true } };
    const target = { name: 'lvs2', host: '203.0.113.252', port: 2222 };
    const session = openSshArgv(kept, target, ['lvssync', 'agent']);
    expect(session).toContain('ControlPath=/var/lib/lvssync/ssh/lvs2.sock');
    // a session never becomes a master: with the socket gone it makes a connection of its own
    expect(session).toContain('ControlMaster=no');
    expect(session).not.toContain('-M');
    expect(session.at(-1)).toBe('lvssync agent');
    const master = openSshArgv(kept, target, undefined);
    expect(master).toEqual(
      expect.arrayContaining(['-M', '-N', 'ControlPath=/var/lib/lvssync/ssh/lvs2.sock']),
    );
    expect(master.at(-1)).toBe('203.0.113.252');
    // the same key and host key checking as every session
    expect(master[master.indexOf('-i') + 1]).toBe('/etc/lvssync/id_ed25519');
    expect(master).toContain('StrictHostKeyChecking=yes');
    // the ferm guard's proof: a connection of its own, kept master or not
    expect(
      openSshArgv(kept, target, ['lvssync', 'agent'], 'fresh').some((a) => a.startsWith('Control')),
    ).toBe(false);
    // the daemon's master for a burst: its worker's sessions go through it without ssh.keepConnection
    const burst = openSshArgv({ ...config, stateDir: '/var/lib/lvssync' }, target, ['lvssync', 'agent'], {
      master: 4242,
    });
    expect(burst).toEqual(
      expect.arrayContaining(['ControlPath=/var/lib/lvssync/ssh/lvs2.sock', 'ControlMaster=no']),
    );
  });
});

describe('waitForMaster', () => {
  // the real sh, a real unix socket and real processes: what runs once the wait is over says when
  const dir = mkdtempSync(path.join(tmpdir(), 'lvssync-master-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  /** ms until the command ran (it prints the time), with the master `pid` and the socket at `sock`. */
  const ranAfter = (sock: string, pid: number, waitMs: number) => {
    const t0 = Date.now();
    const r = spawnSync('sh', waitForMaster(sock, pid, waitMs, ['sh', '-c', 'date +%s%3N']), {
      encoding: 'utf8',
    });
    return Number(r.stdout.trim()) - t0;
  };

  it('starts ssh once the master listens, at once when the master is gone, and after the wait at most', async () => {
    const sock = path.join(dir, 'lvs2.sock');
    const master = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      // the master listens 300 ms from now
      const server = net.createServer();
      const listening = new Promise<void>((resolve) => setTimeout(() => server.listen(sock, resolve), 300));
      const waited = await new Promise<number>((resolve) => {
        const t0 = Date.now();
        const child = spawn('sh', waitForMaster(sock, master.pid!, 5000, ['true']), { stdio: 'ignore' });
        child.on('close', () => resolve(Date.now() - t0));
      });
      await listening;
      server.close();
      expect(waited).toBeGreaterThanOrEqual(250);
      expect(waited).toBeLessThan(3000);
      // no socket, the master's handshake longer than the wait: ssh goes after the wait
      const slow = ranAfter(path.join(dir, 'none.sock'), master.pid!, 400);
      expect(slow).toBeGreaterThanOrEqual(350);
      expect(slow).toBeLessThan(3000);
    } finally {
      master.kill();
    }
    // the master ended before it listened: no wait
    const gone = spawnSync('sh', ['-c', 'echo $$']).stdout.toString().trim();
    expect(ranAfter(path.join(dir, 'none.sock'), Number(gone), 5000)).toBeLessThan(1000);
  });

  it('keeps ssh deaf to SIGTERM, SIGINT and SIGHUP, as every session', () => {
    const r = spawnSync('sh', waitForMaster('/nonexistent', 1, 0, ['grep', 'SigIgn', '/proc/self/status']), {
      encoding: 'utf8',
    });
    const ignored = BigInt(`0x${r.stdout.split(/\s+/)[1]}`);
    // HUP 1, INT 2, TERM 15: bits 0, 1 and 14
    expect(ignored & 0x4003n).toBe(0x4003n);
  });
});
