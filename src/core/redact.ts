// Secrets never appear in diffs, reports or logs: keepalived's auth_pass (and other password-like
// keywords) are replaced by a fixed mask that still shows whether the value changed. Pure.

import { createHash } from 'node:crypto';
import { createTwoFilesPatch } from 'diff';

/** keepalived keywords whose value is a secret. */
export const SECRET_KEYWORDS = ['auth_pass', 'password', 'snmp_socket_password', 'smtp_password'];

const SECRET_LINE = new RegExp(
  `^(\\s*(?:@\\^?\\S+\\s+)?(?:${SECRET_KEYWORDS.join('|')})\\s+)(\\S.*?)(\\s*)$`,
  'gm',
);

/**
 * Replaces each secret value by `<redacted:xxxxxx>`, where xxxxxx is a short hash: two diffs show
 * that the password changed without showing it. Callers pass a random salt per run, so the short
 * hash cannot be matched against a list of guesses computed in advance.
 */
export function redactSecrets(text: string, salt = 'lvssync'): string {
  return text.replace(SECRET_LINE, (_m, head: string, value: string, tail: string) => {
    const h = createHash('sha256').update(`${salt}\0${value}`).digest('hex').slice(0, 6);
    return `${head}<redacted:${h}>${tail}`;
  });
}

/**
 * One source line as findings show it: a secret's value becomes `<redacted>` (what comes before it is
 * unchanged, so a caret under the line still points where it did).
 */
export function redactLine(line: string): string {
  return line.replace(
    SECRET_LINE,
    (_m, head: string, _value: string, tail: string) => `${head}<redacted>${tail}`,
  );
}

/** A unified diff with secrets redacted on both sides. `null` text = file absent. */
export function diffRedacted(
  path: string,
  before: string | null,
  after: string | null,
  labels: { before: string; after: string } = { before: 'peer', after: 'primary' },
  salt = 'lvssync',
): string {
  const a = before === null ? '' : redactSecrets(before, salt);
  const b = after === null ? '' : redactSecrets(after, salt);
  return createTwoFilesPatch(
    before === null ? '/dev/null' : `${labels.before}:${path}`,
    after === null ? '/dev/null' : `${labels.after}:${path}`,
    a,
    b,
    undefined,
    undefined,
    { context: 3 },
  );
}
