import { describe, expect, it } from 'vitest';
import { boundaryProblems, DEFAULTS, validateConfig } from '../../src/core/config.js';

describe('validateConfig', () => {
  it('fills defaults for an empty file', () => {
    expect(validateConfig(undefined)).toEqual({ config: DEFAULTS, problems: [] });
  });

  it('reports every problem at once, with its path, and rejects unknown keys', () => {
    const { problems } = validateConfig({
      primary: 'lvs3',
      nodes: { lvs1: { address: '203.0.113.1', port: 70000, router_id: 'LVS 1' }, lvs2: { addr: 'x' } },
      ssh: { knownHosts: 'relative/known_hosts', agent: 'yes', agentTimeoutMs: 3000, keepConnection: 'on' },
      services: [
        { name: 'keepalived', reload: ['systemctl', 'reload', 'keepalived'] },
        { name: 'ferm', reload: [] },
      ],
      history: 0,
      colour: true,
    });
    expect(problems).toEqual([
      'colour: unknown key (allowed: cluster, primary, nodes, ssh, files, services, stateDir, history, audit, check, agent, push)',
      'nodes.lvs1.port: must be 1-65535',
      'nodes.lvs1.router_id: must be one word',
      'nodes.lvs2.addr: unknown key (allowed: address, port, hostname, configId, router_id, hostLines)',
      'nodes.lvs2.address: is required',
      "primary: 'lvs3' is not one of the nodes (lvs1, lvs2)",
      'ssh.agent: must be true or false',
      'ssh.keepConnection: must be true or false',
      'ssh.knownHosts: must be an absolute path',
      'ssh.agentTimeoutMs: must be 4000-3600000',
      'services[1].reload: is required (the command that reloads ferm)',
      'services: ferm must come before keepalived (marks must exist before the virtual servers use them)',
      'history: must be 1-1000',
    ]);
  });

  it('keeps no connection unless ssh.keepConnection says so', () => {
    expect(DEFAULTS.ssh.keepConnection).toBe(false);
    expect(validateConfig({ ssh: { keepConnection: true } }).config.ssh.keepConnection).toBe(true);
  });

  it('takes extra files by their paths only: a pattern would widen what the agent may write', () => {
    const ok = validateConfig({ files: { extra: ['/etc/keepalived/notify.sh'] } });
    expect(ok.problems).toEqual([]);
    expect(ok.config.files.extra).toEqual(['/etc/keepalived/notify.sh']);
    const bad = validateConfig({ files: { extra: ['/etc/keepalived/*.sh', 'relative.sh'] } });
    expect(bad.problems).toEqual([
      "files.extra[0]: '/etc/keepalived/*.sh' is a pattern; list each extra file by its path",
      'files.extra[1]: must be an absolute path',
    ]);
  });

  it('keeps the peer’s boundary: no system directory as a managed root, no lvssync file in reach, distinct nodes, a pair', () => {
    const base = { nodes: { lvs1: { address: '192.0.2.1' }, lvs2: { address: '192.0.2.2' } } };
    const p = (raw: object) => validateConfig({ ...base, ...raw }).problems;
    expect(p({ files: { keepalived: '/etc/keepalived.conf' } })).toEqual([
      expect.stringMatching(/^files.keepalived: \/etc\/keepalived.conf makes \/etc a managed directory/),
      'ssh.knownHosts: /etc/lvssync/known_hosts is inside the managed directory /etc (files.keepalived): the primary could rewrite it',
    ]);
    expect(p({ files: { keepalived: '/keepalived.conf' } })[0]).toMatch(/makes \/ a managed directory/);
    expect(
      p({ files: { extra: ['/etc/lvssync/id_ed25519'] }, ssh: { identityFile: '/etc/lvssync/id_ed25519' } }),
    ).toEqual([
      'files.extra[0]: /etc/lvssync/id_ed25519 is ssh.identityFile: the primary must never write it',
    ]);
    expect(p({ files: { extra: ['/var/lib/lvssync/last-push.json'] } })).toEqual([
      'files.extra[0]: /var/lib/lvssync/last-push.json is inside stateDir (/var/lib/lvssync)',
    ]);
    expect(p({ stateDir: '/etc/keepalived/state' })[0]).toMatch(/^stateDir: .* must not contain each other/);
    expect(p({ nodes: { lvs1: { address: '192.0.2.1' }, lvs2: { address: '192.0.2.1' } } })).toEqual([
      "nodes.lvs2.address: 192.0.2.1:22 is also lvs1's: every node is another director",
    ]);
    expect(
      p({
        nodes: {
          lvs1: { address: '192.0.2.1' },
          lvs2: { address: '192.0.2.2' },
          lvs3: { address: '192.0.2.3' },
        },
      }),
    ).toEqual([]);
    expect(boundaryProblems(validateConfig(base).config, '/etc/keepalived/lvssync.yaml')).toEqual([
      'lvssync.yaml: /etc/keepalived/lvssync.yaml is inside the managed directory /etc/keepalived (files.keepalived): the primary could rewrite it',
    ]);
    expect(p({})).toEqual([]);
  });

  it('parses per-host lines written as a path string', () => {
    const { config, problems } = validateConfig({
      nodes: {
        lvs1: {
          address: '203.0.113.1',
          router_id: 'LVS1',
          hostLines: [{ path: 'vrrp_instance vi_100 > priority', value: 100 }],
        },
      },
      primary: 'lvs1',
    });
    expect(problems).toEqual([]);
    expect(config.nodes.lvs1!.hostLines).toEqual([
      { path: ['vrrp_instance vi_100', 'priority'], value: '100' },
    ]);
  });
});

describe('config/lvssync.example.yaml', () => {
  it('is valid and documents every top-level key', async () => {
    const { readFileSync } = await import('node:fs');
    const { parse } = await import('yaml');
    const path = await import('node:path');
    const { FIXTURES } = await import('../helpers/fixtures.js');
    const text = readFileSync(path.resolve(FIXTURES, '..', '..', 'config', 'lvssync.example.yaml'), 'utf8');
    const { validateConfig, DEFAULTS } = await import('../../src/core/config.js');
    const { problems, config } = validateConfig(parse(text));
    expect(problems).toEqual([]);
    for (const k of Object.keys(DEFAULTS)) expect(text).toMatch(new RegExp(`^${k}:`, 'm'));
    expect(config.nodes.lvs2?.router_id).toBe('LVS2');
  });
});
