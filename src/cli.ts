// The command table: parses argv with commander and dispatches to a command module. runMain takes
// the arguments and the output streams and returns the exit code; it never calls process.exit.

import { Command, CommanderError, Option } from 'commander';
import { EXIT, isLvssyncError } from './errors.js';
import type { Io } from './io.js';

const VERSION = '0.1.0';

export async function runMain(argv: readonly string[], io: Io): Promise<number> {
  let exitCode: number = EXIT.OK;
  const program = new Command('lvssync')
    .description('Keeps a pair of LVS directors (keepalived + ferm) in lock-step.')
    .version(VERSION)
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .showHelpAfterError();

  program
    .command('check')
    .description('validate the managed set: keepalived.conf with its includes, and ferm.conf')
    .option('--root <dir>', 'treat DIR as / (check a staged or lab tree with the director paths)')
    .option('--json', 'print one JSON object: {"ok", "diagnostics": [...], "files": [...]}')
    .option('-c, --config <file>', 'lvssync configuration file (default /etc/lvssync/lvssync.yaml)')
    .option('--config-id <id>', "keepalived's -i/--config-id for @id lines (default: this node's configId)")
    .option('--node <name>', 'which configured node this is (default: by host name)')
    .addOption(new Option('--no-external', 'skip the real ferm --noexec and keepalived -t'))
    .action(async (opts) => {
      const { runCheck } = await import('./commands/check.js');
      exitCode = await runCheck(opts, io);
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
    if (isLvssyncError(e)) {
      io.stderr(`lvssync: ${e.message}\n`);
      return e.exitCode;
    }
    io.stderr(`lvssync: internal error: ${(e as Error).stack ?? String(e)}\n`);
    return EXIT.INTERNAL;
  }
  return exitCode;
}
