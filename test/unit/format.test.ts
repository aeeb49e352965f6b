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
  it('summarises counts', () => {
    expect(formatSummary([diag('warning', 'X', { file: 'f', line: 1, col: 1 }, 'm')], 3)).toBe(
      '3 files checked: 0 errors, 1 warning',
    );
  });
});
