// The watch daemon and its worker process speak over Node's IPC channel (watch.ts, watch-worker.ts):
// these are the messages, typed like the agent's protocol (protocol.ts), and checked on arrival, so
// a message of another version or a damaged one is an error with its reason, not a crash later on.

import type { Diagnostic } from './diagnostic.js';
import type { ServiceState } from './protocol.js';

export type PushResult =
  | 'in-sync'
  | 'dry-run'
  | 'declined'
  /** A gated push whose gate said no (the set changed again before commit); nothing was changed. */
  | 'superseded'
  | 'pushed'
  /**
   * Done on every director that answered, and one or more could not be asked (down, cut off): those
   * are named in the report and brought up to date by the next push that reaches them.
   */
  | 'partial'
  /** The files were in sync, and the services that had not loaded them were reloaded. */
  | 'reloaded'
  /** A service is not running on a director: nothing was committed or reloaded. */
  | 'service-down'
  | 'invalid-here'
  | 'invalid-on-peer'
  | 'conflict'
  | 'rolled-back'
  /** The peer could not be reached: nothing was sent. */
  | 'unreachable'
  /** The peer was reached but not trusted, or did not trust this director (host key, authentication): a person must look. */
  | 'refused'
  /** Another push holds the lock, here or on the peer: nothing was changed. */
  | 'busy'
  /** The connection was lost before the peer committed anything (its staged copy is thrown away). */
  | 'link-lost'
  /** The peer cannot write its files or state (disk full, read-only): nothing there is half-written. */
  | 'peer-cannot-write'
  /** Something else failed before the peer committed anything (its staged copy is thrown away). */
  | 'failed'
  /**
   * The connection or a step failed after the peer committed: its agent rolls the set back when it
   * notices (the session's end, or the next session's start), which the next push reports.
   */
  | 'interrupted'
  | 'primary-failed'
  /** This director is not the primary (or learnt from a peer that it no longer is): nothing was sent. */
  | 'not-primary';

/**
 * What a push that ended on an error means, decided here once from the error's code and whether
 * the peer had committed: the daemon's backoff, the command's exit status and its message all
 * follow the result, never the code again.
 */
export function resultOfError(code: string, committed: boolean): PushResult {
  if (committed) return 'interrupted';
  switch (code) {
    case 'E_SSH_CONNECT':
      return 'unreachable';
    case 'E_SSH_AUTH':
    case 'E_HOST_KEY':
      return 'refused';
    case 'E_LOCKED':
      return 'busy';
    case 'E_TRANSFER':
      return 'link-lost';
    case 'E_WRITE':
      return 'peer-cannot-write';
    case 'E_NOT_PRIMARY':
      return 'not-primary';
    default:
      return 'failed';
  }
}

export interface Step {
  host: string;
  step: string;
  ok: boolean;
  durationMs: number;
  detail?: string;
}

export type WorkerJob = 'push' | 'watchset' | 'audit' | 'next-audit';

export interface WorkerRequest {
  id: number;
  job: WorkerJob;
  /** push: an early push, which asks the daemon (a 'gate' event) before the peer's commit. */
  gated?: boolean;
}

/** The daemon's answer to a gated push's 'gate' event: commit, or abandon. */
export interface GateReply {
  gate: number;
  go: boolean;
}

/** What the daemon watches, from a read of the set: its files and the include patterns. */
export interface WatchInput {
  files: string[];
  patterns: string[];
}

/** One other director's part of a push, as the worker reports it. */
export interface PeerSummary {
  node: string;
  /** Why it could not be asked (nothing was sent to it). */
  unreachable?: string;
  changes: string[];
  conflicts: string[];
  version?: string;
  /** Where its validation spent its time (ms). */
  peerTimings?: Record<string, number>;
}

export interface PushSummary {
  result: PushResult;
  peers: PeerSummary[];
  order?: string[];
  timings: Record<string, number>;
  /** Errors that stopped the push, here or on the peer. */
  errors: Diagnostic[];
  error?: { code: string; message: string };
  steps: Step[];
  watch?: WatchInput;
  memory: Record<string, number>;
  /** An early push abandoned because this file changed after it was read, with no event for it. */
  changedOnDisk?: string;
  /** Services found not running (result service-down). */
  servicesDown?: (ServiceState & { host: string })[];
}

/** When audit.schedule next fires (epoch ms), as node-cron computes it; or why it cannot. */
export interface NextAudit {
  at?: number;
  error?: string;
}

export interface AuditSummary {
  status: string;
  problems: number;
  codes: string[];
  report: string;
}

export type WorkerMessage =
  | { id: number; ok: true; result: PushSummary | WatchInput | AuditSummary | NextAudit }
  | { id: number; ok: false; error: { code: string; message: string } }
  | { event: 'progress'; step: string }
  | { event: 'gate'; id: number }
  | { event: 'opened'; peer: string; agentPid?: number; recovered?: string };

const JOBS: ReadonlySet<string> = new Set(['push', 'watchset', 'audit', 'next-audit']);

export const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null;
const isId = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;

/** What the worker receives from the daemon: a job, or the answer to a gated push's question. */
export function parseWorkerRequest(raw: unknown): WorkerRequest | GateReply | { error: string } {
  if (!isObject(raw)) return { error: 'not an object' };
  if ('gate' in raw) {
    if (!isId(raw.gate) || typeof raw.go !== 'boolean')
      return { error: 'a gate reply needs gate (id) and go (boolean)' };
    return { gate: raw.gate, go: raw.go };
  }
  if (!isId(raw.id)) return { error: 'id: not a request number' };
  if (typeof raw.job !== 'string' || !JOBS.has(raw.job))
    return { error: `job: unknown job ${JSON.stringify(raw.job)}` };
  if (raw.gated !== undefined && typeof raw.gated !== 'boolean') return { error: 'gated: not a boolean' };
  return { id: raw.id, job: raw.job as WorkerJob, ...(raw.gated ? { gated: true } : {}) };
}

/** What the daemon receives from the worker: an answer to a request, or an event. */
export function parseWorkerMessage(raw: unknown): WorkerMessage | { error: string } {
  if (!isObject(raw)) return { error: 'not an object' };
  if ('event' in raw) {
    switch (raw.event) {
      case 'progress':
        return typeof raw.step === 'string'
          ? { event: 'progress', step: raw.step }
          : { error: 'progress: no step' };
      case 'gate':
        return isId(raw.id) ? { event: 'gate', id: raw.id } : { error: 'gate: no id' };
      case 'opened':
        if (typeof raw.peer !== 'string') return { error: 'opened: no peer' };
        return {
          event: 'opened',
          peer: raw.peer,
          ...(typeof raw.agentPid === 'number' ? { agentPid: raw.agentPid } : {}),
          ...(typeof raw.recovered === 'string' ? { recovered: raw.recovered } : {}),
        };
      default:
        return { error: `unknown event ${JSON.stringify(raw.event)}` };
    }
  }
  if (!isId(raw.id)) return { error: 'id: not a request number' };
  if (raw.ok === true) {
    if (!isObject(raw.result)) return { error: 'result: not an object' };
    return {
      id: raw.id,
      ok: true,
      result: raw.result as PushSummary | WatchInput | AuditSummary | NextAudit,
    };
  }
  if (raw.ok === false) {
    const e = raw.error;
    if (!isObject(e) || typeof e.code !== 'string' || typeof e.message !== 'string')
      return { error: 'error: needs code and message' };
    return { id: raw.id, ok: false, error: { code: e.code, message: e.message } };
  }
  return { error: 'ok: not a boolean' };
}
