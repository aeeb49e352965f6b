// Small helpers shared by the benchmarks: timing, percentiles, running a peer tool, printing a table.

import { spawnSync } from 'node:child_process';

export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export async function timeAsync(fn: () => Promise<unknown>): Promise<number> {
  const t0 = nowMs();
  await fn();
  return nowMs() - t0;
}

export function timeSync(fn: () => unknown): number {
  const t0 = nowMs();
  fn();
  return nowMs() - t0;
}

export function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[i]!;
}

export const median = (xs: readonly number[]) => percentile(xs, 50);

/** Runs a command and returns its wall time; throws with its output when it fails unexpectedly. */
export function timeCommand(
  argv: string[],
  okCodes: number[] = [0],
): { ms: number; stdout: string; stderr: string } {
  const t0 = nowMs();
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  const ms = nowMs() - t0;
  if (r.error) throw r.error;
  if (!okCodes.includes(r.status ?? -1)) {
    throw new Error(`${argv.join(' ')} exited ${r.status}: ${(r.stderr || r.stdout).slice(0, 2000)}`);
  }
  return { ms, stdout: r.stdout, stderr: r.stderr };
}

export function fmtMs(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 10 ? 2 : 1)} ms`;
}

export interface Row {
  name: string;
  value: string;
  note?: string;
}

export function printTable(title: string, rows: Row[]): void {
  const w = Math.max(...rows.map((r) => r.name.length));
  const v = Math.max(...rows.map((r) => r.value.length));
  console.log(`\n${title}`);
  for (const r of rows)
    console.log(`  ${r.name.padEnd(w)}  ${r.value.padStart(v)}${r.note ? `  ${r.note}` : ''}`);
}

export function verdict(ok: boolean, target: string): string {
  return `${ok ? 'PASS' : 'MISS'} (target: ${target})`;
}
