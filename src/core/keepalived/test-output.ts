// Reads what `keepalived -t` (config test) prints and turns it into Diagnostics, dropping the messages
// that only describe the host it ran on (interfaces that do not exist here). Pure; never throws.

import { type Diagnostic, diag } from '../diagnostic.js';

/** Messages that depend on the host, not on the configuration: ignored when checking off the director. */
const HOST_SPECIFIC = [
  /interface \S+ for vrrp_instance \S+ doesn't exist/,
  /Non-existent interface specified in configuration/,
  /interface \S+ (for .*)?doesn't exist/i,
  /cannot track route .* with no interface/,
  /Cannot find an IP address to use for interface/,
  /unable to (open|read) .*\/proc\//i,
  /IPVS.*(not|unable)/i,
  /ip_vs/i,
  /No such device/,
];

const WARNING_HINTS =
  /warning|deprecated|truncat|ignor|will be|please use|defaulting|setting default|assuming/i;

export interface KeepalivedTestResult {
  diagnostics: Diagnostic[];
  /** Messages dropped as host-specific (kept by the peer agent, which runs on the director itself). */
  hostSpecific: { message: string; file: string; line: number; located: boolean }[];
}

export function parseKeepalivedTest(
  output: string,
  rootFile: string,
  toDirectorPath: (p: string) => string = (p) => p,
): KeepalivedTestResult {
  const diagnostics: Diagnostic[] = [];
  const hostSpecific: KeepalivedTestResult['hostSpecific'] = [];
  const lines = output.split('\n');
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i]!.trim();
    if (line === '') continue;
    // Continuation lines are indented after the position prefix; join them to the previous message.
    let file = rootFile;
    let lineNo = 1;
    let located = false;
    const m = /^\((?:(.*?):\s*)?Line (\d+)\)\s*(.*)$/.exec(line);
    if (m) {
      if (m[1]) file = toDirectorPath(m[1]);
      lineNo = Number(m[2]);
      line = m[3]!;
      located = true;
    }
    while (i + 1 < lines.length) {
      const next = /^\((?:(.*?):\s*)?Line (\d+)\)(\s{2,})(.*)$/.exec(lines[i + 1]!.trimEnd());
      if (!next || Number(next[2]) !== lineNo) break;
      line += ` ${next[4]!.trim()}`;
      i++;
    }
    if (HOST_SPECIFIC.some((re) => re.test(line))) {
      hostSpecific.push({
        message: line.replace(/^(WARNING|Warning) - |^Warning: /, ''),
        file,
        line: lineNo,
        located,
      });
      continue;
    }
    const severity = WARNING_HINTS.test(line) ? 'warning' : 'error';
    diagnostics.push({
      ...diag(
        severity,
        'KEEPALIVED_T',
        { file, line: lineNo, col: 1 },
        `keepalived -t${located ? '' : ' (no line given)'}: ${line.replace(/^(WARNING|Warning) - |^Warning: /, '')}`,
      ),
      source: 'keepalived',
    });
  }
  return { diagnostics, hostSpecific };
}
