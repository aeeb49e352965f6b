// What OpenSSH's `ssh` said when it could not bring a session up, as lvssync's error: the same codes
// and wording as the built-in client's (a host key not pinned or changed, a key refused, a director
// not reached). Pure: the text of ssh's standard error in, one error out.

import type { ErrorCode } from '../errors.js';

export interface SshFailureContext {
  name: string;
  host: string;
  port: number;
  user: string;
  /** The key file, or undefined for ssh-agent. */
  identity: string | undefined;
  knownHosts: string;
}

const KEY_TYPES: Record<string, string> = {
  ED25519: 'ssh-ed25519',
  ECDSA: 'ecdsa-sha2-nistp256',
  RSA: 'ssh-rsa',
  DSA: 'ssh-dss',
};

/** `[host]:port` as known_hosts names a host on a port other than 22. */
function where(c: SshFailureContext): string {
  return `${c.port === 22 ? c.host : `[${c.host}]:${c.port}`} in ${c.knownHosts}`;
}

/**
 * ssh's exit status 255 with what it printed: which of lvssync's connection errors this is. A status
 * other than 255 is the remote command's own (the agent could not start), said as such.
 */
export function classifySshFailure(
  stderr: string,
  exitCode: number | null,
  c: SshFailureContext,
): { code: Extract<ErrorCode, 'E_HOST_KEY' | 'E_SSH_AUTH' | 'E_SSH_CONNECT'>; message: string } {
  const text = stderr.replace(/\r/g, '');
  const lastLines = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/^@+$/.test(l))
    .slice(-3)
    .join(' / ');
  if (exitCode !== 255) {
    return {
      code: 'E_SSH_CONNECT',
      message: `cannot start the agent on ${c.name}: ${exitCode === null ? 'ssh was killed' : `it exited with status ${exitCode}`}${lastLines ? `: ${lastLines}` : ''}`,
    };
  }
  const sent =
    /fingerprint for the (\w+) key sent by the remote host is\s*\n?\s*(SHA256:[A-Za-z0-9+/=]+)/.exec(text);
  const presented = sent ? `${KEY_TYPES[sent[1]!] ?? sent[1]} ${sent[2]}` : 'a host key';
  if (/REVOKED HOST KEY|is marked as revoked/.test(text))
    return {
      code: 'E_HOST_KEY',
      message: `${c.name} presented a revoked host key${sent ? ` ${presented}` : ''}: refused`,
    };
  if (/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for .* has changed/.test(text)) {
    const lines = [...text.matchAll(/Offending \w+ key in .*:(\d+)/g)].map((m) => m[1]);
    return {
      code: 'E_HOST_KEY',
      message: `HOST KEY CHANGED: ${c.name} presented ${presented}, which differs from the key pinned at ${c.knownHosts}${lines.length ? `:${lines.join(',')}` : ''}: refused (if the peer was reinstalled, pin the new key with lvssync init)`,
    };
  }
  const unknown = /No (\w+) host key is known for/.exec(text);
  if (unknown || /Host key verification failed/.test(text))
    return {
      code: 'E_HOST_KEY',
      message: `${c.name} presented ${unknown ? `an ${KEY_TYPES[unknown[1]!] ?? unknown[1]} host key` : 'a host key'}, which is not pinned (${where(c)}): refused; pin it with lvssync init --peer ${c.name}`,
    };
  if (/Permission denied \(|Too many authentication failures|no mutual signature algorithm/.test(text))
    return {
      code: 'E_SSH_AUTH',
      message: `${c.name} (${c.host}:${c.port}) refused the key of ${c.user} (${c.identity ?? 'ssh-agent'}): is it in the peer's authorized_keys? (lvssync init prints the line)`,
    };
  return {
    code: 'E_SSH_CONNECT',
    message: `cannot reach ${c.name} at ${c.host}:${c.port}: ${lastLines.replace(/^ssh: (connect to host \S+ port \d+: )?/, '') || 'ssh failed'}`,
  };
}
