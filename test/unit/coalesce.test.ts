import { describe, expect, it } from 'vitest';
import {
  type CoalesceState,
  dueAt,
  IDLE,
  isEditorTemp,
  onEvent,
  onPushDone,
  startIfDue,
} from '../../src/core/coalesce.js';

const O = { quietMs: 200, maxMs: 2000 };

describe('coalescing', () => {
  it('waits for quiet, but never longer than max after the first event', () => {
    let s: CoalesceState = IDLE;
    s = onEvent(s, 0);
    expect(dueAt(s, O)).toBe(200);
    for (let t = 100; t <= 3000; t += 100) s = onEvent(s, t); // a save every 100 ms
    expect(dueAt(s, O)).toBe(2000);
    expect(startIfDue(s, 1999, O).start).toBe(false);
    const r = startIfDue(s, 2000, O);
    expect(r.start).toBe(true);
    expect(r.state).toEqual({ kind: 'pushing', dirty: false });
  });

  it('events during a push lead to exactly one more push', () => {
    let s: CoalesceState = { kind: 'pushing', dirty: false };
    expect(onPushDone(s, 10)).toEqual(IDLE);
    for (let i = 0; i < 50; i++) s = onEvent(s, i);
    expect(s).toEqual({ kind: 'pushing', dirty: true });
    s = onPushDone(s, 100);
    expect(s).toEqual({ kind: 'waiting', first: 100, last: 100 });
    const r = startIfDue(s, 300, O);
    expect(r.start).toBe(true);
    expect(onPushDone(r.state, 400)).toEqual(IDLE);
  });

  it.each([
    ['/etc/keepalived/conf.d/.fwm-100.conf.swp', true],
    ['/etc/keepalived/conf.d/fwm-100.conf~', true],
    ['/etc/keepalived/conf.d/4913', true],
    ['/etc/ferm/sedAb12Cd', true],
    ['/etc/ferm/ferm.conf.dpkg-new', true],
    ['/etc/keepalived/conf.d/#fwm.conf#', true],
    ['/etc/keepalived/conf.d/fwm-100.conf', false],
    ['/etc/ferm/ferm.conf', false],
    ['/etc/ferm/ferm.d/web.conf', false],
  ])('%s is a temporary file: %s', (p, temp) => {
    expect(isEditorTemp(p)).toBe(temp);
  });
});
