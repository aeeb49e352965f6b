// The command table: parses argv with commander and dispatches to a command module. runMain takes
// the arguments and the output streams and returns the exit code; it never calls process.exit.

import type { Command as CommandType } from 'commander';
import { EXIT, isLvssyncError } from './errors.js';
import type { Io } from './io.js';

import { VERSION } from './version.js';

export { VERSION };

/**
 * `lvssync agent [--config FILE] [--node NAME]`, as sshd runs it for every push and audit: read
 * without loading the option parser (the agent's start-up is on every push's critical path).
 */
function agentFastPath(argv: readonly string[]): { config?: string; node?: string } | undefined {
  if (argv[0] !== 'agent' || argv.length % 2 !== 1) return undefined;
  const opts: { config?: string; node?: string } = {};
  for (let i = 1; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined || value.startsWith('-')) return undefined;
    if (flag === '--config' || flag === '-c') opts.config = value;
    else if (flag === '--node') opts.node = value;
    else return undefined;
  }
  return opts;
}

function reportError(e: unknown, io: Io): number {
  if (isLvssyncError(e)) {
    io.stderr(`lvssync: ${e.message}\n`);
    return e.exitCode;
  }
  io.stderr(`lvssync: internal error: ${(e as Error).stack ?? String(e)}\n`);
  return EXIT.INTERNAL;
}

export async function runMain(argv: readonly string[], io: Io): Promise<number> {
  const fast = agentFastPath(argv);
  if (fast) {
    try {
      const { runAgent } = await import('./commands/agent.js');
      return await runAgent(fast, io);
    } catch (e) {
      return reportError(e, io);
    }
  }
  const { CommanderError } = await import('commander');
  let exitCode: number = EXIT.OK;
  const program = await defineProgram(io, (code) => {
    exitCode = code;
  });
  try {
    await program.parseAsync(['node', 'lvssync', ...argv]);
  } catch (e) {
    if (e instanceof CommanderError) {
      if (
        e.code === 'commander.helpDisplayed' ||
        e.code === 'commander.version' ||
        e.code === 'commander.help'
      )
        return EXIT.OK;
      return EXIT.USAGE;
    }
    return reportError(e, io);
  }
  return exitCode;
}

/**
 * The command table: every command, option and help text. The man page and the bash completion are
 * generated from it (scripts/package), so they cannot drift from what the program accepts.
 */
export async function defineProgram(io: Io, setExit: (code: number) => void): Promise<CommandType> {
  const { Command, Option } = await import('commander');
  const program = new Command('lvssync')
    .description('Keeps a group of LVS directors (keepalived + ferm) in lock-step.')
    .version(VERSION)
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .showHelpAfterError();

  /** The options every command that reads lvssync.yaml takes. */
  const withConfig = (c: CommandType) =>
    c
      .option('-c, --config <file>', 'lvssync configuration file (default /etc/lvssync/lvssync.yaml)')
      .option('--node <name>', 'which configured node this is (default: by host name)');

  withConfig(program.command('check'))
    .description('validate the managed set: keepalived.conf with its includes, and ferm.conf')
    .option('--root <dir>', 'treat DIR as / (check a staged or lab tree with the director paths)')
    .option('--json', 'print one JSON object: {"ok", "diagnostics": [...], "files": [...]}')
    .option('--config-id <id>', "keepalived's -i/--config-id for @id lines (default: this node's configId)")
    .addOption(new Option('--no-external', 'skip the real ferm --noexec and keepalived -t'))
    .action(async (opts) => {
      const { runCheck } = await import('./commands/check.js');
      setExit(await runCheck(opts, io));
    });

  const pushOpts = (c: CommandType) =>
    withConfig(c)
      .option('--peer <name>', 'only this director (default: every other node)')
      .option('--json', 'print one JSON object with the result')
      .addOption(
        new Option('--no-external', 'skip the real ferm and keepalived -t here (the peer still runs them)'),
      );

  pushOpts(
    program
      .command('push')
      .description('validate, render for each director, stage and validate there, commit, reload in order')
      .option('--dry-run', 'show the plan only; change nothing')
      .option('-y, --yes', 'do not ask for confirmation on a terminal')
      .option(
        '--force',
        'overwrite files edited on a director since lvssync last synced them (its version is kept in its history)',
      ),
  ).action(async (opts) => {
    const { runPushCommand } = await import('./commands/push.js');
    setExit(await runPushCommand(opts, io, 'push'));
  });

  pushOpts(
    program
      .command('diff')
      .description(
        'print what push would change on each director (unified diffs, secrets redacted; three-way where a director was edited)',
      ),
  ).action(async (opts) => {
    const { runPushCommand } = await import('./commands/push.js');
    setExit(await runPushCommand(opts, io, 'diff'));
  });

  withConfig(program.command('rollback'))
    .description(
      "restore the directors' files as they were before the last push (or --to VERSION on one), and reload",
    )
    .option('--peer <name>', 'only this director (default: every other node the last push changed)')
    .option('--to <version>', 'the version to restore (see --list; with --peer when there are several)')
    .option('--list', 'list the versions kept on each director')
    .option('--yes', 'do not ask on a terminal')
    .option('--json', 'print one JSON object')
    .action(async (opts) => {
      const { runRollbackCommand } = await import('./commands/push.js');
      setExit(await runRollbackCommand(opts, io));
    });

  withConfig(program.command('primary'))
    .description(
      'hand the primary role (where people edit, where pushes start) to NODE, on every director through the agents',
    )
    .argument('<node>', 'the director that becomes the primary')
    .option(
      '--force',
      'hand over although the current primary has changes not pushed (kept in its history) or cannot be asked',
    )
    .option('--json', 'print one JSON object')
    .action(async (node: string, opts) => {
      const { runPrimaryCommand } = await import('./commands/primary.js');
      setExit(await runPrimaryCommand(node, opts, io));
    });

  withConfig(program.command('take'))
    .description(
      "keep a director's version of files edited there (a conflict): copied here, rendered for this director, then pushed",
    )
    .argument('<node>', 'the director whose version wins')
    .argument('[paths...]', 'the files (default: every file in conflict on it)')
    .option('--json', 'print one JSON object')
    .action(async (node: string, paths: string[], opts) => {
      const { runTakeCommand } = await import('./commands/primary.js');
      setExit(await runTakeCommand(node, paths, opts, io));
    });

  withConfig(program.command('watch'))
    .description(
      'daemon: on the primary, push every valid edit to the other directors, coalescing editor saves (elsewhere it watches)',
    )
    .option('--quiet <ms>', 'push once no change came for this long', '300')
    .option('--max <ms>', 'but at the latest this long after the first change of a burst', '3000')
    .option(
      '--idle-release <seconds>',
      'after this long without a push, close the peer session and drop the caches (0: never)',
      '60',
    )
    .option(
      '--no-early',
      'wait for the quiet window before starting a push (default: the first change of a burst starts one at once, committed only if no other change comes within --quiet)',
    )
    .option('--once', 'converge once and exit (0 when in sync)')
    .action(async (opts) => {
      const { runWatch } = await import('./commands/watch.js');
      setExit(await runWatch(opts, io));
    });

  withConfig(program.command('audit'))
    .description(
      'drift between directors, live IPVS vs config, VIP placement, live marks (exit 0/1/2/3 like Nagios)',
    )
    .option('--json', 'same as --format json')
    .option('--format <format>', 'text, json or markdown', 'text')
    .option('--output <file>', 'write the report to FILE instead of stdout')
    .option('--digests', 'also fetch each HTTP_GET url like genhash and compare its digest')
    .option(
      '--store',
      'keep the report in the state directory (and run audit.command / write audit.prometheus)',
    )
    .option('-v, --verbose', 'also list what is ok')
    .option('--peer <name>', 'only this director besides this one (default: every node)')
    .action(async (opts) => {
      const { runAuditCommand } = await import('./commands/audit.js');
      setExit(await runAuditCommand(opts, io));
    });

  withConfig(program.command('status'))
    .description(
      'one screen: in sync / changes pending / drift / peer unreachable, last push, VIPs, last audit',
    )
    .option('--json', 'print one JSON object')
    .option('--peer <name>', 'only this director (default: every other node)')
    .action(async (opts) => {
      const { runStatusCommand } = await import('./commands/audit.js');
      setExit(await runStatusCommand(opts, io));
    });

  withConfig(program.command('init'))
    .description(
      "set up the directors: lvssync's key, each peer's pinned host key, their authorized_keys line",
    )
    .option('--peer <name>', 'only this peer (default: every other node)')
    .option('-y, --yes', 'pin the host key without asking (check the fingerprint out of band)')
    .action(async (opts) => {
      const { runInit } = await import('./commands/init.js');
      setExit(await runInit(opts, io));
    });

  withConfig(program.command('agent'))
    .description('the peer side of push, over SSH stdin/stdout (an authorized_keys forced command)')
    .addOption(new Option('--guard <txid>').hideHelp())
    .addOption(new Option('--guard-seconds <n>').hideHelp())
    .addOption(new Option('--watch-tx <txid>').hideHelp())
    .addOption(new Option('--watch-agent <pid>').hideHelp())
    .action(async (opts) => {
      const { runAgent } = await import('./commands/agent.js');
      setExit(await runAgent(opts, io));
    });

  withConfig(program.command('watch-worker', { hidden: true }))
    .description("the watch daemon's pushing half (started by lvssync watch)")
    .addOption(
      new Option('--master <director=pid>', "a master of the daemon's that sessions may go through")
        .argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), v])
        .hideHelp(),
    )
    .action(async (opts) => {
      const { runWatchWorker } = await import('./commands/watch-worker.js');
      setExit(await runWatchWorker(opts));
    });

  return program;
}
