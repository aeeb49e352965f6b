// `lvssync agent`: the peer's side of a push, spoken over stdin/stdout of one SSH channel (see
// core/protocol.ts). Meant to be an authorized_keys forced command:
//   command="lvssync agent --config /etc/lvssync/lvssync.yaml",restrict ssh-ed25519 AAAA... lvssync@lvs1
// It enforces its own managed paths (Store), validates staged sets on this host with the real tools,
// and rolls a push back by itself when the primary goes away before finishing it.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Boundary } from '../core/boundary.js';
import { AGENT_HEARTBEAT_MS, type Config } from '../core/config.js';
import type { RemoteFile } from '../core/plan.js';
import { compareClaims, describeClaim } from '../core/primary.js';
import {
  LineSplitter,
  MAX_FRAME,
  manifestDelta,
  PROTOCOL_VERSION,
  parseRequest,
  type ReloadResult,
  type Request,
} from '../core/protocol.js';
import { describeChangedDuring } from '../core/service-set.js';
import type { Snapshot } from '../core/snapshot.js';
import { LvssyncError } from '../errors.js';
import type { Io } from '../io.js';
import type { DirectorCheck } from '../shell/check-director.js';
import { gatherHere } from '../shell/gather.js';
import { loadConfig, selfNode } from '../shell/load-config.js';
import { withLock } from '../shell/lock.js';
import { adoptClaim, readClaim } from '../shell/primary.js';
import { liveStart } from '../shell/proc.js';
import {
  forgetLoaded,
  guardFor,
  type Revalidation,
  readLoaded,
  reloadTiming,
  reloadValidated,
} from '../shell/reload.js';
import { readAddresses, readServiceStates, reloadService, verifyService } from '../shell/services.js';
import { Store } from '../shell/store.js';
import type { Workspace } from '../shell/workspace.js';

export interface AgentOptions {
  config?: string;
  node?: string;
  guard?: string;
  guardSeconds?: string;
  /** A committed transaction (--watch-tx) that this process rolls back if its agent (--watch-agent) dies. */
  watchTx?: string;
  watchAgent?: string;
}

export async function runAgent(opts: AgentOptions, io: Io): Promise<number> {
  const { config, path: configPath } = await loadConfig(opts.config);
  const node = selfNode(config, opts.node) ?? hostname();
  const store = new Store(config);
  if (opts.watchTx && opts.watchAgent)
    return runWatcher(config, store, opts.watchTx, Number(opts.watchAgent));
  if (opts.guard)
    return runGuard(config, store, opts.guard, Number(opts.guardSeconds ?? config.push.fermGuardSeconds));
  const agent = new Agent(config, configPath, node, store, io);
  return agent.serve();
}

/** How long a transaction's confirmation record is kept: well past any ferm guard's wait. */
const CONFIRMATION_KEEP_MS = (config: Config) => Math.max(3600, 4 * config.push.fermGuardSeconds) * 1000;

class Agent {
  private tx: string | undefined;
  private finished = true;
  private release: (() => void) | undefined;

  constructor(
    private readonly config: Config,
    private readonly configPath: string | undefined,
    private readonly node: string,
    private readonly store: Store,
    private readonly io: Io,
  ) {}

  private gone = false;
  /** The director on the other end of this session (its hello). */
  private requester: string | undefined;
  /**
   * Kept for as long as the primary keeps this session open (the watch daemon keeps one across
   * pushes): parsed files, the last check and the real validators' verdicts, so a staged set that
   * differs by one file is parsed and judged for that file's sake only. Made with the first
   * validation (lvssync's checker is loaded only when a push needs it).
   */
  private workspace: Workspace | undefined;
  /** The staged set as the last validation read it, per staging root (read again in place). */
  private staged: { root: string; snapshot: Snapshot; complete: boolean } | undefined;
  /**
   * The staged copy being read and checked ahead of the validation (begin starts it): `read` once the
   * files are read (puts and a validation may come in while they are), `checked` once it is all over.
   */
  private readAhead: { read: Promise<unknown>; checked: Promise<unknown> } | undefined;
  /** The check of the open transaction's staged set, once it validated: what a reload may load. */
  private validated: { txid: string; check: DirectorCheck } | undefined;
  /** Transactions whose ferm guard runs (one each). */
  private readonly guarded = new Set<string>();
  /** The last manifest sent in this session, which the next one may be told relative to. */
  private sentManifest: { id: number; files: Map<string, RemoteFile> } | undefined;

  /** A push is over (finished or aborted): the next one may come from this session or another. */
  private endTx(): void {
    this.finished = true;
    this.validated = undefined;
    this.release?.();
    this.release = undefined;
  }

  private send(obj: unknown): void {
    // After the primary went away a write fails (EPIPE): the answer has nobody to go to.
    if (this.gone) return;
    try {
      this.io.stdout(`${JSON.stringify(obj)}\n`);
    } catch {
      this.gone = true;
    }
  }

  async serve(): Promise<number> {
    const drained = () =>
      process.stdout.writableNeedDrain && !this.gone
        ? new Promise<void>((resolve) => {
            const done = () => {
              process.stdout.off('drain', done);
              process.stdout.off('close', done);
              process.stdout.off('error', done);
              resolve();
            };
            process.stdout.on('drain', done);
            process.stdout.on('close', done);
            process.stdout.on('error', done);
          })
        : Promise.resolve();
    const splitter = new LineSplitter(MAX_FRAME);
    const queue: string[] = [];
    let busy = false;
    let ended = false;
    return new Promise<number>((resolve) => {
      const pump = async () => {
        if (busy) return;
        busy = true;
        // while it works, the agent says it is alive: the primary gives up on one that falls silent
        // (stopped, stuck) after ssh.agentTimeoutMs, not never
        const alive = setInterval(() => this.send({ alive: true }), AGENT_HEARTBEAT_MS);
        try {
          let turn = performance.now();
          while (queue.length > 0) {
            await this.handle(queue.shift()!);
            // An answer larger than the pipe (a manifest) leaves only once the event loop runs: let it
            // go before the next request, which may keep this thread busy (staging a tree).
            await drained();
            // a long run of quick requests (20,000 puts) gives the event loop a turn now and then:
            // the alive line, the end of the input and SIGHUP are heard meanwhile
            if (performance.now() - turn > 250) {
              await new Promise((r) => setImmediate(r));
              turn = performance.now();
            }
          }
        } finally {
          clearInterval(alive);
        }
        busy = false;
        if (ended) await this.close().then(() => resolve(0));
      };
      const lost = () => {
        this.gone = true;
        ended = true;
        void pump();
      };
      process.stdout.on('error', lost);
      process.stdin.on('error', lost);
      process.stdin.setEncoding('utf8');
      process.stdin.on('data', (chunk: string) => {
        try {
          queue.push(...splitter.push(chunk));
        } catch (e) {
          // a frame past the limit: said once, then the session ends (an open push is rolled back)
          this.send({ id: 0, ok: false, error: { code: 'E_PROTOCOL', message: (e as Error).message } });
          process.stdin.pause();
          process.stdin.removeAllListeners('data');
          lost();
          return;
        }
        void pump();
      });
      process.stdin.on('end', () => {
        ended = true;
        void pump();
      });
      // Not SIGPIPE: Node ignores it, and a child process's closed pipe would raise it here too.
      process.on('SIGHUP', lost);
    });
  }

  /** The primary went away: a transaction it did not finish is rolled back. */
  private async close(): Promise<void> {
    if (this.tx && !this.finished) {
      await this.abort(this.tx, true).catch((e) => this.io.stderr(`lvssync agent: rollback failed: ${e}\n`));
    }
    // The staging mirror stays for the next session (the Store keeps its map with it).
    this.release?.();
    this.release = undefined;
  }

  private async handle(line: string): Promise<void> {
    const parsed = parseRequest(line);
    const id = parsed.id;
    if ('error' in parsed) {
      this.send({ id, ok: false, error: { code: 'E_PROTOCOL', message: parsed.error } });
      return;
    }
    try {
      const result = await this.dispatch(parsed.req);
      this.send({ id, ok: true, result });
    } catch (e) {
      const code = e instanceof LvssyncError ? e.code : (storageCode(e) ?? 'E_INTERNAL');
      this.send({ id, ok: false, error: { code, message: (e as Error).message } });
    }
  }

  private async dispatch(req: Request): Promise<unknown> {
    switch (req.op) {
      case 'hello': {
        if (req.version !== PROTOCOL_VERSION) {
          throw new LvssyncError(
            'E_PROTOCOL',
            `protocol version ${req.version} not supported (agent speaks ${PROTOCOL_VERSION})`,
          );
        }
        const recovered = await this.recover();
        this.requester = req.primary;
        // whoever learnt of the later handover tells the other (core/primary.ts)
        let claim = readClaim(this.config);
        if (req.leader !== undefined && req.epoch !== undefined && this.config.nodes[req.leader]) {
          const theirs = { primary: req.leader, epoch: req.epoch };
          if (compareClaims(claim, theirs) === 'theirs-newer') {
            const changed = adoptClaim(this.config, this.configPath, theirs, req.primary);
            if (changed) this.io.stderr(`lvssync agent: ${changed}\n`);
            claim = theirs;
          }
        }
        return {
          version: PROTOCOL_VERSION,
          node: this.node,
          hostname: hostname(),
          pid: process.pid,
          managed: this.store.managed(),
          primary: claim.primary,
          epoch: claim.epoch,
          ...(recovered ? { recovered } : {}),
        };
      }
      case 'manifest': {
        // A session that has the previous manifest gets only what changed since (1,000 entries
        // for one edited file otherwise).
        const { files, gone } = this.store.manifestWithTimes();
        const prev = this.sentManifest;
        this.sentManifest = { id: (prev?.id ?? 0) + 1, files: new Map(files.map((f) => [f.path, f])) };
        const extra = gone.length ? { gone } : {};
        if (prev && req.since === prev.id)
          return { id: this.sentManifest.id, base: prev.id, ...manifestDelta(prev.files, files), ...extra };
        return { id: this.sentManifest.id, files, ...extra };
      }
      case 'read':
        return this.store.read(req.path);
      case 'base':
        return this.store.base(req.path);
      case 'set-primary': {
        if (!this.config.nodes[req.primary])
          throw new LvssyncError(
            'E_PROTOCOL',
            `${req.primary} is not one of this director's nodes (${Object.keys(this.config.nodes).join(', ')})`,
          );
        const mine = readClaim(this.config);
        const theirs = { primary: req.primary, epoch: req.epoch };
        const order = compareClaims(mine, theirs);
        if (order === 'mine-newer' || order === 'conflict')
          throw new LvssyncError(
            'E_NOT_PRIMARY',
            `${this.node} already follows ${describeClaim(mine)}: a handover to ${describeClaim(theirs)} is not later than that; hand over once more with lvssync primary NAME`,
          );
        let kept: string | undefined;
        if (req.keep && order === 'theirs-newer') {
          // what this director has now stays at hand whatever the new primary pushes over it
          const paths = this.store.manifest().map((f) => f.path);
          if (paths.length) kept = this.store.backup(paths, randomBytes(4).toString('hex'), 'handover');
        }
        const changed = adoptClaim(this.config, this.configPath, theirs, this.requester ?? 'a director');
        if (changed) this.io.stderr(`lvssync agent: ${changed}\n`);
        return { changed, ...(kept ? { kept } : {}) };
      }
      case 'begin': {
        this.mustBeFromPrimary();
        // a push: its validation will need lvssync's checker, loaded meanwhile
        void import('../shell/check-director.js');
        if (!this.release) this.release = await withLock(this.store.stateDir, 'agent');
        if (this.store.journal()) await this.recover();
        await this.readAhead?.checked;
        this.tx = req.txid;
        this.finished = false;
        const staging = this.store.begin(req.txid);
        // the staged copy (this director's set until the puts come) is read and checked (lvssync's
        // own checks; no validator runs on it) while the primary checks, plans and uploads: the
        // validation then reads and checks again only what this push stages
        const root = this.store.stagingRoot(req.txid);
        let read!: () => void;
        const done = new Promise<void>((resolve) => {
          read = resolve;
        });
        const checked = this.readStaged(
          root,
          async (staged, changed, workspace) => {
            const { checkAhead } = await import('../shell/check-director.js');
            await checkAhead(
              {
                ...this.directorOptions(),
                root,
                snapshot: staged.snapshot,
                ...(changed ? { changed } : {}),
                workspace,
              },
              () => {
                staged.complete = true;
                read();
              },
            );
          },
          true,
        )
          .catch(() => undefined)
          .finally(read);
        this.readAhead = { read: done, checked };
        return { staging };
      }
      case 'put':
        return {
          sha256: this.store.put(this.need(req.txid), req.path, req.mode, Buffer.from(req.data, 'base64')),
        };
      case 'remove':
        return { existed: this.store.remove(this.need(req.txid), req.path) };
      case 'validate': {
        const t0 = performance.now();
        const root = this.store.stagingRoot(this.need(req.txid));
        // the staged files as read ahead, then what was put since: keepalived -t may start while the
        // check ahead is still linting (its result is then this validation's memo)
        await this.readAhead?.read;
        const ahead = this.readAhead?.checked;
        this.readAhead = undefined;
        const r = await this.readStaged(root, async (staged, changed, workspace) => {
          const { checkDirector } = await import('../shell/check-director.js');
          return checkDirector({
            ...this.directorOptions(),
            root,
            snapshot: staged.snapshot,
            ...(changed ? { changed } : {}),
            workspace,
            keepalivedDirs: this.store.roots,
            ...(ahead ? { lintsAfter: ahead } : {}),
          });
        });
        const ok = !r.diagnostics.some((d) => d.severity === 'error');
        this.validated = ok ? { txid: req.txid, check: r } : undefined;
        const timings: Record<string, number> = { ...r.timings, done: performance.now() - t0 };
        if (r.keepalivedTest) timings.keepalived = r.keepalivedTest.cached ? 0 : r.keepalivedTest.durationMs;
        if (r.ferm) timings.ferm = r.ferm.cached ? 0 : r.ferm.durationMs;
        return { ok, diagnostics: r.diagnostics, timings };
      }
      case 'commit': {
        const r = await this.store.commit(this.need(req.txid));
        // if this agent dies before the push is finished (kill -9, out of memory), the watcher puts
        // the files back and reloads them at once, not when the next session happens to start
        this.startWatcher(req.txid);
        return r;
      }
      case 'reload': {
        // only the set this transaction validated is ever loaded, and only if the files are still it
        const txid = this.need(req.txid);
        const v = this.validated?.txid === txid ? this.validated.check : undefined;
        if (!v)
          throw new LvssyncError(
            'E_PROTOCOL',
            `reload of ${req.service} asked before transaction ${txid} validated`,
          );
        if (!this.config.services.some((s) => s.name === req.service))
          throw new LvssyncError('E_PROTOCOL', `no service '${req.service}' in this director's lvssync.yaml`);
        const j = this.store.journal();
        if (req.guardSeconds !== undefined && j?.txid === txid && !this.guarded.has(txid)) {
          // one guard a transaction, for no longer than this director's own setting allows
          this.guarded.add(txid);
          this.startGuard(
            txid,
            Math.min(Math.max(5, Math.round(req.guardSeconds)), this.config.push.fermGuardSeconds),
          );
        }
        const r = await reloadValidated(
          this.config,
          req.service,
          guardFor(this.config, req.service, v),
          reloadTiming(this.config),
          () => this.revalidateHere(req.service),
        );
        if (j && txid === j.txid && r.outcome.kind !== 'superseded') {
          j.state = 'reloaded';
          if (!j.reloaded.includes(req.service)) j.reloaded.push(req.service);
          this.store.saveJournal(j);
        }
        const o = r.outcome;
        return {
          ok: o.kind === 'loaded',
          output: [
            o.output,
            o.kind === 'superseded'
              ? `not reloaded: changed on this director since the set validated: ${o.changed.join(', ')}`
              : o.kind === 'changed-during'
                ? describeChangedDuring(req.service, o.changed, r.invalid !== undefined)
                : '',
          ]
            .filter(Boolean)
            .join('\n'),
          durationMs: 'durationMs' in o ? o.durationMs : 0,
          outcome: o.kind,
          ...('changed' in o ? { changed: o.changed } : {}),
          ...(r.invalid ? { diagnostics: r.invalid } : {}),
        };
      }
      case 'services':
        return readServiceStates(this.config);
      case 'loaded': {
        const out: Record<string, { digest: string; at: number }> = {};
        for (const [k, v] of Object.entries(readLoaded(this.store.stateDir)))
          out[k] = { digest: v.digest, at: v.at };
        return out;
      }
      case 'confirm': {
        writeFileSync(this.store.confirmPath(req.txid), `${new Date().toISOString()}\n`);
        return { confirmed: true };
      }
      case 'verify':
        return verifyService(this.config, req.service);
      case 'addresses':
        return readAddresses();
      case 'finish': {
        this.need(req.txid);
        const j = this.store.journal();
        if (j?.txid === req.txid) {
          this.store.recordWritten(j.paths, j.written);
          this.store.recordBase(j.paths);
        }
        this.store.saveJournal(undefined);
        writeFileSync(this.store.confirmPath(req.txid), 'finished\n');
        this.store.trimHistory();
        this.store.pruneConfirmations(CONFIRMATION_KEEP_MS(this.config));
        this.endTx();
        this.keepFindings();
        return { done: true };
      }
      case 'abort':
        // (a reading ahead of the validation is over before the staged files go)
        await this.readAhead?.checked;
        this.keepFindings();
        return this.abort(this.need(req.txid), req.reload);
      case 'audit':
        return gatherHere(this.config, { texts: req.texts !== false });
      case 'history':
        return { versions: this.store.versions() };
      case 'stage-version': {
        this.mustBeFromPrimary();
        const txid = this.need(req.txid);
        const version =
          req.version ??
          this.store
            .versions()
            .filter((v) => v.reason === 'commit')
            .at(-1)?.version;
        if (!version) throw new LvssyncError('E_USAGE', 'there is no previous version to restore');
        return { version, paths: this.store.stageVersion(txid, version) };
      }
      default:
        throw new LvssyncError('E_PROTOCOL', `unknown op '${(req as { op: string }).op}'`);
    }
  }

  /**
   * The staged set as the last reading left it, updated with what was staged since (the Store knows),
   * read in full the first time and after a reading that did not finish, by `use`: the validation, or
   * a reading alone (ahead of it).
   */
  private async readStaged<T>(
    root: string,
    use: (
      staged: NonNullable<Agent['staged']>,
      changed: readonly string[] | undefined,
      workspace: Workspace,
    ) => Promise<T>,
    /** `use` says itself when the reading is over (staged.complete): the check ahead. */
    marks = false,
  ): Promise<T> {
    const workspace = await this.ensureWorkspace();
    const changes = this.store.takeStagedChanges();
    const known = this.staged?.root === root && this.staged.complete && !changes.all;
    if (!known) {
      const { emptySnapshot } = await import('../core/snapshot.js');
      this.staged = { root, snapshot: emptySnapshot(), complete: false };
    }
    const staged = this.staged!;
    staged.complete = false;
    const r = await use(staged, known ? changes.paths : undefined, workspace);
    if (!marks) staged.complete = true;
    return r;
  }

  /** Once the answer is sent: what the lints found in the staged set, for the next session's agent. */
  private keepFindings(): void {
    const ws = this.workspace;
    if (ws) setImmediate(() => ws.saveFindings());
  }

  private async ensureWorkspace(): Promise<Workspace> {
    if (!this.workspace) {
      const { Workspace } = await import('../shell/workspace.js');
      this.workspace = Workspace.kept(this.store.stateDir);
    }
    return this.workspace;
  }

  /** This director's files as they are now, validated as a staged set is (a save during a reload). */
  private async revalidateHere(service: string): Promise<Revalidation> {
    const { checkDirector } = await import('../shell/check-director.js');
    const r = await checkDirector({
      ...this.directorOptions(),
      root: '/',
      workspace: await this.ensureWorkspace(),
    });
    const errors = r.diagnostics.filter((d) => d.severity === 'error');
    return errors.length ? { diagnostics: errors } : { guard: guardFor(this.config, service, r) };
  }

  /** How this director checks a set: its own paths, config-id, policy and keepalived (the real validators on). */
  private directorOptions() {
    const nodeCfg = this.config.nodes[this.node];
    return {
      keepalivedPath: this.config.files.keepalived,
      fermPath: this.config.files.ferm,
      ...(this.config.files.extra.length ? { extra: this.config.files.extra } : {}),
      ...(nodeCfg?.configId === undefined ? {} : { configId: nodeCfg.configId }),
      external: true,
      hostSpecific: 'error' as const,
      boundary: this.boundary(),
      untrusted: true,
      severity: this.config.check.severity,
      host: this.node,
    };
  }

  /** This director's own policy on what the primary sends (its lvssync.yaml, which the primary cannot write). */
  private boundary(): Boundary {
    return {
      managed: { roots: this.store.roots, extra: this.store.extra },
      fermCommands: this.config.agent.fermCommands,
      ...(this.config.agent.scripts ? { scripts: this.config.agent.scripts } : {}),
    };
  }

  /** Pushes come from the primary only: a director that was away while the role moved is refused. */
  private mustBeFromPrimary(): void {
    const claim = readClaim(this.config);
    if (this.requester !== claim.primary)
      throw new LvssyncError(
        'E_NOT_PRIMARY',
        `${this.node} takes its configuration from ${describeClaim(claim)}, not from ${this.requester ?? 'a director that did not say who it is'}: edit on ${claim.primary}, or hand the role over with lvssync primary`,
      );
  }

  private need(txid: string): string {
    if (!this.tx || txid !== this.tx)
      throw new LvssyncError('E_PROTOCOL', `transaction ${txid} is not the open one`);
    return txid;
  }

  /** Restores the files a transaction replaced and reloads the services that saw them. */
  private async abort(
    txid: string,
    reload: boolean,
  ): Promise<{ restored: string[]; reloaded: ReloadResult[] }> {
    const j = this.store.journal();
    this.store.discard(txid);
    const done =
      j && j.txid === txid
        ? await this.store.rollback(j, reload || j.state === 'reloaded' ? reloadAll(this.config) : undefined)
        : { restored: [], reloaded: [] };
    // keep what the guard wrote if it was first: the record says who restored the files
    if (!existsSync(this.store.confirmPath(txid))) writeFileSync(this.store.confirmPath(txid), 'aborted\n');
    this.endTx();
    return done;
  }

  /** A journal left by an agent that died mid-push: roll it back before anything else. */
  private async recover(): Promise<string | undefined> {
    const j = this.store.journal();
    if (!j) return undefined;
    let release = this.release;
    if (!release) {
      try {
        release = await withLock(this.store.stateDir, 'agent-recovery');
      } catch (e) {
        // Another agent holds the lock: its push is alive (this is e.g. the ferm confirmation).
        if (e instanceof LvssyncError && e.code === 'E_LOCKED') return undefined;
        throw e;
      }
    }
    try {
      const again = this.store.journal();
      if (!again) return undefined;
      await this.store.rollback(again, again.state !== 'committing' ? reloadAll(this.config) : undefined);
      return again.txid;
    } finally {
      if (!this.release) release();
    }
  }

  /** A detached process that rolls a committed transaction back if this agent dies before ending it. */
  private startWatcher(txid: string): void {
    const args = [
      process.argv[1]!,
      'agent',
      '--watch-tx',
      txid,
      '--watch-agent',
      String(process.pid),
      '--node',
      this.node,
    ];
    if (this.configPath) args.push('--config', this.configPath);
    spawn(process.execPath, args, { detached: true, stdio: 'ignore' }).unref();
  }

  /** A detached process that rolls the transaction back unless the primary confirms in time. */
  private startGuard(txid: string, seconds: number): void {
    const args = [
      process.argv[1]!,
      'agent',
      '--guard',
      txid,
      '--guard-seconds',
      String(seconds),
      '--node',
      this.node,
    ];
    if (this.configPath) args.push('--config', this.configPath);
    const child = spawn(process.execPath, args, { detached: true, stdio: 'ignore' });
    child.unref();
  }
}

/**
 * Waits while the agent `pid` lives and its transaction is open; when the agent is gone and the
 * journal still holds the transaction, restores the files it committed and reloads the services,
 * as the next session's hello would. Ends as soon as the transaction is finished or aborted.
 */
async function runWatcher(config: Config, store: Store, txid: string, pid: number): Promise<number> {
  const start = liveStart(pid);
  const open = () => store.journal()?.txid === txid;
  while (open() && start !== undefined && liveStart(pid) === start)
    await new Promise((r) => setTimeout(r, 200));
  if (!open()) return 0;
  let release: () => void;
  try {
    release = await withLock(store.stateDir, 'agent-watcher', 5000);
  } catch {
    return 0; // a new session holds the lock: its hello recovers the transaction
  }
  try {
    const j = store.journal();
    if (j?.txid !== txid) return 0;
    await store.rollback(j, j.state !== 'committing' ? reloadAll(config) : undefined);
    if (!existsSync(store.confirmPath(txid)))
      writeFileSync(store.confirmPath(txid), 'reverted: the agent died\n');
    return 0;
  } finally {
    release();
  }
}

/**
 * The ferm guard (like `ferm --interactive`): waits for the primary to prove, over a new SSH
 * connection, that it can still reach this director; otherwise rolls the transaction back.
 */
async function runGuard(config: Config, store: Store, txid: string, seconds: number): Promise<number> {
  const until = Date.now() + seconds * 1000;
  const confirm = store.confirmPath(txid);
  while (Date.now() < until) {
    if (existsSync(confirm)) return 0;
    await new Promise((r) => setTimeout(r, 200));
  }
  if (existsSync(confirm)) return 0;
  // No lock: the agent that started this guard may be stuck on a connection ferm just cut.
  const j = store.journal();
  if (j && j.txid === txid && !existsSync(confirm)) {
    writeFileSync(confirm, 'reverted by guard\n');
    await store.rollback(j, reloadAll(config));
  }
  return 0;
}

/** Reloads every service of this director, in lvssync.yaml's order (after a rollback put files back). */
function reloadAll(config: Config): () => Promise<ReloadResult[]> {
  return async () => {
    const out: ReloadResult[] = [];
    for (const s of config.services) {
      out.push(await reloadService(config, s.name));
      forgetLoaded(config.stateDir, [s.name]);
    }
    return out;
  };
}

/** A failure of this director's disk (full, read-only, a directory where a file belongs): E_WRITE. */
function storageCode(e: unknown): 'E_WRITE' | undefined {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return code &&
    ['ENOSPC', 'EDQUOT', 'EROFS', 'EISDIR', 'ENOTDIR', 'EACCES', 'EPERM', 'EEXIST', 'EIO'].includes(code)
    ? 'E_WRITE'
    : undefined;
}
