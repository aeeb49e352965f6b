// Renders the primary's configuration set for another director: router_id and the declared per-host
// lines get that director's values; every other byte (comments, spacing, other lines) is kept, and
// `@id` conditional lines are left alone (they already say which host they are for). Pure.

import type { Config, HostLine } from './config.js';
import { type Diagnostic, diag } from './diagnostic.js';
import { type CstNode, type CstStatement, parseKeepalived } from './keepalived/cst.js';
import type { Token } from './keepalived/lexer.js';
import { tokenValue } from './keepalived/lexer.js';
import { SECRET_KEYWORDS } from './secrets.js';

/** A per-host value as the plan shows it: a secret's (a per-host auth_pass) is never printed. */
function shown(keyword: string, value: string): string {
  return SECRET_KEYWORDS.includes(keyword) ? '<redacted>' : value;
}

export interface RenderTarget {
  /** The node rendered for, for messages. */
  node: string;
  routerId?: string;
  hostLines: readonly HostLine[];
}

/** What `node`'s lvssync.yaml entry says it must have of its own: its router_id and per-director lines. */
export function renderTargetOf(config: Config, node: string): RenderTarget {
  const n = config.nodes[node]!;
  return { node, ...(n.router_id ? { routerId: n.router_id } : {}), hostLines: n.hostLines };
}

export interface RenderResult {
  /** path -> the text the target must have (only keepalived files change; others pass through). */
  files: Map<string, string>;
  /** path -> human description of each rewrite, e.g. `router_id LVS1 -> LVS2 (line 2)`. */
  rewrites: { file: string; line: number; what: string }[];
  diagnostics: Diagnostic[];
}

interface Edit {
  offset: number;
  length: number;
  text: string;
}

const statementText = (s: CstStatement) => s.words.map(tokenValue).join(' ');

/** Statements of a CST level, with conditional lines left out (they are per-host already). */
function* statements(nodes: readonly CstNode[]): Generator<CstStatement> {
  for (const n of nodes) if (n.kind === 'statement' && !n.condition) yield n;
}

/** Quotes a value the way keepalived reads it back as one word. */
function word(value: string): string {
  return /[\s"!#{}]/.test(value) ? `"${value.replace(/"/g, '')}"` : value;
}

/**
 * Applies the target's values to the keepalived files of `files` (keys are director paths). A
 * declared per-host line that matches nothing, or matches twice, is an error: pushing would give the
 * peer the primary's value.
 */
export function renderForNode(
  files: ReadonlyMap<string, string>,
  keepalivedFiles: readonly string[],
  target: RenderTarget,
): RenderResult {
  const out = new Map(files);
  const rewrites: RenderResult['rewrites'] = [];
  const diagnostics: Diagnostic[] = [];
  const found = new Map<string, number>();
  const wants: { key: string; path: string[]; value: string }[] = [];
  if (target.routerId !== undefined) {
    wants.push({ key: 'router_id', path: ['global_defs', 'router_id'], value: target.routerId });
  }
  for (const h of target.hostLines) wants.push({ key: h.path.join(' > '), path: h.path, value: h.value });

  for (const file of keepalivedFiles) {
    const text = files.get(file);
    if (text === undefined) continue;
    // Most files (a conf.d of virtual servers) hold none of the per-host keywords: no need to parse.
    if (!wants.some((w) => text.includes(w.path[w.path.length - 1]!))) continue;
    const { cst } = parseKeepalived(text, file);
    const edits: Edit[] = [];
    for (const w of wants) {
      const leaf = w.path[w.path.length - 1]!;
      let level: readonly CstNode[][] = [cst.children];
      for (const seg of w.path.slice(0, -1)) {
        const next: CstNode[][] = [];
        for (const nodes of level) {
          for (const s of statements(nodes)) {
            const t = statementText(s);
            if (s.block && (t === seg || s.words[0]?.text === seg)) next.push(s.block.children);
          }
        }
        level = next;
      }
      for (const nodes of level) {
        for (const s of statements(nodes)) {
          if (s.words[0]?.text !== leaf || s.block) continue;
          found.set(w.key, (found.get(w.key) ?? 0) + 1);
          const args = s.words.slice(1);
          const first = args[0];
          const last = args[args.length - 1];
          const line = s.words[0]!.line;
          if (!first || !last) {
            const kw: Token = s.words[0]!;
            edits.push({ offset: kw.offset + kw.text.length, length: 0, text: ` ${word(w.value)}` });
            rewrites.push({ file, line, what: `${leaf} (none) -> ${shown(leaf, w.value)}` });
            continue;
          }
          const old = args.map(tokenValue).join(' ');
          if (old === w.value) continue;
          edits.push({
            offset: first.offset,
            length: last.offset + last.text.length - first.offset,
            text: w.value.split(/\s+/).map(word).join(' '),
          });
          rewrites.push({ file, line, what: `${leaf} ${shown(leaf, old)} -> ${shown(leaf, w.value)}` });
        }
      }
    }
    if (edits.length > 0) {
      edits.sort((a, b) => b.offset - a.offset);
      let t = text;
      for (const e of edits) t = t.slice(0, e.offset) + e.text + t.slice(e.offset + e.length);
      out.set(file, t);
    }
  }
  const root = keepalivedFiles[0] ?? '/etc/keepalived/keepalived.conf';
  for (const w of wants) {
    const n = found.get(w.key) ?? 0;
    if (n === 0) {
      diagnostics.push(
        diag(
          'error',
          'RENDER_NO_LINE',
          { file: root, line: 1, col: 1 },
          `per-host line '${w.path.join(' > ')}' is not in the configuration (outside @id lines): ` +
            `${target.node} would get the primary's value; add the line or remove it from lvssync.yaml`,
        ),
      );
    } else if (n > 1 && w.key === 'router_id') {
      diagnostics.push(
        diag(
          'warning',
          'RENDER_MANY_LINES',
          { file: root, line: 1, col: 1 },
          `'${w.path.join(' > ')}' appears ${n} times; every one is set to ${w.value} for ${target.node}`,
        ),
      );
    }
  }
  return { files: out, rewrites, diagnostics };
}
