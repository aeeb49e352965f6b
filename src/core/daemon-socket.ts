// `lvssync push` on the primary while the daemon runs asks the daemon to push now, over a local
// socket in the state directory (root only): the daemon's worker has the session to the peer and
// the caches, so the answer comes on the warm path. One request line, one answer line, JSON.

import { isObject, type PushSummary } from './worker-ipc.js';

export const DAEMON_SOCKET = 'watch.sock';

export type DaemonRequest = { op: 'push' };

export type DaemonReply =
  | { ok: true; summary: PushSummary }
  | { ok: false; error: { code: string; message: string } };

/** One line of JSON, or undefined when it is not JSON. */
function json(line: string): { value: unknown } | undefined {
  try {
    return { value: JSON.parse(line) };
  } catch {
    return undefined;
  }
}

export function parseDaemonRequest(line: string): DaemonRequest | { error: string } {
  const raw = json(line)?.value;
  if (raw === undefined) return { error: 'not JSON' };
  if (!isObject(raw) || raw.op !== 'push')
    return { error: `unknown request ${JSON.stringify(line.slice(0, 80))}` };
  return { op: 'push' };
}

export function parseDaemonReply(line: string): DaemonReply | { error: string } {
  const raw = json(line)?.value;
  if (raw === undefined) return { error: 'not JSON' };
  if (!isObject(raw)) return { error: 'not an object' };
  if (raw.ok === true) {
    const s = raw.summary;
    if (
      !isObject(s) ||
      typeof s.result !== 'string' ||
      !Array.isArray(s.peers) ||
      !s.peers.every((p) => isObject(p) && typeof p.node === 'string' && Array.isArray(p.changes)) ||
      !Array.isArray(s.steps)
    )
      return { error: 'summary: not a push summary' };
    return { ok: true, summary: s as unknown as PushSummary };
  }
  if (
    raw.ok === false &&
    isObject(raw.error) &&
    typeof raw.error.code === 'string' &&
    typeof raw.error.message === 'string'
  )
    return { ok: false, error: { code: raw.error.code, message: raw.error.message } };
  return { error: 'ok: neither an answer nor an error' };
}
