/**
 * The tracker's TCP state machine (RFC 9293 §3.5, §3.6 as a passive observer
 * sees them, with conntrack's states as timeout classes): handshake legs,
 * in-window RSTs, FIN close, exactly-once payload accounting through
 * seq-coverage, and the L7 peek once the three-way handshake has been seen.
 */
import { DropReason, type PacketInfo, TCP_FLAG } from '../packet/ip-packet.js';
import { type FlowCore, FlowCounter } from './flow-core.js';
import {
  F_FIN0, F_FINACK0, F_HOLES0, F_INIT0, F_ISN, F_L7, F_L7_TRIED, F_MIDSTREAM, F_OPENED, F_SYN_SEEN, F_SYNACK_SEEN, F_TS0, F_WS,
  S_CLOSE, S_ESTABLISHED, S_FIN_WAIT, S_LAST_ACK, S_SYN_RECV, S_SYN_SENT, S_TIME_WAIT,
} from './flow-table.js';
import { rttObserve } from './rtt-sampler.js';
import { MAX_SEQ_DELTA, seqCover, seqStart, SeqVerdict } from './seq-coverage.js';

/**
 * Tracks one parsed TCP segment (pi describes buf) in tunnel direction td.
 * @returns 0 when accounted, else the DropReason it was counted under.
 */
export function observeTcp(c: FlowCore, buf: Uint8Array, pi: PacketInfo, td: number, now: number): number {
  const t = c.table;
  const fl = pi.tcpFlags;
  const SYN = TCP_FLAG.SYN, ACK = TCP_FLAG.ACK, RST = TCP_FLAG.RST, FIN = TCP_FLAG.FIN;
  // SYN+FIN, SYN+RST and flagless segments are never legitimate (RFC 9293 §3.10.7.4; nmap/flood patterns).
  if (((fl & SYN) !== 0 && (fl & (FIN | RST)) !== 0) || (fl & (SYN | ACK | RST | FIN)) === 0) {
    c.drops[DropReason.BAD_TCP_FLAGS]! += 1;
    return DropReason.BAD_TCP_FLAGS;
  }
  const h = t.loadKey(buf, pi, pi.srcPort, pi.dstPort);
  let s = t.lookup(h);
  if (s >= 0 && (t.state[s] === S_TIME_WAIT || t.state[s] === S_CLOSE)) {
    // A closed flow absorbs late packets; a fresh SYN reuses the tuple (conntrack does the same in TIME_WAIT).
    if ((fl & SYN) !== 0 && (fl & ACK) === 0) {
      c.release(s);
      s = -1;
    } else {
      c.drops[DropReason.AFTER_CLOSE]! += 1;
      return DropReason.AFTER_CLOSE;
    }
  }
  if (s < 0) {
    if ((fl & RST) !== 0) {
      // No flow to reset: counted, never creates state (RST storms stay bounded).
      c.drops[DropReason.RST_OUT_OF_WINDOW]! += 1;
      return DropReason.RST_OUT_OF_WINDOW;
    }
    const synAck = (fl & (SYN | ACK)) === (SYN | ACK);
    if ((fl & SYN) !== 0) {
      s = c.newFlow(h, synAck ? S_SYN_RECV : S_SYN_SENT, synAck ? 1 : 0, td, now);
      if (synAck) {
        // The initiator's SYN was missed, but the SYN-ACK acknowledges its ISN + 1.
        t.flags[s] = F_INIT0 | F_ISN;
        t.hiSeq[s * 2] = pi.tcpAck;
        t.kIsn[s] = (pi.tcpAck - 1) >>> 0;
      }
    } else {
      s = c.newFlow(h, S_ESTABLISHED, 0, td, now);
      t.flags[s] = F_MIDSTREAM;
    }
  }
  const d = t.dir;
  const o = d ^ 1;
  const i = s * 2 + d;
  const j = s * 2 + o;
  let f = t.flags[s]!;
  let st = t.state[s]!;
  t.last[s] = now;
  t.packets[i]! += 1;

  let dataSeq = pi.tcpSeq;
  // RTT sampler inputs: a first SYN / SYN-ACK is timeable; a repeated one is a retransmission (Karn).
  let synTimeable = false;
  let synRetransmit = false;
  if ((fl & SYN) !== 0) {
    dataSeq = (dataSeq + 1) >>> 0; // RFC 9293 §3.4: the SYN occupies one sequence number
    if (d === 0 && (fl & ACK) === 0) {
      if (st === S_SYN_SENT) {
        if ((f & F_SYN_SEEN) !== 0) { t.retrans[i]! += 1; synRetransmit = true; } else synTimeable = true;
        f = (f | F_SYN_SEEN | F_INIT0 | F_ISN) & ~F_HOLES0;
        t.kIsn[s] = pi.tcpSeq;
        if (pi.tcpTimestamps) f |= F_TS0; else f &= ~F_TS0;
        t.tSyn[s] = now; // the latest SYN: a retransmitted SYN restarts the RTT clock
        seqStart(t, c.holes, i, dataSeq);
        t.wscale[i] = pi.tcpWscale;
      } else if (st === S_SYN_RECV) {
        t.retrans[i]! += 1; // SYN again after the SYN-ACK (the SYN-ACK was lost downstream)
        synRetransmit = true;
      }
    } else if (d === 1 && (fl & ACK) !== 0) {
      if (st === S_SYN_SENT || st === S_SYN_RECV) {
        if ((f & F_SYNACK_SEEN) !== 0) { t.retrans[i]! += 1; synRetransmit = true; } else { t.tSynAck[s] = now; synTimeable = true; }
        f = (f | F_SYNACK_SEEN | F_INIT0 << 1) & ~(F_HOLES0 << 1);
        if (pi.tcpTimestamps) f |= F_TS0 << 1; else f &= ~(F_TS0 << 1);
        seqStart(t, c.holes, i, dataSeq);
        t.wscale[i] = pi.tcpWscale;
        if (t.wscale[s * 2]! >= 0 && pi.tcpWscale >= 0) f |= F_WS; // RFC 7323 §2.2: both sides must offer it
        st = S_SYN_RECV;
      }
    }
  } else if (st === S_SYN_RECV && d === 0 && (fl & ACK) !== 0 && (fl & RST) === 0) {
    // The ACK completing the three-way handshake (RFC 9293 §3.5).
    if ((f & F_SYNACK_SEEN) !== 0 && (((pi.tcpAck - t.hiSeq[j]!) | 0) >= 0)) {
      st = S_ESTABLISHED;
      f |= F_OPENED;
      t.tAck[s] = now;
    }
  }
  // A flow whose SYN was seen but no SYN-ACK stays SYN_SENT whatever else it
  // carries: half-open, on the short syn_sent timeout, first to be evicted,
  // and never peeked (issue #12 item 1: SYN + data must not buy a 5-day flow).

  if ((fl & RST) !== 0) {
    if (rstInWindow(c, pi, s, d, f)) {
      t.flags[s] = f;
      t.state[s] = st;
      c.finish(s, 'rst');
      t.relink(s, S_CLOSE);
      return 0;
    }
    t.rstIgnored[s] = Math.min(t.rstIgnored[s]! + 1, 0xffff);
    c.drops[DropReason.RST_OUT_OF_WINDOW]! += 1;
    t.flags[s] = f;
    t.relink(s, st);
    return DropReason.RST_OUT_OF_WINDOW;
  }

  if ((f & (F_INIT0 << d)) === 0) {
    // First packet seen from this side of a mid-stream flow: its sequence number is where we start.
    f = (f | F_INIT0 << d) & ~(F_HOLES0 << d);
    seqStart(t, c.holes, i, dataSeq);
    t.wscale[i] = -1;
  }
  t.flags[s] = f;
  const plen = pi.payloadLen;
  let result = 0;
  let timeable = synTimeable;
  let retransmit = synRetransmit;
  if (plen > 0) {
    result = account(c, s, d, dataSeq, plen, buf, pi.payloadOff, td, now);
    const cov = c.cov;
    if (result === 0) {
      timeable = cov.verdict === SeqVerdict.IN_ORDER && cov.newBytes === plen;
      retransmit = cov.verdict === SeqVerdict.RETRANSMIT;
    }
  }
  let seqEnd = dataSeq + plen;
  if ((fl & FIN) !== 0) {
    // The FIN occupies a sequence number (RFC 9293 §3.4) and is timed like data; a repeated FIN is a retransmission.
    if ((t.flags[s]! & (F_FIN0 << d)) === 0) {
      if (plen === 0) timeable = true;
      seqEnd += 1;
    } else retransmit = true;
  }
  f = rttObserve(t, s, d, pi, buf, now, seqEnd >>> 0, timeable, retransmit, t.flags[s]!);

  if ((fl & FIN) !== 0 && (f & (F_FIN0 << d)) === 0) {
    f |= F_FIN0 << d;
    t.finSeq[i] = (dataSeq + plen) >>> 0;
  }
  if ((fl & ACK) !== 0 && (f & (F_FIN0 << o)) !== 0 && (f & (F_FINACK0 << o)) === 0
    && ((pi.tcpAck - t.finSeq[j]!) | 0) >= 1) {
    f |= F_FINACK0 << o; // the FIN of the other side is acknowledged (RFC 9293 §3.6)
  }
  t.win[i] = pi.tcpWindow;
  if ((fl & ACK) !== 0) t.ack[i] = pi.tcpAck;
  t.flags[s] = f;
  if ((f & (F_FIN0 | F_FIN0 << 1)) !== 0 && st >= S_ESTABLISHED) {
    if ((f & (F_FIN0 | F_FIN0 << 1 | F_FINACK0 | F_FINACK0 << 1)) === (F_FIN0 | F_FIN0 << 1 | F_FINACK0 | F_FINACK0 << 1)) {
      t.state[s] = st;
      c.finish(s, 'fin');
      t.relink(s, S_TIME_WAIT);
      return result;
    }
    st = (f & (F_FIN0 | F_FIN0 << 1)) === (F_FIN0 | F_FIN0 << 1) ? S_LAST_ACK : S_FIN_WAIT;
  }
  t.relink(s, st);
  return result;
}

/** RST acceptance (RFC 9293 §3.10.7.4 / RFC 5961 §3, as conntrack applies it): sequence number in the receiver's window. */
function rstInWindow(c: FlowCore, pi: PacketInfo, s: number, d: number, f: number): boolean {
  const t = c.table;
  const i = s * 2 + d;
  const j = s * 2 + (d ^ 1);
  if ((f & (F_INIT0 << d)) !== 0) {
    const delta = (pi.tcpSeq - t.hiSeq[i]!) | 0;
    let w = t.win[j]!;
    if (w === 0) w = 65535;
    const sc = (f & F_WS) !== 0 ? t.wscale[j]! : (f & F_MIDSTREAM) !== 0 ? 14 : 0;
    const window = w * (1 << sc);
    // +1: after our FIN the sender's next sequence number is one past its data.
    return delta >= 0 && delta <= window + 1;
  }
  if ((f & (F_INIT0 << (d ^ 1))) !== 0) {
    // Sender's sequence space unknown (e.g. RST,ACK refusing a SYN): it must acknowledge the peer plausibly.
    if ((pi.tcpFlags & TCP_FLAG.ACK) === 0) return false;
    const delta = (pi.tcpAck - t.hiSeq[j]!) | 0;
    return delta >= -MAX_SEQ_DELTA && delta <= MAX_SEQ_DELTA;
  }
  return true;
}

/**
 * Counts payload bytes [seq, seq+len) of direction d exactly once, and feeds
 * new initiator bytes to the L7 peek (and new responder bytes, once it is HTTP/1).
 */
function account(c: FlowCore, s: number, d: number, seq: number, len: number, buf: Uint8Array, pOff: number, td: number, now: number): number {
  const t = c.table;
  const i = s * 2 + d;
  const f = t.flags[s]!;
  const cov = c.cov;
  seqCover(t, c.holes, i, seq, len, (f & (F_HOLES0 << d)) !== 0, (f & F_MIDSTREAM) !== 0, cov);
  const v = cov.verdict;
  if (v === SeqVerdict.OUT_OF_WINDOW) {
    c.drops[DropReason.OUT_OF_WINDOW]! += 1;
    return DropReason.OUT_OF_WINDOW;
  }
  if (cov.holeOverflows > 0) c.drops[DropReason.HOLE_OVERFLOW]! += cov.holeOverflows;
  const nf = cov.hasHoles ? f | (F_HOLES0 << d) : f & ~(F_HOLES0 << d);
  t.flags[s] = nf;
  const n = cov.newBytes;
  t.bytes[i]! += n;
  c.counters[FlowCounter.PAYLOAD_BYTES_OUT + td]! += n;
  if (v === SeqVerdict.RETRANSMIT) {
    t.retrans[i]! += 1;
    c.counters[FlowCounter.RETRANSMITS]! += 1;
  } else if (v === SeqVerdict.OUT_OF_ORDER) {
    t.ooo[i]! += 1;
    c.counters[FlowCounter.OUT_OF_ORDER]! += 1;
  }
  // L7 peek: initiator bytes, only after the whole three-way handshake was seen.
  if (d === 0 && cov.feedLen > 0 && (nf & F_OPENED) !== 0 && (nf & (F_L7 | F_L7_TRIED)) !== F_L7_TRIED) {
    c.peek(s, buf, pOff + cov.feedOff, cov.feedLen, cov.feedStreamOff, cov.mainHi, cov.inOrder, now);
  } else if (d === 1 && cov.feedLen > 0 && (nf & F_L7) !== 0) {
    c.peeks.get(s)?.feedResponse(buf, pOff + cov.feedOff, cov.feedLen, cov.inOrder, now);
  }
  return 0;
}
