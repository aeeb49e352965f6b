// The root pino logger: JSON lines on stdout (journald), human-readable on a terminal. Components
// take child loggers ({component}, then {pushId}, {peer}). Secrets are redacted at the logger.

import pino, { type Logger } from 'pino';

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

export async function createLogger(
  opts: { pretty?: boolean; level?: string; destination?: NodeJS.WritableStream } = {},
): Promise<Logger> {
  const base = {
    level: opts.level ?? process.env.LVSSYNC_LOG_LEVEL ?? 'info',
    redact: { paths: REDACT, censor: '<redacted>' },
    base: { pid: process.pid },
  };
  if (opts.pretty) {
    // loaded only for a terminal: the daemon under systemd never needs it
    const { default: pretty } = await import('pino-pretty');
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
