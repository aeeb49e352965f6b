import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { type IpvsTable, parseCount, parseIpvsadm, serviceLabel } from '../../src/core/ipvsadm.js';
import { FIXTURES, listFiles, SHARED } from '../helpers/fixtures.js';

const DIR = path.join(FIXTURES, 'ipvsadm');
const read = (f: string) => readFileSync(path.join(DIR, f), 'utf8');

/** What the list and the save format both say: services, schedulers, persistence, reals, weights. */
function shape(t: IpvsTable) {
  return t.services.map((s) => ({
    label: serviceLabel(s),
    scheduler: s.scheduler,
    persistent: s.persistent,
    netmask: s.netmask,
    reals: s.reals.map(
      (r) => `${r.address}:${r.port} ${r.forward === 'Local' ? 'Route' : r.forward} ${r.weight}`,
    ),
  }));
}

describe('ipvsadm output', () => {
  it('reads the list format: fwmark, persistence, weights, connection counters', () => {
    const t = parseIpvsadm(read('list-fwm-persistent.txt'));
    expect(t.unparsed).toEqual([]);
    expect(t.services).toHaveLength(1);
    expect(t.services[0]).toMatchObject({
      protocol: 'FWM',
      fwmark: 100,
      scheduler: 'wlc',
      persistent: 3600,
      line: 4,
    });
    expect(
      t.services[0]!.reals.map((r) => [r.address, r.port, r.forward, r.weight, r.activeConn, r.inactConn]),
    ).toEqual([
      ['198.51.100.10', 0, 'Route', 50, 3, 12],
      ['198.51.100.20', 0, 'Route', 50, 1, 9],
    ]);
  });

  it('reads every variant, and the save format of the same table says the same', () => {
    const list = parseIpvsadm(read('list-all-variants.txt'));
    const save = parseIpvsadm(read('save.txt'));
    expect(list.unparsed).toEqual([]);
    expect(save.unparsed).toEqual([]);
    expect(shape(list)).toEqual(shape(save));
    expect(list.services.map(serviceLabel)).toEqual([
      'TCP 192.0.2.80:80',
      'TCP 192.0.2.80:443',
      'UDP 192.0.2.53:53',
      'SCTP 192.0.2.90:3868',
      'TCP [2001:db8::80]:80',
      'FWM 200 IPv6',
    ]);
    expect(list.services[1]).toMatchObject({ persistent: 300, netmask: '255.255.255.0' });
    expect(list.services[1]!.reals.map((r) => r.forward)).toEqual(['Tunnel', 'Local']);
    expect(list.services[2]!.reals[0]!.inactConn).toBe(12000);
    expect(list.services[3]!.reals).toEqual([]);
  });

  it('reads --stats and --rate tables (services and real servers, counters ignored)', () => {
    for (const f of ['stats.txt', 'rate.txt']) {
      const t = parseIpvsadm(read(f));
      expect(t.unparsed).toEqual([]);
      expect(t.services.map(serviceLabel)).toEqual(['FWM 100']);
      expect(t.services[0]!.reals.map((r) => r.address)).toEqual(['198.51.100.10', '198.51.100.20']);
    }
    expect(parseCount('1234K')).toBe(1_234_000);
    expect(parseCount('12')).toBe(12);
    expect(Number.isNaN(parseCount('x'))).toBe(true);
  });

  it("reads the how-to's own ipvsadm output", () => {
    const ref = path.join(SHARED, 'reference', 'lvs-keepalived-cluster-howto.txt');
    if (!existsSync(ref)) return;
    const text = readFileSync(ref, 'utf8');
    const start = text.lastIndexOf('\n', text.indexOf('IP Virtual Server version')) + 1;
    const lines = text.slice(start).split('\n').slice(0, 6);
    // the how-to indents its listings: take that indentation off
    const indent = /^\s*/.exec(lines[0]!)![0].length;
    const block = lines.map((l) => l.slice(indent)).join('\n');
    const t = parseIpvsadm(block);
    expect(t.unparsed).toEqual([]);
    expect(t.services[0]).toMatchObject({ protocol: 'FWM', fwmark: 100, scheduler: 'wlc', persistent: 3600 });
    expect(t.services[0]!.reals.map((r) => `${r.address} ${r.forward} ${r.weight}`)).toEqual([
      '192.168.1.10 Route 50',
      '192.168.1.20 Route 50',
    ]);
  });

  it('reads every ipvsadm output of the shared corpus, or names what it does not support', () => {
    const dir = path.join(SHARED, 'corpus', 'ipvsadm');
    expect(existsSync(dir), `the shared corpus is missing: ${dir}`).toBe(true);
    const files = listFiles(dir).filter((x) => !x.endsWith('.md'));
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) {
      const t = parseIpvsadm(readFileSync(f, 'utf8'));
      const name = path.relative(dir, f);
      expect({ name, unparsed: t.unparsed }).toEqual({ name, unparsed: [] });
      // a file is either read into services or said to be something else, never neither
      expect({ name, read: t.services.length > 0 || t.unsupported.length > 0 }).toEqual({ name, read: true });
      for (const u of t.unsupported) expect(u.reason).not.toBe('');
    }
  });

  it('names the forwarding methods of IPVS forks instead of half-reading them', () => {
    const t = parseIpvsadm(
      'IP Virtual Server version 1.2.1 (size=4194304)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\nTCP  10.10.11.77:http rr\n  -> 10.10.11.66:http             FullNat 100    0          0\n  -> 10.10.11.67:http             Route 100    0          0\n',
    );
    expect(t.unparsed).toEqual([]);
    expect(t.unsupported).toEqual([
      expect.objectContaining({ line: 5, reason: expect.stringContaining('FullNat') }),
    ]);
    expect(t.services[0]).toMatchObject({ address: '10.10.11.77', port: 80 });
    expect(t.services[0]!.reals.map((r) => `${r.address}:${r.port} ${r.forward}`)).toEqual([
      '10.10.11.67:80 Route',
    ]);
    const save = parseIpvsadm(
      '-A -t 10.10.11.77:80 -s rr\n-a -t 10.10.11.77:80 -r 10.10.11.66:80 (null) -w 100\n',
    );
    expect(save.unsupported.map((u) => u.line)).toEqual([2]);
    expect(save.unsupported[0]!.reason).toContain('(null)');
  });

  it('reads the kernel /proc/net/ip_vs listing (hex addresses, ports and marks)', () => {
    const t = parseIpvsadm(
      'IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\nTCP  C0A80016:0CEA wlc\n  -> C0A85216:0CEA      Tunnel  100    248        2\nTCP  [2620:0000:0000:0000:0000:0000:0000:0001]:0050 sh\n  -> [2620:0000:0000:0000:0000:0000:0000:0002]:0050      Route   1      0          0\nFWM  10001000 wlc\n  -> C0A8321A:0CEA      Route   0      0          1\n',
    );
    expect(t.unparsed).toEqual([]);
    expect(shape(t)).toEqual([
      {
        label: 'TCP 192.168.0.22:3306',
        scheduler: 'wlc',
        persistent: undefined,
        netmask: undefined,
        reals: ['192.168.82.22:3306 Tunnel 100'],
      },
      {
        label: 'TCP [2620::1]:80',
        scheduler: 'sh',
        persistent: undefined,
        netmask: undefined,
        reals: ['2620::2:80 Route 1'],
      },
      {
        label: 'FWM 268439552',
        scheduler: 'wlc',
        persistent: undefined,
        netmask: undefined,
        reals: ['192.168.50.26:3306 Route 0'],
      },
    ]);
  });

  it('says that a connection table is not a service table', () => {
    const t = parseIpvsadm(
      'IPVS connection entries\npro expire state       source             virtual            destination\nUDP 04:24  UDP         192.0.2.9:44117 192.0.2.9:514 198.51.100.16:514\n',
    );
    expect(t.services).toEqual([]);
    expect(t.unparsed).toEqual([]);
    expect(t.unsupported).toEqual([
      expect.objectContaining({ line: 1, reason: expect.stringContaining('connection table') }),
    ]);
  });

  it('reports lines it cannot read with their number', () => {
    const t = parseIpvsadm(
      'IP Virtual Server version 1.2.1 (size=4096)\nTCP  not-an-address rr\ngarbage here\n',
    );
    expect(t.unparsed.map((u) => u.line)).toEqual([2, 3]);
  });
});
