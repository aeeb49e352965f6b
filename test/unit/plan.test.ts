import { describe, expect, it } from 'vitest';
import { planPush, type RemoteFile, sha256 } from '../../src/core/plan.js';

const remote = (path: string, text: string, mode = 0o644, written?: string): RemoteFile => ({
  path,
  sha256: sha256(text),
  mode,
  size: text.length,
  ...(written === undefined ? {} : { written }),
});
const MANAGED = ['/etc/keepalived/keepalived.conf', '/etc/keepalived/conf.d/*.conf', '/etc/ferm/**'];

describe('planPush', () => {
  it('adds, updates, chmods and deletes only inside the managed globs', () => {
    const plan = planPush(
      [
        { path: '/etc/keepalived/keepalived.conf', text: 'same', mode: 0o640 },
        { path: '/etc/keepalived/conf.d/a.conf', text: 'new a', mode: 0o644 },
        { path: '/etc/keepalived/conf.d/b.conf', text: 'b', mode: 0o600 },
        { path: '/etc/keepalived/conf.d/c.conf', text: 'c', mode: 0o644 },
      ],
      [
        remote('/etc/keepalived/keepalived.conf', 'same', 0o640),
        remote('/etc/keepalived/conf.d/a.conf', 'old a'),
        remote('/etc/keepalived/conf.d/b.conf', 'b', 0o644),
        remote('/etc/keepalived/conf.d/gone.conf', 'x'),
        remote('/etc/keepalived/notify.sh', '#!/bin/sh'),
        remote('/etc/ferm/old.d/x', 'y'),
      ],
      MANAGED,
    );
    expect(plan.changes.map((c) => `${c.kind} ${c.path}`)).toEqual([
      'update /etc/keepalived/conf.d/a.conf',
      'chmod /etc/keepalived/conf.d/b.conf',
      'add /etc/keepalived/conf.d/c.conf',
      'delete /etc/ferm/old.d/x',
      'delete /etc/keepalived/conf.d/gone.conf',
    ]);
    expect(plan.unchanged).toEqual(['/etc/keepalived/keepalived.conf']);
    expect(plan.conflicts).toEqual([]);
  });

  it('flags files changed on the peer since lvssync wrote them (update and delete)', () => {
    const plan = planPush(
      [{ path: '/etc/keepalived/conf.d/a.conf', text: 'mine', mode: 0o644 }],
      [
        remote('/etc/keepalived/conf.d/a.conf', 'edited there', 0o644, sha256('written')),
        remote('/etc/keepalived/conf.d/z.conf', 'edited too', 0o644, sha256('was')),
        remote('/etc/keepalived/conf.d/y.conf', 'untouched', 0o644, sha256('untouched')),
      ],
      MANAGED,
    );
    expect(plan.conflicts.map((c) => [c.path, c.wanted === null])).toEqual([
      ['/etc/keepalived/conf.d/a.conf', false],
      ['/etc/keepalived/conf.d/z.conf', true],
    ]);
  });

  it('a file already equal to what lvssync wants is no conflict even if edited by hand', () => {
    const plan = planPush(
      [{ path: '/etc/ferm/ferm.conf', text: 'x', mode: 0o644 }],
      [remote('/etc/ferm/ferm.conf', 'x', 0o644, sha256('older'))],
      MANAGED,
    );
    expect(plan.changes).toEqual([]);
    expect(plan.conflicts).toEqual([]);
  });
});

describe('planPush: files deleted on the peer since lvssync wrote them', () => {
  const A = '/etc/keepalived/conf.d/a.conf';
  const want = [{ path: A, text: 'a', mode: 0o644 }];
  const gone = [{ path: A, written: sha256('a') }];

  it('one the primary still syncs is a conflict (made again only with --force or taken as deleted)', () => {
    const plan = planPush(want, [], MANAGED, undefined, { gone, synced: new Set([A]) });
    expect(plan.conflicts).toEqual([{ path: A, peer: null, written: sha256('a'), wanted: sha256('a') }]);
    expect(plan.changes.map((c) => `${c.kind} ${c.path}`)).toEqual([`add ${A}`]);
  });

  it('one the primary stopped syncing since (the deletion was agreed) is simply added again', () => {
    const plan = planPush(want, [], MANAGED, undefined, { gone, synced: new Set() });
    expect(plan.conflicts).toEqual([]);
    expect(plan.changes.map((c) => `${c.kind} ${c.path}`)).toEqual([`add ${A}`]);
  });

  it('one the primary does not want either: nothing to do', () => {
    const plan = planPush([], [], MANAGED, undefined, { gone, synced: new Set([A]) });
    expect(plan).toEqual({ changes: [], unchanged: [], conflicts: [] });
  });
});
