import { describe, expect, it } from 'vitest';
import { diag } from '../../src/core/diagnostic.js';
import { formatDiagnostic, formatSummary } from '../../src/core/format.js';

describe('formatDiagnostic', () => {
  it('shows file:line:col, the line and a caret under the column (tabs expanded)', () => {
    const d = diag(
      'error',
      'KA_OUT_OF_RANGE',
      { file: '/etc/keepalived/k.conf', line: 2, col: 11 },
      'priority 300 is out of range',
    );
    const text = formatDiagnostic(d, () => 'vrrp_instance VI {\n\tpriority 300\n}');
    expect(text.split('\n')).toEqual([
      '/etc/keepalived/k.conf:2:11: error: priority 300 is out of range [KA_OUT_OF_RANGE]',
      '        priority 300',
      '                 ^',
    ]);
  });
  it('never shows a secret: the value of auth_pass (and the like) is redacted, the caret still in place', () => {
    const d = diag(
      'warning',
      'KA_AUTH_PASS_TRUNCATED',
      { file: '/etc/keepalived/k.conf', line: 3, col: 19 },
      'auth_pass is 11 characters',
      [{ file: '/etc/keepalived/k.conf', line: 3, col: 19, message: 'set here' }],
    );
    const src = 'vrrp_instance VI {\n  authentication {\n        auth_pass $up3r$3(r37 # old one\n  }\n}';
    const text = formatDiagnostic(d, () => src);
    expect(text).not.toContain('$up3r$3(r37');
    expect(text.split('\n').slice(1, 3)).toEqual([
      '            auth_pass <redacted>',
      '                      ^',
    ]);
    expect(text).toContain('note: set here\n            auth_pass <redacted>');
  });
  it('summarises counts', () => {
    expect(formatSummary([diag('warning', 'X', { file: 'f', line: 1, col: 1 }, 'm')], 3)).toBe(
      '3 files checked: 0 errors, 1 warning',
    );
  });
});
