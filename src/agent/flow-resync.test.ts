// Flow re-announcement after a new session (#12 campaign: gateway restart mid-transfer).
// The end-to-end effect is in test/sim/tunnel-sim.test.ts; here, what the ACK says.
import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { conv } from '../inspect/fixtures.js';
import { Direction, FlowTracker } from '../inspect/flow-tracker.js';
import { PacketInfo, parseIpPacket, TCP_FLAG } from '../packet/ip-packet.js';
import { formatIp } from '../packet/ip-address.js';
import { FlowResync, resyncAck } from './flow-resync.js';

const { SYN, ACK, FIN, PSH } = TCP_FLAG;

function tracker(): FlowTracker {
  return new FlowTracker({ sink: () => undefined });
}

/** Handshake, a 20-byte request, and `down` bytes of response the client acknowledged up to `acked`. */
function exchange(t: FlowTracker, c: ReturnType<typeof conv>, dir: number, down: number, acked: number): void {
  const other = dir ^ 1;
  const syn = c.c(SYN, 0, 0);
  t.observe(syn, 0, syn.length, dir, 0);
  const sa = c.s(SYN | ACK, 0, 1);
  t.observe(sa, 0, sa.length, other, 1);
  const a = c.c(ACK | PSH, 1, 1, Buffer.alloc(20, 0x41));
  t.observe(a, 0, a.length, dir, 2);
  const d = c.s(ACK, 1, 21, Buffer.alloc(down, 0x42));
  t.observe(d, 0, d.length, other, 3);
  const ack = c.c(ACK, 21, 1 + acked);
  ack.writeUInt16BE(777, ack.length - 6); // window field (TCP offset 14 of a 20-byte header)
  t.observe(ack, 0, ack.length, dir, 4);
}

describe('flow re-announcement (issue #12: gateway restart mid-transfer)', () => {
  it('an established agent-opened connection yields one pure ACK with the client\'s own seq, ack and window (v4 and v6)', () => {
    for (const [cl, sv] of [['10.10.0.2', '10.20.0.2'], ['fd00:a::2', 'fd00:b::2']] as const) {
      const t = tracker();
      exchange(t, conv(cl, sv, 40000, 80, 1000, 5000), Direction.OUT, 300, 100);
      const pts = t.establishedTcp(Direction.OUT, 10);
      expect(pts).toHaveLength(1);
      const { buf, len } = resyncAck(pts[0]!, 16);
      const pi = new PacketInfo();
      expect(parseIpPacket(buf, 16, len, pi)).toBe(0);
      expect(formatIp(buf.subarray(pi.srcOff, pi.srcOff + (pi.ipVersion === 4 ? 4 : 16)))).toBe(cl);
      expect(formatIp(buf.subarray(pi.dstOff, pi.dstOff + (pi.ipVersion === 4 ? 4 : 16)))).toBe(sv);
      // seq: after the 20-byte request; ack: only the 100 bytes the client acknowledged, not all 300 seen.
      expect({ sport: pi.srcPort, dport: pi.dstPort, flags: pi.tcpFlags, seq: pi.tcpSeq, ack: pi.tcpAck, win: pi.tcpWindow, payload: len - pi.payloadOff + 16 })
        .toEqual({ sport: 40000, dport: 80, flags: ACK, seq: 1021, ack: 5101, win: 777, payload: 0 });
    }
  });

  it('leaves out connections the network side opened, half-open ones and ones with a FIN seen; caps the count', () => {
    const t = tracker();
    exchange(t, conv('10.10.0.2', '10.20.0.2', 40001, 80), Direction.OUT, 10, 10);
    exchange(t, conv('10.20.0.3', '10.10.0.3', 40002, 22), Direction.IN, 10, 10); // opened from the gateway's side
    const h = conv('10.10.0.4', '10.20.0.2', 40003, 80).c(SYN, 0, 0);
    t.observe(h, 0, h.length, Direction.OUT, 5); // half-open
    const f = conv('10.10.0.5', '10.20.0.2', 40004, 80);
    exchange(t, f, Direction.OUT, 10, 10);
    const fin = f.c(FIN | ACK, 21, 11);
    t.observe(fin, 0, fin.length, Direction.OUT, 6);
    expect(t.establishedTcp(Direction.OUT, 10).map((p) => p.srcPort)).toEqual([40001]);
    for (let i = 0; i < 5; i++) exchange(t, conv('10.10.0.9', '10.20.0.2', 41000 + i, 80), Direction.OUT, 1, 1);
    expect(t.establishedTcp(Direction.OUT, 3)).toHaveLength(3);
  });

  it('counts what the session sent and what it refused', async () => {
    const t = tracker();
    exchange(t, conv('10.10.0.2', '10.20.0.2', 40001, 80), Direction.OUT, 10, 10);
    exchange(t, conv('10.10.0.2', '10.20.0.2', 40002, 80), Direction.OUT, 10, 10);
    const reg = new Registry();
    const r = new FlowResync(reg);
    let calls = 0;
    expect(r.run(t, 16, () => (calls++ === 0 ? 0 : 3))).toBe(1);
    const text = await reg.metrics();
    expect(text).toMatch(/mtun_agent_flow_resync_packets_total 1/);
    expect(text).toMatch(/mtun_agent_flow_resync_refused_total 1/);
  });
});
