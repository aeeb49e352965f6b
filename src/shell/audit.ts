// The audit pipeline: gathers from each director (here directly, on the peer through its agent) the
// managed files, the addresses it holds, its live IPVS table (through the same exec path as every
// other command: audit.ipvsadm) and its live and intended MARK rules; then asks the core for
// findings. Also stores reports (with retention), hands them to a command and writes the Prometheus
// textfile. Used by `lvssync audit`, `lvssync status` and the daemon's schedule.

import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import path from 'node:path';
import {
  auditDrift,
  auditIpvs,
  auditIpvsPair,
  auditKeepalivedLoad,
  auditMarks,
  auditPendingByContent,
  auditServices,
  auditVips,
  exitCodeOf,
  type Finding,
  type Severity,
  worstOf,
} from '../core/audit.js';
import type { Config } from '../core/config.js';
import { parseFermLines } from '../core/ferm/marks.js';
import { type IpvsTable, parseIpvsadm } from '../core/ipvsadm.js';
import type { AuditData } from '../core/protocol.js';
import { renderForNode, renderTargetOf } from '../core/render.js';
import { LvssyncError } from '../errors.js';
import { type EarlyPeer, openForAudit } from './audit-peer.js';
import { readSelf } from './check-director.js';
import { execTool } from './exec.js';
import { readJsonFile } from './fs-atomic.js';
import { gatherHere } from './gather.js';
import type { PeerSession } from './peer.js';

export interface AuditReport {
  cluster: string;
  time: string;
  status: Severity;
  exitCode: number;
  hosts: string[];
  findings: Finding[];
  /**
   * Each check that ran, with what it covered ("4 files on lvs2 against what lvs1 renders"): a check
   * with no finding is clean only if it is here (a check that could not run has an `unknown` finding
   * instead; `digest` runs only when asked for).
   */
  checks: Partial<Record<Finding['check'], string>>;
  /** ms since this process started at each stage of the audit (where the time went). */
  timings?: Record<string, number>;
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Fetches an HTTP_GET url from a real server the way genhash does: MD5 of the body. */
function fetchDigest(host: string, port: number, urlPath: string, virtualhost?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpGet(
      { host, port, path: urlPath, timeout: 5000, headers: virtualhost ? { host: virtualhost } : {} },
      (res) => {
        const h = createHash('md5');
        res.on('data', (b: Buffer) => h.update(b));
        res.on('end', () => resolve(h.digest('hex')));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

export async function runAudit(
  config: Config,
  self: string,
  opts: { digests?: boolean; peers?: EarlyPeer[] } = {},
): Promise<AuditReport> {
  const salt = randomBytes(8).toString('hex');
  const findings: Finding[] = [];
  const timings: Record<string, number> = {};
  const mark = (stage: string) => {
    timings[stage] = Math.round(performance.now());
  };
  mark('start');
  // The peers are asked first and gather their side while this director gathers its own (their
  // files come as checksums). This side's commands start at once; its parsing, which keeps this
  // thread busy, waits until the requests are on their way to the agents, so as not to hold the SSH
  // exchanges up.
  const early = opts.peers ?? openForAudit(config, self);
  if (early[0]) {
    timings.connect = early[0].at;
    void Promise.all(early.map((e) => e.handshaken)).then((t) => {
      timings.handshake = Math.max(...t);
    });
  }
  const peerSides = early.map((e) => {
    const side = e.opening.then(async (s) => {
      try {
        return { data: await e.gathered, session: s };
      } catch (err) {
        s.close();
        throw err;
      }
    });
    void side.catch(() => undefined);
    return { target: e.target, side };
  });
  const hereSide = gatherHere(config);
  // the agents start and gather on the peers meanwhile
  await Promise.all(early.map((e) => e.requested));
  mark('requested');
  const local = await readSelf(config, self);
  mark('read-here');
  const here = await hereSide;
  mark('gathered-here');
  const model = local.model;
  const kaFiles = new Set(local.evaluation.files);
  /** One director's live state against the configuration: its IPVS table, reload, marks. */
  const hostChecks = (h: string, d: AuditData) => {
    const out: { table?: IpvsTable; ipvs: Finding[]; load: Finding[]; marks: Finding[]; rules?: number } = {
      ipvs: [],
      load: [
        // by content where lvssync recorded what was loaded, else by modification time (keepalived)
        ...auditPendingByContent(h, d.pending ?? {}),
        ...(d.pending?.keepalived
          ? []
          : auditKeepalivedLoad(h, d.mtimes ?? {}, d.keepalivedLoadedAt, kaFiles)),
        ...auditServices(h, d.services ?? [], (ms) => new Date(ms).toISOString()),
      ],
      marks: [],
    };
    if (!d.ipvsadm.ok) {
      out.ipvs.push({
        check: 'ipvs',
        severity: 'unknown',
        host: h,
        code: 'IPVS_UNAVAILABLE',
        message: `${config.audit.ipvsadm.join(' ')} failed on ${h}: ${d.ipvsadm.text.split('\n')[0]}`,
      });
    } else {
      out.table = parseIpvsadm(d.ipvsadm.text);
      out.ipvs.push(...auditIpvs(h, model, out.table));
    }
    for (const err of d.errors ?? [])
      out.marks.push({ check: 'marks', severity: 'unknown', host: h, code: 'MARKS_UNKNOWN', message: err });
    if (d.fermLines) {
      const want = parseFermLines(d.fermLines);
      out.rules = want.length;
      out.marks.push(...auditMarks(h, want, parseFermLines(d.liveMangle), config.files.ferm));
    }
    return out;
  };
  // this director's own checks run while the peers' answers are on their way
  const own = hostChecks(self, here);
  mark('checked-here');
  /** The peers that answered, with their side of the audit and their session. */
  const answered: { name: string; data: AuditData; session: PeerSession }[] = [];
  for (const { target, side } of peerSides) {
    try {
      const { data, session } = await side;
      answered.push({ name: target.name, data, session });
    } catch (e) {
      findings.push({
        check: 'peer',
        severity: 'unknown',
        host: target.name,
        code: 'PEER_UNREACHABLE',
        message: `${target.name} could not be audited: ${(e as Error).message}`,
      });
    }
  }
  mark('peer-answered');
  const hosts = [self, ...early.map((e) => e.target.name)];
  const data = new Map<string, AuditData>([[self, here], ...answered.map((a) => [a.name, a.data] as const)]);
  /** What each check that ran covered (see AuditReport.checks). */
  const checks: AuditReport['checks'] = {};
  const names = [self, ...answered.map((a) => a.name)];
  const audited =
    names.length > 2 ? `${names.slice(0, -1).join(', ')} and ${names.at(-1)}` : names.join(' and ');
  if (answered.length) checks.peer = `${answered.map((a) => a.name).join(', ')} answered`;

  // drift: each peer's files against what the primary renders for it
  const mine = new Map(here.files.map((f) => [f.path, f.text ?? '']));
  const drift: string[] = [];
  for (const { name, data: there, session: s } of answered) {
    const rendered = renderForNode(mine, local.evaluation.files, renderTargetOf(config, name));
    // Files whose checksum matches the render are equal; the texts of the others are fetched for diffs.
    const theirs = new Map<string, string>();
    const differing: string[] = [];
    for (const f of there.files) {
      const want = rendered.files.get(f.path);
      if (f.text !== undefined) theirs.set(f.path, f.text);
      else if (want !== undefined && f.sha256 === sha256(want)) theirs.set(f.path, want);
      else differing.push(f.path);
    }
    await Promise.all(
      differing.map(async (p) => {
        const r = await s.request({ op: 'read', path: p });
        if (r.exists) theirs.set(p, r.text);
      }),
    ).catch((e: Error) =>
      findings.push({
        check: 'peer',
        severity: 'unknown',
        host: name,
        code: 'PEER_UNREACHABLE',
        message: `${name}: could not read the files that differ: ${e.message}`,
      }),
    );
    findings.push(...auditDrift(name, rendered.files, theirs, salt));
    drift.push(`${rendered.files.size} managed file(s) of ${name}`);
  }
  if (drift.length) {
    checks.drift = `${drift.join(', ')} against what ${self} renders for ${answered.length > 1 ? 'each' : 'it'}`;
    mark('drift');
  }
  for (const a of answered) a.session.close();
  // VIPs: exactly one holder among every director that answered
  findings.push(...auditVips(model, new Map([...data].map(([h, d]) => [h, d.addresses]))));
  const vips = model.instances.reduce((n, i) => n + i.vips.length + i.excludedVips.length, 0);
  checks.vip = `${vips} virtual address(es) on ${audited}`;
  const theirs = answered.map((a) => ({ name: a.name, ...hostChecks(a.name, a.data) }));
  /** "lvs1 (3 x) and lvs2 (3)": a count per director, for the checks' summaries. */
  const perHost = (counts: [string, number | undefined][], what: string) =>
    counts
      .filter((c): c is [string, number] => c[1] !== undefined)
      .map(([h, n], i) => `${h} (${n}${i === 0 ? ` ${what}` : ''})`)
      .join(' and ');
  const tables = perHost(
    [
      [self, own.table?.services.length],
      ...theirs.map((t): [string, number | undefined] => [t.name, t.table?.services.length]),
    ],
    'service(s)',
  );
  if (tables)
    checks.ipvs = `${model.virtualServers.length} configured virtual server(s) against the live tables of ${tables}`;
  checks['pending-reload'] =
    `each service's files on ${audited} against what it last loaded (keepalived's ${kaFiles.size} file(s); by content where lvssync reloaded it, else by time)`;
  checks.services = `${config.services.filter((x) => x.status).length} service(s) with a status command on ${audited}`;
  const rules = perHost(
    [[self, own.rules], ...theirs.map((t): [string, number | undefined] => [t.name, t.rules])],
    'rule(s)',
  );
  if (rules) checks.marks = `ferm.conf's MARK rules against the live mangle table of ${rules}`;
  // live IPVS, and each peer's table against this director's (what a failover to it would change)
  findings.push(...own.ipvs, ...theirs.flatMap((t) => t.ipvs));
  for (const t of theirs)
    if (own.table && t.table) findings.push(...auditIpvsPair(self, own.table, t.name, t.table));
  // keepalived files changed after keepalived last read them
  findings.push(...own.load, ...theirs.flatMap((t) => t.load));
  // live marks against ferm.conf
  findings.push(...own.marks, ...theirs.flatMap((t) => t.marks));
  // health-check digests, fetched like genhash
  if (opts.digests ?? config.audit.digests) {
    const before = findings.length;
    for (const vs of model.virtualServers) {
      for (const rs of vs.realServers) {
        for (const c of rs.checkers.filter((x) => x.type === 'HTTP_GET')) {
          const port = c.connectPort?.value ?? rs.port ?? 80;
          for (const u of c.urls) {
            if (!u.digest || !u.path) continue;
            const at = { file: u.digest.pos.file, line: u.digest.pos.line };
            try {
              const got = await fetchDigest(
                c.connectIp?.value ?? rs.address,
                port,
                u.path.value,
                (c.virtualhost ?? vs.virtualhost)?.value,
              );
              findings.push(
                got === u.digest.value.toLowerCase()
                  ? {
                      check: 'digest',
                      severity: 'ok',
                      host: rs.address,
                      code: 'DIGEST_OK',
                      ...at,
                      message: `${rs.address}:${port}${u.path.value} matches its digest`,
                    }
                  : {
                      check: 'digest',
                      severity: 'critical',
                      host: rs.address,
                      code: 'DIGEST_MISMATCH',
                      ...at,
                      message: `${rs.address}:${port}${u.path.value} answers with MD5 ${got}, the configuration expects ${u.digest.value}: keepalived takes this real server out`,
                    },
              );
            } catch (e) {
              findings.push({
                check: 'digest',
                severity: 'warning',
                host: rs.address,
                code: 'DIGEST_UNREACHABLE',
                ...at,
                message: `${rs.address}:${port}${u.path.value}: ${(e as Error).message}`,
              });
            }
          }
        }
      }
    }
    checks.digest = `${findings.length - before} HTTP_GET url(s) fetched from their real servers`;
  }
  mark('done');
  return {
    cluster: config.cluster,
    time: new Date().toISOString(),
    status: worstOf(findings),
    exitCode: exitCodeOf(findings),
    hosts,
    findings,
    checks,
    timings,
  };
}

// --- reporting ---------------------------------------------------------------------------------

const MARK: Record<Severity, string> = { ok: 'ok  ', warning: 'WARN', critical: 'CRIT', unknown: 'UNKN' };

export function formatAuditText(r: AuditReport, verbose = false): string {
  const out = [
    `lvssync audit of ${r.cluster} (${r.hosts.join(', ')}) at ${r.time}: ${r.status.toUpperCase()}`,
  ];
  const shown = r.findings.filter((f) => verbose || f.severity !== 'ok');
  for (const check of [
    'peer',
    'drift',
    'vip',
    'ipvs',
    'marks',
    'pending-reload',
    'services',
    'digest',
  ] as const) {
    const fs = shown.filter((f) => f.check === check);
    const all = r.findings.filter((f) => f.check === check);
    const covered = r.checks?.[check];
    if (all.length === 0 && covered === undefined) continue;
    const worst = worstOf(all);
    out.push(
      '',
      `${check}: ${worst === 'ok' ? 'ok' : `${all.filter((f) => f.severity !== 'ok').length} finding(s)`}${covered ? ` (${covered})` : ''}`,
    );
    for (const f of fs) {
      out.push(
        `  ${MARK[f.severity]} ${f.host}: ${f.message}${f.file ? ` (${f.file}${f.line ? `:${f.line}` : ''})` : ''} [${f.code}]`,
      );
      if (f.diff)
        out.push(
          ...f.diff
            .trimEnd()
            .split('\n')
            .map((l) => `       ${l}`),
        );
    }
  }
  return `${out.join('\n')}\n`;
}

export function formatAuditMarkdown(r: AuditReport): string {
  const out = [
    `# lvssync audit: ${r.cluster} is ${r.status.toUpperCase()}`,
    '',
    `${r.time}, directors ${r.hosts.join(', ')}.`,
    '',
  ];
  const covered = Object.entries(r.checks ?? {});
  if (covered.length) {
    out.push('| check | result | covered |', '|---|---|---|');
    for (const [check, what] of covered)
      out.push(`| ${check} | ${worstOf(r.findings.filter((f) => f.check === check))} | ${what} |`);
    out.push('');
  }
  const rows = r.findings.filter((f) => f.severity !== 'ok');
  if (rows.length === 0) out.push('Everything checked is as configured.');
  else {
    out.push('| severity | check | host | where | finding |', '|---|---|---|---|---|');
    for (const f of rows)
      out.push(
        `| ${f.severity} | ${f.check} | ${f.host} | ${f.file ? `${f.file}${f.line ? `:${f.line}` : ''}` : ''} | ${f.message.replace(/\|/g, '\\|')} |`,
      );
    for (const f of rows.filter((x) => x.diff))
      out.push('', `## ${f.host}: ${f.file}`, '', '```diff', f.diff!.trimEnd(), '```');
  }
  return `${out.join('\n')}\n`;
}

export function formatAuditJson(r: AuditReport): string {
  return `${JSON.stringify(r)}\n`;
}

/** node_exporter textfile: one gauge per check (0 ok, 1 warning, 2 critical, 3 unknown). */
export function formatPrometheus(r: AuditReport): string {
  const value: Record<Severity, number> = { ok: 0, warning: 1, critical: 2, unknown: 3 };
  const lines = [
    '# HELP lvssync_audit_status Worst finding of the last lvssync audit per check: 0 ok, 1 warning, 2 critical, 3 unknown.',
    '# TYPE lvssync_audit_status gauge',
  ];
  for (const check of ['peer', 'drift', 'vip', 'ipvs', 'marks', 'pending-reload', 'services', 'digest']) {
    const fs = r.findings.filter((f) => f.check === check);
    // a check that did not run (digests not asked for) is left out rather than reported ok
    if (fs.length === 0 && r.checks !== undefined && r.checks[check as Finding['check']] === undefined)
      continue;
    lines.push(`lvssync_audit_status{cluster="${r.cluster}",check="${check}"} ${value[worstOf(fs)]}`);
  }
  lines.push(
    '# HELP lvssync_audit_findings Findings of the last audit by severity.',
    '# TYPE lvssync_audit_findings gauge',
    ...(['warning', 'critical', 'unknown'] as const).map(
      (s) =>
        `lvssync_audit_findings{cluster="${r.cluster}",severity="${s}"} ${r.findings.filter((f) => f.severity === s).length}`,
    ),
    '# HELP lvssync_audit_last_run_timestamp_seconds When the last audit ran.',
    '# TYPE lvssync_audit_last_run_timestamp_seconds gauge',
    `lvssync_audit_last_run_timestamp_seconds{cluster="${r.cluster}"} ${Math.round(Date.parse(r.time) / 1000)}`,
  );
  return `${lines.join('\n')}\n`;
}

/** Keeps the report (JSON and text) with retention, writes the textfile, runs the report command. */
export async function storeReport(config: Config, r: AuditReport): Promise<string> {
  const dir = path.join(config.stateDir, 'reports');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const base = `audit-${r.time.replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}`;
  writeFileSync(path.join(dir, `${base}.json`), formatAuditJson(r));
  writeFileSync(path.join(dir, `${base}.txt`), formatAuditText(r));
  const all = readdirSync(dir)
    .filter((f) => /^audit-.*\.json$/.test(f))
    .sort();
  for (const old of all.slice(0, Math.max(0, all.length - config.audit.keep))) {
    rmSync(path.join(dir, old), { force: true });
    rmSync(path.join(dir, old.replace(/\.json$/, '.txt')), { force: true });
  }
  if (config.audit.prometheus) {
    const tmp = `${config.audit.prometheus}.${process.pid}.tmp`;
    writeFileSync(tmp, formatPrometheus(r));
    renameSync(tmp, config.audit.prometheus);
  }
  if (config.audit.command?.length) {
    const res = await execTool(config.audit.command, { input: formatAuditText(r), timeoutMs: 60_000 });
    if (res.code !== 0)
      throw new LvssyncError(
        'E_TOOL_FAILED',
        `audit.command ${config.audit.command.join(' ')} exited ${res.code}: ${res.stderr.trim()}`,
      );
  }
  return path.join(dir, `${base}.json`);
}

export function latestReport(config: Config): AuditReport | undefined {
  const dir = path.join(config.stateDir, 'reports');
  let last: string | undefined;
  try {
    last = readdirSync(dir)
      .filter((f) => /^audit-.*\.json$/.test(f))
      .sort()
      .at(-1);
  } catch {}
  return last ? readJsonFile<AuditReport>(path.join(dir, last)) : undefined;
}
