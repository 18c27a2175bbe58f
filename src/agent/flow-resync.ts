/**
 * Flow re-announcement after a new session (issue #12: a gateway restart
 * while transfers run). The gateway's inbound default-deny admits return
 * traffic only for flows it saw the agent side open; a restarted gateway
 * (or one that forgot an identity's flows after its grace period) knows
 * none. A download whose client is only waiting would then stall: the
 * server's retransmissions are dropped as `inbound_unsolicited`, and the
 * client sends nothing that could open the flow again.
 *
 * So when a session opens, the agent sends, for each established TCP
 * connection its own side opened, one pure ACK as that client last sent it:
 * its next sequence number, the acknowledgment number it sent itself and its
 * last window. To the server this is a duplicate ACK (RFC 9293 §3.10.7.4:
 * an ACK of nothing new is ignored; RFC 5681 §2 counts it as one duplicate
 * ACK, far from the three of a fast retransmit); to the gateway it is the
 * agent side's packet that opens the flow again. It never acknowledges data
 * the client did not acknowledge.
 */
import { Counter, type Registry } from 'prom-client';
import { Direction, type FlowTracker, type TcpStandpoint } from '../inspect/flow-tracker.js';
import { craftTcp } from '../packet/craft.js';
import { TCP_FLAG } from '../packet/ip-packet.js';

/** Connections re-announced per new session at most (the rest reopen with their next packet). */
export const MAX_RESYNC_FLOWS = 4096;

/** The pure ACK `p`'s initiator could have sent, as a whole IP packet at offset `headroom` of the returned buffer. Allocates (control path). */
export function resyncAck(p: TcpStandpoint, headroom: number): { buf: Buffer; len: number } {
  const pkt = craftTcp({
    src: p.src, dst: p.dst, srcPort: p.srcPort, dstPort: p.dstPort,
    seq: p.seq, ack: p.ack, flags: TCP_FLAG.ACK, window: p.window,
  });
  const buf = Buffer.alloc(headroom + pkt.length);
  pkt.copy(buf, headroom);
  return { buf, len: pkt.length };
}

/** Sends the re-announcing ACKs of the tracker's agent-opened connections through `send`; counts what went. */
export class FlowResync {
  private readonly sent: Counter;
  private readonly refused: Counter;

  constructor(registry: Registry) {
    this.sent = new Counter({
      name: 'mtun_agent_flow_resync_packets_total',
      help: 'Pure ACKs sent when a session opened, one per established TCP connection the agent side opened, so the gateway tracks the connection again',
      registers: [registry],
    });
    this.refused = new Counter({
      name: 'mtun_agent_flow_resync_refused_total',
      help: 'Re-announcing ACKs the session refused (too big, out of scope; counted as drops too)',
      registers: [registry],
    });
  }

  /**
   * Re-announces up to {@link MAX_RESYNC_FLOWS} connections; `send(buf, off,
   * len)` is the session's sendPacket (0 = sent). Returns how many were sent.
   */
  run(tracker: FlowTracker, headroom: number, send: (buf: Buffer, off: number, len: number) => number): number {
    let n = 0;
    for (const p of tracker.establishedTcp(Direction.OUT, MAX_RESYNC_FLOWS)) {
      const { buf, len } = resyncAck(p, headroom);
      if (send(buf, headroom, len) === 0) n++;
      else this.refused.inc();
    }
    this.sent.inc(n);
    return n;
  }
}
