/**
 * Prometheus metrics of one daemon, named after Istio ztunnel's. Hot paths
 * add to preallocated Float64Arrays indexed by small integer ids; values are
 * copied into prom-client only when /metrics is scraped (off the data path).
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { InspectMetrics } from './inspect-metrics.js';
import { SlotHistogram } from './slot-histogram.js';
import { loadNative, nativeAvailable } from '../native/addon.js';
import { LabelRegistry, snakeLabel } from './label-registry.js';
import type { WorkloadMap } from './workload-map.js';

/** Which end reports a series (the `reporter` label). */
export type Reporter = 'agent' | 'gateway';

/** Options for {@link MeshMetrics}. */
export interface MeshMetricsOptions {
  readonly reporter: Reporter;
  /** Resolves addresses to workload names; consulted once per flow. */
  readonly workloads: WorkloadMap;
  /** Registry to register into; a new one by default (one per daemon). */
  readonly registry?: Registry;
  /** Distinct peer identities labelled before the rest become "other". Default 1024. */
  readonly maxIdentities?: number;
  /** Distinct (source workload, destination workload, identity) label sets before the rest share an "other" set. Default 4096. */
  readonly maxLabelSets?: number;
  /** Also export Node process metrics (CPU, memory, event-loop lag) with prefix `mtun_`. Default true. */
  readonly processMetrics?: boolean;
}

/** Distinct close reasons (per protocol), drop reasons and ICMP types labelled; beyond this, "other". */
export const MAX_REASONS = 32;

/** Handshake RTT histogram buckets, seconds (100 µs to 10 s). */
export const HANDSHAKE_RTT_BUCKETS = [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

// Per-label-set counter fields (index into the slot's block).
const F_TCP_OPENED = 0;
const F_TCP_FAILED = 1;
const F_TCP_SENT = 2;
const F_TCP_RECV = 3;
const F_TCP_RETRANS = 4;
const F_UDP_OPENED = 5;
const F_UDP_SENT = 6;
const F_UDP_RECV = 7;
const F_UDP_SENT_PKTS = 8;
const F_UDP_RECV_PKTS = 9;
const NF = 10;

// Per-identity tunnel fields.
const T_SESSIONS = 0;
const T_OPENED = 1;
const T_DGRAM_SENT = 2;
const T_DGRAM_RECV = 3;
const T_BYTES_SENT = 4;
const T_BYTES_RECV = 5;
/** QUIC smoothed RTT of the identity's tunnel connection, ms; NaN when unknown (no session, or HTTP/2). */
const T_RTT_MS = 6;
const NT = 7;

type Labels = Record<string, string>;

/**
 * The metric set of one daemon. Flow counters are keyed by a label-set
 * *slot* resolved once per flow with {@link labelSet}; tunnel counters by an
 * identity id from {@link identityId}; drops and ICMP errors by ids from
 * {@link dropReasonId} / {@link icmpTypeId}, resolved at setup. All `add*`
 * methods are allocation-free and safe on the per-packet path.
 */
export class MeshMetrics {
  readonly registry: Registry;
  readonly reporter: Reporter;
  readonly workloads: WorkloadMap;
  /** RTT per segment, QUIC handshakes, HTTP/1 responses (inspect-metrics.ts), on the same label-set slots. */
  readonly inspect: InspectMetrics;

  private readonly identities: LabelRegistry;
  private readonly closeReasons = new LabelRegistry(MAX_REASONS, snakeLabel);
  private readonly dropReasons = new LabelRegistry(MAX_REASONS, snakeLabel);
  private readonly icmpTypes = new LabelRegistry(MAX_REASONS, snakeLabel);
  private readonly maxLabelSets: number;

  private readonly slotByKey = new Map<number, number>();
  private readonly slotLabels: Labels[] = [];
  private flow = new Float64Array(NF * 16);
  private tcpClosedCounts = new Float64Array(MAX_REASONS * 16);
  private udpClosedCounts = new Float64Array(MAX_REASONS * 16);
  private readonly tunnel: Float64Array;
  private readonly drops = new Float64Array(MAX_REASONS);
  private readonly icmpSent = new Float64Array(MAX_REASONS);
  private readonly rtt: SlotHistogram;

  constructor(opts: MeshMetricsOptions) {
    this.registry = opts.registry ?? new Registry();
    this.reporter = opts.reporter;
    this.workloads = opts.workloads;
    const maxIds = Math.max(2, Math.min(opts.maxIdentities ?? 1024, 1_048_576));
    this.identities = new LabelRegistry(maxIds);
    this.maxLabelSets = opts.maxLabelSets ?? 4096;
    this.tunnel = new Float64Array(NT * maxIds);
    for (let i = 0; i < maxIds; i++) this.tunnel[i * NT + T_RTT_MS] = NaN;
    const reg = [this.registry];
    const flowLabels = ['reporter', 'source_workload', 'destination_workload', 'peer_identity'];

    const flowCounter = (name: string, help: string, field: number): void => {
      const m: Counter<string> = new Counter({
        name, help, labelNames: flowLabels, registers: reg,
        collect: () => {
          m.reset();
          for (let s = 0; s < this.slotLabels.length; s++) m.inc(this.slotLabels[s]!, this.flow[s * NF + field]!);
        },
      });
    };
    const closedCounter = (name: string, help: string, table: () => Float64Array): void => {
      const m: Counter<string> = new Counter({
        name, help, labelNames: [...flowLabels, 'reason'], registers: reg,
        collect: () => {
          m.reset();
          const t = table();
          for (let s = 0; s < this.slotLabels.length; s++) {
            for (let r = 0; r < this.closeReasons.size; r++) {
              const v = t[s * MAX_REASONS + r]!;
              if (v > 0) m.inc({ ...this.slotLabels[s]!, reason: this.closeReasons.values[r]! }, v);
            }
          }
        },
      });
    };

    flowCounter('mtun_tcp_connections_opened_total', 'TCP connections seen opening (first SYN) through the tunnel.', F_TCP_OPENED);
    closedCounter('mtun_tcp_connections_closed_total', 'TCP connections closed, by reason.', () => this.tcpClosedCounts);
    flowCounter('mtun_tcp_connections_failed_total', 'TCP connections whose handshake never completed.', F_TCP_FAILED);
    flowCounter('mtun_tcp_sent_bytes_total', 'TCP payload bytes from initiator to responder.', F_TCP_SENT);
    flowCounter('mtun_tcp_received_bytes_total', 'TCP payload bytes from responder to initiator.', F_TCP_RECV);
    flowCounter('mtun_tcp_retransmits_total', 'TCP segments seen retransmitted (both directions).', F_TCP_RETRANS);
    this.rtt = new SlotHistogram({
      name: 'mtun_tcp_handshake_rtt_seconds',
      help: 'TCP handshake round-trip time as seen by this end (SYN to ACK of SYN-ACK at the initiator side, SYN-ACK to ACK at the responder side).',
      buckets: HANDSHAKE_RTT_BUCKETS, registers: reg, labelsOf: (slot) => this.slotLabels[slot]!,
    });
    flowCounter('mtun_udp_flows_opened_total', 'UDP flows seen opening.', F_UDP_OPENED);
    closedCounter('mtun_udp_flows_closed_total', 'UDP flows closed, by reason.', () => this.udpClosedCounts);
    flowCounter('mtun_udp_sent_bytes_total', 'UDP payload bytes from initiator to responder.', F_UDP_SENT);
    flowCounter('mtun_udp_received_bytes_total', 'UDP payload bytes from responder to initiator.', F_UDP_RECV);
    flowCounter('mtun_udp_sent_packets_total', 'UDP datagrams from initiator to responder.', F_UDP_SENT_PKTS);
    flowCounter('mtun_udp_received_packets_total', 'UDP datagrams from responder to initiator.', F_UDP_RECV_PKTS);

    const tunnelLabels = ['reporter', 'peer_identity'];
    const tunnelMetric = (kind: 'counter' | 'gauge', name: string, help: string, field: number): void => {
      const collect = (m: Counter<string> | Gauge<string>): void => {
        m.reset();
        for (let i = 0; i < this.identities.size; i++) {
          const labels = { reporter: this.reporter, peer_identity: this.identities.values[i]! };
          const v = this.tunnel[i * NT + field]!;
          if (m instanceof Gauge) m.set(labels, v);
          else m.inc(labels, v);
        }
      };
      if (kind === 'gauge') {
        const g: Gauge<string> = new Gauge({ name, help, labelNames: tunnelLabels, registers: reg, collect: () => collect(g) });
      } else {
        const c: Counter<string> = new Counter({ name, help, labelNames: tunnelLabels, registers: reg, collect: () => collect(c) });
      }
    };
    tunnelMetric('gauge', 'mtun_tunnel_sessions', 'Tunnel sessions (CONNECT-IP / CONNECT-UDP streams) currently open.', T_SESSIONS);
    tunnelMetric('counter', 'mtun_tunnel_sessions_opened_total', 'Tunnel sessions opened.', T_OPENED);
    tunnelMetric('counter', 'mtun_tunnel_sent_datagrams_total', 'HTTP Datagrams sent into the tunnel.', T_DGRAM_SENT);
    tunnelMetric('counter', 'mtun_tunnel_received_datagrams_total', 'HTTP Datagrams received from the tunnel.', T_DGRAM_RECV);
    tunnelMetric('counter', 'mtun_tunnel_sent_bytes_total', 'Payload bytes (IP packets or UDP payloads) sent into the tunnel.', T_BYTES_SENT);
    tunnelMetric('counter', 'mtun_tunnel_received_bytes_total', 'Payload bytes received from the tunnel.', T_BYTES_RECV);
    const tunnelRtt: Gauge<string> = new Gauge({
      name: 'mtun_tunnel_rtt_seconds',
      help: "Smoothed RTT of the QUIC connection carrying the peer's tunnel (the underlay between agent and gateway, RFC 9002 §5.3), sampled once a second; absent over HTTP/2.",
      labelNames: tunnelLabels, registers: reg,
      collect: () => {
        tunnelRtt.reset();
        for (let i = 0; i < this.identities.size; i++) {
          const v = this.tunnel[i * NT + T_RTT_MS]!;
          if (!Number.isNaN(v)) tunnelRtt.set({ reporter: this.reporter, peer_identity: this.identities.values[i]! }, v / 1000);
        }
      },
    });

    const reasonCounter = (name: string, help: string, label: string, names: LabelRegistry, values: Float64Array): void => {
      const m: Counter<string> = new Counter({
        name, help, labelNames: ['reporter', label], registers: reg,
        collect: () => {
          m.reset();
          for (let i = 0; i < names.size; i++) m.inc({ reporter: this.reporter, [label]: names.values[i]! }, values[i]!);
        },
      });
    };
    reasonCounter('mtun_tunnel_dropped_packets_total', 'Packets dropped, by reason (policy, source check, queue full, malformed, ...).', 'reason', this.dropReasons, this.drops);
    reasonCounter('mtun_tunnel_icmp_errors_sent_total', 'ICMP/ICMPv6 errors generated, by type.', 'type', this.icmpTypes, this.icmpSent);

    this.inspect = new InspectMetrics(this.registry, this.reporter, (slot) => this.slotLabels[slot]!, () => this.slotLabels.length);

    if (opts.processMetrics ?? true) {
      collectDefaultMetrics({ register: this.registry, prefix: 'mtun_' });
      nativeHeapGauge(this.registry);
    }
  }

  // ---- setup-time / per-flow resolution ------------------------------------

  /** Id of a peer identity for tunnel counters ("" becomes "none"; past the cap, "other"). Once per session. */
  identityId(identity: string): number {
    return this.identities.id(identity === '' ? 'none' : identity);
  }

  /** Id of a drop reason (snake_case, e.g. `policy_denied`). Resolve at setup; at most {@link MAX_REASONS}. */
  dropReasonId(reason: string): number {
    return this.dropReasons.id(reason);
  }

  /** Id of an ICMP error type label (e.g. `packet_too_big`). Resolve at setup. */
  icmpTypeId(type: string): number {
    return this.icmpTypes.id(type);
  }

  /** Id of a flow close reason. Once per flow close. */
  closeReasonId(reason: string): number {
    return this.closeReasons.id(reason);
  }

  /**
   * Label-set slot for a flow from its addresses (text) and peer identity.
   * Cached by (source workload, destination workload, identity) ids; past
   * `maxLabelSets` all new combinations share one "other" slot. Once per flow.
   */
  labelSet(srcAddr: string, dstAddr: string, peerIdentity: string): number {
    return this.labelSetByIds(this.workloads.lookupText(srcAddr), this.workloads.lookupText(dstAddr), this.identityId(peerIdentity));
  }

  /** As {@link labelSet}, from workload ids (see WorkloadMap) and an identity id. */
  labelSetByIds(srcWorkload: number, dstWorkload: number, identity: number): number {
    const nw = this.workloads.names.length;
    const key = (srcWorkload * nw + dstWorkload) * 1_048_576 + identity;
    const hit = this.slotByKey.get(key);
    if (hit !== undefined) return hit;
    if (this.slotLabels.length >= this.maxLabelSets - 1) {
      const overflowKey = -1;
      let slot = this.slotByKey.get(overflowKey);
      if (slot === undefined) slot = this.newSlot(overflowKey, { reporter: this.reporter, source_workload: 'other', destination_workload: 'other', peer_identity: 'other' });
      return slot;
    }
    return this.newSlot(key, {
      reporter: this.reporter,
      source_workload: this.workloads.names[srcWorkload] ?? 'unknown',
      destination_workload: this.workloads.names[dstWorkload] ?? 'unknown',
      peer_identity: this.identities.values[identity] ?? 'other',
    });
  }

  /** Labels of a slot (for flow logs and tests). */
  slotLabelsOf(slot: number): Readonly<Labels> {
    return this.slotLabels[slot]!;
  }

  // ---- hot path: numbers only ----------------------------------------------

  /** A TCP connection was seen opening. */
  tcpOpened(slot: number): void { this.flow[slot * NF + F_TCP_OPENED]! += 1; }

  /** TCP payload bytes moved (deltas); call as often as convenient. */
  addTcp(slot: number, sentBytes: number, receivedBytes: number, retransmits: number): void {
    const b = slot * NF;
    this.flow[b + F_TCP_SENT]! += sentBytes;
    this.flow[b + F_TCP_RECV]! += receivedBytes;
    this.flow[b + F_TCP_RETRANS]! += retransmits;
  }

  /** A TCP connection closed with `reasonId` (from closeReasonId); `failed` when the handshake never completed. */
  tcpClosed(slot: number, reasonId: number, failed: boolean): void {
    this.tcpClosedCounts[slot * MAX_REASONS + reasonId]! += 1;
    if (failed) this.flow[slot * NF + F_TCP_FAILED]! += 1;
  }

  /** Records one handshake RTT, seconds. Once per connection. */
  observeHandshakeRtt(slot: number, seconds: number): void {
    this.rtt.observe(slot, seconds);
  }

  /** A UDP flow was seen opening. */
  udpOpened(slot: number): void { this.flow[slot * NF + F_UDP_OPENED]! += 1; }

  /** UDP payload bytes and datagrams moved (deltas). */
  addUdp(slot: number, sentBytes: number, receivedBytes: number, sentPackets: number, receivedPackets: number): void {
    const b = slot * NF;
    this.flow[b + F_UDP_SENT]! += sentBytes;
    this.flow[b + F_UDP_RECV]! += receivedBytes;
    this.flow[b + F_UDP_SENT_PKTS]! += sentPackets;
    this.flow[b + F_UDP_RECV_PKTS]! += receivedPackets;
  }

  /** A UDP flow closed with `reasonId`. */
  udpClosed(slot: number, reasonId: number): void {
    this.udpClosedCounts[slot * MAX_REASONS + reasonId]! += 1;
  }

  /** A tunnel session for identity id `id` opened. */
  sessionOpened(id: number): void {
    this.tunnel[id * NT + T_SESSIONS]! += 1;
    this.tunnel[id * NT + T_OPENED]! += 1;
  }

  /** A tunnel session for identity id `id` closed; its tunnel RTT is forgotten once none is left. */
  sessionClosed(id: number): void {
    if (this.tunnel[id * NT + T_SESSIONS]! > 0) this.tunnel[id * NT + T_SESSIONS]! -= 1;
    if (this.tunnel[id * NT + T_SESSIONS] === 0) this.tunnel[id * NT + T_RTT_MS] = NaN;
  }

  /**
   * The QUIC connection carrying identity id `id`'s tunnel has this smoothed
   * RTT now, ms (the latest of its sessions' samples wins). Off the packet
   * path: once a second per session (TunnelCounterSync.update).
   */
  setTunnelRtt(id: number, ms: number): void {
    if (Number.isFinite(ms) && ms >= 0) this.tunnel[id * NT + T_RTT_MS] = ms;
  }

  /** The latest tunnel RTT of identity id `id`, ms, or null when unknown (no session, or one over HTTP/2). */
  tunnelRttMs(id: number): number | null {
    const v = this.tunnel[id * NT + T_RTT_MS]!;
    return Number.isNaN(v) ? null : v;
  }

  /** `datagrams` HTTP Datagrams carrying `bytes` payload bytes sent into the tunnel for identity id `id`. */
  addTunnelSent(id: number, datagrams: number, bytes: number): void {
    this.tunnel[id * NT + T_DGRAM_SENT]! += datagrams;
    this.tunnel[id * NT + T_BYTES_SENT]! += bytes;
  }

  /** Datagrams and payload bytes received from the tunnel for identity id `id`. */
  addTunnelReceived(id: number, datagrams: number, bytes: number): void {
    this.tunnel[id * NT + T_DGRAM_RECV]! += datagrams;
    this.tunnel[id * NT + T_BYTES_RECV]! += bytes;
  }

  /** `count` packets dropped for reason id `reasonId` (from dropReasonId). */
  drop(reasonId: number, count = 1): void { this.drops[reasonId]! += count; }

  /** An ICMP error of type id `typeId` (from icmpTypeId) was sent. */
  icmpErrorSent(typeId: number, count = 1): void { this.icmpSent[typeId]! += count; }

  /** Packets dropped so far, by reason (non-zero reasons only). Off the data path; allocates. */
  dropsByReason(): Record<string, number> {
    const out: Record<string, number> = {};
    const names = this.dropReasons.values;
    for (let i = 0; i < names.length; i++) if (this.drops[i]! > 0) out[names[i]!] = this.drops[i]!;
    return out;
  }

  /** Tunnel counters summed over every peer identity. Off the data path. */
  tunnelTotals(): { sessions: number; sentDatagrams: number; receivedDatagrams: number; sentBytes: number; receivedBytes: number } {
    const t = { sessions: 0, sentDatagrams: 0, receivedDatagrams: 0, sentBytes: 0, receivedBytes: 0 };
    for (let i = 0; i < this.identities.size; i++) {
      const b = i * NT;
      t.sessions += this.tunnel[b + T_SESSIONS]!;
      t.sentDatagrams += this.tunnel[b + T_DGRAM_SENT]!;
      t.receivedDatagrams += this.tunnel[b + T_DGRAM_RECV]!;
      t.sentBytes += this.tunnel[b + T_BYTES_SENT]!;
      t.receivedBytes += this.tunnel[b + T_BYTES_RECV]!;
    }
    return t;
  }

  /** The latest tunnel RTT per peer identity with one, ms, for the live view. Off the data path; allocates. */
  tunnelRtts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (let i = 0; i < this.identities.size; i++) {
      const v = this.tunnel[i * NT + T_RTT_MS]!;
      if (!Number.isNaN(v)) out[this.identities.values[i]!] = v;
    }
    return out;
  }

  /** The Prometheus text exposition of every metric (what /metrics serves). */
  async text(): Promise<string> {
    return this.registry.metrics();
  }

  // ---- internals ------------------------------------------------------------

  private newSlot(key: number, labels: Labels): number {
    const slot = this.slotLabels.length;
    this.slotLabels.push(labels);
    this.slotByKey.set(key, slot);
    if ((slot + 1) * NF > this.flow.length) {
      this.flow = grow(this.flow, this.flow.length * 2);
      this.tcpClosedCounts = grow(this.tcpClosedCounts, this.tcpClosedCounts.length * 2);
      this.udpClosedCounts = grow(this.udpClosedCounts, this.udpClosedCounts.length * 2);
    }
    return slot;
  }
}

function grow(a: Float64Array, n: number): Float64Array<ArrayBuffer> {
  const b = new Float64Array(n);
  b.set(a);
  return b;
}

/**
 * `mtun_native_heap_bytes{state}`: glibc malloc's in-use and free-in-arena
 * bytes (the addon's mallocStats), where the QUIC engine, GnuTLS and libuv
 * allocate, and the engine's page pool for ngtcp2 (engine_pages): the part
 * of RSS that nodejs_heap_* and external memory do not show. Absent without
 * the addon.
 */
function nativeHeapGauge(registry: Registry): void {
  if (!nativeAvailable()) return;
  const native = loadNative();
  const out = new Float64Array(4);
  const g: Gauge<'state'> = new Gauge({
    name: 'mtun_native_heap_bytes',
    help: 'Native heap: in_use (malloc, including mmap\'d chunks), free (held in malloc arenas, not returned to the system), engine_pages (the QUIC engine\'s page pool for ngtcp2: address space handed out, resident only where touched).',
    labelNames: ['state'],
    registers: [registry],
    collect: () => {
      native.mallocStats(out);
      if (out[0]! < 0) return; // not glibc: nothing to report
      g.set({ state: 'in_use' }, out[0]!);
      g.set({ state: 'free' }, out[1]!);
      g.set({ state: 'engine_pages' }, out[3]!);
    },
  });
}
