// The pure parts of reload safety: which files a service reads, how two readings compare, the
// findings about what keepalived would refuse, what a service did not load, and a service that is down.
import { describe, expect, it } from 'vitest';
import { auditPendingByContent, auditServices } from '../../src/core/audit.js';
import { mergeSecondOpinion, reloadRefusal } from '../../src/core/check.js';
import { DEFAULTS } from '../../src/core/config.js';
import { diag } from '../../src/core/diagnostic.js';
import { evaluateKeepalived } from '../../src/core/keepalived/evaluate.js';
import { checkVersions, compareVersions, versionedKeywords } from '../../src/core/keepalived/lint.js';
import { buildModel } from '../../src/core/keepalived/model.js';
import {
  diffReadings,
  diffSets,
  serviceGlobs,
  servicesToReload,
  setDigest,
} from '../../src/core/service-set.js';
import { snapshotOf } from '../../src/core/snapshot.js';

const KA = '/etc/keepalived/keepalived.conf';
const modelOf = (text: string) =>
  buildModel(evaluateKeepalived(snapshotOf({ [KA]: text }, ['/etc/keepalived']), KA).directives);

describe('service sets', () => {
  const config = { ...DEFAULTS, files: { ...DEFAULTS.files, extra: ['/etc/keepalived/notify.sh'] } };

  it('each service reads its own files, and files.extra', () => {
    expect(serviceGlobs(config, 'keepalived', ['/etc/keepalived/conf.d/*.conf'])).toEqual([
      KA,
      '/etc/keepalived/conf.d/*.conf',
      '/etc/keepalived/notify.sh',
    ]);
    expect(serviceGlobs(config, 'ferm', [])).toEqual(['/etc/ferm/**', '/etc/keepalived/notify.sh']);
    expect(serviceGlobs(config, 'other', ['/x/*.conf'])).toEqual([
      KA,
      '/x/*.conf',
      '/etc/ferm/**',
      '/etc/keepalived/notify.sh',
    ]);
  });

  it('a push reloads the services whose files it changes, and those that did not load this set', () => {
    const ka = serviceGlobs(config, 'keepalived', ['/etc/keepalived/conf.d/*.conf']);
    const ferm = serviceGlobs(config, 'ferm', []);
    let asked = 0;
    const digest = (d: string) => () => {
      asked++;
      return d;
    };
    /** Both services as they last loaded the set being pushed (the digests agree). */
    const both = (had: { ka?: string; ferm?: string } = { ka: 'k', ferm: 'f' }) => [
      { name: 'ferm', globs: ferm, digest: digest('f'), ...(had.ferm ? { loaded: had.ferm } : {}) },
      { name: 'keepalived', globs: ka, digest: digest('k'), ...(had.ka ? { loaded: had.ka } : {}) },
    ];
    // a conf.d file: keepalived only; a file removed from an included directory counts as well
    expect(servicesToReload(both(), ['/etc/keepalived/conf.d/fwm-7.conf'])).toEqual(['keepalived']);
    // ferm's directory, at any depth (a hidden file too); a script both read: both
    expect(servicesToReload(both(), ['/etc/ferm/ferm.d/.marks'])).toEqual(['ferm']);
    expect(servicesToReload(both(), ['/etc/keepalived/notify.sh'])).toEqual(['ferm', 'keepalived']);
    // a file neither reads (not included): a commit, no reload
    expect(servicesToReload(both(), ['/etc/keepalived/README'])).toEqual([]);
    // nothing changed there, but a service never loaded this set (no record, another digest)
    expect(servicesToReload(both({ ka: 'k' }), [])).toEqual(['ferm']);
    expect(servicesToReload(both({ ka: 'old', ferm: 'f' }), [])).toEqual(['keepalived']);
    // the digest is worked out only for a service none of whose files changed
    asked = 0;
    servicesToReload(both(), ['/etc/keepalived/conf.d/fwm-7.conf']);
    expect(asked).toBe(1);
  });

  it('compares by content: changed, added and gone paths; the digest does not depend on order', () => {
    const a = new Map([
      ['/a', '1'],
      ['/b', '2'],
    ]);
    expect(diffSets(a, new Map(a))).toEqual([]);
    expect(
      diffSets(
        a,
        new Map([
          ['/b', '3'],
          ['/c', '4'],
        ]),
      ),
    ).toEqual(['/a', '/b', '/c']);
    expect(setDigest(a)).toBe(setDigest(new Map([...a].reverse())));
    expect(setDigest(a)).not.toBe(setDigest(new Map([['/a', '1']])));
  });

  it('a file rewritten with the same bytes between two readings counts as changed', () => {
    const digests = new Map([['/a', 'x']]);
    const r1 = { digests, identities: new Map([['/a', '1:100:5']]) };
    expect(diffReadings(r1, { digests, identities: new Map([['/a', '1:100:5']]) })).toEqual([]);
    expect(diffReadings(r1, { digests, identities: new Map([['/a', '1:200:5']]) })).toEqual(['/a']);
  });
});

describe('keepalived reload settings', () => {
  it('reads reload_check_config and reload_file (with keepalived’s default paths)', () => {
    expect(modelOf('global_defs {\n  reload_check_config\n  reload_file\n}\n').reload).toMatchObject({
      checkConfig: { line: 2 },
      file: { value: '/run/keepalived.reload' },
    });
    expect(modelOf('global_defs {\n  use_pid_dir\n  reload_file\n}\n').reload.file?.value).toBe(
      '/run/keepalived/keepalived.reload',
    );
    expect(modelOf('global_defs {\n  reload_file /run/x.reload\n}\n').reload.file?.value).toBe(
      '/run/x.reload',
    );
    expect(modelOf('instance a\nglobal_defs {\n  reload_file\n}\n').reload.file?.value).toBeUndefined();
  });

  it('with reload_check_config, any message of keepalived -t means keepalived refuses the reload', () => {
    const m = modelOf('global_defs {\n  reload_check_config\n}\n');
    expect(reloadRefusal(m, 0)).toEqual([]);
    expect(reloadRefusal(m, undefined)).toEqual([]);
    expect(reloadRefusal(m, 5)).toEqual([
      expect.objectContaining({ code: 'KA_RELOAD_REFUSED', severity: 'error', line: 2 }),
    ]);
    expect(reloadRefusal(modelOf('global_defs {\n}\n'), 5)).toEqual([]);
  });

  it('an error of keepalived -t is kept on a line where lvssync has only a warning', () => {
    const at = { file: KA, line: 1, col: 1 };
    const ours = [diag('warning', 'KA_NO_RELOAD_FILE', at, 'no reload_file here at all')];
    const theirs = [
      diag('error', 'KEEPALIVED_T', at, 'keepalived -t exited 1'),
      diag('warning', 'X', at, 'same line'),
    ];
    expect(mergeSecondOpinion(ours, theirs).map((d) => d.code)).toEqual([
      'KA_NO_RELOAD_FILE',
      'KEEPALIVED_T',
    ]);
  });
});

describe('audit of loads and services', () => {
  it('a file is pending only when its content differs from what the service loaded', () => {
    expect(auditPendingByContent('lvs1', { keepalived: { at: 1, changed: [] } })).toEqual([]);
    expect(
      auditPendingByContent('lvs1', {
        keepalived: { at: 1, changed: ['/f'] },
        ferm: { at: 1, changed: ['/g'] },
      }),
    ).toEqual([
      expect.objectContaining({ code: 'FERM_RELOAD_PENDING', file: '/g', host: 'lvs1' }),
      expect.objectContaining({ code: 'KEEPALIVED_RELOAD_PENDING', file: '/f', host: 'lvs1' }),
    ]);
  });

  it('a service that is not running is critical, with since when and the last reload', () => {
    const iso = (ms: number) => `t${ms}`;
    const f = auditServices(
      'lvs2',
      [
        { service: 'ferm' },
        { service: 'keepalived', up: false, since: 5, lastReload: 3, detail: 'exited 1' },
        { service: 'x', up: true, since: 1 },
      ],
      iso,
    );
    expect(f).toEqual([
      expect.objectContaining({
        code: 'SERVICE_DOWN',
        severity: 'critical',
        host: 'lvs2',
        message:
          'keepalived is not running on lvs2 (seen down since t5); the last reload lvssync made of it was at t3: exited 1',
      }),
    ]);
  });
});

describe('keepalived versions', () => {
  it('compares releases field by field', () => {
    expect(compareVersions('2.2.7', '2.2.8')).toBe(-1);
    expect(compareVersions('2.2.10', '2.2.8')).toBe(1);
    expect(compareVersions('2.3.0', '2.3')).toBe(0);
  });

  it('a keyword newer than the installed keepalived is an error naming both versions and the director', () => {
    const text =
      'global_defs {\n  json_version 2\n  vrrp_owner_ignore_adverts\n}\nvrrp_instance v {\n  no_virtual_ipaddress\n}\n';
    const directives = evaluateKeepalived(snapshotOf({ [KA]: text }, ['/etc/keepalived']), KA).directives;
    expect(
      checkVersions(versionedKeywords(directives), '2.2.7', 'lvs2').map(
        (d) => `${d.code}:${d.line}:${d.message}`,
      ),
    ).toEqual([
      "KA_NEEDS_VERSION:2:'json_version' needs keepalived >= 2.2.8; lvs2 runs 2.2.7, which does not read it",
      "KA_NEEDS_VERSION:3:'vrrp_owner_ignore_adverts' needs keepalived >= 2.3.3; lvs2 runs 2.2.7, which does not read it",
      "KA_NEEDS_VERSION:6:'no_virtual_ipaddress' needs keepalived >= 2.2.8; lvs2 runs 2.2.7, which does not read it",
    ]);
    expect(checkVersions(versionedKeywords(directives), '2.3.3', 'lvs2')).toEqual([]);
  });
});
