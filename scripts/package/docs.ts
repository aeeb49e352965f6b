// lvssync(8) and the bash completion, generated from the program's own command table (defineProgram
// in src/cli.ts): what the man page and the completion offer is exactly what the program accepts.

import type { Command, Help, Option } from 'commander';
import { EXIT, EXIT_MEANING } from '../../src/errors.js';

export interface DocCommand {
  name: string;
  description: string;
  options: { flags: string; long?: string; short?: string; takesValue: boolean; description: string }[];
}

/** The visible commands and options of the program, in its own order. */
export function describeProgram(program: Command): { global: DocCommand; commands: DocCommand[] } {
  const help: Help = program.createHelp();
  const opts = (c: Command) =>
    help.visibleOptions(c).map((o: Option) => ({
      flags: o.flags,
      ...(o.long ? { long: o.long } : {}),
      ...(o.short ? { short: o.short } : {}),
      takesValue: o.required || o.optional,
      description: help.optionDescription(o),
    }));
  const commands = help
    .visibleCommands(program)
    .filter((c) => c.name() !== 'help')
    .map((c) => ({ name: c.name(), description: c.description(), options: opts(c) }));
  return {
    global: { name: program.name(), description: program.description(), options: opts(program) },
    commands,
  };
}

/** roff text with its special characters escaped (a leading dot or quote would start a request). */
function roff(text: string): string {
  return text
    .replace(/\\/g, '\\e')
    .replace(/-/g, '\\-')
    .replace(/^([.'])/gm, '\\&$1');
}

export function manPage(program: Command, version: string, date: string): string {
  const { global, commands } = describeProgram(program);
  const out: string[] = [];
  out.push(`.TH LVSSYNC 8 "${date}" "lvssync ${version}" "System Administration"`);
  out.push('.SH NAME', `lvssync \\- ${roff(global.description)}`);
  out.push('.SH SYNOPSIS');
  for (const c of commands) out.push(`.B lvssync ${roff(c.name)}`, '[\\fIOPTIONS\\fR]', '.br');
  out.push('.SH DESCRIPTION');
  out.push(
    roff(
      'lvssync keeps the keepalived and ferm configuration of a pair of LVS directors identical except ' +
        'router_id: it validates a change on the primary (its own parser and lints, then the real ' +
        'ferm --noexec and keepalived -t), sends it over SSH to lvssync agent on the peer, which ' +
        'validates it again with its own interfaces and programs, commits it atomically with a backup, ' +
        'and reloads ferm and keepalived on both directors in order, verifying each. lvssync watch does ' +
        'that for every saved edit; lvssync audit reports drift, pending reloads, live IPVS and VIP placement.',
    ),
  );
  out.push('.SH COMMANDS');
  for (const c of commands) {
    out.push(`.SS "lvssync ${roff(c.name)}"`, roff(c.description));
    for (const o of c.options) out.push('.TP', `.B ${roff(o.flags)}`, roff(o.description));
  }
  out.push('.SH GLOBAL OPTIONS');
  for (const o of global.options) out.push('.TP', `.B ${roff(o.flags)}`, roff(o.description));
  out.push('.SH EXIT STATUS');
  for (const [k, code] of Object.entries(EXIT) as [keyof typeof EXIT, number][]) {
    out.push('.TP', `.B ${code}`, roff(EXIT_MEANING[k]));
  }
  out.push(
    '.PP',
    roff(
      'lvssync audit and lvssync status exit like a Nagios plugin instead: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.',
    ),
  );
  out.push('.SH FILES');
  for (const [f, what] of [
    ['/etc/lvssync/lvssync.yaml', 'the configuration, the same file on both directors'],
    ['/var/lib/lvssync', 'state: history of pushed sets, what each service loaded, audit reports'],
    ['/lib/systemd/system/lvssync.service', 'the daemon (lvssync watch), enabled on the primary only'],
    ['/usr/share/doc/lvssync/examples/lvssync.example.yaml', 'an example configuration'],
  ] as const) {
    out.push('.TP', `.I ${roff(f)}`, roff(what));
  }
  out.push(
    '.SH SEE ALSO',
    '.BR keepalived (8),',
    '.BR keepalived.conf (5),',
    '.BR ferm (1),',
    '.BR ipvsadm (8)',
  );
  return `${out.join('\n')}\n`;
}

/** A bash completion script: commands, then each command's options. */
export function bashCompletion(program: Command): string {
  const { global, commands } = describeProgram(program);
  const words = (opts: DocCommand['options']) =>
    opts.flatMap((o) => [o.short, o.long].filter((x): x is string => x !== undefined)).join(' ');
  const valued = [
    ...new Set(commands.flatMap((c) => c.options.filter((o) => o.takesValue).map((o) => o.long))),
  ]
    .filter((x): x is string => x !== undefined)
    .sort();
  const cases = commands.map((c) => `    ${c.name}) opts="${words(c.options)}" ;;`).join('\n');
  return `# bash completion for lvssync (generated from its command table)
_lvssync() {
  local cur prev cmd opts i
  cur="\${COMP_WORDS[COMP_CWORD]}"
  prev="\${COMP_WORDS[COMP_CWORD-1]}"
  cmd=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "\${COMP_WORDS[i]}" in
      -*) ;;
      *) cmd="\${COMP_WORDS[i]}"; break ;;
    esac
  done
  case "$prev" in
    --config|-c|--root|--output)
      COMPREPLY=($(compgen -f -- "$cur")); return ;;
    ${valued.filter((v) => !['--config', '--root', '--output'].includes(v)).join('|')})
      return ;;
  esac
  if [ -z "$cmd" ]; then
    COMPREPLY=($(compgen -W "${commands.map((c) => c.name).join(' ')} ${words(global.options)}" -- "$cur"))
    return
  fi
  case "$cmd" in
${cases}
    *) opts="" ;;
  esac
  COMPREPLY=($(compgen -W "$opts --help" -- "$cur"))
}
complete -F _lvssync lvssync
`;
}
