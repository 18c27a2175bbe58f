/**
 * Test and benchmark fixtures for the inspector: a scripted TCP conversation
 * and a minimal TLS ClientHello. Allocates; never use on the data path.
 */
import { craftTcp } from '../packet/craft.js';

/** Packets of one TCP conversation between C (initiator) and S; seq/ack are relative to the ISNs. */
export interface Conversation {
  c(flags: number, seq: number, ack: number, payload?: Uint8Array): Buffer;
  s(flags: number, seq: number, ack: number, payload?: Uint8Array): Buffer;
}

/** A conversation C → S with the given addresses, ports and initial sequence numbers. */
export function conv(c = '10.0.0.1', s = '10.0.0.2', cp = 40000, sp = 80, isnC = 1000, isnS = 5000): Conversation {
  return {
    c: (flags, seq, ack, payload) =>
      craftTcp({ src: c, dst: s, srcPort: cp, dstPort: sp, seq: (isnC + seq) >>> 0, ack: (isnS + ack) >>> 0, flags, payload }),
    s: (flags, seq, ack, payload) =>
      craftTcp({ src: s, dst: c, srcPort: sp, dstPort: cp, seq: (isnS + seq) >>> 0, ack: (isnC + ack) >>> 0, flags, payload }),
  };
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

/**
 * A TLS 1.3-style ClientHello (RFC 8446 §4.1.2) with SNI and ALPN, plus a
 * padding extension (RFC 7685) of `padBytes` when > 0, cut into handshake
 * records of at most `recordBytes` payload each (RFC 8446 §5.1).
 */
export function clientHello(sni: string, alpn: string[], padBytes = 0, recordBytes = 16384): Buffer {
  const name = Buffer.from(sni);
  const sniExt = Buffer.concat([u16(0), u16(name.length + 5), u16(name.length + 3), Buffer.of(0), u16(name.length), name]);
  const list = Buffer.concat(alpn.map((a) => Buffer.concat([Buffer.of(a.length), Buffer.from(a)])));
  const alpnExt = Buffer.concat([u16(16), u16(list.length + 2), u16(list.length), list]);
  const pad = padBytes > 0 ? Buffer.concat([u16(21), u16(padBytes), Buffer.alloc(padBytes)]) : Buffer.alloc(0);
  const exts = Buffer.concat([sniExt, alpnExt, pad]);
  const body = Buffer.concat([u16(0x0303), Buffer.alloc(32, 7), Buffer.of(0), u16(2), u16(0x1301), Buffer.of(1, 0), u16(exts.length), exts]);
  const hs = Buffer.concat([Buffer.of(1, 0, body.length >> 8, body.length & 0xff), body]);
  const out: Buffer[] = [];
  for (let p = 0; p < hs.length; p += recordBytes) {
    const part = hs.subarray(p, Math.min(hs.length, p + recordBytes));
    out.push(Buffer.of(22, 3, 1), u16(part.length), part);
  }
  return Buffer.concat(out);
}
