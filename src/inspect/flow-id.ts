/**
 * The cross-end flow ID: a value the agent and the gateway compute
 * identically for the same flow from what both see on the wire, so their
 * records can be joined without talking to each other.
 *
 * flowId = hex(first 8 bytes of HMAC-SHA-256(key, input)), where input is
 *   "mtun-flow-id/1" ‖ proto (1 byte) ‖ IP version (1) ‖ A address (16) ‖
 *   B address (16) ‖ A port (2) ‖ B port (2) ‖ ISN flag (1) ‖ ISN (4),
 * addresses IPv4 in the first 4 bytes then zeros, integers big-endian.
 * With the initiator's ISN (TCP whose SYN or SYN-ACK was seen), A is the
 * initiator and B the responder, ISN flag 1: the ID is unique per connection
 * (ISNs are random per RFC 9293 §3.4.1). Without it (UDP, ICMP, TCP picked up
 * mid-stream) the two endpoints are put in canonical order (lower address,
 * then lower port, first), ISN flag 0 and ISN 0: the ID names the 5-tuple, and
 * a reused tuple repeats it (join on the ID and the nearest first-seen time).
 * The key is public by default ({@link DEFAULT_FLOW_ID_KEY}); operators who do
 * not want IDs computable from a tuple configure the same secret key at both
 * ends. Computed once per record (allocates only the string), never per packet.
 *
 * HMAC-SHA-256 runs here in JavaScript over key states computed once per key
 * (FIPS 198-1: the padded key's inner and outer blocks hashed ahead), so an ID
 * costs three SHA-256 compressions (FIPS 180-4 §6.2) and no objects: node's
 * createHmac cost about 3.5 µs per call in object set-up, the largest single
 * per-flow cost under a SYN flood. The test checks it against createHmac.
 */
import { createHash } from 'node:crypto';

/** The default HMAC key: public, so any two ends (and offline tools) agree without configuration. */
export const DEFAULT_FLOW_ID_KEY: Uint8Array = Buffer.from('mtun flow id key, public default');

const DOMAIN = Buffer.from('mtun-flow-id/1');
/** Bytes after the key block: DOMAIN ‖ the 43-byte tuple. */
const MSG_LEN = DOMAIN.length + 43;

/** FIPS 180-4 §4.2.2. */
const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
/** FIPS 180-4 §5.3.3. */
const IV = new Int32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);

const W = new Int32Array(64);

/** One SHA-256 compression (FIPS 180-4 §6.2.2) of the block in W[0..15] into `h`. */
function compress(h: Int32Array): void {
  for (let t = 16; t < 64; t++) {
    const x = W[t - 15]!;
    const y = W[t - 2]!;
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    W[t] = (W[t - 16]! + s0 + W[t - 7]! + s1) | 0;
  }
  let a = h[0]!, b = h[1]!, c = h[2]!, d = h[3]!, e = h[4]!, f = h[5]!, g = h[6]!, k = h[7]!;
  for (let t = 0; t < 64; t++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (k + S1 + ((e & f) ^ (~e & g)) + K[t]! + W[t]!) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    k = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
  }
  h[0] = (h[0]! + a) | 0; h[1] = (h[1]! + b) | 0; h[2] = (h[2]! + c) | 0; h[3] = (h[3]! + d) | 0;
  h[4] = (h[4]! + e) | 0; h[5] = (h[5]! + f) | 0; h[6] = (h[6]! + g) | 0; h[7] = (h[7]! + k) | 0;
}

/** W[0..15] from 64 bytes of `b` at `o`, big-endian. */
function loadBlock(b: Uint8Array, o: number): void {
  for (let i = 0; i < 16; i++) W[i] = (b[o + 4 * i]! << 24) | (b[o + 4 * i + 1]! << 16) | (b[o + 4 * i + 2]! << 8) | b[o + 4 * i + 3]!;
}

/**
 * The SHA-256 states after the HMAC key's inner and outer blocks (FIPS 198-1
 * §4), cached by key object: a key's bytes must not change after its first
 * use (FlowCore keeps its own copy).
 */
interface KeyStates { inner: Int32Array; outer: Int32Array }
const keyStates = new WeakMap<Uint8Array, KeyStates>();

function statesOf(key: Uint8Array): KeyStates {
  let ks = keyStates.get(key);
  if (ks !== undefined) return ks;
  const k0 = new Uint8Array(64);
  k0.set(key.length > 64 ? createHash('sha256').update(key).digest() : key);
  const pad = new Uint8Array(64);
  const state = (x: number): Int32Array => {
    for (let i = 0; i < 64; i++) pad[i] = k0[i]! ^ x;
    const h = Int32Array.from(IV);
    loadBlock(pad, 0);
    compress(h);
    return h;
  };
  ks = { inner: state(0x36), outer: state(0x5c) };
  keyStates.set(key, ks);
  return ks;
}

/** DOMAIN ‖ tuple ‖ SHA-256 padding of the inner message (64 + 57 bytes): two blocks. */
const inner = new Uint8Array(128);
inner.set(DOMAIN, 0);
inner[MSG_LEN] = 0x80;
new DataView(inner.buffer).setUint32(124, (64 + MSG_LEN) * 8);
const innerDv = new DataView(inner.buffer);
const h = new Int32Array(8);
const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/**
 * The flow ID of a tuple. `a` / `b` are 4 big-endian words each (IPv4 in the
 * first word). `isn` is the initiator's ISN or -1 when unknown. Allocates only the string.
 */
export function computeFlowId(key: Uint8Array, proto: number, ipVersion: number,
  a: ArrayLike<number>, aPort: number, b: ArrayLike<number>, bPort: number, isn: number): string {
  let swap = false;
  if (isn < 0) {
    for (let w = 0; w < 4 && !swap; w++) {
      if (a[w] !== b[w]) { swap = a[w]! > b[w]!; break; }
      if (w === 3) swap = aPort > bPort;
    }
  }
  const ks = statesOf(key);
  const m = DOMAIN.length;
  const dv = innerDv;
  inner[m] = proto;
  inner[m + 1] = ipVersion;
  const x = swap ? b : a;
  const y = swap ? a : b;
  for (let w = 0; w < 4; w++) {
    dv.setUint32(m + 2 + 4 * w, x[w]! >>> 0);
    dv.setUint32(m + 18 + 4 * w, y[w]! >>> 0);
  }
  dv.setUint16(m + 34, swap ? bPort : aPort);
  dv.setUint16(m + 36, swap ? aPort : bPort);
  inner[m + 38] = isn < 0 ? 0 : 1;
  dv.setUint32(m + 39, isn < 0 ? 0 : isn >>> 0);
  // Inner hash: from the key's inner state, the two message blocks.
  h.set(ks.inner);
  loadBlock(inner, 0);
  compress(h);
  loadBlock(inner, 64);
  compress(h);
  // Outer hash: from the key's outer state, one block: the inner hash, 0x80, zeros, length (64 + 32 bytes).
  for (let i = 0; i < 8; i++) W[i] = h[i]!;
  W[8] = 0x80000000 | 0;
  for (let i = 9; i < 15; i++) W[i] = 0;
  W[15] = (64 + 32) * 8;
  h.set(ks.outer);
  compress(h);
  const h0 = h[0]!;
  const h1 = h[1]!;
  return HEX[h0 >>> 24]! + HEX[(h0 >>> 16) & 0xff]! + HEX[(h0 >>> 8) & 0xff]! + HEX[h0 & 0xff]!
    + HEX[h1 >>> 24]! + HEX[(h1 >>> 16) & 0xff]! + HEX[(h1 >>> 8) & 0xff]! + HEX[h1 & 0xff]!;
}
