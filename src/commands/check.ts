// `lvssync check`: validates the managed set (keepalived.conf with its includes, ferm.conf) under a
// root and prints the findings. Composition root: read, check, print.

import path from 'node:path';
import { boundaryOf } from '../core/boundary.js';
import { diagnosticJson, hasErrors } from '../core/diagnostic.js';
import { formatDiagnostics, formatSummary } from '../core/format.js';
import { EXIT } from '../errors.js';
import type { Io } from '../io.js';
import { checkDirector } from '../shell/check-director.js';
import { loadConfig, selfNode } from '../shell/load-config.js';
import { Workspace } from '../shell/workspace.js';

export interface CheckOptions {
  root?: string;
  json?: boolean;
  config?: string;
  configId?: string;
  node?: string;
  external?: boolean;
}

export async function runCheck(opts: CheckOptions, io: Io): Promise<number> {
  const { config } = await loadConfig(opts.config);
  const root = path.resolve(opts.root ?? '/');
  const node = selfNode(config, opts.node);
  const configId = opts.configId ?? (node ? config.nodes[node]?.configId : undefined);
  const workspace = Workspace.kept(config.stateDir);
  const r = await checkDirector({
    root,
    keepalivedPath: config.files.keepalived,
    fermPath: config.files.ferm,
    ...(configId === undefined ? {} : { configId }),
    external: opts.external !== false,
    ...(config.files.extra.length ? { extra: config.files.extra } : {}),
    boundary: boundaryOf(config),
    severity: config.check.severity,
    workspace,
    ...(node ? { host: node } : {}),
  });
  workspace.saveFindings();
  // the real validators were asked for: a missing one is a missing tool, not a passed check
  const absent = [
    ...(r.keepalivedTest && !r.keepalivedTest.available ? ['keepalived'] : []),
    ...(r.ferm && !r.ferm.available ? ['ferm'] : []),
  ];
  if (opts.external !== false && absent.length > 0) {
    io.stderr(
      `lvssync: ${absent.join(' and ')} not installed: needed to validate the set (install ${absent.join(' and ')}, or pass --no-external to run lvssync's own checks only)\n`,
    );
    return EXIT.TOOL;
  }
  const ok = !hasErrors(r.diagnostics);
  if (opts.json) {
    const diagnostics = r.diagnostics.map(diagnosticJson);
    const suppressed = r.suppressed.map((x) => ({
      ...diagnosticJson(x.diagnostic),
      by: x.by,
      ...(x.reason ? { reason: x.reason } : {}),
    }));
    io.stdout(`${JSON.stringify({ ok, diagnostics, suppressed, files: r.files })}\n`);
  } else {
    const sourceOf = (p: string) => r.snapshot.files.get(p)?.text;
    if (r.diagnostics.length > 0) io.stdout(`${formatDiagnostics(r.diagnostics, sourceOf)}\n\n`);
    const notes: string[] = [];
    if (r.ferm && !r.ferm.available) notes.push('ferm not installed: ferm.conf not validated');
    if (r.keepalivedTest && !r.keepalivedTest.available)
      notes.push('keepalived not installed: no second opinion from keepalived -t');
    if (r.suppressed.length) notes.push(`suppressed: ${r.suppressed.length}`);
    io.stdout(
      `${formatSummary(r.diagnostics, r.files.length)}${notes.length ? ` (${notes.join('; ')})` : ''}\n`,
    );
  }
  return ok ? EXIT.OK : EXIT.FINDINGS;
}
