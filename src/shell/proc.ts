// Reads /proc/PID/stat: a process's state and start time (clock ticks since boot), which tell a
// live process from a recycled PID or a zombie. Shell.

import { readFileSync } from 'node:fs';

export interface ProcStat {
  state: string;
  /** Field 22: start time in clock ticks after boot, as text (compared, not computed with). */
  start: string;
}

export function readProcStat(pid: number): ProcStat | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm (field 2) may hold spaces: split after its closing parenthesis
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: f[0] ?? '', start: f[19] ?? '' };
  } catch {
    return undefined;
  }
}

/** The start time of a live (not zombie) process, or undefined. */
export function liveStart(pid: number): string | undefined {
  const s = readProcStat(pid);
  return s && s.state !== 'Z' && s.state !== 'X' ? s.start : undefined;
}
