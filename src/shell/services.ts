// The director's services as lvssync drives them: reload (then status), verification after a reload
// (running; for ferm, every MARK rule of ferm.conf in the live mangle table), and the addresses this
// director holds. Shell: runs the configured commands and ip/iptables.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../core/config.js';
import { type MarkRule, parseFermLines } from '../core/ferm/marks.js';
import type { AddressInfo, ReloadResult, ServiceState, VerifyResult } from '../core/protocol.js';
import { LvssyncError } from '../errors.js';
import { execTool } from './exec.js';
import { expandFerm } from './ferm-expand.js';
import { readJsonFile } from './fs-atomic.js';
import { readProcStat } from './proc.js';
import { Store } from './store.js';

/** Runs a service's reload command, then its status command. */
export async function reloadService(config: Config, name: string): Promise<ReloadResult> {
  const svc = config.services.find((s) => s.name === name);
  if (!svc) throw new LvssyncError('E_PROTOCOL', `no service '${name}' in this director's lvssync.yaml`);
  const t0 = performance.now();
  const startedAt = Date.now();
  const r = await execTool(svc.reload, { timeoutMs: 120_000 });
  let ok = r.code === 0;
  let output = `${r.stdout}${r.stderr}`.trim();
  if (ok && svc.status) {
    const s = await execTool(svc.status, { timeoutMs: 30_000 });
    if (s.code !== 0) {
      ok = false;
      output += `${output ? '\n' : ''}status check '${svc.status.join(' ')}' failed after reload: ${`${s.stdout}${s.stderr}`.trim() || `exit ${s.code}`}`;
    }
  }
  if (r.code === 0) recordReload(config, name, startedAt);
  return { ok, output: output.slice(0, 4000), durationMs: performance.now() - t0 };
}

/** iptables-save of the table ferm writes to: ferm prefers the legacy tools when installed. */
export async function iptablesSave(table: string): Promise<string> {
  const legacy = existsSync('/usr/sbin/iptables-legacy-save') || existsSync('/sbin/iptables-legacy-save');
  const r = await execTool([legacy ? 'iptables-legacy-save' : 'iptables-save', '-t', table], {
    timeoutMs: 30_000,
  });
  if (r.code !== 0)
    throw new LvssyncError('E_TOOL_FAILED', `iptables-save -t ${table} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Checks a service after a reload: running, and for ferm, every MARK rule of ferm.conf applied. */
export async function verifyService(config: Config, name: string): Promise<VerifyResult> {
  const svc = config.services.find((s) => s.name === name);
  const problems: string[] = [];
  if (svc?.status) {
    const s = await execTool(svc.status, { timeoutMs: 30_000 });
    if (s.code !== 0) problems.push(`${name} is not running ('${svc.status.join(' ')}' exited ${s.code})`);
  }
  if (name === 'ferm') {
    const want = await expandFerm(config, new Store(config).stateDir);
    if (!want.ok) problems.push(`ferm --noexec failed: ${want.error}`);
    else {
      const have = parseFermLines(await iptablesSave('mangle'));
      const key = (m: MarkRule) =>
        `${m.table}/${m.chain}/${m.mark}/${(m.destination ?? '*').replace(/\/32$/, '')}/${m.protocol ?? '*'}/${m.dports.join(',')}`;
      const live = new Set(have.map(key));
      for (const m of parseFermLines(want.lines)) {
        if (!live.has(key(m)))
          problems.push(`MARK ${m.mark} for ${m.destination ?? 'any'} is not in the live mangle table`);
      }
    }
  }
  return { ok: problems.length === 0, problems };
}

export async function readAddresses(): Promise<AddressInfo> {
  const r = await execTool(['ip', '-j', 'addr', 'show'], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new LvssyncError('E_TOOL_FAILED', `ip -j addr failed: ${r.stderr.trim()}`);
  const out: AddressInfo = {};
  for (const l of JSON.parse(r.stdout) as { ifname: string; addr_info?: { local: string }[] }[]) {
    out[l.ifname] = (l.addr_info ?? []).map((a) => a.local);
  }
  return out;
}

/** When lvssync last reloaded each service here (for the audit's pending-reload check). */
export function readReloads(config: Config): Record<string, number> {
  return readJsonFile<Record<string, number>>(path.join(config.stateDir, 'reloads.json')) ?? {};
}

function recordReload(config: Config, name: string, at: number): void {
  try {
    mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
    writeFileSync(
      path.join(config.stateDir, 'reloads.json'),
      JSON.stringify({ ...readReloads(config), [name]: at }),
    );
  } catch {}
}

/** When the running keepalived started (ms since the epoch), from its pid file and /proc. */
export function keepalivedStartedAt(pidFile = '/run/keepalived.pid'): number | undefined {
  try {
    const stat = readProcStat(Number(readFileSync(pidFile, 'utf8').trim()));
    const ticks = Number(stat?.start);
    const btime = Number(/^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1]);
    if (!Number.isFinite(ticks) || !Number.isFinite(btime)) return undefined;
    return btime * 1000 + (ticks * 1000) / 100; // USER_HZ is 100 on Linux
  } catch {
    return undefined;
  }
}

/**
 * Whether each service runs here (its status command), with since when lvssync has seen it so
 * (kept in services.json) and its last reload by lvssync. Never throws.
 */
export async function readServiceStates(config: Config, now = Date.now()): Promise<ServiceState[]> {
  const file = path.join(config.stateDir, 'services.json');
  const seen = readJsonFile<Record<string, { up: boolean; since: number }>>(file) ?? {};
  const reloads = readReloads(config);
  const out = await Promise.all(
    config.services.map(async (svc): Promise<ServiceState> => {
      const base: ServiceState = { service: svc.name };
      if (reloads[svc.name] !== undefined) base.lastReload = reloads[svc.name]!;
      if (!svc.status) return base;
      const r = await execTool(svc.status, { timeoutMs: 30_000 }).catch((e: Error) => ({
        code: -1,
        stdout: '',
        stderr: e.message,
      }));
      const up = r.code === 0;
      const prev = seen[svc.name];
      const since = prev && prev.up === up ? prev.since : now;
      seen[svc.name] = { up, since };
      return {
        ...base,
        up,
        since,
        ...(up
          ? {}
          : {
              detail: `'${svc.status.join(' ')}' exited ${r.code}${`${r.stderr}${r.stdout}`.trim() ? `: ${`${r.stderr}${r.stdout}`.trim().slice(0, 200)}` : ''}`,
            }),
      };
    }),
  );
  try {
    mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
    writeFileSync(file, JSON.stringify(seen));
  } catch {}
  return out;
}
