// The apply half of a push (core/apply-plan.ts): the order directors are committed and reloaded in,
// per VRRP instance held, and what is undone when a step fails.
import { describe, expect, it } from 'vitest';
import { type ApplyNode, describeOrder, planApply, undoAfter } from '../../src/core/apply-plan.js';

const SERVICES = ['ferm', 'keepalived'];
const VI_1 = { name: 'VI_1', vips: ['192.0.2.10', '2001:db8::10'] };
const VI_2 = { name: 'VI_2', vips: ['192.0.2.20'] };
const VI_3 = { name: 'VI_3', vips: ['192.0.2.30'] };

const node = (name: string, addresses: string[], over: Partial<ApplyNode> = {}): ApplyNode => ({
  name,
  primary: false,
  addresses: [`198.51.100.${name.length}`, ...addresses],
  commit: true,
  services: SERVICES,
  ...over,
});
const order = (nodes: ApplyNode[], instances = [VI_1]) =>
  planApply(nodes, instances).steps.map((s) => s.node);

describe('planApply: the order', () => {
  it.each([
    // [primary holds, peer holds, order] — a pair: the holder last, the peer first otherwise
    [true, false, ['lvs2', 'lvs1']],
    [false, true, ['lvs1', 'lvs2']],
    [false, false, ['lvs2', 'lvs1']],
    [true, true, ['lvs2', 'lvs1']],
  ])('two directors, the primary holds %s, the peer %s -> %j', (a, b, want) => {
    const nodes = [
      node('lvs1', a ? ['192.0.2.10'] : [], { primary: true, commit: false }),
      node('lvs2', b ? ['192.0.2.10'] : []),
    ];
    expect(order(nodes)).toEqual(want);
  });

  it('three directors: those without a VIP first (lvssync.yaml order), then by instances held, fewest first', () => {
    const nodes = [
      node('lvs1', ['192.0.2.20', '192.0.2.30'], { primary: true, commit: false }),
      node('lvs2', []),
      node('lvs3', ['192.0.2.10']),
    ];
    const plan = planApply(nodes, [VI_1, VI_2, VI_3]);
    expect(plan.steps.map((s) => [s.node, s.holds])).toEqual([
      ['lvs2', []],
      ['lvs3', ['VI_1']],
      ['lvs1', ['VI_2', 'VI_3']],
    ]);
    expect(plan.split).toEqual([]);
    expect(describeOrder(plan)).toBe('lvs2, then lvs3 (holds VI_1), then lvs1 (holds VI_2, VI_3)');
  });

  it('an instance is held by any of its addresses, IPv6 spelled another way included', () => {
    const nodes = [node('lvs1', [], { primary: true, commit: false }), node('lvs2', ['2001:db8:0::10'])];
    expect(planApply(nodes, [VI_1]).steps.map((s) => s.holds)).toEqual([[], ['VI_1']]);
  });

  it('names a split brain and instances nobody holds; ties go peers first, then lvssync.yaml order', () => {
    const nodes = [
      node('lvs1', ['192.0.2.10'], { primary: true, commit: false }),
      node('lvs3', ['192.0.2.10']),
      node('lvs2', ['192.0.2.10']),
    ];
    const plan = planApply(nodes, [VI_1, VI_2]);
    expect(plan.steps.map((s) => s.node)).toEqual(['lvs3', 'lvs2', 'lvs1']);
    expect(plan.split).toEqual([{ instance: 'VI_1', nodes: ['lvs1', 'lvs3', 'lvs2'] }]);
    expect(plan.unheld).toEqual(['VI_2']);
    expect(describeOrder(plan)).toContain(
      'split brain: VI_1 on lvs1 and lvs3 and lvs2; no director holds VI_2',
    );
  });

  it('a director with nothing owed gets no step; one owed only reloads commits nothing and has nothing to undo', () => {
    const nodes = [
      node('lvs1', [], { primary: true, commit: false, services: [] }),
      node('lvs2', [], { commit: false, services: ['keepalived'] }),
      node('lvs3', [], { commit: false, services: [] }),
    ];
    expect(planApply(nodes, [VI_1]).steps).toEqual([
      { node: 'lvs2', primary: false, commit: false, services: ['keepalived'], holds: [], undo: 'none' },
    ]);
  });

  it('the primary is never committed, whatever it is told', () => {
    const plan = planApply([node('lvs1', [], { primary: true, commit: true })], [VI_1]);
    expect(plan.steps[0]).toMatchObject({ commit: false, undo: 'none' });
  });
});

describe('undoAfter', () => {
  const nodes = [
    node('lvs1', ['192.0.2.10'], { primary: true, commit: false }),
    node('lvs2', []),
    node('lvs3', []),
    node('lvs4', [], { commit: false, services: ['keepalived'] }),
  ];
  const plan = planApply(nodes, [VI_1]);

  it('a failure on a peer restores the peers changed before it, the last changed first; never the primary', () => {
    expect(plan.steps.map((s) => s.node)).toEqual(['lvs2', 'lvs3', 'lvs4', 'lvs1']);
    expect(undoAfter(plan, 0)).toEqual([]);
    expect(undoAfter(plan, 1)).toEqual(['lvs2']);
    // lvs4 only reloaded what it had: nothing of it to restore
    expect(undoAfter(plan, 2)).toEqual(['lvs3', 'lvs2']);
  });

  it('a failure on the primary undoes nothing: the others run the set that validated everywhere', () => {
    expect(undoAfter(plan, 3)).toEqual([]);
  });
});
