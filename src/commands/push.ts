// `lvssync push`, `lvssync diff` and `lvssync rollback`: composition roots over shell/push.ts.
// Human output: the plan (files, unified diffs with secrets redacted, per-host rewrites, reload
// order), progress, what was done. --json: one object. Exit codes: see errors.ts / README.

import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { createInterface } from 'node:readline/promises';
import { DAEMON_SOCKET, type DaemonReply } from '../core/daemon-socket.js';
import { diagnosticJson } from '../core/diagnostic.js';
import { formatDiagnostics } from '../core/format.js';
import { summarizePlan } from '../core/plan.js';
import type { HistoryEntry } from '../core/protocol.js';
import { diffRedacted } from '../core/redact.js';
import { EXIT, exitOfCode, LvssyncError } from '../errors.js';
import type { Io } from '../io.js';
import { askDaemon } from '../shell/daemon-socket.js';
import { loadConfig, requireSelfNode } from '../shell/load-config.js';
import { withLock } from '../shell/lock.js';
import { PeerSession, peersOf } from '../shell/peer.js';
import { type PushReport, type RollbackReport, runPush, runRollback } from '../shell/push.js';
import { Workspace } from '../shell/workspace.js';

export interface PushCliOptions {
  config?: string;
  node?: string;
  peer?: string;
  dryRun?: boolean;
  yes?: boolean;
  force?: boolean;
  json?: boolean;
  external?: boolean;
}

/**
 * How long a y/N question waits (LVSSYNC_PROMPT_SECONDS, default 120): the push holds lvssync's lock
 * meanwhile, and the daemon waits for it.
 */
const answerMs = () => {
  const s = Number(process.env.LVSSYNC_PROMPT_SECONDS);
  return Number.isFinite(s) && s > 0 ? s * 1000 : 120_000;
};

/** A y/N question on the terminal; no answer in time is a no. */
async function ask(io: Io, question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  const ac = new AbortController();
  const ANSWER_MS = answerMs();
  const timer = setTimeout(() => ac.abort(), ANSWER_MS);
  try {
    const answer = await rl.question(question, { signal: ac.signal });
    return /^y(es)?$/i.test(answer.trim());
  } catch {
    io.stdout(`\nno answer within ${ANSWER_MS / 1000} s: taken as no (the lock is released)\n`);
    return false;
  } finally {
    clearTimeout(timer);
    rl.close();
  }
}

export const RESULT_EXIT: Record<PushReport['result'], number> = {
  'in-sync': EXIT.OK,
  'dry-run': EXIT.OK,
  declined: EXIT.OK,
  // the set changed again before a commit or a reload: not everything was done, the next push does it
  superseded: EXIT.PUSH_FAILED,
  pushed: EXIT.OK,
  reloaded: EXIT.OK,
  'service-down': EXIT.PUSH_FAILED,
  'invalid-here': EXIT.FINDINGS,
  'invalid-on-peer': EXIT.PUSH_FAILED,
  conflict: EXIT.CONFLICT,
  'rolled-back': EXIT.PUSH_FAILED,
  unreachable: EXIT.PEER,
  refused: EXIT.PEER,
  busy: EXIT.LOCKED,
  'link-lost': EXIT.PUSH_FAILED,
  'peer-cannot-write': EXIT.PUSH_FAILED,
  // anything else before a commit: the error's own status (a missing tool, a bug)
  failed: EXIT.PUSH_FAILED,
  interrupted: EXIT.PUSH_FAILED,
  'primary-failed': EXIT.PUSH_FAILED,
  // done where it could be; a director that could not be asked is behind
  partial: EXIT.PEER,
  'not-primary': EXIT.CONFLICT,
};

/** Who the push went to, in a sentence: "lvs2", "lvs2, lvs3". */
const toWhom = (peers: readonly { node: string }[]) => peers.map((p) => p.node).join(', ');

/** A push the daemon did for `lvssync push`: its steps and outcome, and the exit status. */
function printDaemonPush(reply: DaemonReply, self: string, io: Io): number {
  io.stderr('lvssync: the daemon pushes on this director: it pushed now\n');
  if (!reply.ok) {
    io.stderr(`lvssync: ${reply.error.message}\n`);
    return exitOfCode(reply.error.code);
  }
  const s = reply.summary;
  if (s.steps.length) io.stdout(`${formatSteps(s)}\n`);
  if (s.result === 'invalid-here' || s.result === 'invalid-on-peer')
    io.stdout(`${formatDiagnostics(s.errors, () => undefined)}\n`);
  for (const p of s.peers) if (p.unreachable) io.stdout(`${p.node}: NOT REACHED: ${p.unreachable}\n`);
  if (s.result === 'pushed' || s.result === 'partial')
    for (const p of s.peers.filter((x) => !x.unreachable))
      io.stdout(
        p.changes.length
          ? `pushed to ${p.node}: ${p.changes.join(', ')}; backup ${p.version ?? '-'}\n`
          : `${p.node}: in sync\n`,
      );
  if (s.result === 'pushed' || (s.result === 'partial' && s.order))
    io.stdout(`reloaded in order ${s.order?.join(' -> ') ?? '(no reload)'}\n`);
  else if (s.result === 'in-sync' && !s.error)
    io.stdout(
      `${toWhom(s.peers)} ${s.peers.length > 1 ? 'are' : 'is'} in sync with ${self}: nothing to push\n`,
    );
  else if (s.result !== 'partial') io.stdout(`${s.result}${s.error ? `: ${s.error.message}` : ''}\n`);
  return s.result === 'failed' && s.error ? exitOfCode(s.error.code) : RESULT_EXIT[s.result];
}

/** The exit status of a push: its result's, or for 'failed' its error's own (a missing tool, a bug). */
function exitOf(report: PushReport): number {
  return report.result === 'failed' && report.error ? report.error.exitCode : RESULT_EXIT[report.result];
}

/** The plan for each director: files, unified diffs (secrets redacted), per-host rewrites, conflicts. */
export function formatPlan(report: PushReport, self: string): string {
  const out: string[] = [];
  const salt = randomBytes(8).toString('hex');
  for (const node of report.peers) {
    if (node.unreachable) {
      out.push(`${node.node}: NOT REACHED, no plan: ${node.unreachable.message}`);
      continue;
    }
    const plan = node.plan;
    if (!plan) continue;
    out.push(`Plan for ${node.node}: ${summarizePlan(plan)}`);
    for (const r of node.rewrites) out.push(`  per-host: ${r.file}:${r.line} ${r.what}`);
    for (const c of plan.changes) {
      const mark = { add: '+', update: '~', delete: '-', chmod: 'm' }[c.kind];
      const extra = c.kind === 'chmod' ? ` (mode ${c.before.toString(8)} -> ${c.mode.toString(8)})` : '';
      out.push(`  ${mark} ${c.path}${extra}`);
    }
    const conflicted = new Set(plan.conflicts.map((k) => k.path));
    for (const c of plan.changes) {
      if (c.kind === 'chmod') continue;
      const before = node.before.get(c.path) ?? null;
      const after = c.kind === 'delete' ? null : c.text;
      const base = node.base.get(c.path);
      if (conflicted.has(c.path) && base !== undefined) {
        // three-way: what each side did since lvssync last synced the file there
        const synced = `last synced to ${node.node}`;
        out.push(
          `  CONFLICT ${c.path}: ${before === null ? 'deleted' : 'edited'} on ${node.node} since lvssync last synced it there; both sides changed it:`,
          diffRedacted(c.path, base, before, { before: synced, after: `${node.node} now` }, salt).trimEnd(),
          diffRedacted(
            c.path,
            base,
            after,
            { before: synced, after: `${self} (rendered for ${node.node})` },
            salt,
          ).trimEnd(),
          `  keep ${node.node}'s: lvssync take ${node.node} ${c.path}; keep ${self}'s: lvssync push --force (${node.node}'s is kept in its history)`,
        );
        continue;
      }
      out.push(
        diffRedacted(
          c.path,
          before,
          after,
          { before: node.node, after: `${self} (rendered)` },
          salt,
        ).trimEnd(),
      );
    }
    for (const k of plan.conflicts) {
      if (node.base.has(k.path)) continue;
      out.push(
        `  CONFLICT ${k.path}: ${k.peer === null ? 'deleted' : 'changed'} on ${node.node} since lvssync wrote it (written ${k.written.slice(0, 12)}, now ${k.peer?.slice(0, 12) ?? 'absent'}, primary wants ${k.wanted?.slice(0, 12) ?? 'it deleted'}); keep ${node.node}'s: lvssync take ${node.node} ${k.path}; keep ${self}'s: lvssync push --force`,
      );
    }
  }
  return out.join('\n');
}

function formatSteps(report: Pick<PushReport, 'steps'>): string {
  return report.steps
    .map(
      (s) =>
        `  ${s.ok ? 'ok  ' : 'FAIL'} ${s.host}: ${s.step} (${Math.round(s.durationMs)} ms)${s.detail && !s.ok ? `\n       ${s.detail.split('\n').join('\n       ')}` : ''}`,
    )
    .join('\n');
}

function jsonReport(report: PushReport): unknown {
  const nodes = report.peers.map((p) => ({
    node: p.node,
    ...(p.unreachable ? { unreachable: { code: p.unreachable.code, message: p.unreachable.message } } : {}),
    changes: p.plan?.changes.map((c) => ({ kind: c.kind, path: c.path })) ?? [],
    conflicts: p.plan?.conflicts ?? [],
    rewrites: p.rewrites,
    ...(p.version ? { version: p.version } : {}),
    ...(p.recovered ? { recovered: p.recovered } : {}),
    // where the time went on that director (its agent's validation)
    ...(p.peerTimings ? { timings: p.peerTimings } : {}),
  }));
  return {
    result: report.result,
    ok: RESULT_EXIT[report.result] === EXIT.OK,
    peers: nodes,
    // every director's changes in one list, each with its node
    changes: nodes.flatMap((n) => n.changes.map((c) => ({ ...c, node: n.node }))),
    order: report.order,
    steps: report.steps,
    timings: report.timings,
    ...(report.local?.timings ? { checkTimings: report.local.timings } : {}),
    ...(report.superseded ? { superseded: report.superseded } : {}),
    ...(report.servicesDown ? { servicesDown: report.servicesDown } : {}),
    ...(report.pendingReloads ? { pendingReloads: report.pendingReloads } : {}),
    diagnostics: report.diagnostics.map(diagnosticJson),
    ...(report.error ? { error: { code: report.error.code, message: report.error.message } } : {}),
  };
}

export async function runPushCommand(opts: PushCliOptions, io: Io, mode: 'push' | 'diff'): Promise<number> {
  const { config, path: configPath } = await loadConfig(opts.config);
  const self = requireSelfNode(config, opts.node);
  const dryRun = mode === 'diff' || opts.dryRun === true;
  const interactive = io.isTTY && !opts.yes && !opts.json && !dryRun;
  // The daemon pushes every valid edit on this director anyway: a plain push asks it to push now
  // (its worker holds the session and the caches); --dry-run, --force, --peer, --no-external and
  // --json push here.
  if (mode === 'push' && !dryRun && !opts.force && !opts.peer && !opts.json && opts.external !== false) {
    const reply = await askDaemon(path.join(config.stateDir, DAEMON_SOCKET));
    if (reply) return printDaemonPush(reply, self, io);
  }
  const workspace = Workspace.kept(config.stateDir);
  const report = await runPush({
    config,
    self,
    workspace,
    ...(configPath ? { configPath } : {}),
    ...(opts.peer ? { peer: opts.peer } : {}),
    dryRun,
    force: opts.force === true,
    external: opts.external !== false,
    progress: opts.json ? undefined : (m) => io.stderr(`lvssync: ${m}\n`),
    ...(interactive
      ? {
          confirm: async (r: PushReport) => {
            io.stdout(`${formatPlan(r, self)}\n`);
            return ask(io, `Push to ${toWhom(r.peers.filter((p) => !p.unreachable))} and reload? [y/N] `);
          },
        }
      : {}),
  });
  workspace.saveFindings();
  if (opts.json) {
    io.stdout(`${JSON.stringify(jsonReport(report))}\n`);
    return exitOf(report);
  }
  const sourceOf = (p: string) =>
    report.local?.snapshot.files.get(p)?.text ??
    report.peers.find((n) => n.rendered?.has(p))?.rendered?.get(p);
  const reached = report.peers.filter((p) => !p.unreachable);
  // (when none could be asked, the error below says it once)
  for (const p of report.peers)
    if (p.unreachable && p.unreachable !== report.error)
      io.stderr(`lvssync: ${p.node} could not be asked: ${p.unreachable.message}\n`);
  // a dry run that could not ask every director is still a dry run: its plan, and who was not asked
  const shown = dryRun && report.result === 'partial' ? 'dry-run' : report.result;
  switch (shown) {
    case 'invalid-here':
      io.stdout(
        `${formatDiagnostics(report.diagnostics, sourceOf)}\n\nnot pushed: the set on ${self} has errors; ${
          report.timings.uploaded === undefined
            ? 'nothing left this host'
            : `keepalived -t found them while ${toWhom(reached)} validated the staged copy, which was thrown away: nothing changed there`
        }\n`,
      );
      break;
    case 'invalid-on-peer':
      io.stdout(
        `${formatPlan(report, self)}\n\n${formatDiagnostics(report.diagnostics, sourceOf)}\n\n${formatSteps(report)}\nnot pushed: ${report.error?.message}\n`,
      );
      break;
    case 'in-sync': {
      if (report.error) break;
      const are = `${toWhom(reached)} ${reached.length > 1 ? 'are' : 'is'} in sync with ${self}`;
      io.stdout(
        report.pendingReloads?.length
          ? `${are}; not loaded yet: ${report.pendingReloads.map((x) => `${x.services.join(', ')} on ${x.host}`).join('; ')}\n`
          : `${are}: nothing to push\n`,
      );
      break;
    }
    case 'dry-run':
    case 'conflict':
      io.stdout(`${formatPlan(report, self)}\n`);
      if (shown === 'dry-run')
        io.stdout(
          `dry run: nothing was changed (${mode === 'diff' ? 'lvssync push applies it' : 'run without --dry-run to apply'})\n`,
        );
      break;
    case 'declined':
      io.stdout('not pushed (declined)\n');
      break;
    default:
      if (!interactive && reached.some((p) => p.plan)) io.stdout(`${formatPlan(report, self)}\n`);
      if (report.steps.length) io.stdout(`${formatSteps(report)}\n`);
      if (report.result === 'primary-failed' && report.diagnostics.some((d) => d.severity === 'error'))
        io.stdout(`${formatDiagnostics(report.diagnostics, sourceOf)}\n`);
      if (report.result === 'interrupted')
        io.stdout(
          `${toWhom(reached.filter((p) => p.version))} had committed the set when the push failed; each agent rolls it back when its session ends, and the next push (or lvssync status) reports that\n`,
        );
      if (
        report.result === 'failed' ||
        report.result === 'link-lost' ||
        report.result === 'peer-cannot-write'
      )
        io.stdout(`nothing was committed on ${toWhom(reached) || 'any director'}\n`);
      if (report.result === 'reloaded')
        io.stdout(
          `files in sync; reloaded what had not loaded them: ${(report.pendingReloads ?? []).map((x) => `${x.services.join(', ')} on ${x.host}`).join('; ')}\n`,
        );
      if (report.result === 'pushed' || report.result === 'partial') {
        for (const p of reached)
          io.stdout(
            p.plan?.changes.length
              ? `pushed to ${p.node}: ${summarizePlan(p.plan)}; backup ${p.version ?? '-'}\n`
              : `${p.node}: in sync\n`,
          );
        if (report.order) io.stdout(`reloaded in order ${report.order.join(' -> ')}\n`);
        for (const p of report.peers.filter((x) => x.unreachable))
          io.stdout(
            `${p.node}: NOT REACHED, still on its previous set; the next push brings it up to date (the daemon retries by itself)\n`,
          );
      }
  }
  if (report.error) {
    io.stderr(`lvssync: ${report.error.message}\n`);
  }
  return exitOf(report);
}

export interface RollbackOptions {
  config?: string;
  node?: string;
  peer?: string;
  to?: string;
  list?: boolean;
  json?: boolean;
  /** Do not ask on a terminal. */
  yes?: boolean;
}

/**
 * Restores a previous version of the other directors' files, then reloads them: by default what
 * the last push changed (the newest commit among them, and on each director the version of that
 * same push), or --to VERSION on one director (--peer, needed when there are several).
 */
export async function runRollbackCommand(opts: RollbackOptions, io: Io): Promise<number> {
  const { config } = await loadConfig(opts.config);
  const self = requireSelfNode(config, opts.node);
  const targets = peersOf(config, self, opts.peer);
  if (opts.to && targets.length > 1)
    throw new LvssyncError(
      'E_USAGE',
      `--to names a version of one director: add --peer (${targets.map((t) => t.name).join(', ')})`,
    );
  const release = await withLock(config.stateDir, 'rollback', 2000);
  try {
    const histories = await Promise.all(
      targets.map(async (t) => {
        const session = await PeerSession.open(config, t, self);
        try {
          return { target: t, versions: (await session.request({ op: 'history' })).versions };
        } finally {
          session.close();
        }
      }),
    );
    if (opts.list) {
      if (opts.json)
        io.stdout(
          `${JSON.stringify({ peers: histories.map((h) => ({ node: h.target.name, versions: h.versions })) })}\n`,
        );
      else
        for (const h of histories) {
          if (targets.length > 1) io.stdout(`${h.target.name}:\n`);
          for (const v of h.versions)
            io.stdout(`${v.version}  ${v.reason.padEnd(7)} ${v.time}  ${v.paths.length} file(s)\n`);
        }
      return EXIT.OK;
    }
    // the last push: its transaction is the newest commit on any director
    const last = histories
      .flatMap((h) => h.versions.filter((v) => v.reason === 'commit'))
      .sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0))
      .at(-1);
    const reports: RollbackReport[] = [];
    for (const h of histories) {
      const name = h.target.name;
      if (!opts.to && last && !h.versions.some((v) => v.reason === 'commit' && v.txid === last.txid)) {
        io.stderr(`lvssync: ${name} was not changed by the last push (${last.txid}): left as it is\n`);
        continue;
      }
      reports.push(
        await runRollback({
          config,
          self,
          peer: name,
          ...(opts.to ? { to: opts.to } : last ? { txid: last.txid } : {}),
          ...(opts.json ? {} : { progress: (m: string) => io.stderr(`lvssync: ${m}\n`) }),
          ...(io.isTTY && !opts.yes && !opts.json
            ? {
                // on a terminal, say what will change on the running director and ask, as push does
                confirm: async (v: HistoryEntry) => {
                  io.stdout(
                    `${name}: restore version ${v.version} (${v.reason}, ${v.time}): ${v.paths.length} file(s)\n${v.paths.map((p) => `  ${p}`).join('\n')}\nthen validate it there and reload ${config.services.map((x) => x.name).join(', ')} on ${name}\n`,
                  );
                  return ask(io, `Roll ${name} back? [y/N] `);
                },
              }
            : {}),
        }),
      );
      // a director that could not be rolled back stops the others: the operator looks first
      if (reports.at(-1)!.error) break;
    }
    if (!reports.length) throw new LvssyncError('E_USAGE', `no director has a previous version to restore`);
    const failed = reports.find((r) => r.error);
    const result =
      failed?.result ?? (reports.every((r) => r.result === 'declined') ? 'declined' : 'rolled-back');
    if (opts.json) {
      io.stdout(
        `${JSON.stringify({
          ok: result === 'rolled-back' || result === 'declined',
          result,
          peers: reports.map((r) => ({
            node: r.peer,
            result: r.result,
            version: r.version,
            backup: r.backup,
            paths: r.paths,
            ...(r.error ? { error: { code: r.error.code, message: r.error.message } } : {}),
          })),
          steps: reports.flatMap((r) => r.steps),
          diagnostics: reports.flatMap((r) => r.diagnostics.map(diagnosticJson)),
          ...(failed?.error ? { error: { code: failed.error.code, message: failed.error.message } } : {}),
        })}\n`,
      );
    } else {
      for (const report of reports) {
        if (report.result === 'declined') io.stdout(`${report.peer}: not rolled back (declined)\n`);
        if (report.diagnostics.length)
          io.stdout(`${formatDiagnostics(report.diagnostics, () => undefined)}\n`);
        if (report.steps.length) io.stdout(`${formatSteps(report)}\n`);
        if (report.result === 'rolled-back')
          io.stdout(
            `${report.peer}: rolled back to version ${report.version} (${report.paths.length} file(s)); what it replaced is kept as ${report.backup}\n`,
          );
      }
    }
    if (failed?.error) {
      if (!opts.json) io.stderr(`lvssync: ${failed.error.message}\n`);
      return failed.error.exitCode;
    }
    return EXIT.OK;
  } finally {
    release();
  }
}
