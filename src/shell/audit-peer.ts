// The audit's connections to the other directors, opened before the rest of the audit is loaded. Kept apart from
// shell/audit.ts so that `lvssync audit` can start the SSH handshake having loaded only the SSH client.

import type { Config } from '../core/config.js';
import type { AuditData } from '../core/protocol.js';
import { PeerSession, type PeerTarget, peersOf } from './peer.js';

/** A session to the peer that the caller started opening before the audit's own modules loaded. */
export interface EarlyPeer {
  target: PeerTarget;
  opening: Promise<PeerSession>;
  /** Settles when the SSH handshake is done (or failed), with the time (ms since start) it did. */
  handshaken: Promise<number>;
  /** When the connection began (ms since start). */
  at: number;
  /** The peer's side of the audit, asked for right behind the agent's hello. */
  gathered: Promise<AuditData>;
  /**
   * Settles when the request is on its way to the agent (or the session failed): this side's own
   * work, which keeps the thread busy, waits for it, so as not to hold up the channel's opening.
   */
  requested: Promise<void>;
}

/**
 * Opens every other director's session for an audit at once (before the rest of the audit is even
 * loaded: the SSH handshakes and the agents' start are most of an audit's time).
 */
export function openForAudit(config: Config, self: string, only?: string): EarlyPeer[] {
  return peersOf(config, self, only).map((t) => openOne(config, self, t));
}

function openOne(config: Config, self: string, target: PeerTarget): EarlyPeer {
  let handshake: () => void = () => {};
  const handshaken = new Promise<number>((r) => {
    handshake = () => r(Math.round(performance.now()));
  });
  let asked: Promise<AuditData> | undefined;
  let sent: () => void = () => {};
  const requested = new Promise<void>((r) => {
    sent = r;
  });
  const opening = PeerSession.open(
    config,
    target,
    self,
    () => handshake(),
    (s) => {
      asked = s.request({ op: 'audit', texts: false });
      void asked.catch(() => undefined);
      sent();
    },
  );
  void opening.catch(() => {
    handshake();
    sent();
  });
  const gathered = opening.then((s) => asked ?? s.request({ op: 'audit', texts: false }));
  void gathered.catch(() => undefined);
  return { target, opening, handshaken, at: Math.round(performance.now()), gathered, requested };
}
