// Passive RTT sampling (RFC 6298 §2–3: one timed segment per direction,
// Karn's rule; RFC 7323 §4: TSecr matching), the cross-end flow ID, the QUIC
// Initial peek (RFC 9001 §5.2, RFC 9369, RFC 9000 §19.6 CRYPTO reassembly)
// and HTTP/1 response status classes (RFC 9112 §4, §6.3).
import { describe, expect, it } from 'vitest';
import { craftTcp, craftUdp } from '../packet/craft.js';
import { TCP_FLAG } from '../packet/ip-packet.js';
import { conv } from './fixtures.js';
import { FlowTracker, QuicCounter } from './flow-tracker.js';
import type { FlowRecord } from './flow-record.js';
import { addRange } from './quic-peek.js';
import { RFC9001_CLIENT_INITIAL, RFC9369_CLIENT_INITIAL } from './quic-vectors.js';

const { SYN, ACK, PSH, FIN } = TCP_FLAG;
const bytes = (n: number) => new Uint8Array(n).fill(0x61);

function tracker(flowIdKey?: Uint8Array) {
  const recs: FlowRecord[] = [];
  return { t: new FlowTracker({ sink: (r) => recs.push(r), flowIdKey }), recs };
}
function at(t: FlowTracker, p: Buffer, now: number) {
  expect(t.observe(p, 0, p.length, 0, now)).toBe(0);
}
/** NOP NOP TS(val, ecr): RFC 7323 §3.2 in the layout Linux sends. */
function ts(val: number, ecr: number): Uint8Array {
  const b = Buffer.alloc(12);
  b[0] = 1; b[1] = 1; b[2] = 8; b[3] = 10;
  b.writeUInt32BE(val, 4);
  b.writeUInt32BE(ecr, 8);
  return b;
}

describe('RTT sampling per segment', () => {
  it('times each direction against the other side\'s ACKs: handshake legs and data, min/smoothed/max (RFC 6298 §2)', () => {
    const { t, recs } = tracker();
    const k = conv();
    at(t, k.c(SYN, 0, 0), 0);
    at(t, k.s(SYN | ACK, 0, 1), 30); // to server: 30
    at(t, k.c(ACK, 1, 1), 40); // to client: 10
    at(t, k.c(ACK | PSH, 1, 1, bytes(100)), 50);
    at(t, k.s(ACK, 1, 101), 90); // to server: 40
    at(t, k.s(ACK | PSH, 1, 101, bytes(500)), 100);
    at(t, k.c(ACK, 101, 501), 120); // to client: 20
    at(t, k.c(FIN | ACK, 101, 501), 130);
    at(t, k.s(FIN | ACK, 501, 102), 160); // acknowledges the client's FIN (it occupies a sequence number): to server 30
    at(t, k.c(ACK, 102, 502), 170); // to client 10
    const r = recs[0]!;
    const ewma = (xs: number[]) => xs.reduce((a, x, i) => (i === 0 ? x : a * 0.875 + x * 0.125), 0);
    expect(r.rttToServer).toMatchObject({ minMs: 30, maxMs: 40, samples: 3 });
    expect(r.rttToServer!.smoothedMs).toBeCloseTo(ewma([30, 40, 30]), 3); // records round to µs
    expect(r.rttToClient).toMatchObject({ minMs: 10, maxMs: 20, samples: 3 });
    expect(r.rttToClient!.smoothedMs).toBeCloseTo(ewma([10, 20, 10]), 3);
  });

  it('Karn: a retransmission cancels the outstanding timing; the retransmitted segment is never timed (RFC 6298 §3)', () => {
    const { t, recs } = tracker();
    const k = conv();
    at(t, k.c(SYN, 0, 0), 0);
    at(t, k.s(SYN | ACK, 0, 1), 10);
    at(t, k.c(ACK, 1, 1), 20);
    at(t, k.s(ACK, 1, 1, bytes(100)), 100); // timed
    at(t, k.s(ACK, 1, 1, bytes(100)), 400); // retransmitted: the ACK is ambiguous
    at(t, k.c(ACK, 1, 101), 410);
    at(t, k.s(ACK, 101, 1, bytes(10)), 500); // new data: timed again
    at(t, k.c(ACK, 1, 111), 515);
    t.flush();
    expect(recs[0]!.rttToClient).toEqual({ minMs: 10, smoothedMs: 10 * 0.875 + 15 * 0.125, maxMs: 15, samples: 2 });
  });

  it('an ACK observed with an earlier time than the segment it answers is no sample: counted, the flow keeps its real ones', () => {
    const { t, recs } = tracker();
    const k = conv();
    at(t, k.c(SYN, 0, 0), 0);
    at(t, k.s(SYN | ACK, 0, 1), 10);
    at(t, k.c(ACK, 1, 1), 20); // to client: 10
    at(t, k.s(ACK, 1, 1, bytes(100)), 100); // timed at 100
    at(t, k.c(ACK, 1, 101), 95); // handed over late with its (earlier) read time: -5 is not an RTT
    expect(t.rttSamplesDiscarded).toBe(1);
    at(t, k.s(ACK, 101, 1, bytes(10)), 200); // timed again
    at(t, k.c(ACK, 1, 111), 212);
    t.flush();
    expect(recs[0]!.rttToClient).toEqual({ minMs: 10, smoothedMs: 10 * 0.875 + 12 * 0.125, maxMs: 12, samples: 2 });
    expect(t.rttSamplesDiscarded).toBe(1);
  });

  it('with timestamps on both sides the echoed TSval picks the ACK (RFC 7323 §4.3); a later echo is not a sample', () => {
    const { t, recs } = tracker();
    const c = (flags: number, seq: number, ack: number, o: Uint8Array, payload?: Uint8Array) =>
      craftTcp({ src: '10.0.0.1', dst: '10.0.0.2', srcPort: 1, dstPort: 2, seq: 1000 + seq, ack: 5000 + ack, flags, options: o, payload });
    const s = (flags: number, seq: number, ack: number, o: Uint8Array, payload?: Uint8Array) =>
      craftTcp({ src: '10.0.0.2', dst: '10.0.0.1', srcPort: 2, dstPort: 1, seq: 5000 + seq, ack: 1000 + ack, flags, options: o, payload });
    at(t, c(SYN, 0, 0, ts(100, 0)), 0);
    at(t, s(SYN | ACK, 0, 1, ts(900, 100)), 8); // to server 8 (SYN timed by sequence)
    at(t, c(ACK, 1, 1, ts(101, 900)), 10); // to client 2 (TSecr 900)
    at(t, c(ACK | PSH, 1, 1, ts(110, 900), bytes(10)), 20); // timed by TSval 110
    at(t, s(ACK, 1, 11, ts(905, 109)), 25); // echoes an older TSval: not ours, keep waiting
    at(t, s(ACK, 1, 11, ts(906, 110)), 27); // to server 7
    at(t, c(ACK | PSH, 11, 1, ts(120, 906), bytes(10)), 40); // timed by TSval 120
    at(t, s(ACK, 1, 21, ts(910, 125)), 90); // echoes a later TSval: ambiguous, dropped
    t.flush();
    expect(recs[0]!.rttToServer).toMatchObject({ minMs: 7, maxMs: 8, samples: 2 });
    expect(recs[0]!.rttToClient).toMatchObject({ minMs: 2, maxMs: 2, samples: 1 });
  });
});

describe('cross-end flow ID', () => {
  it('is the same at two trackers for the same connection, differs by ISN, and follows the key', () => {
    const a = tracker();
    const b = tracker();
    const k = conv('10.1.0.1', '10.2.0.1', 40000, 443, 777, 9);
    for (const x of [a, b]) { at(x.t, k.c(SYN, 0, 0), 0); at(x.t, k.s(SYN | ACK, 0, 1), 1); x.t.flush(); }
    expect(a.recs[0]!.flowId).toMatch(/^[0-9a-f]{16}$/);
    expect(a.recs[0]!.flowId).toBe(b.recs[0]!.flowId);
    // A tracker that saw only the SYN-ACK derives the ISN from its acknowledgment number.
    const c = tracker();
    at(c.t, k.s(SYN | ACK, 0, 1), 0);
    c.t.flush();
    expect(c.recs[0]!.flowId).toBe(a.recs[0]!.flowId);
    const other = tracker();
    const k2 = conv('10.1.0.1', '10.2.0.1', 40000, 443, 778, 9);
    at(other.t, k2.c(SYN, 0, 0), 0);
    other.t.flush();
    expect(other.recs[0]!.flowId).not.toBe(a.recs[0]!.flowId);
    const keyed = tracker(Buffer.alloc(32, 1));
    at(keyed.t, k.c(SYN, 0, 0), 0);
    keyed.t.flush();
    expect(keyed.recs[0]!.flowId).not.toBe(a.recs[0]!.flowId);
  });

  it('without an ISN (UDP) it names the tuple whichever side spoke first', () => {
    const a = tracker();
    const b = tracker();
    const up = craftUdp({ src: '10.1.0.1', dst: '10.2.0.1', srcPort: 5000, dstPort: 53, payload: bytes(4) });
    const down = craftUdp({ src: '10.2.0.1', dst: '10.1.0.1', srcPort: 53, dstPort: 5000, payload: bytes(4) });
    at(a.t, up, 0);
    at(b.t, down, 0);
    a.t.flush(); b.t.flush();
    expect(a.recs[0]!.flowId).toBe(b.recs[0]!.flowId);
  });
});

describe('QUIC peek', () => {
  const udp = (payload: Uint8Array, rev = false) => craftUdp(rev
    ? { src: '10.2.0.1', dst: '10.1.0.1', srcPort: 8443, dstPort: 50000, payload }
    : { src: '10.1.0.1', dst: '10.2.0.1', srcPort: 50000, dstPort: 8443, payload });

  for (const [v, pkt] of [['v1', RFC9001_CLIENT_INITIAL], ['v2', RFC9369_CLIENT_INITIAL]] as const) {
    it(`finds SNI/ALPN/version in the RFC ${v} client Initial on any port, and times Initial → server Handshake`, () => {
      const { t, recs } = tracker();
      at(t, udp(pkt), 1000);
      // A server datagram: a (fake-protected) Initial then a Handshake packet, coalesced (RFC 9000 §12.2).
      const ver = v === 'v1' ? [0, 0, 0, 1] : [0x6b, 0x33, 0x43, 0xcf];
      const tInit = v === 'v1' ? 0xc0 : 0xd0;
      const tHs = v === 'v1' ? 0xe0 : 0xf0;
      const initial = Buffer.from([tInit, ...ver, 0, 0, 0, 0x40, 30, ...new Array(30).fill(7)]);
      const hs = Buffer.from([tHs, ...ver, 0, 0, 0x40, 30, ...new Array(30).fill(9)]);
      at(t, udp(Buffer.concat([initial, hs]), true), 1042);
      t.flush();
      expect(recs[0]).toMatchObject({ proto: 'udp', sni: 'example.com', alpn: 'alpn', quicVersion: v, quicHandshakeRttMs: 42 });
      expect(t.quicCounters[QuicCounter.HELLOS]).toBe(1);
      expect(t.quicCounters[QuicCounter.HANDSHAKES]).toBe(1);
      expect(t.peekBudget.heldBytes).toBe(0);
    });
  }

  it('a UDP flow that is not QUIC costs one check; a fake Initial that fails authentication is counted and given up', () => {
    const { t, recs } = tracker();
    const fake = Buffer.from(RFC9001_CLIENT_INITIAL);
    fake[600]! ^= 0xff;
    at(t, udp(fake), 0);
    at(t, craftUdp({ src: '10.1.0.9', dst: '10.2.0.1', srcPort: 1, dstPort: 2, payload: bytes(1300) }), 0);
    t.flush();
    expect(recs.map((r) => r.sni)).toEqual([null, null]);
    expect(t.quicCounters[QuicCounter.DECRYPT_FAILED]).toBe(1);
    expect(t.quicCounters[QuicCounter.FLOWS]).toBe(1);
    expect(t.peekBudget.heldBytes).toBe(0);
  });

  it('gives up after the timeout, counted', () => {
    const { t } = tracker();
    // Only the second half of a ClientHello would arrive: simulate by a second flow whose server never answers.
    at(t, udp(RFC9001_CLIENT_INITIAL), 0);
    at(t, udp(RFC9001_CLIENT_INITIAL, true), 10_000); // server datagram long after: not a Handshake, past timeout
    expect(t.quicCounters[QuicCounter.TIMEOUTS]).toBe(1);
  });

  it('CRYPTO ranges merge in any order and the list is bounded (RFC 9000 §19.6)', () => {
    const r: number[] = [];
    expect(addRange(r, 100, 200)).toBe(true);
    expect(addRange(r, 0, 50)).toBe(true);
    expect(addRange(r, 40, 120)).toBe(true);
    expect(r).toEqual([0, 200]);
    const many: number[] = [];
    for (let i = 0; i < 16; i++) expect(addRange(many, i * 10, i * 10 + 5)).toBe(true);
    expect(addRange(many, 1000, 1001)).toBe(false);
    expect(addRange(many, 5, 10)).toBe(true); // merging never needs room
  });
});

describe('HTTP/1 responses', () => {
  const text = (s: string) => Buffer.from(s, 'latin1');
  it('counts status classes through keep-alive, skips bodies (HEAD, 204, 304, chunked) and times the first byte (RFC 9112 §6.3)', () => {
    const { t, recs } = tracker();
    const k = conv();
    at(t, k.c(SYN, 0, 0), 0);
    at(t, k.s(SYN | ACK, 0, 1), 1);
    at(t, k.c(ACK, 1, 1), 2);
    const reqs = text('GET / HTTP/1.1\r\nHost: a\r\n\r\nHEAD /h HTTP/1.1\r\nHost: a\r\n\r\nGET /n HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\n\r\n');
    at(t, k.c(ACK | PSH, 1, 1, reqs), 10);
    const res = [
      'HTTP/1.1 100 Continue\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHTTP/',
      'HTTP/1.1 301 Moved\r\nContent-Length: 999\r\n\r\n', // HEAD: no body despite Content-Length
      'HTTP/1.1 304 Not Modified\r\n\r\n',
      'HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nHTT\r\n0\r\n\r\n',
      'HTTP/1.1 503 Busy\r\n\r\nuntil close',
    ].join('');
    const rb = text(res);
    at(t, k.s(ACK | PSH, 1, 1 + reqs.length, rb.subarray(0, 7)), 35);
    at(t, k.s(ACK | PSH, 8, 1 + reqs.length, rb.subarray(7)), 36);
    t.flush();
    expect(recs[0]).toMatchObject({
      httpRequests: 5,
      httpStatus: { '1xx': 1, '2xx': 1, '3xx': 2, '4xx': 1, '5xx': 1 },
      httpFirstByteMs: 25,
    });
  });
});
