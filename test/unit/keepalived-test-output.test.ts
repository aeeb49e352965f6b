import { describe, expect, it } from 'vitest';
import { parseKeepalivedTest } from '../../src/core/keepalived/test-output.js';

// Recorded from `keepalived -t -f /tmp/ref/etc/keepalived/keepalived.conf -l -D` (keepalived 2.2.7).
const OUT = `(/tmp/ref/etc/keepalived/conf.d/fwm-100.conf: Line 6) Unknown keyword 'foo_bar'
(/tmp/ref/etc/keepalived/conf.d/fwm-100.conf: Line 18) nb_get_retry is deprecated - please use 'retry'
Warning: Virtual server FWM 100: protocol specified for fwmark - protocol will be ignored
(/tmp/ref/etc/keepalived/keepalived.conf: Line 6) WARNING - interface eth1 for vrrp_instance vi_100 doesn't exist
(/tmp/ref/etc/keepalived/keepalived.conf: Line 7) (vi_100) Specifying lvs_sync_daemon_interface against a vrrp is deprecated.
(/tmp/ref/etc/keepalived/keepalived.conf: Line 7)           Please use global lvs_sync_daemon
(/tmp/ref/etc/keepalived/keepalived.conf: Line 19) Truncating auth_pass to 8 characters
Non-existent interface specified in configuration
`;

describe('parseKeepalivedTest', () => {
  const r = parseKeepalivedTest(OUT, '/etc/keepalived/keepalived.conf', (p) => p.replace('/tmp/ref', ''));
  it('maps positions back to director paths and classifies severity', () => {
    expect(r.diagnostics.map((d) => [d.severity, d.file, d.line])).toEqual([
      ['error', '/etc/keepalived/conf.d/fwm-100.conf', 6],
      ['warning', '/etc/keepalived/conf.d/fwm-100.conf', 18],
      ['warning', '/etc/keepalived/keepalived.conf', 1],
      ['warning', '/etc/keepalived/keepalived.conf', 7],
      ['warning', '/etc/keepalived/keepalived.conf', 19],
    ]);
  });
  it('joins continuation lines', () => {
    expect(r.diagnostics[3]!.message).toContain('deprecated. Please use global lvs_sync_daemon');
  });
  it('drops what only describes this host (interfaces)', () => {
    expect(r.hostSpecific).toHaveLength(2);
    expect(r.diagnostics.some((d) => /doesn't exist|Non-existent/.test(d.message))).toBe(false);
  });
});
