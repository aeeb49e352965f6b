import { describe, expect, it } from 'vitest';
import {
  type CoalesceState,
  dueAt,
  gate,
  IDLE,
  isEditorTemp,
  onEvent,
  onPushDone,
  onRetry,
  startEarly,
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

  it('a retry is due at once, but never cuts short the quiet window of edits made since the failure', () => {
    expect(dueAt(onRetry(IDLE, 5000, O), O)).toBeLessThanOrEqual(5000);
    const since = onEvent(IDLE, 4900); // saved 100 ms before the retry's moment
    expect(onRetry(since, 5000, O)).toBe(since);
    expect(dueAt(onRetry(since, 5000, O), O)).toBe(5100);
    // a push under way: the one after it is the retry
    const busy: CoalesceState = { kind: 'pushing', dirty: false };
    expect(onPushDone(onRetry(busy, 5000, O), 5200)).toEqual({ kind: 'waiting', first: 5200, last: 5200 });
  });

  it('events during a push lead to exactly one more push', () => {
    let s: CoalesceState = { kind: 'pushing', dirty: false };
    expect(onPushDone(s, 10)).toEqual(IDLE);
    for (let i = 0; i < 50; i++) s = onEvent(s, i);
    expect(s).toEqual({ kind: 'pushing', dirty: true, first: 0, last: 49 });
    s = onPushDone(s, 100);
    expect(s).toEqual({ kind: 'waiting', first: 100, last: 100 });
    const r = startIfDue(s, 300, O);
    expect(r.start).toBe(true);
    expect(onPushDone(r.state, 400)).toEqual(IDLE);
  });

  it('the first event of a burst starts an early push that commits only after a quiet window', () => {
    let s: CoalesceState = onEvent(IDLE, 1000);
    const r = startEarly(s);
    expect(r.start).toBe(true);
    s = r.state;
    expect(s).toEqual({ kind: 'pushing', dirty: false, early: 1000 });
    // validated before the window has passed: wait for it
    expect(gate(s, 1050, O)).toEqual({ waitUntil: 1200 });
    expect(gate(s, 1200, O)).toEqual({ go: true });
    expect(onPushDone(s, 1300)).toEqual(IDLE);
  });

  it('an event during an early push abandons it; the burst is then coalesced from its start', () => {
    let s: CoalesceState = startEarly(onEvent(IDLE, 1000)).state;
    s = onEvent(s, 1100);
    s = onEvent(s, 1150);
    expect(gate(s, 1400, O)).toEqual({ go: false });
    s = onPushDone(s, 1400, true);
    expect(s).toEqual({ kind: 'waiting', first: 1000, last: 1150 });
    expect(dueAt(s, O)).toBe(1350);
    // overdue: the next push starts at once, and it is not gated
    const r = startIfDue(s, 1400, O);
    expect(r.start).toBe(true);
    expect(gate(r.state, 1400, O)).toEqual({ go: true });
    // under continuous saves the max window still holds from the burst's first event
    let t: CoalesceState = startEarly(onEvent(IDLE, 0)).state;
    for (let i = 100; i <= 500; i += 100) t = onEvent(t, i);
    t = onPushDone(t, 500, true);
    for (let i = 600; i <= 3000; i += 100) t = onEvent(t, i);
    expect(dueAt(t, O)).toBe(2000);
  });

  it('only the first event after a quiet period starts an early push', () => {
    expect(startEarly(onEvent(onEvent(IDLE, 0), 10)).start).toBe(false);
    expect(startEarly(IDLE).start).toBe(false);
    const pushing: CoalesceState = { kind: 'pushing', dirty: false };
    expect(startEarly(pushing).start).toBe(false);
    expect(gate(pushing, 0, O)).toEqual({ go: true });
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
