// Readiness for systemd (Type=notify): Node cannot send on the AF_UNIX datagram socket systemd gives
// ($NOTIFY_SOCKET), so systemd-notify sends it; with NotifyAccess=all systemd takes it from a child
// of the daemon, and systemd-notify waits until systemd has read it (sd_notify_barrier), so the
// message is not lost when the sender exits.

import { execFile } from 'node:child_process';

/** Sends e.g. READY=1 when running under systemd's Type=notify; a no-op elsewhere. Never throws. */
export function sdNotify(
  fields: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ sent: boolean; error?: string }> {
  if (!env.NOTIFY_SOCKET) return Promise.resolve({ sent: false });
  return new Promise((resolve) => {
    execFile('systemd-notify', [...fields], { env, timeout: 10_000 }, (err, _out, stderr) =>
      resolve(err ? { sent: false, error: (stderr || err.message).trim() } : { sent: true }),
    );
  });
}
