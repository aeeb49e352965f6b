// The lab itself: real sshd, keepalived (VRRP), ferm/iptables and web servers in namespaces.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ADDR,
  DIRECTORS,
  type Director,
  defaultDir,
  loadLab,
  REPO,
  run,
  startLab,
  stopLab,
  WEB_HOSTS,
} from '../../scripts/lab/lab.js';
import { evaluateKeepalived } from '../../src/core/keepalived/evaluate.js';
import { buildModel } from '../../src/core/keepalived/model.js';
import { snapshotOf } from '../../src/core/snapshot.js';
import { labUnavailable, useLab } from '../helpers/lab.js';

const unavailable = labUnavailable();
const other = (d: Director): Director => (d === 'lvs1' ? 'lvs2' : 'lvs1');

async function namespacesOf(name: string): Promise<string[]> {
  const r = await run(['ip', 'netns', 'list']);
  return r.stdout
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => n.startsWith(`${name}-`));
}

describe.skipIf(unavailable !== undefined)('the lab', () => {
  const lab = useLab('tlab');

  it('was ready quickly, with one director holding both VIPs', async () => {
    const l = lab();
    console.log(`lab start-to-ready: ${l.state.readyMs} ms (target < 10000 ms)`);
    expect(l.state.ready).toBe(true);
    const holder = await l.waitForVipHolder();
    expect(await l.holdersOf(ADDR.serviceVip)).toEqual([holder]);
  });

  it('lets lvs1 reach lvs2 over SSH with strict host-key checking, and refuses a wrong host key', async () => {
    const l = lab();
    const ssh = path.join(l.hostDir('lvs1'), 'ssh');
    const base = [
      'ssh',
      '-o',
      'BatchMode=yes',
      '-o',
      'StrictHostKeyChecking=yes',
      '-i',
      path.join(ssh, 'id_ed25519'),
    ];
    const ok = await l.exec('lvs1', [
      ...base,
      '-o',
      `UserKnownHostsFile=${path.join(ssh, 'known_hosts')}`,
      `root@${ADDR.crossover.lvs2}`,
      'cat /etc/keepalived/keepalived.conf; ip -j -4 addr show dev eth1',
    ]);
    expect(ok.stdout).toContain('router_id LVS2');
    expect(ok.stdout).toContain(ADDR.crossover.lvs2);
    // lvs1's own host key in the known_hosts file: not lvs2's, so the connection must be refused
    const wrong = path.join(l.dir, 'wrong_known_hosts');
    const own = readFileSync(path.join(ssh, 'ssh_host_ed25519_key.pub'), 'utf8').split(' ');
    await run(['sh', '-c', `echo "${ADDR.crossover.lvs2} ${own[0]} ${own[1]}" > ${wrong}`]);
    const bad = await l.exec(
      'lvs1',
      [...base, '-o', `UserKnownHostsFile=${wrong}`, `root@${ADDR.crossover.lvs2}`, 'true'],
      {
        allowFail: true,
      },
    );
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
  });

  it("has ferm's mark for the service VIP in lvs2's mangle table, matching virtual_server fwmark 100", async () => {
    const l = lab();
    for (const d of DIRECTORS) {
      const rules = await l.iptablesSave(d);
      expect(rules).toMatch(
        new RegExp(
          `-A PREROUTING -d ${ADDR.serviceVip.replace(/\./g, '\\.')}/32 -p tcp -j MARK --set-xmark 0x64/0xffffffff`,
        ),
      );
    }
    expect(l.readFile('lvs2', '/etc/keepalived/conf.d/fwm-100.conf')).toMatch(/virtual_server fwmark 100 \{/);
  });

  it('serves /lb.php from both web servers with the MD5 configured as HTTP_GET digest', async () => {
    const l = lab();
    const files: Record<string, string> = {};
    for (const p of ['/etc/keepalived/keepalived.conf', '/etc/keepalived/conf.d/fwm-100.conf']) {
      files[p] = l.readFile('lvs1', p);
    }
    const model = buildModel(
      evaluateKeepalived(snapshotOf(files, ['/etc/keepalived']), '/etc/keepalived/keepalived.conf')
        .directives,
    );
    const reals = model.virtualServers[0]!.realServers;
    expect(reals.map((r) => r.address)).toEqual([ADDR.internal.web1, ADDR.internal.web2]);
    for (const d of DIRECTORS) {
      for (const rs of reals) {
        const url = rs.checkers[0]!.urls[0]!;
        const got = await l.httpGet(
          d,
          `http://${rs.address}:${rs.checkers[0]!.connectPort?.value ?? 80}${url.path?.value}`,
        );
        expect(got.status).toBe(200);
        expect(createHash('md5').update(got.body, 'latin1').digest('hex')).toBe(url.digest?.value);
      }
    }
  });

  it('can make a web server fail its health check (different body, stopped) and recover', async () => {
    const l = lab();
    const url = `http://${ADDR.internal.web2}/lb.php`;
    const good = await l.httpGet('lvs1', url);
    l.setWebBody('web2', 'database down');
    const bad = await l.httpGet('lvs1', url);
    expect(bad.body).toBe('database down');
    expect(bad.body).not.toBe(good.body);
    await l.stopWeb('web2');
    await expect(l.httpGet('lvs1', url)).rejects.toThrow(/ECONNREFUSED/);
    l.setWebBody('web2', good.body);
    await l.startWeb('web2');
    expect((await l.httpGet('lvs1', url)).body).toBe(good.body);
  });

  it('fails the VIPs over when keepalived stops on the holder, and back', async () => {
    const l = lab();
    const first = await l.waitForVipHolder();
    const t0 = Date.now();
    await l.stopKeepalived(first);
    const second = await l.waitForVipHolder(10_000, first);
    console.log(`failover ${first} -> ${second}: ${Date.now() - t0} ms`);
    expect(second).toBe(other(first));
    await l.startKeepalived(first);
    // nopreempt: the returning director stays BACKUP
    await new Promise((r) => setTimeout(r, 3000));
    expect(await l.holdersOf(ADDR.clusterVip)).toEqual([second]);
    await l.stopKeepalived(second);
    expect(await l.waitForVipHolder(10_000, second)).toBe(first);
    await l.startKeepalived(second);
    expect(await l.waitForVipHolder()).toBe(first);
  });

  it('cutting the crossover link makes a split brain, restoring it ends it', async () => {
    const l = lab();
    await l.waitForVipHolder();
    await l.cutCrossover();
    const until = Date.now() + 10_000;
    while ((await l.holdersOf(ADDR.clusterVip)).length < 2 && Date.now() < until)
      await new Promise((r) => setTimeout(r, 200));
    expect((await l.holdersOf(ADDR.clusterVip)).sort()).toEqual(['lvs1', 'lvs2']);
    const ssh = path.join(l.hostDir('lvs1'), 'ssh');
    const cut = await l.exec(
      'lvs1',
      [
        'ssh',
        '-o',
        'BatchMode=yes',
        '-o',
        'ConnectTimeout=2',
        '-o',
        `UserKnownHostsFile=${path.join(ssh, 'known_hosts')}`,
        '-i',
        path.join(ssh, 'id_ed25519'),
        `root@${ADDR.crossover.lvs2}`,
        'true',
      ],
      { allowFail: true },
    );
    expect(cut.code).not.toBe(0);
    await l.restoreCrossover();
    const holder = await l.waitForVipHolder(15_000);
    expect(await l.holdersOf(ADDR.serviceVip)).toEqual([holder]);
  });

  it('web servers carry the service VIP on lo with the ARP settings of the reference', async () => {
    const l = lab();
    for (const w of WEB_HOSTS) {
      expect((await l.addresses(w)).lo).toContain(ADDR.serviceVip);
      const r = await l.exec(w, [
        'sysctl',
        '-n',
        'net.ipv4.conf.all.arp_ignore',
        'net.ipv4.conf.all.arp_announce',
        'net.ipv4.conf.lo.rp_filter',
      ]);
      expect(r.stdout.split('\n').filter(Boolean)).toEqual(['1', '2', '0']);
    }
  });
});

describe.skipIf(unavailable !== undefined)('lab lifecycle', () => {
  it('refuses a second start, and stop leaves no namespace, process or file behind', async () => {
    const name = 'tlife';
    await stopLab(defaultDir(name));
    const lab = await startLab({ name });
    const pids = lab.state.procs.map((p) => p.pid);
    expect(pids.length).toBeGreaterThanOrEqual(10);
    await expect(startLab({ name })).rejects.toThrow(/already exists/);
    await stopLab(lab.dir);
    expect(await namespacesOf(name)).toEqual([]);
    for (const pid of pids)
      expect(
        existsSync(`/proc/${pid}/stat`) && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z '),
      ).toBe(false);
    expect(existsSync(lab.dir)).toBe(false);
    await stopLab(lab.dir); // twice is fine
  }, 60_000);

  it('stop cleans up after a start that was killed half-way', async () => {
    const name = 'tcrash';
    const dir = defaultDir(name);
    await stopLab(dir);
    const child = spawn(
      process.execPath,
      [path.join(REPO, 'dist', 'scripts', 'lab', 'cli.js'), 'start', '--name', name],
      {
        stdio: 'ignore',
      },
    );
    // wait until it has made some namespaces and started some processes, then kill it
    const until = Date.now() + 20_000;
    while (Date.now() < until) {
      const st = loadLab(dir)?.state;
      if (st && st.procs.length >= 3) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    child.kill('SIGKILL');
    await new Promise((r) => child.on('exit', r));
    const st = loadLab(dir)!.state;
    expect(st.ready).toBe(false);
    expect(await namespacesOf(name)).not.toEqual([]);
    await stopLab(dir);
    expect(await namespacesOf(name)).toEqual([]);
    for (const p of st.procs)
      expect(
        existsSync(`/proc/${p.pid}/stat`) && !readFileSync(`/proc/${p.pid}/stat`, 'utf8').includes(') Z '),
      ).toBe(false);
    expect(existsSync(dir)).toBe(false);
  }, 60_000);
});
