// Coalescing of file events into pushes (consul-template's min/max "wait"): a push starts once no
// event came for `quietMs`, or `maxMs` after the first event of a burst, whichever is first. Events
// during a push lead to exactly one more push after it. Pure: the caller passes the clock.

export interface CoalesceOptions {
  quietMs: number;
  maxMs: number;
}

export type CoalesceState =
  | { kind: 'idle' }
  | { kind: 'waiting'; first: number; last: number }
  | { kind: 'pushing'; dirty: boolean };

export const IDLE: CoalesceState = { kind: 'idle' };

/** A relevant event at `now`. */
export function onEvent(s: CoalesceState, now: number): CoalesceState {
  switch (s.kind) {
    case 'idle':
      return { kind: 'waiting', first: now, last: now };
    case 'waiting':
      return { kind: 'waiting', first: s.first, last: now };
    case 'pushing':
      return { kind: 'pushing', dirty: true };
  }
}

/** When the waiting state is due (ms since epoch), or undefined when nothing waits. */
export function dueAt(s: CoalesceState, o: CoalesceOptions): number | undefined {
  if (s.kind !== 'waiting') return undefined;
  return Math.min(s.last + o.quietMs, s.first + o.maxMs);
}

/** Starts a push if one is due at `now`. */
export function startIfDue(
  s: CoalesceState,
  now: number,
  o: CoalesceOptions,
): { state: CoalesceState; start: boolean } {
  const due = dueAt(s, o);
  if (due === undefined || now < due) return { state: s, start: false };
  return { state: { kind: 'pushing', dirty: false }, start: true };
}

/** A push ended at `now`: events that came during it make the next one wait from now. */
export function onPushDone(s: CoalesceState, now: number): CoalesceState {
  if (s.kind === 'pushing' && s.dirty) return { kind: 'waiting', first: now, last: now };
  return IDLE;
}

/** Names editors and tools use for temporary and backup files: never a reason to push. */
export function isEditorTemp(p: string): boolean {
  const base = p.slice(p.lastIndexOf('/') + 1);
  return (
    base.startsWith('.') || // vim .x.swp, atomic writers' .x.tmpXXXX, lvssync's own temporaries
    base.endsWith('~') || // vim/emacs backups
    /^#.*#$/.test(base) || // emacs auto-save
    /\.(sw[a-p]|tmp|bak|orig|rej|save|dpkg-(new|old|dist|tmp)|ucf-(new|old|dist))$/.test(base) ||
    base === '4913' || // vim's write test
    /^sed[A-Za-z0-9]{6}$/.test(base) // sed -i
  );
}
