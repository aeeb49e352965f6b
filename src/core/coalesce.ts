// Coalescing of file events into pushes (consul-template's min/max "wait"): a push starts once no
// event came for `quietMs`, or `maxMs` after the first event of a burst, whichever is first. Events
// during a push lead to exactly one more push after it. Pure: the caller passes the clock.
//
// Early pushes: the first event after a quiet period may start a push at once, gated: it reads,
// checks, uploads and validates like any push, but commits only once `quietMs` has passed since the
// event with no other event (the quiet window runs beside the work instead of before it). An event
// before that abandons it (nothing is changed on the peer) and the burst is coalesced as usual.

export interface CoalesceOptions {
  quietMs: number;
  maxMs: number;
}

export type CoalesceState =
  | { kind: 'idle' }
  | { kind: 'waiting'; first: number; last: number }
  | {
      kind: 'pushing';
      dirty: boolean;
      /** An early push: started by the event at `early`, commits only after a quiet window. */
      early?: number;
      /** The first and last event during the push. */
      first?: number;
      last?: number;
    };

export const IDLE: CoalesceState = { kind: 'idle' };

/** A relevant event at `now`. */
export function onEvent(s: CoalesceState, now: number): CoalesceState {
  switch (s.kind) {
    case 'idle':
      return { kind: 'waiting', first: now, last: now };
    case 'waiting':
      return { kind: 'waiting', first: s.first, last: now };
    case 'pushing':
      return { ...s, dirty: true, first: s.first ?? now, last: now };
  }
}

/**
 * A retry's moment has come (its backoff is over, or a director answers again): a push is due now,
 * unless edits came since the push that failed: their burst keeps its quiet window (a retry never
 * pushes a save sooner than its window allows), and its push is the retry.
 */
export function onRetry(s: CoalesceState, now: number, o: CoalesceOptions): CoalesceState {
  if (s.kind === 'waiting') return s;
  // (a push under way: the one after it is the retry)
  if (s.kind === 'pushing') return { ...s, dirty: true, first: s.first ?? now, last: s.last ?? now };
  const due = now - o.maxMs;
  return { kind: 'waiting', first: due, last: due };
}

/** Starts an early (gated) push for the event that just came, when it is the first of a burst. */
export function startEarly(s: CoalesceState): { state: CoalesceState; start: boolean } {
  if (s.kind !== 'waiting' || s.first !== s.last) return { state: s, start: false };
  return { state: { kind: 'pushing', dirty: false, early: s.first }, start: true };
}

export type GateVerdict = { go: true } | { go: false } | { waitUntil: number };

/**
 * May the push commit now? A push that is not early always may; an early one may once `quietMs`
 * has passed since its event with none after it, and must be abandoned after another event.
 */
export function gate(s: CoalesceState, now: number, o: CoalesceOptions): GateVerdict {
  if (s.kind !== 'pushing' || s.early === undefined) return { go: true };
  if (s.dirty) return { go: false };
  const due = s.early + o.quietMs;
  return now >= due ? { go: true } : { waitUntil: due };
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

/**
 * A push ended at `now`: events that came during it make the next one wait from now. An abandoned
 * early push leaves the burst it began waiting as if no push had started (quiet after its last
 * event, at the latest `maxMs` after its first).
 */
export function onPushDone(s: CoalesceState, now: number, abandoned = false): CoalesceState {
  if (s.kind !== 'pushing' || !s.dirty) return IDLE;
  if (abandoned && s.early !== undefined) return { kind: 'waiting', first: s.early, last: s.last ?? now };
  return { kind: 'waiting', first: now, last: now };
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
