/**
 * The TUN thread's counters (src/daemon/tun-thread.ts) as Prometheus
 * metrics, for either daemon (`mtun_agent_…`, `mtun_gateway_…`).
 */
import { Counter, type Registry } from 'prom-client';
import type { QuicEndpointCounters } from '../quic/endpoint.js';
import { TunThreadStat } from './tun-thread.js';

/**
 * Carries what the thread did since `seen` (then set to `st`) into the
 * endpoint's counters, as if the endpoint had received and sent it (the
 * datagrams the thread handed to the endpoint are counted there as they are
 * fed). Returns the GSO sends the path refused and the packets the TUN
 * refused meanwhile, for the daemon's log and drop counters, and the
 * datagrams the thread fed its connection itself (for
 * QuicConnection.noteThreadReceived). Per drain, not per packet.
 */
export function carryThreadCounters(st: Float64Array, seen: Float64Array, c: QuicEndpointCounters): { gsoRefused: number; tunDropped: number; received: number } {
  const d = (i: TunThreadStat): number => st[i]! - seen[i]!;
  const received = d(TunThreadStat.RX_DATAGRAMS) - d(TunThreadStat.RX_TO_ENDPOINT);
  c.datagramsIn += received;
  c.dropRecvError += d(TunThreadStat.RX_REFUSED);
  c.datagramsOut += d(TunThreadStat.UDP_DATAGRAMS);
  c.gsoSends += d(TunThreadStat.UDP_GSO);
  c.groReceives += d(TunThreadStat.RX_GRO);
  c.sendStalls += d(TunThreadStat.UDP_STALLS);
  const r = { gsoRefused: d(TunThreadStat.UDP_GSO_REFUSED), tunDropped: d(TunThreadStat.RX_TUN_DROPPED), received };
  seen.set(st);
  return r;
}

/**
 * `mtun_<role>_tun_thread_packets_total{path}`: packets the TUN thread read and sent itself
 * (`thread`) or handed to the event loop's path (`event_loop`: too big, link-local, fragments, no room);
 * `mtun_<role>_tun_thread_events_total{event}`: its UDP datagrams sent and the send calls (sendmmsg) that carried them, its wakes, GSO sends, GSO sends the path refused (resent one by one), send rounds that
 * met a full socket buffer (EAGAIN: the rest kept for when it is writable), datagrams the kernel refused (lost, QUIC recovers), and times it stopped reading on a full ring (the event loop behind);
 * the receive leg's datagrams received, packets written into the TUN or refused by it, holds (a
 * DATAGRAM for the event loop's path), datagrams handed to the endpoint or dropped (its ring full), recv errors.
 * Read at scrape time; absent counts while no thread runs.
 */
export function registerTunThreadCounters(registry: Registry, role: 'agent' | 'gateway', stats: () => Float64Array | null): void {
  const packets: Counter<'path'> = new Counter({
    name: `mtun_${role}_tun_thread_packets_total`,
    help: 'Packets the TUN thread (tun.thread) read: sent by the thread itself, or handed to the event loop\'s path',
    labelNames: ['path'],
    registers: [registry],
    collect: () => {
      const st = stats();
      packets.reset();
      if (st === null) return;
      packets.inc({ path: 'thread' }, st[TunThreadStat.QUEUED]!);
      packets.inc({ path: 'event_loop' }, st[TunThreadStat.TO_JS]!);
    },
  });
  const events: Counter<'event'> = new Counter({
    name: `mtun_${role}_tun_thread_events_total`,
    help: 'The TUN thread\'s UDP datagrams sent, send calls (sendmmsg) carrying them, wakes, GSO sends, GSO sends the path refused (resent datagram by datagram), send rounds that met a full socket buffer (the rest kept for when it is writable), datagrams the kernel refused (lost; QUIC recovers), times it stopped reading on a full ring; received datagrams, packets written into the TUN or refused, holds for the event loop, datagrams handed to the endpoint or dropped, recv errors',
    labelNames: ['event'],
    registers: [registry],
    collect: () => {
      const st = stats();
      events.reset();
      if (st === null) return;
      events.inc({ event: 'udp_datagrams' }, st[TunThreadStat.UDP_DATAGRAMS]!);
      events.inc({ event: 'udp_calls' }, st[TunThreadStat.UDP_CALLS]!);
      events.inc({ event: 'wakes' }, st[TunThreadStat.WAKES]!);
      events.inc({ event: 'gso_sends' }, st[TunThreadStat.UDP_GSO]!);
      events.inc({ event: 'gso_refused' }, st[TunThreadStat.UDP_GSO_REFUSED]!);
      events.inc({ event: 'udp_stalled' }, st[TunThreadStat.UDP_STALLS]!);
      events.inc({ event: 'udp_dropped' }, st[TunThreadStat.UDP_DROPPED]!);
      events.inc({ event: 'ring_full' }, st[TunThreadStat.RING_FULL]!);
      events.inc({ event: 'rx_datagrams' }, st[TunThreadStat.RX_DATAGRAMS]!);
      events.inc({ event: 'rx_gro' }, st[TunThreadStat.RX_GRO]!);
      events.inc({ event: 'rx_tun_written' }, st[TunThreadStat.RX_TUN]!);
      events.inc({ event: 'rx_tun_dropped' }, st[TunThreadStat.RX_TUN_DROPPED]!);
      events.inc({ event: 'rx_held' }, st[TunThreadStat.RX_HELD]!);
      events.inc({ event: 'rx_to_endpoint' }, st[TunThreadStat.RX_TO_ENDPOINT]!);
      events.inc({ event: 'rx_to_http3' }, st[TunThreadStat.RX_TO_H3]!);
      events.inc({ event: 'rx_dropped' }, st[TunThreadStat.RX_DROPPED]!);
      events.inc({ event: 'rx_errors' }, st[TunThreadStat.RX_ERRORS]!);
    },
  });
}
