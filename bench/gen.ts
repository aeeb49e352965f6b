// Generates director configuration sets for the benchmarks: keepalived.conf with one VRRP instance and
// `include conf.d/*.conf`, N files each holding one `virtual_server fwmark` with 2-4 real servers and
// HTTP_GET checkers, and a ferm.conf with the matching MARK rules. Deterministic for a given N.

import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface GeneratedSet {
  /** director path -> contents */
  files: Map<string, string>;
}

const DIGEST = '0b8f0e8f0c2a9f3e6b1c4d5e6f708192';

export function virtualServerFile(mark: number, variant = 0): string {
  const reals = 2 + (mark % 3);
  const lines = [
    `# fwmark ${mark}: web pool ${mark}${variant ? ` (edit ${variant})` : ''}`,
    `virtual_server fwmark ${mark} {`,
    '    delay_loop 10',
    '    lb_algo wlc',
    '    lb_kind DR',
    '    persistence_timeout 300',
    '',
  ];
  for (let r = 0; r < reals; r++) {
    const host = ((mark * 7 + r) % 250) + 1;
    lines.push(
      // DR to a fwmark service: the real server takes the client's port, so none is written
      `    real_server 198.51.100.${host} {`,
      `        weight ${50 + r + (variant % 10)}`,
      '        HTTP_GET {',
      '            url {',
      '                path /lb.php',
      `                digest ${DIGEST}`,
      '            }',
      '            connect_port 80',
      '            connect_timeout 3',
      '            retry 3',
      '            delay_before_retry 2',
      '        }',
      '    }',
    );
  }
  lines.push('}', '');
  return lines.join('\n');
}

export function generateSet(n: number): GeneratedSet {
  const files = new Map<string, string>();
  files.set(
    '/etc/keepalived/keepalived.conf',
    [
      'global_defs {',
      '    router_id LVS1',
      '}',
      '',
      'vrrp_instance VI_1 {',
      '    state BACKUP',
      '    interface eth0',
      '    virtual_router_id 51',
      '    priority 150',
      '    advert_int 1',
      '    nopreempt',
      '    authentication {',
      '        auth_type PASS',
      '        auth_pass s3cret',
      '    }',
      '    virtual_ipaddress {',
      '        198.51.100.250/24 dev eth0',
      '    }',
      '}',
      '',
      'include conf.d/*.conf',
      '',
    ].join('\n'),
  );
  const ferm = ['domain ip table mangle chain PREROUTING {'];
  for (let i = 0; i < n; i++) {
    const mark = 100 + i;
    files.set(`/etc/keepalived/conf.d/fwm-${mark}.conf`, virtualServerFile(mark));
    const vip = `203.0.113.${(i % 250) + 1}`;
    ferm.push(`    daddr ${vip} proto tcp dport ${1024 + Math.floor(i / 250)} MARK set-mark ${mark};`);
  }
  ferm.push('}', '');
  files.set('/etc/ferm/ferm.conf', ferm.join('\n'));
  return { files };
}

/** Writes a set under `root` (a folder laid out like /). */
export function writeSet(root: string, set: GeneratedSet): void {
  for (const [p, text] of set.files) {
    const host = path.join(root, p);
    mkdirSync(path.dirname(host), { recursive: true });
    writeFileSync(host, text, { mode: p.endsWith('keepalived.conf') ? 0o640 : 0o644 });
  }
}
