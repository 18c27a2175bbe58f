/**
 * The shape of a fuzz target, the invariant error, and helpers shared by the
 * target definitions (seed builders from the project's own encoders).
 */
import type { Rng } from '../rng.js';
import { parseIp, craftTcp, craftUdp, craftIcmp, mssOption, TCP_FLAG } from '../targets.js';

/** What a target reports about one input. */
export interface RunContext {
  /** For targets that need auxiliary choices (chunk splits); seeded from the campaign seed. */
  readonly rng: Rng;
  /** Records one outcome class: `ok…` for an accepted input, else the rejection reason. */
  note(label: string): void;
}

/** One fuzz target. */
export interface FuzzTarget {
  readonly name: string;
  /** The parsers and functions it drives, for the report. */
  readonly covers: string;
  /** Largest input generated, in bytes. */
  readonly maxLen: number;
  /** Valid encodings to mutate (each must be accepted: checked by the unit test). */
  seeds(): Uint8Array[];
  /** Tokens the mutator may insert. */
  readonly dict?: readonly Uint8Array[];
  /** True when `err` is the module's documented, typed error (anything else thrown is a crash). */
  typed(err: unknown): boolean;
  /** State carries over between inputs (a seed may be refused because of what came before). */
  readonly stateful?: boolean;
  /** Per-input time budget in ms when it differs from the campaign's (config parsing is not a per-packet path). */
  readonly hangMs?: number;
  /** Runs one input. */
  run(input: Uint8Array, ctx: RunContext): void;
}

/** Thrown when a target's invariant fails: always counted as a crash. */
export class InvariantError extends Error {
  constructor(message: string) {
    super(`fuzz invariant: ${message}`);
    this.name = 'InvariantError';
  }
}


/** For targets whose parser documents no thrown error: anything thrown is a crash. */
export const never = (): boolean => false;
/** UTF-8 bytes of a string. */
export const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
/** Bytes as a byte string, one char per byte (for text parsers: reaches every code point below 256). */
export const latin1 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
/** Bytes decoded as UTF-8 (invalid sequences become U+FFFD). */
export const utf8 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8');
/** Address bytes of an IP literal the caller knows is valid. */
export const ip = (s: string): Uint8Array => parseIp(s)!.address;
/** Dictionary tokens from byte lists. */
export const tokens = (list: readonly (readonly number[] | string)[]): Uint8Array[] => list.map((t) => (typeof t === 'string' ? enc(t) : Uint8Array.from(t)));

/** Concatenates byte arrays into a new one. */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let p = 0;
  for (const x of parts) {
    out.set(x, p);
    p += x.length;
  }
  return out;
}

/** A buffer of `len` bytes filled by `write` (an encoder writing at offset 0). */
export function withEncoder(len: number, write: (out: Uint8Array) => number): Uint8Array {
  const out = new Uint8Array(len);
  if (write(out) !== len) throw new Error('fuzz: seed encoder wrote other than its declared length');
  return out;
}

/** An error text as an outcome class: numbers, hex and quoted values folded so classes stay few. */
export function norm(s: string): string {
  return s
    .replace(/"(?:[^"\\]|\\.)*"/g, '"…"')
    .replace(/0x[0-9a-f]+/gi, 'HEX')
    .replace(/\b[0-9a-f]{4,}\b/gi, 'H')
    .replace(/(?<![A-Za-z_])[0-9]+(\.[0-9]+)?(e[+-]?[0-9]+)?/gi, 'N') // not inside names such as H3_…
    .slice(0, 100);
}

// ---- seeds: valid packets from the project's own crafter ----

/** A minimal TLS 1.3 ClientHello record (for the tracker's TLS peek). */
export const TLS_HELLO = Uint8Array.from([0x16, 0x03, 0x01, 0x00, 0x2e, 0x01, 0x00, 0x00, 0x2a, 0x03, 0x03, ...new Array(32).fill(7), 0x00, 0x00, 0x02, 0x13, 0x01, 0x01, 0x00, 0x00, 0x00]);

/** Valid IPv4/IPv6 TCP (handshake, TLS and HTTP data, FIN, RST), UDP, ICMP packets, IPv6 extension chain, IPv4 options + fragment. */
export function packetSeeds(): Uint8Array[] {
  const c4 = { src: '10.0.0.1', dst: '10.0.0.2' };
  const c6 = { src: 'fd00::1', dst: 'fd00::2' };
  const out: Uint8Array[] = [];
  for (const a of [c4, c6]) {
    out.push(craftTcp({ ...a, srcPort: 40000, dstPort: 443, seq: 1000, flags: TCP_FLAG.SYN, options: Uint8Array.from([...mssOption(1460), 1, 3, 3, 7, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0]) }));
    out.push(craftTcp({ ...a, srcPort: 443, dstPort: 40000, seq: 5000, ack: 1001, flags: TCP_FLAG.SYN | TCP_FLAG.ACK, options: mssOption(1400) }));
    out.push(craftTcp({ ...a, srcPort: 40000, dstPort: 443, seq: 1001, ack: 5001, flags: TCP_FLAG.ACK }));
    out.push(craftTcp({ ...a, srcPort: 40000, dstPort: 443, seq: 1001, ack: 5001, flags: TCP_FLAG.ACK | TCP_FLAG.PSH, payload: TLS_HELLO }));
    out.push(craftTcp({ ...a, srcPort: 40001, dstPort: 80, seq: 9, ack: 1, flags: TCP_FLAG.ACK | TCP_FLAG.PSH, payload: enc('GET / HTTP/1.1\r\nHost: x\r\n\r\n') }));
    out.push(craftTcp({ ...a, srcPort: 40000, dstPort: 443, seq: 1100, ack: 5001, flags: TCP_FLAG.ACK | TCP_FLAG.FIN }));
    out.push(craftTcp({ ...a, srcPort: 443, dstPort: 40000, seq: 5001, flags: TCP_FLAG.RST }));
    out.push(craftUdp({ ...a, srcPort: 5353, dstPort: 53, payload: enc('\x12\x34\x01\x00\x00\x01') }));
    out.push(craftIcmp({ ...a, type: a === c4 ? 8 : 128, rest: 0x12340001, payload: enc('ping') }));
    out.push(craftIcmp({ ...a, type: a === c4 ? 3 : 1, code: 1, payload: craftUdp({ ...a, srcPort: 1, dstPort: 2 }).subarray(0, 28) }));
  }
  // IPv6 with hop-by-hop, fragment and destination-options headers in front of UDP.
  const u6 = craftUdp({ ...c6, srcPort: 1000, dstPort: 2000, payload: enc('ext') });
  // Hop-by-hop (→ destination options) and destination options (→ fragment), each a PadN; fragment header offset 0, id 1 (→ UDP).
  const ext = Uint8Array.from([60, 0, 1, 4, 0, 0, 0, 0, 44, 0, 1, 4, 0, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0, 1]);
  const v6ext = new Uint8Array(u6.length + ext.length);
  v6ext.set(u6.subarray(0, 40), 0);
  v6ext[6] = 0;
  v6ext[4] = (u6.length - 40 + ext.length) >> 8;
  v6ext[5] = (u6.length - 40 + ext.length) & 0xff;
  v6ext.set(ext, 40);
  v6ext.set(u6.subarray(40), 40 + ext.length);
  out.push(v6ext);
  // IPv4 with options (IHL 6) and a first fragment.
  const t4 = craftUdp({ ...c4, srcPort: 7, dstPort: 7, payload: enc('opts') });
  const o4 = new Uint8Array(t4.length + 4);
  o4.set(t4.subarray(0, 20), 0);
  o4[0] = 0x46;
  o4[2] = o4.length >> 8;
  o4[3] = o4.length & 0xff;
  o4[6] = 0x20; // MF
  o4.set([1, 1, 1, 0], 20);
  o4.set(t4.subarray(20), 24);
  out.push(o4);
  return out;
}

