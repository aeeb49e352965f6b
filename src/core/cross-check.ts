// Cross-file rule: every `virtual_server fwmark N` needs a ferm MARK rule setting N, and every MARK
// rule a virtual server. Reports the decimal/hex trap (keepalived reads decimal, iptables reads 0x..
// as hex: `0x64` is 100) with both locations. Pure.

import { type Diagnostic, diag, type Position } from './diagnostic.js';
import type { FermSourcePos, MarkRule } from './ferm/marks.js';
import { argAt } from './keepalived/evaluate.js';
import type { KeepalivedModel } from './keepalived/model.js';

export interface LocatedMark {
  rule: MarkRule;
  pos: FermSourcePos;
}

interface FwmarkUse {
  mark: number;
  raw: string;
  pos: Position;
  what: string;
}

function fwmarkUses(m: KeepalivedModel): FwmarkUse[] {
  const uses: FwmarkUse[] = [];
  for (const vs of m.virtualServers) {
    if (vs.key.kind === 'fwmark' && Number.isFinite(vs.key.mark)) {
      uses.push({
        mark: vs.key.mark,
        raw: vs.key.raw,
        pos: argAt(vs.directive, 1),
        what: `virtual_server fwmark ${vs.key.raw}`,
      });
    }
  }
  for (const g of m.virtualServerGroups) {
    for (const e of g.entries) {
      if (e.value[0] === 'fwmark' && e.value[1] !== undefined && /^\d+$/.test(e.value[1])) {
        uses.push({
          mark: Number(e.value[1]),
          raw: e.value[1],
          pos: e.pos,
          what: `fwmark ${e.value[1]} in virtual_server_group ${g.name}`,
        });
      }
    }
  }
  return uses;
}

const rel = (p: Position | FermSourcePos, message: string) => ({
  file: p.file,
  line: p.line,
  col: p.col,
  message,
});

/** Reading the same digits in the other base: `64` read as hex is 100, `100` is hex 0x64. */
function otherBase(raw: string): number | undefined {
  if (/^0x[0-9a-f]+$/i.test(raw))
    return /^\d+$/.test(raw.slice(2)) ? Number(raw.slice(2).replace(/^0+(?=\d)/, '')) : undefined;
  if (/^\d+$/.test(raw)) return Number.parseInt(raw, 16);
  return undefined;
}

export function validateMarks(model: KeepalivedModel, marks: readonly LocatedMark[]): Diagnostic[] {
  const out: Diagnostic[] = [];
  const uses = fwmarkUses(model);
  const lvsMarks = marks.filter((m) => m.rule.table === 'mangle' && Number.isFinite(m.rule.mark));
  const byMark = new Map<number, LocatedMark[]>();
  for (const m of lvsMarks) byMark.set(m.rule.mark, [...(byMark.get(m.rule.mark) ?? []), m]);
  const used = new Set(uses.map((u) => u.mark));
  for (const u of uses) {
    if (byMark.has(u.mark)) continue;
    // The trap: the same digits, read in the other base, match a ferm rule (or the other way round).
    const twin = lvsMarks.find(
      (m) => otherBase(m.rule.markText) === u.mark || otherBase(u.raw) === m.rule.mark,
    );
    if (twin) {
      out.push(
        diag(
          'error',
          'XC_FWMARK_BASE_MISMATCH',
          u.pos,
          `${u.what} has no ferm MARK rule: ferm sets ${twin.rule.markText}, which iptables reads as ${twin.rule.mark}, ` +
            `but keepalived reads fwmark in decimal (${u.raw} = 0x${u.mark.toString(16)}); write fwmark ${twin.rule.mark} ` +
            `or set-mark 0x${u.mark.toString(16)}`,
          [rel(twin.pos, `ferm sets mark ${twin.rule.markText} (= ${twin.rule.mark}) here`)],
        ),
      );
    } else {
      out.push(
        diag(
          'error',
          'XC_FWMARK_NO_RULE',
          u.pos,
          `${u.what} has no ferm MARK rule setting ${u.mark} (0x${u.mark.toString(16)}): no packet will reach it`,
        ),
      );
    }
  }
  const reported = new Set<number>();
  for (const m of lvsMarks) {
    if (used.has(m.rule.mark) || reported.has(m.rule.mark)) continue;
    reported.add(m.rule.mark);
    const twin = uses.find((u) => otherBase(m.rule.markText) === u.mark || otherBase(u.raw) === m.rule.mark);
    const target = `${m.rule.destination ?? 'any'}${m.rule.protocol ? ` ${m.rule.protocol}` : ''}${m.rule.dports.length ? ` port ${m.rule.dports.join(',')}` : ''}`;
    out.push(
      diag(
        twin ? 'error' : 'warning',
        twin ? 'XC_FWMARK_BASE_MISMATCH' : 'XC_RULE_NO_FWMARK',
        m.pos,
        `ferm marks ${target} with ${m.rule.markText} (= ${m.rule.mark}) but no virtual_server fwmark ${m.rule.mark} exists` +
          (twin ? ` (${twin.what} is the same digits in the other base)` : ''),
        twin ? [rel(twin.pos, `${twin.what} here`)] : undefined,
      ),
    );
  }
  return out;
}
