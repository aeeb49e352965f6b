// The watch daemon's health and its retry backoff, as a pure reducer beside coalesce.ts: what one
// push's outcome means for the daemon (in sync, waiting for an edit, retrying later) is decided here,
// once; the daemon logs, writes its status and arms the timer it is told to.

import type { PushResult } from './worker-ipc.js';

export type WatchHealth =
  | 'starting'
  | 'in-sync'
  | 'pending'
  | 'pushing'
  | 'invalid'
  | 'peer-down'
  /** keepalived or ferm is not running on a director (watch-status.json says which, since when). */
  | 'service-down'
  | 'failed'
  | 'conflict'
  /** Another director is the primary: this one watches and pushes nothing. */
  | 'not-primary';

export const RETRY_MIN_MS = 1000;
export const RETRY_MAX_MS = 60_000;

/** What the daemon learns from one push: its result (worker-ipc.ts's PushResult), or that the worker died. */
export type PushOutcomeSummary = { crashed: true } | { crashed?: false; result: PushResult };

export type Verdict =
  /** The peer has this set and loaded it. */
  | { kind: 'converged' }
  /** The set changed while the push ran: the next burst pushes again, nothing to retry. */
  | { kind: 'superseded' }
  /** Only an edit (or a person) helps: no retry until the set changes. */
  | { kind: 'needs-edit'; health: 'invalid' | 'conflict' | 'failed' | 'not-primary' }
  /** Something outside the set (the link, a service, the peer's disk): tried again with backoff. */
  | {
      kind: 'retry';
      health: 'peer-down' | 'pending' | 'service-down' | 'failed';
      reason: 'peer-down' | 'busy' | 'service-down' | 'peer-cannot-write' | 'interrupted' | 'crashed';
    };

export function classifyPush(o: PushOutcomeSummary): Verdict {
  if (o.crashed) return { kind: 'retry', health: 'failed', reason: 'crashed' };
  switch (o.result) {
    case 'pushed':
    case 'reloaded':
    case 'in-sync':
    case 'dry-run':
    case 'declined':
      return { kind: 'converged' };
    case 'superseded':
      return { kind: 'superseded' };
    case 'service-down':
      return { kind: 'retry', health: 'service-down', reason: 'service-down' };
    // a director that could not be asked is brought up to date when it answers again
    case 'unreachable':
    case 'link-lost':
    case 'partial':
      return { kind: 'retry', health: 'peer-down', reason: 'peer-down' };
    case 'busy':
      return { kind: 'retry', health: 'pending', reason: 'busy' };
    // the peer's disk or state (a rollback it cannot finish): its fix is not an edit here
    case 'peer-cannot-write':
      return { kind: 'retry', health: 'failed', reason: 'peer-cannot-write' };
    // the link went after the commit: the agent rolls back, and the next push redoes it
    case 'interrupted':
      return { kind: 'retry', health: 'peer-down', reason: 'interrupted' };
    case 'invalid-here':
      return { kind: 'needs-edit', health: 'invalid' };
    // until a handover makes this director the primary again (lvssync primary, SIGHUP)
    case 'not-primary':
      return { kind: 'needs-edit', health: 'not-primary' };
    case 'conflict':
      return { kind: 'needs-edit', health: 'conflict' };
    case 'invalid-on-peer':
    case 'refused':
    case 'rolled-back':
    case 'primary-failed':
    case 'failed':
      return { kind: 'needs-edit', health: 'failed' };
  }
}

export interface HealthState {
  health: WatchHealth;
  /** The last retry delay (0 after a push that converged): the next one doubles it, up to the max. */
  retryMs: number;
}

export const STARTING: HealthState = { health: 'starting', retryMs: 0 };

/**
 * The daemon after a push: its health, and when to try again (`retryInMs`), or not. `once` (watch
 * --once) reports instead of retrying.
 */
export function afterPush(
  state: HealthState,
  verdict: Verdict,
  once = false,
): { state: HealthState; retryInMs?: number } {
  switch (verdict.kind) {
    case 'converged':
      return { state: { health: 'in-sync', retryMs: 0 } };
    case 'superseded':
      return { state: { ...state, health: 'pending' } };
    case 'needs-edit':
      return { state: { ...state, health: verdict.health } };
    case 'retry': {
      if (once) return { state: { ...state, health: verdict.health } };
      const retryMs = Math.min(RETRY_MAX_MS, state.retryMs ? state.retryMs * 2 : RETRY_MIN_MS);
      return { state: { health: verdict.health, retryMs }, retryInMs: retryMs };
    }
  }
}

/**
 * While a retry waits out a long backoff, the directors that could not be reached are asked at once,
 * then every PROBE_EVERY_MS, whether their SSH server answers (its banner, no login): one that was
 * silent and answers again is pushed to at once, not at the end of a backoff of up to a minute.
 */
export const PROBE_EVERY_MS = 2000;
/** A backoff this short is simply waited out. */
export const PROBE_MIN_RETRY_MS = 2 * PROBE_EVERY_MS;

export interface AnswerWatch {
  /** The directors the push could not reach. */
  nodes: readonly string[];
  /** Those a probe found silent since the push. */
  silent: readonly string[];
}

/** The watch to keep after a push that will be retried in `retryInMs` (none: the timer alone). */
export function watchForAnswer(nodes: readonly string[], retryInMs: number): AnswerWatch | undefined {
  if (nodes.length === 0 || retryInMs < PROBE_MIN_RETRY_MS) return undefined;
  return { nodes: [...nodes], silent: [] };
}

/**
 * One round of probes: `retry` when every director answers and one of them had been silent (it came
 * back); the watch ends when all answer (a director that answered all along failed for another reason,
 * which its backoff governs: probing it again would only fill its sshd log).
 */
export function afterProbes(
  w: AnswerWatch,
  answers: ReadonlyMap<string, boolean>,
): { watch?: AnswerWatch; retry?: { back: string[] } } {
  const silent = new Set(w.silent);
  for (const n of w.nodes) if (answers.get(n) !== true) silent.add(n);
  if (w.nodes.every((n) => answers.get(n) === true)) {
    const back = w.nodes.filter((n) => silent.has(n));
    return back.length ? { retry: { back } } : {};
  }
  return { watch: { nodes: w.nodes, silent: [...silent] } };
}
