// Secrets never appear in findings, diffs, reports or logs: keepalived's auth_pass (and other
// password-like keywords) are replaced by a fixed mask that still shows whether the value changed.
// Kept apart from the diff (redact.ts) so that a check loads no diff library. Pure.

import { createHash } from 'node:crypto';

/** keepalived keywords whose value is a secret. */
export const SECRET_KEYWORDS = ['auth_pass', 'password', 'snmp_socket_password', 'smtp_password'];

const SECRET_LINE = new RegExp(
  `^(\\s*(?:@\\^?\\S+\\s+)?(?:${SECRET_KEYWORDS.join('|')})\\s+)(\\S.*?)(\\s*)$`,
  'gm',
);

/** A secret keyword after a space or a brace, inside a line (a one-line block): its next word. */
const SECRET_INLINE = new RegExp(`([\\s{;](?:${SECRET_KEYWORDS.join('|')})\\s+)([^\\s}'"]+)`, 'g');

/** A secret's value quoted in a message (`'auth_pass ONELINE1' is extra`): its next word. */
const SECRET_IN_TEXT = new RegExp(`(\\b(?:${SECRET_KEYWORDS.join('|')})\\s+)([^\\s}'"]+)`, 'g');

/** A finding's message with any secret's value replaced (messages quote the words they are about). */
export function redactMessage(message: string): string {
  return message.replace(SECRET_IN_TEXT, (_m, head: string, value: string) =>
    value.startsWith('<redacted') ? `${head}${value}` : `${head}<redacted>`,
  );
}

/**
 * Replaces each secret value by `<redacted:xxxxxx>`, where xxxxxx is a short hash: two diffs show
 * that the password changed without showing it. Callers pass a random salt per run, so the short
 * hash cannot be matched against a list of guesses computed in advance.
 */
export function redactSecrets(text: string, salt = 'lvssync'): string {
  const mask = (value: string) =>
    `<redacted:${createHash('sha256').update(`${salt}\0${value}`).digest('hex').slice(0, 6)}>`;
  return text
    .replace(SECRET_LINE, (_m, head: string, value: string, tail: string) => `${head}${mask(value)}${tail}`)
    .replace(SECRET_INLINE, (_m, head: string, value: string) =>
      value.startsWith('<redacted') ? `${head}${value}` : `${head}${mask(value)}`,
    );
}

/**
 * One source line as findings show it: a secret's value becomes `<redacted>` (what comes before it is
 * unchanged, so a caret under the line still points where it did).
 */
export function redactLine(line: string): string {
  return line
    .replace(SECRET_LINE, (_m, head: string, _value: string, tail: string) => `${head}<redacted>${tail}`)
    .replace(SECRET_INLINE, (_m, head: string, value: string) =>
      value.startsWith('<redacted') ? `${head}${value}` : `${head}<redacted>`,
    );
}
