// The one error type for runtime failures (something could not be done), with stable codes and the
// process exit status each class of failure maps to. Findings about a config are Diagnostics instead.

export const EXIT = {
  OK: 0,
  /** The configuration set has errors (check, push refused before anything left the host). */
  FINDINGS: 1,
  /** Bad command line. */
  USAGE: 2,
  /** lvssync's own configuration file is missing or invalid. */
  CONFIG: 3,
  /** A peer could not be reached or authenticated (SSH, host key). */
  PEER: 4,
  /** A push step failed on the peer; the peer was rolled back. */
  PUSH_FAILED: 5,
  /** The peer's files were changed outside lvssync; nothing was written (use --force). */
  CONFLICT: 6,
  /** Another lvssync run holds the lock. */
  LOCKED: 7,
  /** A required program (ferm, keepalived, ...) is missing or failed to run. */
  TOOL: 8,
  /** Anything else: a bug. */
  INTERNAL: 70,
} as const;

/** What each exit status means, for the man page and --help (in the order of EXIT). */
export const EXIT_MEANING: Readonly<Record<keyof typeof EXIT, string>> = {
  OK: 'success',
  FINDINGS: 'the configuration set has errors (nothing left this host)',
  USAGE: 'bad command line',
  CONFIG: "lvssync's own configuration file is missing or invalid",
  PEER: 'the peer could not be reached or authenticated (SSH, host key)',
  PUSH_FAILED: 'a push step failed on the peer, which was rolled back (or says why it could not be)',
  CONFLICT: "the peer's files were changed outside lvssync; nothing was written (use --force)",
  LOCKED: 'another lvssync run holds the lock',
  TOOL: 'a required program (ferm, keepalived, ...) is missing or failed to run',
  INTERNAL: 'anything else: a bug',
};

export type ErrorCode =
  | 'E_USAGE'
  | 'E_CONFIG'
  | 'E_READ'
  /** The input itself is wrong (a symlink out of --root): like a finding, exit 1. */
  | 'E_INVALID'
  | 'E_WRITE'
  | 'E_TOOL_MISSING'
  | 'E_TOOL_FAILED'
  | 'E_SSH_CONNECT'
  | 'E_SSH_AUTH'
  | 'E_HOST_KEY'
  | 'E_TRANSFER'
  | 'E_PROTOCOL'
  | 'E_PEER_INVALID'
  | 'E_RELOAD'
  /** keepalived or ferm is not running on a director: lvssync does not push into that. */
  | 'E_SERVICE_DOWN'
  | 'E_VERIFY'
  | 'E_CONFLICT'
  | 'E_NOT_PRIMARY'
  | 'E_LOCKED'
  | 'E_INTERNAL';

const EXIT_OF: Record<ErrorCode, number> = {
  E_USAGE: EXIT.USAGE,
  E_CONFIG: EXIT.CONFIG,
  E_READ: EXIT.CONFIG,
  E_INVALID: EXIT.FINDINGS,
  E_WRITE: EXIT.PUSH_FAILED,
  E_TOOL_MISSING: EXIT.TOOL,
  E_TOOL_FAILED: EXIT.TOOL,
  E_SSH_CONNECT: EXIT.PEER,
  E_SSH_AUTH: EXIT.PEER,
  E_HOST_KEY: EXIT.PEER,
  E_TRANSFER: EXIT.PUSH_FAILED,
  E_PROTOCOL: EXIT.PUSH_FAILED,
  E_PEER_INVALID: EXIT.PUSH_FAILED,
  E_RELOAD: EXIT.PUSH_FAILED,
  E_SERVICE_DOWN: EXIT.PUSH_FAILED,
  E_VERIFY: EXIT.PUSH_FAILED,
  E_CONFLICT: EXIT.CONFLICT,
  // the directors disagree on who edits: nothing was written
  E_NOT_PRIMARY: EXIT.CONFLICT,
  E_LOCKED: EXIT.LOCKED,
  E_INTERNAL: EXIT.INTERNAL,
};

/** The exit status of an error code received from another process (an unknown code: a bug). */
export function exitOfCode(code: string): number {
  return Object.hasOwn(EXIT_OF, code) ? EXIT_OF[code as ErrorCode] : EXIT.INTERNAL;
}

export class LvssyncError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options: { cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'LvssyncError';
    this.code = code;
    this.details = options.details;
  }

  get exitCode(): number {
    return EXIT_OF[this.code];
  }
}

export function isLvssyncError(e: unknown): e is LvssyncError {
  return e instanceof LvssyncError;
}
