// What a director's checks keep from one run to the next, as one value its owner holds and passes in
// (the daemon's worker, the agent's session, a CLI run): parsed files, each set's previous result,
// each directive's own findings and model, compiled include patterns. Nothing of it lives in a
// module: two owners never share it, and a function called without it simply computes everything.

import type { Diagnostic } from './diagnostic.js';
import type { Directive, ParseCacheEntry } from './keepalived/evaluate.js';
import type { VirtualServer, VrrpInstance } from './keepalived/model.js';
import type { Snapshot } from './snapshot.js';

export class CheckMemory {
  /** Parsed files by path: text, syntax tree, and for self-contained files what they evaluated to. */
  readonly parse = new Map<string, ParseCacheEntry>();
  /** Per snapshot (a set and its rendering for the peer each keep theirs): the last full result. */
  readonly checks = new WeakMap<Snapshot, unknown>();
  /** A top-level directive's own findings depend on nothing else: computed once per directive. */
  readonly topFindings = new WeakMap<Directive, Diagnostic[]>();
  /** A virtual server's own findings (all but duplicates and group references): once per directive. */
  readonly virtualServerFindings = new WeakMap<Directive, Diagnostic[]>();
  /** Directives are immutable once evaluated and reused for unchanged files: their models, once. */
  readonly virtualServers = new WeakMap<Directive, VirtualServer>();
  readonly instances = new WeakMap<Directive, VrrpInstance>();
  /** Compiled include patterns: a set is re-checked after every edit with the same include lines. */
  readonly matchers = new Map<string, (p: string) => boolean>();
}
