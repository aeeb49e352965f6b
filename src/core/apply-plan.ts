// The apply half of a push, planned before anything changes: once every director has the new set
// staged and validated, in which order each is committed and reloaded, and what undoes what was done
// when a later step fails (changesets' assemble, then apply). Pure; push.ts executes it.

import { canonicalIP } from './address.js';

/** A VRRP instance and the addresses that mark its holder (its virtual_ipaddress and _excluded). */
export interface InstanceVips {
  name: string;
  vips: readonly string[];
}

/** One director as the push found it, after staging and validation. */
export interface ApplyNode {
  name: string;
  /** The director the push starts from: its files are the source, never committed nor restored. */
  primary: boolean;
  /** Its addresses now (every interface's, as `ip -j addr` lists them). */
  addresses: readonly string[];
  /** It has files to commit (false: its files are in sync, only reloads are owed). */
  commit: boolean;
  /** The services to reload there, in lvssync.yaml's order (none: nothing owed). */
  services: readonly string[];
}

/** One director's part of the apply: commit (peers), then each service reloaded and verified. */
export interface ApplyStep {
  node: string;
  primary: boolean;
  commit: boolean;
  services: readonly string[];
  /** The VRRP instances whose VIPs it holds now (the order's reason). */
  holds: readonly string[];
  /**
   * What undoes this step when a later one fails: 'restore' — the agent puts back the files the
   * commit replaced and reloads them; 'none' — the primary's files are the operator's, and a
   * director that only reloaded what it already had keeps it.
   */
  undo: 'restore' | 'none';
}

export interface ApplyPlan {
  steps: ApplyStep[];
  /** VRRP instances whose VIPs are on more than one director now (split brain): named in the report. */
  split: { instance: string; nodes: string[] }[];
  /** Instances whose VIPs are on no director now. */
  unheld: string[];
}

/** The instances each node holds: any of an instance's addresses on it. */
export function holdings(
  nodes: readonly ApplyNode[],
  instances: readonly InstanceVips[],
): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const n of nodes) {
    const mine = new Set(n.addresses.map(canonicalIP));
    out.set(
      n.name,
      instances.filter((i) => i.vips.some((v) => mine.has(canonicalIP(v)))).map((i) => i.name),
    );
  }
  return out;
}

/**
 * The order: directors that hold no VRRP instance first, then by how many instances they hold,
 * fewest first, so the director carrying the most traffic is touched last, once the others run the
 * new set. Ties (a split brain, or nobody holding anything during an outage): the peers before the
 * primary (the operator's director keeps serving as it is until the others are proven), then
 * lvssync.yaml's order. With two directors that is the holder last, the peer first otherwise.
 * A node with nothing owed (in sync, every service loaded) gets no step.
 */
export function planApply(nodes: readonly ApplyNode[], instances: readonly InstanceVips[]): ApplyPlan {
  const held = holdings(nodes, instances);
  const rank = new Map(nodes.map((n, i) => [n.name, i]));
  const ordered = [...nodes].sort(
    (a, b) =>
      held.get(a.name)!.length - held.get(b.name)!.length ||
      Number(a.primary) - Number(b.primary) ||
      rank.get(a.name)! - rank.get(b.name)!,
  );
  const steps: ApplyStep[] = [];
  for (const n of ordered) {
    const commit = n.commit && !n.primary;
    if (!commit && n.services.length === 0) continue;
    steps.push({
      node: n.name,
      primary: n.primary,
      commit,
      services: n.services,
      holds: held.get(n.name)!,
      undo: commit ? 'restore' : 'none',
    });
  }
  const split: ApplyPlan['split'] = [];
  const unheld: string[] = [];
  for (const i of instances) {
    const by = nodes.filter((n) => held.get(n.name)!.includes(i.name)).map((n) => n.name);
    if (by.length > 1) split.push({ instance: i.name, nodes: by });
    if (by.length === 0 && i.vips.length) unheld.push(i.name);
  }
  return { steps, split, unheld };
}

/**
 * After step `failed` went wrong (its own node already restored by its agent, or the primary's
 * reload failed): the directors to restore, last changed first. A failure on a peer undoes every
 * peer this push changed before it, and the primary is never reached; a failure on the primary
 * undoes nothing, as the directors before it run the set that validated everywhere.
 */
export function undoAfter(plan: ApplyPlan, failed: number): string[] {
  if (plan.steps[failed]?.primary) return [];
  return plan.steps
    .slice(0, failed)
    .filter((s) => s.undo === 'restore')
    .map((s) => s.node)
    .reverse();
}

/** The order as a sentence: who goes when, and why. */
export function describeOrder(plan: ApplyPlan): string {
  const parts = plan.steps.map((s) => (s.holds.length ? `${s.node} (holds ${s.holds.join(', ')})` : s.node));
  const notes = [
    ...plan.split.map((x) => `split brain: ${x.instance} on ${x.nodes.join(' and ')}`),
    ...(plan.unheld.length ? [`no director holds ${plan.unheld.join(', ')}`] : []),
  ];
  return `${parts.join(', then ')}${notes.length ? ` (${notes.join('; ')})` : ''}`;
}
