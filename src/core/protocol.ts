// The agent protocol: what the primary and `lvssync agent` on a peer say to each other over one SSH
// channel, as newline-delimited JSON (like `rsync --server`, the agent speaks only on stdin/stdout).
// Version 1. Pure: types and the framing helpers.

import type { Diagnostic } from './diagnostic.js';
import type { RemoteFile } from './plan.js';

/** 2: a reload names its validated transaction and is guarded (ReloadResult.outcome); op loaded. */
export const PROTOCOL_VERSION = 2;

export interface Hello {
  version: number;
  node: string;
  hostname: string;
  /** The agent's own managed roots and globs: it refuses anything outside them. */
  managed: string[];
  /** A transaction the agent rolled back when it started (a previous push died mid-way). */
  recovered?: string;
  /** The agent's process id on the peer (for the logs: one session kept across pushes). */
  pid?: number;
  /** Who that director takes its configuration from, and since which handover (core/primary.ts). */
  primary?: string;
  epoch?: number;
}

export interface AddressInfo {
  /** interface -> IPv4 and IPv6 addresses (without prefix length) */
  [ifname: string]: string[];
}

export interface ReloadResult {
  ok: boolean;
  output: string;
  durationMs: number;
  /**
   * How a guarded reload ended (shell/reload.ts): 'superseded' (files changed since they validated:
   * not reloaded), 'changed-during' (changed while the service read them, and what is on disk now
   * did not validate, or kept changing). Absent for the reloads of a rollback.
   */
  outcome?: 'loaded' | 'superseded' | 'changed-during' | 'failed';
  /** The files that differed from the validated set. */
  changed?: string[];
  /** What a validation of the files on disk found after they changed during the reload. */
  diagnostics?: Diagnostic[];
}

export interface VerifyResult {
  ok: boolean;
  problems: string[];
}

export interface HistoryEntry {
  version: string;
  time: string;
  txid: string;
  paths: string[];
  /** Why the version was made: a commit or a restore. */
  /** commit: what a push replaced; restore: what a rollback replaced; handover: the files when the primary role moved away; take: the primary's own file replaced by `lvssync take`. */
  reason: 'commit' | 'restore' | 'handover' | 'take';
}

/** Whether a service runs on a director (its status command), and since when as far as lvssync saw. */
export interface ServiceState {
  service: string;
  /** false: its status command failed; undefined: it has none (lvssync cannot tell). */
  up?: boolean;
  /** ms since the epoch when lvssync first saw it in this state. */
  since?: number;
  /** ms since the epoch of the last reload lvssync made of it here. */
  lastReload?: number;
  detail?: string;
}

/** What a director reports for the audit. */
export interface AuditData {
  /** Every managed file: its checksum, and its text unless the primary asked for checksums only. */
  files: { path: string; sha256?: string; text?: string }[];
  addresses: string[];
  ipvsadm: { ok: boolean; text: string };
  /** iptables-save -t mangle (the tool ferm uses). */
  liveMangle: string;
  /** ferm --noexec --lines of the current ferm.conf. */
  fermLines: string;
  /** Modification times (ms) of the managed files. */
  mtimes?: Record<string, number>;
  /** When the running keepalived last read its configuration, as far as can be known (ms). */
  keepalivedLoadedAt?: number;
  /**
   * Per service, the files whose content differs from what it last loaded through lvssync (by
   * content: a file edited and put back is not pending); absent where that is not known.
   */
  pending?: Record<string, { at: number; changed: string[] }>;
  services?: ServiceState[];
  errors?: string[];
}

/** Requests, by op. */
export type Request =
  /**
   * primary: the director asking (its node name); leader and epoch: who it takes for the primary and
   * since which handover (the later handover is adopted by the other side).
   */
  | { op: 'hello'; version: number; primary: string; leader?: string; epoch?: number }
  /** since: the id of the last manifest this session received; the answer is then the difference. */
  | { op: 'manifest'; since?: number }
  | { op: 'begin'; txid: string }
  | { op: 'put'; txid: string; path: string; mode: number; data: string }
  | { op: 'remove'; txid: string; path: string }
  | { op: 'validate'; txid: string }
  | { op: 'commit'; txid: string }
  /** Reloads a service with the set transaction txid validated (refused before a validation). */
  | { op: 'reload'; txid: string; service: string; guardSeconds?: number }
  /** The digest of the set each service last loaded here through lvssync (shell/reload.ts). */
  | { op: 'loaded' }
  /** Whether each service runs here. */
  | { op: 'services' }
  | { op: 'confirm'; txid: string }
  | { op: 'verify'; service: string }
  | { op: 'addresses' }
  | { op: 'finish'; txid: string }
  | { op: 'abort'; txid: string; reload: boolean }
  | { op: 'history' }
  /** Stages a history version (default: the one the last push replaced) in the open transaction. */
  | { op: 'stage-version'; txid: string; version?: string }
  | { op: 'read'; path: string }
  /** What lvssync last synced to `path` on this director (the base of a three-way difference). */
  | { op: 'base'; path: string }
  /**
   * A handover: this director takes `primary` for the primary from handover `epoch` on (refused for
   * an older handover); keep: first copy its managed files into its history (reason handover).
   */
  | { op: 'set-primary'; primary: string; epoch: number; keep?: boolean }
  | { op: 'audit'; texts?: boolean };

export interface Responses {
  hello: Hello;
  manifest: ManifestAnswer;
  begin: { staging: string };
  put: { sha256: string };
  remove: { existed: boolean };
  validate: {
    ok: boolean;
    diagnostics: Diagnostic[];
    /** Where the time went on the peer (ms): its own reading and check, keepalived -t, ferm. */
    timings?: Record<string, number>;
  };
  commit: { version: string; paths: string[] };
  reload: ReloadResult;
  loaded: Record<string, { digest: string; at: number }>;
  services: ServiceState[];
  confirm: { confirmed: boolean };
  verify: VerifyResult;
  addresses: AddressInfo;
  finish: { done: boolean };
  abort: { restored: string[]; reloaded: ReloadResult[] };
  history: { versions: HistoryEntry[] };
  'stage-version': { version: string; paths: string[] };
  read: { exists: boolean; text: string; mode: number };
  base: { exists: boolean; text: string };
  'set-primary': { changed: string; kept?: string };
  audit: AuditData;
}

export type Op = Request['op'];

export interface Envelope {
  id: number;
}

export interface ErrorBody {
  code: string;
  message: string;
}

export type Response =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: ErrorBody };

/** Splits a stream of chunks into complete lines; keeps the incomplete tail. */
/** The largest request the agent reads: a put of the largest file (16 MiB) in base64, and room. */
export const MAX_FRAME = 24 * 1024 * 1024;

export class LineSplitter {
  /** The pieces of a line not finished yet (a long answer arrives in many chunks). */
  private pending: string[] = [];
  private pendingLength = 0;
  /** @param maxLength a line longer than this throws E_PROTOCOL (the agent's requests); 0: no limit. */
  constructor(private readonly maxLength = 0) {}

  /** Throws LineTooLong when a line exceeds maxLength (what was pending is dropped). */
  push(chunk: string): string[] {
    const out: string[] = [];
    let from = 0;
    for (let nl = chunk.indexOf('\n'); nl !== -1; nl = chunk.indexOf('\n', from)) {
      let line = chunk.slice(from, nl);
      if (this.pending.length > 0) {
        this.pending.push(line);
        line = this.pending.join('');
        this.pending = [];
        this.pendingLength = 0;
      }
      if (this.maxLength && line.length > this.maxLength) throw new LineTooLong(line.length, this.maxLength);
      if (line.length > 0) out.push(line);
      from = nl + 1;
    }
    if (from < chunk.length) {
      this.pending.push(chunk.slice(from));
      this.pendingLength += chunk.length - from;
      if (this.maxLength && this.pendingLength > this.maxLength) {
        const n = this.pendingLength;
        this.pending = [];
        this.pendingLength = 0;
        throw new LineTooLong(n, this.maxLength);
      }
    }
    return out;
  }
}

export class LineTooLong extends Error {
  constructor(
    readonly length: number,
    readonly max: number,
  ) {
    super(`a request of more than ${max} bytes (${length} so far without a newline)`);
  }
}

/**
 * The peer's files. With `base`, only the entries that changed since the manifest `base` of this
 * session, and the paths gone since; without it, every file. `id` names this manifest.
 */
export interface ManifestAnswer {
  files: RemoteFile[];
  id?: number;
  base?: number;
  removed?: string[];
  /**
   * Files lvssync wrote there that are no longer there (deleted by hand since), each with what
   * lvssync wrote: always whole, never a difference.
   */
  gone?: { path: string; written: string }[];
}

const sameEntry = (a: RemoteFile, b: RemoteFile) =>
  a.sha256 === b.sha256 && a.mode === b.mode && a.size === b.size && a.written === b.written;

/** What changed between two manifests (the agent sends this to a session that has `prev`). */
export function manifestDelta(
  prev: ReadonlyMap<string, RemoteFile>,
  next: readonly RemoteFile[],
): { files: RemoteFile[]; removed: string[] } {
  const files = next.filter((f) => {
    const p = prev.get(f.path);
    return !p || !sameEntry(p, f);
  });
  const present = new Set(next.map((f) => f.path));
  return { files, removed: [...prev.keys()].filter((p) => !present.has(p)) };
}

/** The manifest `prev` updated with a difference from manifestDelta. */
export function applyManifestDelta(
  prev: ReadonlyMap<string, RemoteFile>,
  delta: { files: readonly RemoteFile[]; removed?: readonly string[] },
): Map<string, RemoteFile> {
  const out = new Map(prev);
  for (const p of delta.removed ?? []) out.delete(p);
  for (const f of delta.files) out.set(f.path, f);
  return out;
}

/** The fields each op takes and their types ('?' marks an optional one). */
const FIELDS: Record<
  Request['op'],
  Record<string, 'string' | 'number' | 'boolean' | 'string?' | 'number?' | 'boolean?'>
> = {
  hello: { version: 'number', primary: 'string', leader: 'string?', epoch: 'number?' },
  manifest: { since: 'number?' },
  begin: { txid: 'string' },
  put: { txid: 'string', path: 'string', mode: 'number', data: 'string' },
  remove: { txid: 'string', path: 'string' },
  validate: { txid: 'string' },
  commit: { txid: 'string' },
  reload: { txid: 'string', service: 'string', guardSeconds: 'number?' },
  loaded: {},
  services: {},
  confirm: { txid: 'string' },
  verify: { service: 'string' },
  addresses: {},
  finish: { txid: 'string' },
  abort: { txid: 'string', reload: 'boolean' },
  history: {},
  'stage-version': { txid: 'string', version: 'string?' },
  read: { path: 'string' },
  base: { path: 'string' },
  'set-primary': { primary: 'string', epoch: 'number', keep: 'boolean?' },
  audit: { texts: 'boolean?' },
};

/**
 * A request line as the agent receives it, checked field by field: the request, or why it is not
 * one (the agent answers E_PROTOCOL). Never throws.
 */
export function parseRequest(line: string): { id: number; req: Request } | { id: number; error: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return { id: 0, error: 'not a JSON request' };
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    return { id: 0, error: 'not a JSON object' };
  const o = raw as Record<string, unknown>;
  const id = typeof o.id === 'number' && Number.isSafeInteger(o.id) ? o.id : 0;
  if (typeof o.op !== 'string' || !Object.hasOwn(FIELDS, o.op))
    return { id, error: `unknown op '${String(o.op)}'` };
  const fields = FIELDS[o.op as Request['op']];
  for (const [k, t] of Object.entries(fields)) {
    const v = o[k];
    const optional = t.endsWith('?');
    if (v === undefined && optional) continue;
    const want = t.replace('?', '');
    if (typeof v !== want || (want === 'number' && !Number.isFinite(v)))
      return { id, error: `${o.op}: ${k} must be a ${want}` };
  }
  for (const k of Object.keys(o)) {
    if (k !== 'id' && k !== 'op' && !Object.hasOwn(fields, k))
      return { id, error: `${o.op}: unknown field '${k}'` };
  }
  return { id, req: o as unknown as Request };
}
