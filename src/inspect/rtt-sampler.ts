/**
 * Continuous passive RTT sampling of a TCP flow at the observation point:
 * data of one direction is timed against the ACKs of the other, one segment
 * at a time per direction (as RFC 6298 §3 times one segment per RTT), with
 * Karn's rule (RFC 6298 §3: never time a retransmitted segment) or, when both
 * ends send TCP timestamps, the echoed TSval (RFC 7323 §4) to match the ACK.
 * Samples of data sent toward the responder measure observation point ↔
 * responder; toward the initiator, observation point ↔ initiator. Works on
 * the flow table's arrays; allocates nothing.
 */
import { TCP_FLAG, type PacketInfo } from '../packet/ip-packet.js';
import { F_TS0, type FlowTable } from './flow-table.js';

/** Timing of direction d is matched by TSval (F_RTT_TS0 << d), else by ACK number. */
export const F_RTT_TS0 = 1 << 18;

/** TCP option kind for timestamps and its length (RFC 7323 §3.2). */
const TCPOPT_TIMESTAMP = 8;
const TCPOLEN_TIMESTAMP = 10;

/** TSval / TSecr of the last segment read by {@link readTimestamps}. */
export const tsScratch = { val: 0, ecr: 0 };

/**
 * Finds the timestamps option in the TCP header at buf[tcpOff, tcpOff+hl)
 * (RFC 7323 §3.2) and leaves TSval/TSecr in {@link tsScratch}. The usual
 * layout (NOP, NOP, TS first) is checked first. Never throws.
 * @returns true when the option was present and well formed.
 */
export function readTimestamps(buf: Uint8Array, tcpOff: number, hl: number): boolean {
  let i = tcpOff + 20;
  const end = tcpOff + hl;
  if (hl >= 32 && buf[i] === 1 && buf[i + 1] === 1 && buf[i + 2] === TCPOPT_TIMESTAMP && buf[i + 3] === TCPOLEN_TIMESTAMP) {
    i += 4;
  } else {
    for (;;) {
      if (i >= end) return false;
      const kind = buf[i]!;
      if (kind === 0) return false;
      if (kind === 1) { i++; continue; }
      if (i + 1 >= end) return false;
      const olen = buf[i + 1]!;
      if (olen < 2 || i + olen > end) return false;
      if (kind === TCPOPT_TIMESTAMP && olen === TCPOLEN_TIMESTAMP) { i += 2; break; }
      i += olen;
    }
  }
  tsScratch.val = ((buf[i]! << 24) | (buf[i + 1]! << 16) | (buf[i + 2]! << 8) | buf[i + 3]!) >>> 0;
  tsScratch.ecr = ((buf[i + 4]! << 24) | (buf[i + 5]! << 16) | (buf[i + 6]! << 8) | buf[i + 7]!) >>> 0;
  return true;
}

/**
 * Adds one RTT sample (ms) to direction index i: min, RFC 6298 §2.2–2.3
 * smoothed (α = 1/8), max. A negative sample (the ACK was observed with an
 * earlier time than the segment it answers: packets from two readers, a
 * data-plane thread's ring and the event loop, handed to the tracker out of
 * their time order) is no RTT: it is counted in `rttDiscarded`, not kept.
 */
export function addRttSample(t: FlowTable, i: number, r: number): void {
  if (!(r >= 0)) { t.rttDiscarded++; return; }
  const n = t.rttN[i]!;
  if (n === 0) {
    t.rttMin[i] = r; t.rttMax[i] = r; t.rttSrtt[i] = r;
  } else {
    if (r < t.rttMin[i]!) t.rttMin[i] = r;
    if (r > t.rttMax[i]!) t.rttMax[i] = r;
    t.rttSrtt[i] = t.rttSrtt[i]! * 0.875 + r * 0.125;
  }
  t.rttN[i] = n + 1;
}

/**
 * Feeds one TCP segment of slot s travelling in direction d (already
 * accounted) to the sampler. `timeable` is true when the segment carried
 * only new, in-order sequence space (a SYN, or payload with verdict
 * IN_ORDER and no byte seen before); `retransmit` when it carried bytes
 * seen before. `flags` is the flow's flag word after this segment.
 * @returns the flags with the RTT-mode bit of direction d updated.
 */
export function rttObserve(t: FlowTable, s: number, d: number, pi: PacketInfo, buf: Uint8Array, now: number,
  seqEnd: number, timeable: boolean, retransmit: boolean, flags: number): number {
  const i = s * 2 + d;
  const j = i ^ 1;
  const both = (flags & (F_TS0 | F_TS0 << 1)) === (F_TS0 | F_TS0 << 1);
  let hasTs = false;
  if (both) hasTs = readTimestamps(buf, pi.payloadOff - pi.tcpHeaderLen, pi.tcpHeaderLen);
  // 1. This segment may acknowledge the other direction's timed segment.
  if ((pi.tcpFlags & TCP_FLAG.ACK) !== 0 && t.rttAt[j] === t.rttAt[j]) {
    if ((flags & (F_RTT_TS0 << (d ^ 1))) !== 0) {
      if (hasTs) {
        const delta = (tsScratch.ecr - t.rttMark[j]!) | 0;
        // RFC 7323 §4.3: the ACK echoes the TSval of the segment it answers; a later echo answers a later segment.
        if (delta === 0) { addRttSample(t, j, now - t.rttAt[j]!); t.rttAt[j] = NaN; }
        else if (delta > 0) t.rttAt[j] = NaN;
      }
    } else if (((pi.tcpAck - t.rttMark[j]!) | 0) >= 0) {
      addRttSample(t, j, now - t.rttAt[j]!);
      t.rttAt[j] = NaN;
    }
  }
  // 2. Karn (RFC 6298 §3): a retransmission makes the outstanding ACK-number timing ambiguous.
  if (retransmit && (flags & (F_RTT_TS0 << d)) === 0) t.rttAt[i] = NaN;
  // 3. Start timing this direction's segment when nothing is outstanding.
  if (timeable && t.rttAt[i] !== t.rttAt[i]) {
    t.rttAt[i] = now;
    if (hasTs && (pi.tcpFlags & TCP_FLAG.SYN) === 0) {
      t.rttMark[i] = tsScratch.val;
      return flags | (F_RTT_TS0 << d);
    }
    t.rttMark[i] = seqEnd;
    return flags & ~(F_RTT_TS0 << d);
  }
  return flags;
}
