// Unified diffs with secrets redacted on both sides (core/secrets.ts). Pure.

import { createTwoFilesPatch } from 'diff';
import { redactSecrets } from './secrets.js';

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
