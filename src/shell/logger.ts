// The root pino logger: JSON lines on stdout (journald), human-readable on a terminal. Components
// take child loggers ({component}, then {pushId}, {peer}). Secrets are redacted at the logger.

import { createRequire } from 'node:module';
import pino, { type Logger } from 'pino';

// pino-pretty is loaded only for a terminal: the daemon under systemd never needs it
const requireHere = createRequire(import.meta.url);

export type { Logger };

const REDACT = [
  'authPass',
  'auth_pass',
  'password',
  'privateKey',
  '*.authPass',
  '*.auth_pass',
  '*.password',
  '*.privateKey',
];

export function createLogger(
  opts: { pretty?: boolean; level?: string; destination?: NodeJS.WritableStream } = {},
): Logger {
  const base = {
    level: opts.level ?? process.env.LVSSYNC_LOG_LEVEL ?? 'info',
    redact: { paths: REDACT, censor: '<redacted>' },
    base: { pid: process.pid },
  };
  if (opts.pretty) {
    const pretty = requireHere('pino-pretty') as typeof import('pino-pretty');
    return pino(
      base,
      pretty({
        colorize: true,
        translateTime: 'SYS:HH:MM:ss.l',
        ignore: 'pid,hostname',
        destination: opts.destination ?? 1,
        sync: true,
      }),
    );
  }
  return pino(
    base,
    (opts.destination as pino.DestinationStream | undefined) ?? pino.destination({ dest: 1, sync: true }),
  );
}
