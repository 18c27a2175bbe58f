/**
 * The flow table under the tracker: struct-of-arrays flow slots, a keyed
 * symmetric 5-tuple hash, an open-addressing index, one LRU list per state
 * (timeout class) and the choice of which flow to evict. Knows nothing of TCP.
 */
import { randomBytes } from 'node:crypto';
import type { PacketInfo } from '../packet/ip-packet.js';

// Flow states; each is also a timeout class with its own LRU list.
export const S_SYN_SENT = 0;
export const S_SYN_RECV = 1;
export const S_ESTABLISHED = 2;
export const S_FIN_WAIT = 3;
export const S_LAST_ACK = 4;
export const S_TIME_WAIT = 5; // emitted
export const S_CLOSE = 6; // emitted (RST)
export const S_UDP = 7;
export const S_UDP_STREAM = 8;
export const S_ICMP = 9;
export const N_STATES = 10;
export const S_FREE = 255;

// Per-flow flag bits (FlowTable.flags).
export const F_MIDSTREAM = 1;
export const F_OPENED = 2;
export const F_SYN_SEEN = 4;
export const F_SYNACK_SEEN = 8;
export const F_INIT0 = 16; // sequence space of direction 0 known (F_INIT0 << d)
export const F_FIN0 = 64;
export const F_FINACK0 = 256;
export const F_HOLES0 = 1024;
export const F_L7 = 4096;
export const F_WS = 8192;
export const F_L7_TRIED = 16384;
/** The initiator's ISN is known (kIsn): from its SYN, or from the SYN-ACK's acknowledgment number. */
export const F_ISN = 32768;
/** Direction d's SYN (or SYN-ACK) carried the TCP timestamps option (F_TS0 << d); both set = RFC 7323 §3.2 in use. */
export const F_TS0 = 1 << 16;

function word(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

/**
 * HalfSipHash-1-3 (the 32-bit member of the SipHash family, J.-P. Aumasson and
 * D. J. Bernstein; Linux uses it as `hsiphash` for its hash tables) over the
 * 32-bit words w[0, n) with the 64-bit key (k0, k1). Words are fed as numbers,
 * so values are not comparable with byte-oriented test vectors. Keyed: an
 * attacker who cannot see hash values cannot choose colliding tuples.
 */
export function halfSipHash13(w: Uint32Array, n: number, k0: number, k1: number): number {
  let v0 = k0 | 0;
  let v1 = k1 | 0;
  let v2 = (0x6c796765 ^ k0) | 0;
  let v3 = (0x74656462 ^ k1) | 0;
  // n message words, then the length block (bytes << 24), one compression round each (the "1").
  for (let r = 0; r <= n; r++) {
    const m = r < n ? w[r]! | 0 : (n << 2) << 24;
    v3 ^= m;
    v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
    v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
    v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
    v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
    v0 ^= m;
  }
  v2 ^= 0xff;
  // Three finalisation rounds (the "3").
  for (let r = 0; r < 3; r++) {
    v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
    v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
    v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
    v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
  }
  return (v1 ^ v3) | 0;
}

/**
 * Flow slots as parallel typed arrays (capacity doubles up to `maxFlows`), a
 * linear-probing index keyed by a per-instance random HalfSipHash key, and one
 * LRU list per state. Per-direction arrays are indexed `slot * 2 + d` (d 0 =
 * initiator → responder). The tracker reads and writes the arrays directly;
 * grow() replaces them, so never hold one across a create().
 */
export class FlowTable {
  cap = 0;
  /** Slots in use (including emitted lingering ones). */
  count = 0;
  private nextOrdinal = 0;
  private freeTop = 0;
  private free = new Int32Array(0);
  private index = new Int32Array(0); // slot + 1, 0 = empty (linear probing)
  private mask = 0;
  private readonly k0: number;
  private readonly k1: number;

  // Per flow.
  kAddr = new Uint32Array(0); // 8 words: A address (4), B address (4)
  kPorts = new Uint32Array(0); // A port << 16 | B port
  kMeta = new Uint16Array(0); // proto | (ipv6 ? 0x100 : 0)
  kHash = new Int32Array(0);
  /**
   * Each slot's cross-end flow ID once computed (flow-record.ts flowIdOf),
   * with the ISN it was computed from (-1: none), so live snapshots and the
   * close record pay for the HMAC once per flow, not once per record.
   */
  readonly flowIdCache: (string | undefined)[] = [];
  readonly flowIdIsn: number[] = [];
  state = new Uint8Array(0);
  inList = new Uint8Array(0); // which state's LRU list the slot is on
  flags = new Uint32Array(0);
  tunDir = new Uint8Array(0);
  ordinal = new Float64Array(0);
  first = new Float64Array(0);
  last = new Float64Array(0);
  tSyn = new Float64Array(0);
  tSynAck = new Float64Array(0);
  tAck = new Float64Array(0);
  rstIgnored = new Uint16Array(0);
  /** The initiator's initial sequence number (valid with F_ISN); part of the cross-end flow ID. */
  kIsn = new Uint32Array(0);
  prev = new Int32Array(0);
  next = new Int32Array(0);
  // Per flow and direction.
  lo = new Float64Array(0);
  hi = new Float64Array(0);
  hiSeq = new Uint32Array(0);
  finSeq = new Uint32Array(0);
  bytes = new Float64Array(0);
  packets = new Float64Array(0);
  retrans = new Uint32Array(0);
  ooo = new Uint32Array(0);
  win = new Uint32Array(0);
  /** The acknowledgment number this direction sent last (TCP; valid once it sent an ACK). */
  ack = new Uint32Array(0);
  wscale = new Int8Array(0);
  // RTT sampling per direction (rtt-sampler.ts): data of direction d timed against the ACKs of the other.
  /** Sequence number (or TSval with timestamps) that the timed segment's ACK must reach. */
  rttMark = new Uint32Array(0);
  /** When the timed segment passed, ms; NaN when nothing is being timed. */
  rttAt = new Float64Array(0);
  /** Samples taken; min, smoothed (RFC 6298 §2) and max, ms (NaN before the first sample). */
  rttN = new Uint32Array(0);
  rttMin = new Float64Array(0);
  rttSrtt = new Float64Array(0);
  rttMax = new Float64Array(0);
  /** Samples refused as negative (rtt-sampler.ts addRttSample), all flows. */
  rttDiscarded = 0;

  readonly headOf = new Int32Array(N_STATES).fill(-1);
  readonly tailOf = new Int32Array(N_STATES).fill(-1);

  // The current packet's key (loadKey), in packet orientation.
  private readonly key = new Uint32Array(8);
  private kp = 0;
  private kmeta = 0;
  private readonly words = new Uint32Array(10);
  /**
   * The last key hashed and its hash, and the slot the last lookup found:
   * a bulk flow's packets come in runs, and its next packet needs neither
   * the keyed hash again (a pure function of the key) nor the probe (the
   * slot is checked live and holding the key, as the probe would).
   */
  private readonly memoKey = new Uint32Array(8);
  private memoKp = -1;
  private memoMeta = -1;
  private memoHash = 0;
  private memoSlot = -1;
  /** After lookup/create: 0 when the current packet travels initiator → responder, else 1. */
  dir = 0;

  /** An empty table with room for `initialCap` flows. `hashKey`: 8 bytes (tests); default random per instance. */
  constructor(readonly maxFlows: number, initialCap: number, hashKey?: Uint8Array) {
    const k = hashKey ?? randomBytes(8);
    if (k.length !== 8) throw new Error('inspect: hashKey must be 8 bytes');
    this.k0 = word(k, 0) | 0;
    this.k1 = word(k, 4) | 0;
    this.grow(initialCap);
  }

  /** Loads the current packet's tuple (addresses from buf at pi's offsets, the given ports) and returns its hash. */
  loadKey(buf: Uint8Array, pi: PacketInfo, sport: number, dport: number): number {
    const k = this.key;
    if (pi.ipVersion === 4) {
      k[0] = word(buf, pi.srcOff); k[1] = 0; k[2] = 0; k[3] = 0;
      k[4] = word(buf, pi.dstOff); k[5] = 0; k[6] = 0; k[7] = 0;
    } else {
      for (let w = 0; w < 4; w++) {
        k[w] = word(buf, pi.srcOff + 4 * w);
        k[4 + w] = word(buf, pi.dstOff + 4 * w);
      }
    }
    this.kp = ((sport << 16) | dport) >>> 0;
    this.kmeta = pi.proto | (pi.ipVersion === 6 ? 0x100 : 0);
    const m = this.memoKey;
    if (this.kp === this.memoKp && this.kmeta === this.memoMeta && k[0] === m[0] && k[1] === m[1] && k[2] === m[2] && k[3] === m[3] &&
      k[4] === m[4] && k[5] === m[5] && k[6] === m[6] && k[7] === m[7]) return this.memoHash;
    const h = this.hashKey(pi.ipVersion === 6);
    m.set(k);
    this.memoKp = this.kp;
    this.memoMeta = this.kmeta;
    this.memoHash = h;
    return h;
  }

  /** Symmetric: the endpoints are hashed in a canonical order, so both orientations of a tuple hash alike. */
  private hashKey(v6: boolean): number {
    const k = this.key;
    const p = this.kp;
    // Canonical order: compare (address, port) of A and B.
    let swap = false;
    for (let w = 0; w < 4; w++) {
      if (k[w] !== k[4 + w]) { swap = k[w]! > k[4 + w]!; break; }
      if (w === 3) swap = (p >>> 16) > (p & 0xffff);
    }
    const a = swap ? 4 : 0;
    const b = a ^ 4;
    const w = this.words;
    let n = 0;
    if (v6) {
      for (let i = 0; i < 4; i++) w[n++] = k[a + i]!;
      for (let i = 0; i < 4; i++) w[n++] = k[b + i]!;
    } else {
      w[n++] = k[a]!;
      w[n++] = k[b]!;
    }
    w[n++] = swap ? ((p << 16) | (p >>> 16)) >>> 0 : p;
    w[n++] = this.kmeta;
    return halfSipHash13(w, n, this.k0, this.k1);
  }

  /** Slot of the loaded key with hash h (setting {@link dir}), or -1. */
  lookup(h: number): number {
    const meta = this.kmeta;
    const k = this.key;
    const p = this.kp;
    const pr = ((p << 16) | (p >>> 16)) >>> 0;
    const a = this.kAddr;
    const m = this.memoSlot;
    if (m >= 0 && m < this.cap && this.state[m] !== S_FREE && this.holds(m, h, meta, k, p, pr, a)) return m;
    let x = h & this.mask;
    for (;;) {
      const e = this.index[x]!;
      if (e === 0) return -1;
      const s = e - 1;
      if (this.holds(s, h, meta, k, p, pr, a)) {
        this.memoSlot = s;
        return s;
      }
      x = (x + 1) & this.mask;
    }
  }

  /** Whether slot s holds the loaded key (hash h) in either orientation; sets {@link dir} when it does. */
  private holds(s: number, h: number, meta: number, k: Uint32Array, p: number, pr: number, a: Uint32Array): boolean {
    if (this.kHash[s] !== h || this.kMeta[s] !== meta) return false;
    const b = s * 8;
    const kp = this.kPorts[s]!;
    if (kp === p && a[b] === k[0] && a[b + 1] === k[1] && a[b + 2] === k[2] && a[b + 3] === k[3]
      && a[b + 4] === k[4] && a[b + 5] === k[5] && a[b + 6] === k[6] && a[b + 7] === k[7]) {
      this.dir = 0;
      return true;
    }
    if (kp === pr && a[b] === k[4] && a[b + 1] === k[5] && a[b + 2] === k[6] && a[b + 3] === k[7]
      && a[b + 4] === k[0] && a[b + 5] === k[1] && a[b + 6] === k[2] && a[b + 7] === k[3]) {
      this.dir = 1;
      return true;
    }
    return false;
  }

  /** True when a new flow needs an eviction first (full at maxFlows); grows the arrays when below it. */
  needsEviction(): boolean {
    if (this.count < this.cap) return false;
    if (this.cap < this.maxFlows) { this.grow(Math.min(this.cap * 2, this.maxFlows)); return false; }
    return true;
  }

  /**
   * New flow for the loaded key, in state `st`, with hash h. Call
   * {@link needsEviction} (and evict) first. `initiatorIsDst` 1 when the
   * packet travels responder → initiator. Sets {@link dir}.
   */
  create(h: number, st: number, initiatorIsDst: number, td: number, now: number): number {
    const s = this.free[--this.freeTop]!;
    this.count++;
    const k = this.key;
    const b = s * 8;
    const first = initiatorIsDst === 1 ? 4 : 0;
    for (let w = 0; w < 4; w++) {
      this.kAddr[b + w] = k[first + w]!;
      this.kAddr[b + 4 + w] = k[(first ^ 4) + w]!;
    }
    const p = this.kp;
    this.kPorts[s] = initiatorIsDst === 1 ? ((p << 16) | (p >>> 16)) >>> 0 : p;
    this.kMeta[s] = this.kmeta;
    this.kHash[s] = h;
    this.dir = initiatorIsDst;
    this.flags[s] = 0;
    this.tunDir[s] = initiatorIsDst === 1 ? td ^ 1 : td;
    this.ordinal[s] = this.nextOrdinal++;
    this.first[s] = now;
    this.last[s] = now;
    this.tSyn[s] = NaN;
    this.tSynAck[s] = NaN;
    this.tAck[s] = NaN;
    this.rstIgnored[s] = 0;
    this.kIsn[s] = 0;
    this.flowIdCache[s] = undefined;
    for (let d = 0; d < 2; d++) {
      const i = s * 2 + d;
      this.lo[i] = 0; this.hi[i] = 0; this.hiSeq[i] = 0; this.finSeq[i] = 0;
      this.bytes[i] = 0; this.packets[i] = 0; this.retrans[i] = 0; this.ooo[i] = 0;
      this.win[i] = 0; this.ack[i] = 0; this.wscale[i] = -1;
      this.rttMark[i] = 0; this.rttAt[i] = NaN; this.rttN[i] = 0;
      this.rttMin[i] = NaN; this.rttSrtt[i] = NaN; this.rttMax[i] = NaN;
    }
    this.link(s, st);
    let x = h & this.mask;
    while (this.index[x] !== 0) x = (x + 1) & this.mask;
    this.index[x] = s + 1;
    return s;
  }

  /** The least valuable flow to evict: a closed one lingering, then the oldest half-open, then the oldest idle; -1 if empty. */
  evictionVictim(): number {
    let v = this.oldestOf(S_TIME_WAIT, S_CLOSE, -1);
    if (v >= 0) return v;
    v = this.oldestOf(S_SYN_SENT, S_SYN_RECV, -1);
    if (v >= 0) return v;
    v = this.oldestOf(S_ESTABLISHED, S_FIN_WAIT, v);
    v = this.oldestOf(S_LAST_ACK, S_UDP, v);
    return this.oldestOf(S_UDP_STREAM, S_ICMP, v);
  }

  private oldestOf(a: number, b: number, best: number): number {
    const h1 = this.headOf[a]!;
    if (h1 >= 0 && (best < 0 || this.last[h1]! < this.last[best]!)) best = h1;
    const h2 = this.headOf[b]!;
    if (h2 >= 0 && (best < 0 || this.last[h2]! < this.last[best]!)) best = h2;
    return best;
  }

  /** Puts s on state st's list (as its most recently active entry) and sets its state. */
  link(s: number, st: number): void {
    this.state[s] = st;
    this.inList[s] = st;
    const t = this.tailOf[st]!;
    this.prev[s] = t;
    this.next[s] = -1;
    if (t >= 0) this.next[t] = s; else this.headOf[st] = s;
    this.tailOf[st] = s;
  }

  /** Takes s off its list. */
  unlink(s: number): void {
    const st = this.inList[s]!;
    const p = this.prev[s]!;
    const n = this.next[s]!;
    if (p >= 0) this.next[p] = n; else this.headOf[st] = n;
    if (n >= 0) this.prev[n] = p; else this.tailOf[st] = p;
  }

  /** Moves s to the tail of state st's list (its most recently active end). */
  relink(s: number, st: number): void {
    if (this.inList[s] === st && this.tailOf[st] === s) { this.state[s] = st; return; }
    this.unlink(s);
    this.link(s, st);
  }

  /** Frees a slot: out of its list and out of the index (backward-shift deletion). */
  release(s: number): void {
    this.unlink(s);
    this.state[s] = S_FREE;
    const mask = this.mask;
    let x = this.kHash[s]! & mask;
    while (this.index[x] !== s + 1) x = (x + 1) & mask;
    this.index[x] = 0;
    let y = x;
    for (;;) {
      y = (y + 1) & mask;
      const e = this.index[y]!;
      if (e === 0) break;
      const home = this.kHash[e - 1]! & mask;
      // Move e back into the hole unless its home lies cyclically in (x, y].
      const inRange = x <= y ? home > x && home <= y : home > x || home <= y;
      if (!inRange) {
        this.index[x] = e;
        this.index[y] = 0;
        x = y;
      }
    }
    this.free[this.freeTop++] = s;
    this.count--;
  }

  /** Longest probe sequence in the index (slots visited to find a flow); for tests and diagnostics. O(table). */
  maxProbeLength(): number {
    let worst = 0;
    const size = this.mask + 1;
    for (let x = 0; x < size; x++) {
      const e = this.index[x]!;
      if (e === 0) continue;
      const d = ((x - (this.kHash[e - 1]! & this.mask)) & this.mask) + 1;
      if (d > worst) worst = d;
    }
    return worst;
  }

  /** Bytes held by the typed arrays (capacity, not just used slots). */
  byteLength(): number {
    let n = this.index.byteLength + this.free.byteLength;
    for (const a of [this.kAddr, this.kPorts, this.kMeta, this.kHash, this.state, this.inList, this.flags, this.tunDir,
      this.ordinal, this.first, this.last, this.tSyn, this.tSynAck, this.tAck, this.rstIgnored, this.kIsn, this.prev, this.next,
      this.lo, this.hi, this.hiSeq, this.finSeq, this.bytes, this.packets, this.retrans, this.ooo, this.win, this.ack, this.wscale,
      this.rttMark, this.rttAt, this.rttN, this.rttMin, this.rttSrtt, this.rttMax]) n += a.byteLength;
    return n;
  }

  private grow(newCap: number): void {
    const old = this.cap;
    const g = <T extends Float64Array | Uint32Array | Int32Array | Uint16Array | Uint8Array | Int8Array>(a: T, per: number): T => {
      const n = new (a.constructor as new (len: number) => T)(newCap * per);
      n.set(a as never);
      return n;
    };
    this.kAddr = g(this.kAddr, 8); this.kPorts = g(this.kPorts, 1); this.kMeta = g(this.kMeta, 1); this.kHash = g(this.kHash, 1);
    this.state = g(this.state, 1); this.inList = g(this.inList, 1); this.flags = g(this.flags, 1); this.tunDir = g(this.tunDir, 1);
    this.ordinal = g(this.ordinal, 1); this.first = g(this.first, 1); this.last = g(this.last, 1);
    this.tSyn = g(this.tSyn, 1); this.tSynAck = g(this.tSynAck, 1); this.tAck = g(this.tAck, 1);
    this.rstIgnored = g(this.rstIgnored, 1); this.kIsn = g(this.kIsn, 1); this.prev = g(this.prev, 1); this.next = g(this.next, 1);
    this.lo = g(this.lo, 2); this.hi = g(this.hi, 2); this.hiSeq = g(this.hiSeq, 2); this.finSeq = g(this.finSeq, 2);
    this.bytes = g(this.bytes, 2); this.packets = g(this.packets, 2); this.retrans = g(this.retrans, 2); this.ooo = g(this.ooo, 2);
    this.win = g(this.win, 2); this.ack = g(this.ack, 2); this.wscale = g(this.wscale, 2);
    this.rttMark = g(this.rttMark, 2); this.rttAt = g(this.rttAt, 2); this.rttN = g(this.rttN, 2);
    this.rttMin = g(this.rttMin, 2); this.rttSrtt = g(this.rttSrtt, 2); this.rttMax = g(this.rttMax, 2);
    this.state.fill(S_FREE, old);
    const free = new Int32Array(newCap);
    free.set(this.free.subarray(0, this.freeTop));
    // New slots are taken lowest first.
    for (let s = newCap - 1; s >= old; s--) free[this.freeTop++] = s;
    this.free = free;
    this.cap = newCap;
    let size = 1;
    while (size < newCap * 2) size <<= 1;
    this.index = new Int32Array(size);
    this.mask = size - 1;
    for (let s = 0; s < old; s++) {
      if (this.state[s] === S_FREE) continue;
      let x = this.kHash[s]! & this.mask;
      while (this.index[x] !== 0) x = (x + 1) & this.mask;
      this.index[x] = s + 1;
    }
  }
}
