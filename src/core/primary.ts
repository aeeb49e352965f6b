// Which director is the primary (the one people edit, the source of every push) and since which
// handover. lvssync.yaml names the primary; each director also keeps the handover's number (its
// epoch), so that a director that was away while the role moved is told so by the first director it
// talks to, in either direction, and never pushes an old set over the new primary's. Pure.

/** A director's view of the primary: the name in its lvssync.yaml and the handover that put it there. */
export interface PrimaryClaim {
  primary: string;
  /** 0 before any handover; each `lvssync primary` makes it one more than any director had. */
  epoch: number;
}

export type ClaimOrder = 'same' | 'theirs-newer' | 'mine-newer' | 'conflict';

/**
 * Two views side by side. The later handover wins; the same handover naming two primaries (two
 * handovers made on both sides of a cut link) is a conflict only a person settles, by handing over
 * once more.
 */
export function compareClaims(mine: PrimaryClaim, theirs: PrimaryClaim): ClaimOrder {
  if (theirs.epoch > mine.epoch) return 'theirs-newer';
  if (theirs.epoch < mine.epoch) return 'mine-newer';
  return theirs.primary === mine.primary ? 'same' : 'conflict';
}

/** The claims of every director that answered, and the one they agree on (or why not). */
export function settleClaims(
  claims: ReadonlyMap<string, PrimaryClaim>,
): { claim: PrimaryClaim } | { conflict: string } {
  let best: PrimaryClaim | undefined;
  for (const c of claims.values()) if (!best || c.epoch > best.epoch) best = c;
  if (!best) return { conflict: 'no director answered' };
  const rival = [...claims].filter(([, c]) => c.epoch === best.epoch && c.primary !== best.primary);
  if (rival.length) {
    const who = [...claims]
      .filter(([, c]) => c.epoch === best.epoch)
      .map(([n, c]) => `${n} says ${c.primary}`)
      .join(', ');
    return {
      conflict: `the directors disagree on the primary after handover ${best.epoch} (${who}): hand over once more with lvssync primary NAME`,
    };
  }
  return { claim: best };
}

export function describeClaim(c: PrimaryClaim): string {
  return c.epoch ? `${c.primary} (handover ${c.epoch})` : c.primary;
}
