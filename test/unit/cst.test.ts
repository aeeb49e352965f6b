import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseKeepalived, renderKeepalived } from '../../src/core/keepalived/cst.js';
import { keepalivedFiles, SAMPLES } from '../helpers/fixtures.js';

describe('parseKeepalived / renderKeepalived', () => {
  const files = keepalivedFiles();
  it('has files to round-trip', () => {
    if (!existsSync(SAMPLES))
      console.warn(`note: ${SAMPLES} is missing (keepalived not installed); only fixtures round-trip`);
    expect(files.length).toBeGreaterThan(10);
  });

  it.each(files)('round-trips byte for byte: %s', (f) => {
    const text = readFileSync(f, 'utf8');
    const { cst } = parseKeepalived(text, f);
    expect(renderKeepalived(cst)).toBe(text);
  });

  it('builds blocks opened on the same line, the next line, and one-line blocks', () => {
    const { cst, diagnostics } = parseKeepalived('a x {\n  b 1\n}\nc\n{\n d { e }\n}\n', 'k.conf');
    expect(diagnostics).toEqual([]);
    const stmts = cst.children.filter((n) => n.kind === 'statement');
    expect(stmts.map((s) => s.kind === 'statement' && s.words.map((w) => w.text).join(' '))).toEqual([
      'a x',
      'c',
    ]);
    const c = stmts[1];
    if (c?.kind !== 'statement') throw new Error('expected statement');
    const inner = c.block?.children.find((n) => n.kind === 'statement');
    expect(inner?.kind === 'statement' && inner.block?.children.some((n) => n.kind === 'statement')).toBe(
      true,
    );
  });

  it('reports an unclosed block at the line and file where it opened', () => {
    const { diagnostics } = parseKeepalived(
      'global_defs {\n}\nvrrp_instance VI {\n  state BACKUP\n',
      '/etc/keepalived/x.conf',
    );
    expect(diagnostics).toMatchObject([
      { code: 'KA_UNCLOSED_BLOCK', file: '/etc/keepalived/x.conf', line: 3, col: 18 },
    ]);
    expect(diagnostics[0]!.message).toContain("'vrrp_instance VI'");
  });

  it('reports an extra closing brace where it is', () => {
    const { diagnostics } = parseKeepalived('a {\n}\n  }\n', 'k.conf');
    expect(diagnostics).toMatchObject([{ code: 'KA_EXTRA_BRACE', line: 3, col: 3 }]);
  });

  it('keeps definitions and ~SEQ lines opaque, including continued lines with braces', () => {
    const text = '$RS=real_server 1.2.3.4 80 { \\\n weight 1 \\\n}\nvs {\n}\n';
    const { cst, diagnostics } = parseKeepalived(text, 'k.conf');
    expect(diagnostics).toEqual([]);
    const def = cst.children.find((n) => n.kind === 'definition');
    expect(def?.kind === 'definition' && def.name).toBe('RS');
    expect(def?.kind === 'definition' && def.value).toBe('real_server 1.2.3.4 80 {\nweight 1\n}');
    expect(renderKeepalived(cst)).toBe(text);
  });

  it('records @id and @^id conditions on the statement', () => {
    const { cst } = parseKeepalived('@lvs1 router_id LVS1\n@^lvs1 router_id OTHER\n', 'k.conf');
    const conds = cst.children.flatMap((n) => (n.kind === 'statement' && n.condition ? [n.condition] : []));
    expect(conds.map((c) => [c.id, c.negate])).toEqual([
      ['lvs1', false],
      ['lvs1', true],
    ]);
  });
});
