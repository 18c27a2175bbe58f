/**
 * `mtun` command line: one subcommand per daemon or tool. Each subcommand
 * lives in its own module, loaded only when used.
 */
import { Command, CommanderError } from 'commander';
import { MTUN_VERSION } from '../version.js';

/** Parses argv and runs the chosen subcommand. Exit codes: 0 ok, 1 runtime failure, 2 bad usage or input. */
export async function main(argv: string[]): Promise<void> {
  const program = new Command('mtun')
    .description('MASQUE tunnel (CONNECT-IP / CONNECT-UDP over HTTP/3) with passive flow telemetry')
    .version(MTUN_VERSION)
    .exitOverride()
    .showHelpAfterError();

  // Subcommands register here, one line each:
  // (see src/cli/*-command.ts)
  program.addCommand((await import('./certs-command.js')).certsCommand());
  program.addCommand((await import('./status-command.js')).statusCommand());
  program.addCommand((await import('./inspect-command.js')).inspectCommand());
  program.addCommand((await import('./top-command.js')).topCommand());
  program.addCommand((await import('./capture-command.js')).captureCommand());
  const { daemonCommand } = await import('./daemon-command.js');
  program.addCommand(daemonCommand('gateway'));
  program.addCommand(daemonCommand('agent'));

  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    throw err;
  }
}
