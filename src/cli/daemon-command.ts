/**
 * `mtun gateway` and `mtun agent`: load and validate the config, start the
 * daemon, and handle signals — SIGTERM/SIGINT drain and exit, SIGHUP reloads
 * the gateway's policy and tokens without dropping tunnels.
 */
import { Command, Option } from 'commander';

type Kind = 'gateway' | 'agent';

interface Running {
  stop(): Promise<void>;
}

/** Builds the `gateway` or `agent` subcommand. Exit codes: 0 clean stop, 1 runtime failure, 2 bad config. */
export function daemonCommand(kind: Kind): Command {
  const what = kind === 'gateway'
    ? 'run the gateway: accept agents over HTTP/3, serve CONNECT-IP / CONNECT-UDP, forward into this network'
    : 'run the agent: carry this network\'s packets to the gateway over CONNECT-IP';
  return new Command(kind)
    .description(what)
    .addOption(new Option('-c, --config <file>', `YAML configuration (see config/${kind}.yaml, docs/configuration.md)`).makeOptionMandatory())
    .option('--check', 'validate the configuration and exit', false)
    .addHelpText('after', `
Signals: SIGTERM/SIGINT drain and exit${kind === 'gateway' ? '; SIGHUP reloads policy and tokens' : ''}.
Needs root or CAP_NET_ADMIN (TUN device, routes).`)
    .exitOverride()
    .action(async (opts: { config: string; check: boolean }) => {
      const cfg = await import('../config/index.js');
      let config;
      try {
        config = kind === 'gateway' ? cfg.loadGatewayConfig(opts.config) : cfg.loadAgentConfig(opts.config);
      } catch (e) {
        if (e instanceof cfg.ConfigError) {
          process.stderr.write(`mtun ${kind}: invalid configuration:\n${e.toString()}\n`);
          process.exitCode = 2;
          return;
        }
        throw e;
      }
      if (opts.check) {
        process.stdout.write(`${opts.config}: ok\n`);
        return;
      }
      const { daemonLogger } = await import('../daemon/logger.js');
      const log = daemonLogger(kind, config.logLevel);
      let running: Running;
      try {
        if (kind === 'gateway') {
          const { Gateway } = await import('../gateway/gateway.js');
          running = await Gateway.start(config as Parameters<typeof Gateway.start>[0], log);
        } else {
          const { Agent } = await import('../agent/agent.js');
          running = await Agent.start(config as Parameters<typeof Agent.start>[0], log);
        }
      } catch (e) {
        log.fatal({ err: (e as Error).message }, `${kind} failed to start`);
        log.flush();
        process.stderr.write(`mtun ${kind}: ${(e as Error).message}\n`);
        process.exitCode = 1;
        return;
      }
      await new Promise<void>((resolve) => {
        let stopping = false;
        const stop = (sig: string) => {
          if (stopping) return;
          stopping = true;
          log.info({ signal: sig }, 'stopping');
          running.stop().then(resolve, (e) => {
            log.error({ err: (e as Error).message }, 'stop failed');
            process.exitCode = 1;
            resolve();
          });
        };
        process.on('SIGTERM', () => stop('SIGTERM'));
        process.on('SIGINT', () => stop('SIGINT'));
        process.on('SIGHUP', () => {
          if (kind !== 'gateway') {
            log.info('SIGHUP: nothing to reload on the agent');
            return;
          }
          try {
            const next = cfg.loadGatewayConfig(opts.config);
            (running as unknown as { reload(c: typeof next): void }).reload(next);
          } catch (e) {
            log.error({ err: e instanceof cfg.ConfigError ? e.toString() : (e as Error).message }, 'reload failed; keeping the running policy');
          }
        });
      });
      log.flush();
      // Sockets and timers are closed; exit promptly even if a library left a handle.
      setTimeout(() => process.exit(), 200).unref();
    });
}
