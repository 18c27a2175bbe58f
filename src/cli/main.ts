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

  // Subcommands register here, one line each (see src/cli/*-command.ts).
  // Only the one being run is loaded, so a daemon restart does not load the tools' modules.
  const subcommands: Record<string, () => Promise<Command>> = {
    certs: async () => (await import('./certs-command.js')).certsCommand(),
    status: async () => (await import('./status-command.js')).statusCommand(),
    inspect: async () => (await import('./inspect-command.js')).inspectCommand(),
    top: async () => (await import('./top-command.js')).topCommand(),
    capture: async () => (await import('./capture-command.js')).captureCommand(),
    gateway: async () => (await import('./daemon-command.js')).daemonCommand('gateway'),
    agent: async () => (await import('./daemon-command.js')).daemonCommand('agent'),
  };
  const chosen = argv[2];
  const load = chosen !== undefined && Object.hasOwn(subcommands, chosen) ? [subcommands[chosen]!] : Object.values(subcommands);
  for (const make of load) program.addCommand(await make());

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
