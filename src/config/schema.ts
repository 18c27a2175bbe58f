/**
 * Zod schemas for `gateway.yaml` and `agent.yaml`: every object is strict
 * (unknown keys are errors), every optional field has its default here, and
 * docs/configuration.md describes each field.
 */
import { z } from 'zod';
import type { IpPrefix } from '../packet/ip-address.js';
import {
  filePath, logPath, hostName, hostPort, intIn, interfaceName, ipPrefix, nonEmptyList, nonEmptyString, numberIn, portNumber, portSpec,
} from './values.js';
import { agentH2Schema, gatewayH2Schema } from './h2-schema.js';

/** Log levels accepted by `logLevel` (pino's). */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

/** Transport protocols a policy rule can name; `icmp` covers ICMP and ICMPv6. */
export const POLICY_PROTOCOLS = ['tcp', 'udp', 'icmp', 'any'] as const;

/** Tunnel modes: site-to-site keeps addresses end to end; remote-access uses a gateway-assigned address. */
export const MODES = ['site-to-site', 'remote-access'] as const;

const DAY_MS = 86_400_000;

const ms = (min: number, max: number) => intIn(min, max, 'a duration in milliseconds');

/** `admin`: the off-data-path HTTP server (metrics, healthz, readyz, status). */
function adminSchema(defaultListen: string) {
  return z.strictObject({
    enabled: z.boolean().default(true),
    listen: hostPort.default(hostPort.parse(defaultListen)),
  }).prefault({});
}

/**
 * `inspection`: passive flow tracking (src/inspect FlowTracker). Timeouts
 * left out keep the tracker's defaults (Linux conntrack's), so the parsed
 * `timeouts` object can be passed to the tracker as is.
 */
const inspectionSchema = z.strictObject({
  maxFlows: intIn(1, 10_000_000, 'a flow count').default(262_144),
  timeouts: z.strictObject({
    synSentMs: ms(1_000, DAY_MS).optional(),
    synRecvMs: ms(1_000, DAY_MS).optional(),
    establishedMs: ms(1_000, 30 * DAY_MS).optional(),
    finWaitMs: ms(100, DAY_MS).optional(),
    lastAckMs: ms(100, DAY_MS).optional(),
    timeWaitMs: ms(100, DAY_MS).optional(),
    closeMs: ms(100, DAY_MS).optional(),
    udpMs: ms(1_000, DAY_MS).optional(),
    udpStreamMs: ms(1_000, DAY_MS).optional(),
    icmpMs: ms(1_000, DAY_MS).optional(),
  }).prefault({}),
}).prefault({});

/** `telemetry`: workload names for metric labels and the JSON flow log. */
function telemetrySchema(baseDir: string) {
  return z.strictObject({
    workloads: z.record(z.string(), nonEmptyString('a workload name'))
      .default({})
      .transform((rec, ctx) => {
        const out: { prefix: IpPrefix; name: string }[] = [];
        for (const [k, name] of Object.entries(rec)) {
          const p = ipPrefix().safeParse(k);
          if (!p.success) {
            ctx.addIssue({ code: 'custom', path: [k], params: { atKey: true }, message: p.error.issues[0]?.message ?? 'expected an IP prefix' });
            continue;
          }
          out.push({ prefix: p.data, name });
        }
        return out;
      }),
    flowLog: z.strictObject({
      enabled: z.boolean().default(true),
      /** `-` or absent: stdout. */
      path: logPath(baseDir).default('-'),
    }).prefault({}),
  }).prefault({});
}

/** `tun`: the TUN device. */
const tunSchema = z.strictObject({
  name: interfaceName.default('mtun0'),
  /** Override; by default the MTU is derived from the QUIC path's maximum datagram size. RFC 9484 §7.2 needs ≥1280 for IPv6. */
  mtuBytes: intIn(576, 65_535, 'an MTU in bytes').optional(),
  /**
   * IFF_VNET_HDR offloads: the kernel hands over TCP/UDP GSO super-packets,
   * split into MTU-sized packets in C, and TCP segments are coalesced on write.
   * On by default: in the lab it nearly doubles TCP throughput and removes the
   * TUN queue drops (BENCHMARKS.md).
   */
  offload: z.boolean().default(true),
  /** Kernel transmit queue of the TUN in packets (default: the kernel's 500); shorter = less delay under load, some throughput lost. */
  txQueueLen: intIn(1, 1_000_000, 'a queue length in packets').optional(),
}).prefault({});

/** A policy rule: traffic to these destination prefixes with these protocols and ports is allowed. */
const allowRuleSchema = z.strictObject({
  prefixes: nonEmptyList(ipPrefix(), 'destination prefix'),
  protocols: z.array(z.enum(POLICY_PROTOCOLS)).min(1, { error: 'expected at least one protocol' }).default(['any']),
  /** Applies to TCP and UDP; absent means all ports. */
  ports: z.array(portSpec).min(1, { error: 'expected at least one port (omit the key for all ports)' }).optional(),
});

/** Per-identity policy (gateway): what an authenticated client may reach and advertise. Default deny. */
const policyEntrySchema = z.strictObject({
  /** Exact identity (SPIFFE URI SAN or token identity), or a prefix ending in `*`. */
  identity: nonEmptyString('an identity (SPIFFE URI or token identity; a trailing "*" matches any suffix)'),
  allow: z.array(allowRuleSchema).default([]),
  /** Prefixes this identity may advertise with ROUTE_ADVERTISEMENT (site-to-site); packets from them pass the source check. */
  advertise: z.array(ipPrefix()).default([]),
});

/**
 * Shortest bearer token accepted: 32 characters is 128 bits as hex (more as
 * base64), out of reach of online guessing (`openssl rand -hex 32` gives 64).
 */
export const MIN_TOKEN_CHARS = 32;

/** A bearer token the gateway accepts, and the identity it maps to. */
function tokenSchema(baseDir: string) {
  return z.strictObject({
    identity: nonEmptyString('an identity name'),
    token: nonEmptyString('a token string').optional(),
    tokenFile: filePath(baseDir).optional(),
  }).superRefine((t, ctx) => {
    if ((t.token === undefined) === (t.tokenFile === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'expected exactly one of "token" or "tokenFile"' });
    }
    // The message never echoes the token (it is a secret).
    if (t.token !== undefined && t.token.length < MIN_TOKEN_CHARS) {
      ctx.addIssue({ code: 'custom', path: ['token'], message: `expected a token of at least ${MIN_TOKEN_CHARS} characters (e.g. openssl rand -hex 32), got ${t.token.length}` });
    }
  });
}

/** `connectUdp` on the gateway: which UDP targets CONNECT-UDP (RFC 9298) may reach. */
const gatewayConnectUdpSchema = z.strictObject({
  enabled: z.boolean().default(false),
  targets: z.array(z.strictObject({
    host: hostName,
    ports: nonEmptyList(portSpec, 'port'),
  })).default([]),
  /** RFC 9298 §7: loopback, link-local, multicast and broadcast targets are refused unless this is true. */
  allowLocalTargets: z.boolean().default(false),
  /** RFC 9298 §3.1: at least 2 minutes. */
  idleTimeoutMs: ms(120_000, DAY_MS).default(120_000),
  /** How long resolving a host-name target may take before the request gets 504 (dns_timeout). */
  resolveTimeoutMs: ms(100, 60_000).default(5_000),
  /** How long opening a target (resolve + connect) may take in all before the request gets 504. */
  openTimeoutMs: ms(100, 120_000).default(10_000),
}).prefault({});

/** Reconnect backoff (agent). */
const reconnectSchema = z.strictObject({
  minDelayMs: ms(10, 3_600_000).default(250),
  maxDelayMs: ms(10, 3_600_000).default(30_000),
  /** Fraction of each delay randomised (0 = none, 0.5 = ±50%). */
  jitter: numberIn(0, 1, 'a fraction').default(0.2),
}).superRefine((r, ctx) => {
  if (r.minDelayMs > r.maxDelayMs) {
    ctx.addIssue({ code: 'custom', path: ['maxDelayMs'], message: `expected maxDelayMs ≥ minDelayMs (${r.minDelayMs}), got ${r.maxDelayMs}` });
  }
}).prefault({});

/** Builds the gateway schema; relative file paths resolve against `baseDir`. */
export function gatewaySchema(baseDir: string) {
  return z.strictObject({
    listen: hostPort.default({ host: '::', port: 4433 }),
    tls: z.strictObject({
      cert: filePath(baseDir),
      key: filePath(baseDir),
      /** CA bundle that client certificates must chain to; required with requireClientCert. */
      ca: filePath(baseDir).optional(),
      requireClientCert: z.boolean().default(true),
      /** NSS key log file (SSLKEYLOGFILE format) for debugging with Wireshark. Secret material: development only. */
      keylogPath: filePath(baseDir).optional(),
    }),
    auth: z.strictObject({
      tokens: z.array(tokenSchema(baseDir)).default([]),
    }).prefault({}),
    pools: z.strictObject({
      ipv4: ipPrefix(4).optional(),
      ipv6: ipPrefix(6).optional(),
    }).prefault({}),
    /** Prefixes behind the gateway, advertised to agents (filtered by each identity's policy). */
    advertise: z.array(ipPrefix()).default([]),
    policy: z.array(policyEntrySchema).default([]),
    connectUdp: gatewayConnectUdpSchema,
    h2: gatewayH2Schema,
    tun: tunSchema,
    maxSessions: intIn(1, 1_000_000, 'a session count').default(1024),
    /** Sessions one identity may hold at once (so one client cannot exhaust maxSessions or the pools). */
    maxSessionsPerIdentity: intIn(1, 1_000_000, 'a session count').default(64),
    /**
     * QUIC connections one peer IP may hold (before authentication, so kept low:
     * an agent needs one; 32 leaves room for remote-access clients behind one NAT).
     */
    maxConnectionsPerPeerIp: intIn(1, 100_000, 'a connection count').default(32),
    /**
     * QUIC connection / stream receive windows in bytes. Tunnel packets travel as
     * DATAGRAMs, outside flow control; streams carry only headers and capsules, so
     * small windows cost no throughput and bound what an unauthenticated peer can
     * make the gateway buffer (32 connections × 2 MiB per IP instead of 1,000 × 16 MiB).
     */
    connectionWindowBytes: intIn(65_536, 1 << 30, 'a byte count').default(2 * 1024 * 1024),
    streamWindowBytes: intIn(16_384, 1 << 30, 'a byte count').default(256 * 1024),
    keepaliveIntervalMs: ms(1_000, 600_000).default(15_000),
    inspection: inspectionSchema,
    telemetry: telemetrySchema(baseDir),
    admin: adminSchema('127.0.0.1:9090'),
    logLevel: z.enum(LOG_LEVELS).default('info'),
  }).superRefine((c, ctx) => {
    if (c.tls.requireClientCert && c.tls.ca === undefined) {
      ctx.addIssue({ code: 'custom', path: ['tls'], message: 'expected "ca" (the CA client certificates chain to) when requireClientCert is true' });
    }
    if (!c.tls.requireClientCert && c.auth.tokens.length === 0) {
      ctx.addIssue({ code: 'custom', path: ['auth', 'tokens'], message: 'expected at least one token when tls.requireClientCert is false (clients must be authenticated, RFC 9484 §11)' });
    }
    if (c.pools.ipv4 === undefined && c.pools.ipv6 === undefined) {
      ctx.addIssue({ code: 'custom', path: ['pools'], message: 'expected at least one of "ipv4" or "ipv6"' });
    }
  });
}

/** Builds the agent schema; relative file paths resolve against `baseDir`. */
export function agentSchema(baseDir: string) {
  return z.strictObject({
    gateway: z.strictObject({
      /** Gateway address as `host:port`. */
      address: hostPort,
      /** TLS server name (SNI and certificate check); defaults to the host of `address`. */
      serverName: hostName.optional(),
    }),
    mode: z.enum(MODES).default('site-to-site'),
    tls: z.strictObject({
      cert: filePath(baseDir).optional(),
      key: filePath(baseDir).optional(),
      ca: filePath(baseDir),
      keylogPath: filePath(baseDir).optional(),
    }),
    auth: z.strictObject({
      token: nonEmptyString('a token string').optional(),
      tokenFile: filePath(baseDir).optional(),
    }).prefault({}),
    /** Site-to-site: this cluster's prefixes, sent with ROUTE_ADVERTISEMENT (RFC 9484 §4.7.3). */
    advertise: z.array(ipPrefix()).default([]),
    /** Install routes for the prefixes the gateway advertises. */
    acceptRoutes: z.boolean().default(true),
    /** Remote access only: SNAT local traffic leaving through the tunnel to the assigned address. */
    snat: z.boolean().default(false),
    tun: tunSchema,
    /** Clamp TCP MSS on SYNs so segments fit the tunnel MTU. */
    mssClamp: z.boolean().default(true),
    reconnect: reconnectSchema,
    keepaliveIntervalMs: ms(1_000, 600_000).default(15_000),
    h2: agentH2Schema,
    connectUdp: z.strictObject({
      forwarders: z.array(z.strictObject({
        listen: hostPort,
        target: z.strictObject({ host: hostName, port: portNumber }),
      })).default([]),
    }).prefault({}),
    inspection: inspectionSchema,
    telemetry: telemetrySchema(baseDir),
    admin: adminSchema('127.0.0.1:9091'),
    logLevel: z.enum(LOG_LEVELS).default('info'),
  }).superRefine((c, ctx) => {
    const hasCert = c.tls.cert !== undefined || c.tls.key !== undefined;
    if ((c.tls.cert === undefined) !== (c.tls.key === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['tls'], message: 'expected both "cert" and "key", or neither' });
    }
    if (c.auth.token !== undefined && c.auth.tokenFile !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['auth'], message: 'expected at most one of "token" or "tokenFile"' });
    }
    if (!hasCert && c.auth.token === undefined && c.auth.tokenFile === undefined) {
      ctx.addIssue({ code: 'custom', path: ['tls'], message: 'expected a client certificate ("cert" and "key") or a bearer token (auth.token / auth.tokenFile)' });
    }
    if (c.mode === 'site-to-site' && c.snat) {
      ctx.addIssue({ code: 'custom', path: ['snat'], message: 'expected snat only with mode: remote-access (site-to-site preserves addresses)' });
    }
    if (c.mode === 'remote-access' && c.advertise.length > 0) {
      ctx.addIssue({ code: 'custom', path: ['advertise'], message: 'expected no advertised prefixes with mode: remote-access' });
    }
  });
}

/** Validated, defaulted gateway configuration; file paths are absolute. */
export type GatewayConfig = z.output<ReturnType<typeof gatewaySchema>>;
/** Validated, defaulted agent configuration; file paths are absolute. */
export type AgentConfig = z.output<ReturnType<typeof agentSchema>>;
/** One workload-name entry (`telemetry.workloads`). */
export type WorkloadEntry = GatewayConfig['telemetry']['workloads'][number];
/** One per-identity policy entry. */
export type PolicyEntry = GatewayConfig['policy'][number];
