/**
 * Zod schemas for `gateway.yaml` and `agent.yaml`: every object is strict
 * (unknown keys are errors), every optional field has its default here, and
 * docs/configuration.md describes each field.
 */
import { z } from 'zod';
import { formatPrefix, prefixCovers, type IpPrefix } from '../packet/ip-address.js';
import {
  filePath, logPath, hostName, hostPort, intIn, interfaceName, ipPrefix, nonEmptyList, nonEmptyString, numberIn, portNumber, portSpec,
} from './values.js';
import { agentH2Schema, gatewayH2Schema } from './h2-schema.js';
import { DEFAULT_DGRAM_QUEUE_DELAY } from '../quic/queue-delay.js';

const QUEUE_DELAY_TARGET_MS = DEFAULT_DGRAM_QUEUE_DELAY.targetUs / 1000;
const QUEUE_DELAY_INTERVAL_MS = DEFAULT_DGRAM_QUEUE_DELAY.intervalUs / 1000;

/** Log levels accepted by `logLevel` (pino's). */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

/** Transport protocols a policy rule can name; `icmp` covers ICMP and ICMPv6. */
export const POLICY_PROTOCOLS = ['tcp', 'udp', 'icmp', 'any'] as const;

/** Tunnel modes: site-to-site keeps addresses end to end; remote-access uses a gateway-assigned address. */
export const MODES = ['site-to-site', 'remote-access'] as const;

const DAY_MS = 86_400_000;

const ms = (min: number, max: number) => intIn(min, max, 'a duration in milliseconds');

/** `admin`: the off-data-path HTTP server (metrics, healthz, readyz, status, flows, capture). */
function adminSchema(defaultListen: string) {
  return z.strictObject({
    enabled: z.boolean().default(true),
    listen: hostPort.default(hostPort.parse(defaultListen)),
    // `mtun capture`: packet payloads leave the daemon, so it is off unless enabled, and loopback callers only unless allowed.
    capture: z.strictObject({
      enabled: z.boolean().default(false),
      allowRemote: z.boolean().default(false),
      queueBytes: intIn(65_536, 1 << 30, 'a byte count').default(4 << 20),
      queuePackets: intIn(16, 1_048_576, 'a packet count').default(8192),
    }).prefault({}),
  }).prefault({});
}

/**
 * `inspection`: passive flow tracking (src/inspect FlowTracker). Timeouts
 * left out keep the tracker's defaults (Linux conntrack's), so the parsed
 * `timeouts` object can be passed to the tracker as is.
 */
const inspectionSchema = z.strictObject({
  maxFlows: intIn(1, 10_000_000, 'a flow count').default(262_144),
  /** Bytes all flows' TLS ClientHello peek buffers may hold together (#12 item 1); past it a flow's peek is abandoned and counted. */
  peekBudgetBytes: intIn(0, 1 << 30, 'a byte count').default(16 * 1024 * 1024),
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
      /**
       * Failed TCP connections (handshake never completed) logged per second
       * at most; the rest are counted in mtun_flow_log_suppressed_total, and
       * the connection metrics still count every one. A SYN flood would
       * otherwise write two lines per spoofed SYN.
       */
      maxFailedPerSecond: z.number().int().min(0).max(1_000_000).default(100),
    }).prefault({}),
  }).prefault({});
}

/** `tun`: the TUN device (both daemons). */
const tunFields = {
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
  /**
   * CoDel (RFC 8289) on the tunnel's DATAGRAM send queue, where packets from
   * the TUN wait when the QUIC path is slower than the TUN: once the queue's
   * delay has stayed above `targetMs` for an interval, its oldest packet is
   * dropped unsent at CoDel's rate (mtun_quic_dgram_frames_dropped_total
   * {reason="queue-delay"}), so a bulk TCP flow slows down instead of queueing
   * in front of every other flow. The interval is `intervalMs` or twice the
   * tunnel's smoothed RTT, whichever is longer. `targetMs: 0` turns it off.
   */
  queueDelay: z.strictObject({
    targetMs: numberIn(0, 1_000, 'a delay in milliseconds').default(QUEUE_DELAY_TARGET_MS),
    intervalMs: numberIn(0.1, 10_000, 'a duration in milliseconds').default(QUEUE_DELAY_INTERVAL_MS),
  }).superRefine((q, ctx) => {
    if (q.targetMs !== 0 && q.targetMs >= q.intervalMs) {
      ctx.addIssue({ code: 'custom', message: `expected targetMs (default ${QUEUE_DELAY_TARGET_MS}) below intervalMs (default ${QUEUE_DELAY_INTERVAL_MS}), got targetMs ${q.targetMs} and intervalMs ${q.intervalMs}; targetMs 0 turns it off` });
    }
  }).prefault({}),
};
/** The gateway's `tun`: as the agent's, plus where its one agent's packets cross. */
const tunSchema = z.strictObject({
  ...tunFields,
  /**
   * Carry the packets of one agent on a native thread
   * (src/native/dataplane.c) instead of the event loop, both ways: while the
   * gateway has exactly one HTTP/3 connection, its first CONNECT-IP
   * session's plain packets that pass the session's check (compiled to C)
   * are written into the TUN, and the network's answers on flows the thread
   * saw that agent use are sent back, without waking JavaScript. Everything
   * else (other sessions and connections, a second agent, packets of
   * flows the network opened, RSTs, FINs, ICMP errors, failed checks) takes
   * the event loop's path and its inbound filter, which still sees every
   * packet for telemetry. Only with the native TUN and socket. On by
   * default since the thread keeps what a full send buffer refuses, as the
   * event loop does (docs/decisions/0003, "Step 3 as built"); `false`: the
   * event loop reads the TUN and the socket.
   */
  thread: z.boolean().default(true),
}).prefault({});

/** The agent's `tun`: as the gateway's, plus where its TUN → UDP leg runs. */
const agentTunSchema = z.strictObject({
  ...tunFields,
  /**
   * Run the tunnel's per-packet path on a native thread
   * (src/native/dataplane.c) instead of the event loop: it reads the TUN and
   * the socket, and the session's plain packets cross either way without
   * waking JavaScript, which still sees every packet for telemetry and
   * handles the rest (Packet Too Big, failed checks,
   * capsules, drops). Only over HTTP/3 with the native TUN and socket. On by
   * default: with both legs it took a third off the idle round trip, kept or
   * raised throughput and used less CPU; an upload's ping under load grew
   * by about half a millisecond (BENCHMARKS.md, "The agent's TUN thread").
   * false: the event loop.
   */
  thread: z.boolean().default(true),
}).prefault({});

/** A policy rule: traffic to these destination prefixes with these protocols and ports is allowed. */
const allowRuleSchema = z.strictObject({
  prefixes: nonEmptyList(ipPrefix(), 'destination prefix'),
  protocols: z.array(z.enum(POLICY_PROTOCOLS)).min(1, { error: 'expected at least one protocol' }).default(['any']),
  /** Applies to TCP and UDP; absent means all ports. */
  ports: z.array(portSpec).min(1, { error: 'expected at least one port (omit the key for all ports)' }).optional(),
});

/**
 * An inbound rule (issue #12 item 8): traffic from these source prefixes of
 * the gateway's network may open flows toward the identity's own prefixes
 * (advertised site prefixes or leased addresses), with these protocols and
 * destination ports. Return traffic of flows the agent opened needs no rule.
 */
const inboundRuleSchema = z.strictObject({
  sources: nonEmptyList(ipPrefix(), 'source prefix'),
  /** Destination prefixes, each inside the identity's `advertise` or a pool; absent means all of the identity's prefixes. */
  prefixes: nonEmptyList(ipPrefix(), 'destination prefix (omit the key for all of the identity\'s prefixes)').optional(),
  protocols: z.array(z.enum(POLICY_PROTOCOLS)).min(1, { error: 'expected at least one protocol' }).default(['any']),
  /** Destination ports for TCP and UDP; absent means all ports. */
  ports: z.array(portSpec).min(1, { error: 'expected at least one port (omit the key for all ports)' }).optional(),
});

/** `inboundTracking` (gateway): the connection table behind the inbound default-deny. Read at start. */
const inboundTrackingSchema = z.strictObject({
  maxFlows: intIn(1, 10_000_000, 'a flow count').default(65_536),
  /** Flows one identity may hold in the table (default half of maxFlows): no agent can evict all the others' flows. */
  maxFlowsPerIdentity: intIn(1, 10_000_000, 'a flow count').optional(),
  timeouts: z.strictObject({
    tcpOpeningMs: ms(1_000, DAY_MS).optional(),
    tcpEstablishedMs: ms(1_000, 30 * DAY_MS).optional(),
    tcpClosingMs: ms(1_000, DAY_MS).optional(),
    udpMs: ms(1_000, DAY_MS).optional(),
    udpStreamMs: ms(1_000, DAY_MS).optional(),
    icmpMs: ms(1_000, DAY_MS).optional(),
  }).prefault({}),
}).prefault({});

/** Per-identity policy (gateway): what an authenticated client may reach and advertise. Default deny. */
const policyEntrySchema = z.strictObject({
  /** Exact identity (SPIFFE URI SAN or token identity), or a prefix ending in `*`. */
  identity: nonEmptyString('an identity (SPIFFE URI or token identity; a trailing "*" matches any suffix)'),
  allow: z.array(allowRuleSchema).default([]),
  /** Prefixes this identity may advertise with ROUTE_ADVERTISEMENT (site-to-site); packets from them pass the source check. */
  advertise: z.array(ipPrefix()).default([]),
  /** What the gateway's network may open toward this identity's prefixes; default none (return traffic only). */
  inbound: z.array(inboundRuleSchema).default([]),
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

/**
 * `masque` (gateway): limits on what one CONNECT-IP client may ask of the
 * route table (#12 item 2). Read when a session opens; a reload applies to new sessions.
 */
const gatewayMasqueSchema = z.strictObject({
  /** IP address ranges considered per ROUTE_ADVERTISEMENT capsule (RFC 9484 §4.7.3); the rest are refused and counted. */
  maxRangesPerAdvertisement: intIn(1, 65_536, 'a range count').default(64),
  /** Client-advertised prefixes one session may have installed; the rest are refused and counted. */
  maxClientPrefixes: intIn(1, 1_000_000, 'a prefix count').default(256),
  /** ROUTE_ADVERTISEMENTs applied per second per session (token bucket); one arriving early waits, a later one replaces it. */
  advertisementsPerSecond: numberIn(0.001, 1_000, 'a rate per second').default(1),
  /** Burst of the advertisement token bucket. */
  advertisementBurst: intIn(1, 1_000, 'a capsule count').default(8),
}).prefault({});

/**
 * The replica index in an environment variable's value: the trailing decimal
 * digits, so a StatefulSet pod name (`mtun-gateway-1`) or the Downward API's
 * `apps.kubernetes.io/pod-index` label (`1`) both give 1. Null when the value
 * does not end in digits.
 */
export function replicaIndexFromEnv(value: string): number | null {
  const m = /(\d{1,6})$/.exec(value.trim());
  return m === null ? null : Number(m[1]);
}

/**
 * `pools.slice`: this replica leases only from the `index`-th of `count`
 * equal parts of each pool, so replicas never hand out the same address.
 * `indexEnv` names an environment variable read when the file is loaded.
 */
const poolSliceSchema = z.strictObject({
  index: intIn(0, 65_535, 'a replica index').optional(),
  indexEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: 'expected an environment variable name' }).optional(),
  count: intIn(1, 65_536, 'a replica count'),
}).transform((s, ctx) => {
  if ((s.index === undefined) === (s.indexEnv === undefined)) {
    ctx.addIssue({ code: 'custom', message: 'expected exactly one of "index" or "indexEnv"' });
    return z.NEVER;
  }
  let index = s.index;
  if (s.indexEnv !== undefined) {
    const raw = process.env[s.indexEnv];
    index = raw === undefined ? undefined : (replicaIndexFromEnv(raw) ?? undefined);
    if (index === undefined) {
      const got = raw === undefined ? 'it is not set' : `its value ${JSON.stringify(raw)} does not end in a number`;
      ctx.addIssue({ code: 'custom', path: ['indexEnv'], message: `expected $${s.indexEnv} to hold the replica index (e.g. a StatefulSet pod name "gw-1"), but ${got}` });
      return z.NEVER;
    }
  }
  if (index! >= s.count) {
    const from = s.indexEnv !== undefined ? ` (from $${s.indexEnv}=${JSON.stringify(process.env[s.indexEnv])})` : '';
    ctx.addIssue({ code: 'custom', path: [s.indexEnv !== undefined ? 'indexEnv' : 'index'], message: `expected a replica index below count ${s.count}, got ${index}${from}` });
    return z.NEVER;
  }
  return { index: index!, count: s.count };
});

/** Longest QUIC-LB server ID: our 16-octet connection IDs less the first octet and a 4-octet nonce. */
const MAX_SERVER_ID_BYTES = 11;

/**
 * `quic.serverId`: the QUIC-LB server ID (draft-ietf-quic-load-balancers)
 * written into every connection ID, as hex (`"0a"`, `"0x0a01"`), or from a
 * replica index in the environment (`{indexEnv, bytes}`: the trailing
 * number, big-endian in `bytes` octets). Output: the ID's octets.
 */
const serverIdSchema = z.union([
  z.string(),
  z.strictObject({ indexEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: 'expected an environment variable name' }), bytes: intIn(1, MAX_SERVER_ID_BYTES, 'a server ID length in octets') }),
], { error: `a server ID as hex (1-${MAX_SERVER_ID_BYTES} octets, e.g. "0a") or {indexEnv, bytes}` }).transform((v, ctx): Uint8Array => {
  if (typeof v === 'string') {
    const hex = v.startsWith('0x') ? v.slice(2) : v;
    if (/^(?:[0-9a-fA-F]{2}){1,11}$/.test(hex)) return Uint8Array.from(Buffer.from(hex, 'hex'));
    ctx.addIssue({ code: 'custom', message: `expected a server ID as hex, 1-${MAX_SERVER_ID_BYTES} octets (e.g. "0a"), got ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  const raw = process.env[v.indexEnv];
  const index = raw === undefined ? null : replicaIndexFromEnv(raw);
  if (index === null || index >= 2 ** (8 * Math.min(v.bytes, 6))) {
    const got = raw === undefined ? 'it is not set' : index === null ? `its value ${JSON.stringify(raw)} does not end in a number` : `${index} does not fit ${v.bytes} octet(s)`;
    ctx.addIssue({ code: 'custom', path: ['indexEnv'], message: `expected $${v.indexEnv} to hold the replica index for the server ID, but ${got}` });
    return z.NEVER;
  }
  const out = new Uint8Array(v.bytes);
  for (let i = v.bytes - 1, n = index; i >= 0; i--, n = Math.floor(n / 256)) out[i] = n % 256;
  return out;
});

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
      /** Shortest prefix a client is assigned (RFC 9484 §4.7.1 requests for shorter ones are raised to it); default one address. */
      minPrefixLength: z.strictObject({
        ipv4: intIn(0, 32, 'a prefix length').default(32),
        ipv6: intIn(0, 128, 'a prefix length').default(128),
      }).prefault({}),
      /** Addresses one identity may lease at once across all its sessions (#12 item 10). */
      maxLeasesPerIdentity: intIn(1, 1_000_000, 'a lease count').default(4),
      /** Several replicas: lease only from this replica's slice of each pool (docs/deployment.md). */
      slice: poolSliceSchema.optional(),
    }).prefault({}),
    quic: z.strictObject({
      /**
       * A secret (≥ 32 bytes, not world-readable) shared by every replica: the
       * stateless reset key (RFC 9000 §10.3) and the TLS ticket key derive from
       * it, so any replica resets a connection it does not hold. Default: both
       * derive from tls.key (the same across restarts of one gateway).
       */
      statelessResetKeyFile: filePath(baseDir).optional(),
      /**
       * QUIC-LB server ID (keyless, config rotation 0) written after the first
       * octet of every connection ID, for a CID-aware load balancer. Unique per
       * replica. In the clear: observers can tell which replica a connection uses.
       */
      serverId: serverIdSchema.optional(),
      /**
       * Retry and Version Negotiation packets sent per second at most, the
       * only answers to unvalidated addresses; Initials over it are dropped
       * and counted (retry-rate-limit). Bounds a spoofed-Initial flood's cost.
       */
      maxRetriesPerSecond: intIn(1, 1_000_000, 'a rate').default(2000),
      /**
       * QUIC Initials to the gateway's port per second the kernel lets
       * through (an nftables rule at raw prerouting, src/daemon/initial-limit.ts);
       * the rest are dropped before the socket. 0 turns it off.
       */
      kernelInitialLimit: z.number().int().min(0).max(10_000_000).default(2000),
    }).prefault({}),
    /** Prefixes behind the gateway, advertised to agents (filtered by each identity's policy). */
    advertise: z.array(ipPrefix()).default([]),
    policy: z.array(policyEntrySchema).default([]),
    inboundTracking: inboundTrackingSchema,
    connectUdp: gatewayConnectUdpSchema,
    masque: gatewayMasqueSchema,
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
    // An inbound rule opens only the identity's own prefixes: its advertised site prefixes or pool (leased) addresses.
    const pools = [c.pools.ipv4, c.pools.ipv6].filter((p) => p !== undefined);
    c.policy.forEach((e, i) => e.inbound.forEach((r, j) => r.prefixes?.forEach((p, k) => {
      if (![...e.advertise, ...pools].some((o) => prefixCovers(o, p))) {
        ctx.addIssue({ code: 'custom', path: ['policy', i, 'inbound', j, 'prefixes', k], message: `expected a prefix inside this identity's advertise list or a pool, got ${formatPrefix(p)}` });
      }
    })));
    const slice = c.pools.slice;
    for (const p of slice !== undefined ? [c.pools.ipv4, c.pools.ipv6] : []) {
      // Each slice needs 2 addresses (slice 0 loses the pool's first one to the reservation).
      if (p !== undefined && (1n << BigInt((p.version === 4 ? 32 : 128) - p.prefixLength)) / BigInt(slice!.count) < 2n) {
        ctx.addIssue({ code: 'custom', path: ['pools', 'slice', 'count'], message: `expected a count that leaves each slice of the IPv${p.version} pool at least 2 addresses, got ${slice!.count}` });
      }
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
    tun: agentTunSchema,
    /** Clamp TCP MSS on SYNs so segments fit the tunnel MTU. */
    mssClamp: z.boolean().default(true),
    reconnect: reconnectSchema,
    keepaliveIntervalMs: ms(1_000, 600_000).default(15_000),
    h2: agentH2Schema,
    connectUdp: z.strictObject({
      forwarders: z.array(z.strictObject({
        listen: hostPort,
        target: z.strictObject({ host: hostName, port: portNumber }),
        /** Local clients (one CONNECT-UDP stream each) at once; the idlest makes room past it. */
        maxClients: intIn(1, 4096, 'a client count').default(32),
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
/** One inbound rule of a policy entry. */
export type InboundRuleEntry = PolicyEntry['inbound'][number];
