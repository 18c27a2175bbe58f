/**
 * `mtun gateway` and `mtun agent`: load and validate the config, start the
 * daemon, and handle signals — SIGTERM/SIGINT drain and exit, SIGHUP reloads
 * the gateway's policy and tokens without dropping tunnels.
 */
import { Command, Option } from 'commander';

/**
 * The gateway's one UDP socket carries every agent's connection and any
 * flood aimed at the port: 16 MiB holds about 7,000 full-size datagrams,
 * some 140 ms of a 50k/s Initial flood, so legitimate datagrams are not
 * lost in the kernel while the event loop is busy (kernel memory, not RSS).
 */
const GATEWAY_RCVBUF_BYTES = 16 * 1024 * 1024;

type Kind = 'gateway' | 'agent';

interface Running {
  stop(): Promise<void>;
}

/** Exit code when the data path died (TUN poll or read error); a supervisor should restart the daemon. */
export const EXIT_DATA_PATH_FAILED = 3;

/**
 * Builds the `gateway` or `agent` subcommand. Exit codes: 0 clean stop,
 * 1 start or stop failure, 2 bad config, 3 the data path failed (TUN error).
 */
export function daemonCommand(kind: Kind): Command {
  const what = kind === 'gateway'
    ? 'run the gateway: accept agents over HTTP/3, serve CONNECT-IP / CONNECT-UDP, forward into this network'
    : 'run the agent: carry this network\'s packets to the gateway over CONNECT-IP';
  return new Command(kind)
    .description(what)
    .addOption(new Option('-c, --config <file>', `YAML configuration (see config/${kind}.yaml, docs/configuration.md)`).makeOptionMandatory())
    .option('--check', 'validate the configuration and exit', false)
    .addHelpText('after', `
Signals: SIGTERM/SIGINT drain and exit${kind === 'gateway' ? '; SIGHUP reloads policy and tokens' : ''} (also when received during start-up).
Exit codes: 0 stopped, 1 start failed, 2 invalid configuration, 3 the data path failed (TUN error; restart me).
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
      // Signals are handled from the start: a HUP or TERM during start-up is
      // queued until the daemon runs (Node's default would kill the process).
      let running: Running | null = null;
      let stopRequested: string | null = null;
      let reloadQueued = false;
      let fatal: Error | null = null;
      let finish: () => void = () => undefined;
      const done = new Promise<void>((resolve) => (finish = resolve));
      const stop = (why: string) => {
        if (stopRequested !== null) return;
        stopRequested = why;
        if (running === null) return; // start() finishes first, then stops
        log.info({ reason: why }, 'stopping');
        running.stop().then(finish, (e) => {
          log.error({ err: (e as Error).message }, 'stop failed');
          process.exitCode = 1;
          finish();
        });
      };
      const reload = () => {
        if (kind !== 'gateway') {
          log.info('SIGHUP: nothing to reload on the agent');
          return;
        }
        if (running === null) {
          reloadQueued = true;
          log.info('SIGHUP during start-up: reload queued');
          return;
        }
        try {
          const next = cfg.loadGatewayConfig(opts.config);
          (running as unknown as { reload(c: typeof next): void }).reload(next);
        } catch (e) {
          log.error({ err: e instanceof cfg.ConfigError ? e.toString() : (e as Error).message }, 'reload failed; keeping the running policy');
        }
      };
      const onTerm = () => stop('SIGTERM');
      const onInt = () => stop('SIGINT');
      process.on('SIGTERM', onTerm);
      process.on('SIGINT', onInt);
      process.on('SIGHUP', reload);
      const { systemClock } = await import('../daemon/ports.js');
      const { nativeTunFactory, systemKernel } = await import('../daemon/system-ports.js');
      const { openNativeUdp } = await import('../net/native-udp.js');
      const io = {
        openTun: nativeTunFactory,
        kernel: systemKernel,
        clock: systemClock,
        log,
        // The data path is dead: drain what can be drained and exit 3 (EXIT_DATA_PATH_FAILED) so a supervisor restarts us.
        onFatal: (e: Error) => {
          fatal = e;
          process.exitCode = EXIT_DATA_PATH_FAILED;
          stop(`fatal: ${e.message}`);
        },
      };
      try {
        if (kind === 'gateway') {
          const { Gateway } = await import('../gateway/gateway.js');
          const c = config as Parameters<typeof Gateway.start>[0];
          // UDP GRO (both daemons): a peer's GSO train arrives as one receive instead of being cut into datagrams
          // by the kernel (BENCHMARKS.md, 7 December: upload TCP×1 +20 %, download +45 %, tunnel CPU per Gbit −17/−33 %).
          running = await Gateway.start(c, { ...io, udp: openNativeUdp({ host: c.listen.host, port: c.listen.port, rcvbufBytes: GATEWAY_RCVBUF_BYTES, gro: true }) });
        } else {
          const { Agent } = await import('../agent/agent.js');
          const { isIP } = await import('node:net');
          const c = config as Parameters<typeof Agent.start>[0];
          running = await Agent.start(c, { ...io, udp: openNativeUdp({ host: isIP(c.gateway.address.host) === 4 ? '0.0.0.0' : '::', gro: true }) });
        }
      } catch (e) {
        log.fatal({ err: (e as Error).message }, `${kind} failed to start`);
        log.flush();
        process.stderr.write(`mtun ${kind}: ${(e as Error).message}\n`);
        process.exitCode = 1;
        process.off('SIGTERM', onTerm);
        process.off('SIGINT', onInt);
        process.off('SIGHUP', reload);
        return;
      }
      if (reloadQueued && stopRequested === null) reload();
      if (stopRequested !== null) {
        const why = stopRequested;
        stopRequested = null;
        stop(why);
      }
      await done;
      if (fatal !== null) process.stderr.write(`mtun ${kind}: ${(fatal as Error).message}; exiting with ${EXIT_DATA_PATH_FAILED}\n`);
      log.flush();
      // Sockets and timers are closed; exit promptly even if a library left a handle.
      setTimeout(() => process.exit(), 200).unref();
    });
}
