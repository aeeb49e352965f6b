// OpenSSH's own words (OpenSSH 9.2, LogLevel=ERROR, as lvssync runs it) become the same errors as the
// built-in client's; the argv gives ssh lvssync's settings and nothing from any ssh_config.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULTS } from '../../src/core/config.js';
import { classifySshFailure } from '../../src/core/ssh-failure.js';
import { openSshArgv } from '../../src/shell/openssh.js';
import { awaitMaster } from '../../src/shell/ssh-master.js';

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
    const burst = openSshArgv(
      { ...config, stateDir: '/var/lib/lvssync' },
      target,
      ['lvssync', 'agent'],
      'master',
    );
    expect(burst).toEqual(
      expect.arrayContaining(['ControlPath=/var/lib/lvssync/ssh/lvs2.sock', 'ControlMaster=no']),
    );
  });
});

describe('awaitMaster', () => {
  // a clock and a process table of the test's own: nothing waits for real but the socket's 5 ms polls
  const dir = mkdtempSync(path.join(tmpdir(), 'lvssync-master-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('goes through a master once its socket listens, and not through one that ended or takes too long', async () => {
    const sock = path.join(dir, 'lvs2.sock');
    let t = 0;
    const now = () => t;
    // the socket appears while the master is alive: through it
    setTimeout(() => writeFileSync(sock, ''), 30);
    expect(await awaitMaster(sock, 1, 1500, () => true, now)).toBe(true);
    rmSync(sock);
    // the master ended before it listened: at once, a connection of its own
    let polls = 0;
    expect(await awaitMaster(sock, 1, 1500, () => ++polls < 3, now)).toBe(false);
    expect(polls).toBe(3);
    // a handshake longer than the wait: a connection of its own
    expect(
      await awaitMaster(
        sock,
        1,
        1500,
        () => true,
        () => (t += 400),
      ),
    ).toBe(false);
    expect(t).toBeGreaterThanOrEqual(1500);
  });
});
