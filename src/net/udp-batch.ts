/**
 * Allocation of {@link UdpBatch} arrays and encoding/decoding of the compact
 * address slots (peer: 16-byte IPv6 / IPv4-mapped address, port, 2 reserved;
 * then the 16-byte local address). Layout: {@link ADDR_SLOT_BYTES}.
 */
import { allocSlots } from './slot-arena.js';
import { ADDR_SLOT_BYTES, type UdpBatch } from './udp.js';

/** Largest UDP payload (65,535 − 8-byte UDP header); larger slots are pointless. */
const MAX_SLOT_BYTES = 65_535;
/** Upper bound on slots per batch (Linux UIO_MAXIOV caps sendmmsg/recvmmsg at 1024). */
const MAX_BATCH = 1024;
/** Offset of the local address in a slot. */
const LOCAL_OFF = 20;
/** Bytes of a slot naming the peer (address + port). */
const PEER_BYTES = 18;

/**
 * Allocates a batch of `batchSize` slots of `slotBytes` each. All slot buffers
 * are views of one contiguous allocation (stride `slotBytes`, slot-arena.ts),
 * which the native socket reads into without per-slot lookups; the slots
 * array is frozen. The caller owns the result
 * and may reuse it for any number of `recv`/`send` calls on any socket.
 * Throws `net: …` on a batch size outside 1..1024 or slot size outside 1..65535.
 */
export function allocUdpBatch(batchSize: number, slotBytes: number): UdpBatch {
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > MAX_BATCH) {
    throw new RangeError(`net: batch size ${batchSize} out of range 1..${MAX_BATCH}`);
  }
  if (!Number.isInteger(slotBytes) || slotBytes < 1 || slotBytes > MAX_SLOT_BYTES) {
    throw new RangeError(`net: slot size ${slotBytes} out of range 1..${MAX_SLOT_BYTES}`);
  }
  // Buffer.alloc (in allocSlots): an unpooled backing store of its own, zeroed (so no stale
  // heap bytes can ever be sent) by the allocator's zeroed pages rather than a
  // fill that touches every page up front (megabytes with GRO/GSO slots: daemon start time).
  return {
    bufs: allocSlots(batchSize, slotBytes),
    sizes: new Uint32Array(batchSize),
    addrs: new Uint8Array(batchSize * ADDR_SLOT_BYTES),
    segs: new Uint32Array(batchSize),
  };
}

function badAddr(host: string): never {
  throw new TypeError(`net: invalid IP address ${JSON.stringify(host)}`);
}

/** Parses dotted-quad IPv4 from host[start..end) into out[o..o+4); false when malformed. */
function parseV4Into(host: string, start: number, end: number, out: Uint8Array, o: number): boolean {
  let part = 0;
  let digits = 0;
  let value = 0;
  for (let p = start; p <= end; p++) {
    const c = p === end ? 46 /* '.' sentinel */ : host.charCodeAt(p);
    if (c >= 48 && c <= 57) {
      // No leading zeros ("01" is ambiguous between octal and decimal).
      if (digits === 1 && value === 0) return false;
      value = value * 10 + (c - 48);
      digits++;
      if (value > 255) return false;
    } else if (c === 46) {
      if (digits === 0 || part > 3) return false;
      out[o + part] = value;
      part++;
      value = 0;
      digits = 0;
    } else {
      return false;
    }
  }
  return part === 4;
}

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** Parses textual IPv6 (RFC 4291 §2.2, with trailing dotted IPv4) into out[o..o+16). */
function parseV6Into(host: string, out: Uint8Array, o: number): boolean {
  const n = host.length;
  if (n < 2) return false;
  let words = 0; // 16-bit groups written
  let gap = -1; // group index where "::" sits
  let p = 0;
  if (host.charCodeAt(0) === 58) {
    if (host.charCodeAt(1) !== 58) return false;
    gap = 0;
    p = 2;
    if (p === n) {
      out.fill(0, o, o + 16);
      return true;
    }
  }
  while (p < n) {
    if (words === 8) return false;
    // Find the end of this group.
    let q = p;
    let isV4 = false;
    while (q < n) {
      const c = host.charCodeAt(q);
      if (c === 58) break;
      if (c === 46) isV4 = true;
      q++;
    }
    if (isV4) {
      if (q !== n || words > 6) return false;
      if (!parseV4Into(host, p, q, out, o + words * 2)) return false;
      words += 2;
      p = q;
      break;
    }
    const len = q - p;
    if (len < 1 || len > 4) return false;
    let v = 0;
    for (let k = p; k < q; k++) {
      const h = hexVal(host.charCodeAt(k));
      if (h < 0) return false;
      v = (v << 4) | h;
    }
    out[o + words * 2] = v >> 8;
    out[o + words * 2 + 1] = v & 0xff;
    words++;
    if (q === n) {
      p = q;
      break;
    }
    // q is at ':'
    if (q + 1 < n && host.charCodeAt(q + 1) === 58) {
      if (gap >= 0) return false;
      gap = words;
      p = q + 2;
    } else {
      p = q + 1;
      if (p === n) return false; // trailing single ':'
    }
  }
  if (gap < 0) return words === 8;
  if (words === 8) return false; // "::" must stand for at least one group
  // Move the groups after the gap to the end and zero the gap.
  const tail = (words - gap) * 2;
  const from = o + gap * 2;
  const to = o + 16 - tail;
  out.copyWithin(to, from, from + tail);
  out.fill(0, from, to);
  return true;
}

function checkSlot(addrs: Uint8Array, i: number): number {
  const o = i * ADDR_SLOT_BYTES;
  if (!Number.isInteger(i) || i < 0 || o + ADDR_SLOT_BYTES > addrs.length) {
    throw new RangeError(`net: address slot ${i} outside array of ${Math.floor(addrs.length / ADDR_SLOT_BYTES)} slots`);
  }
  return o;
}

/** Parses IPv4 or IPv6 text into out[o..o+16) (IPv4 as ::ffff:a.b.c.d); throws `net: invalid IP address`. */
function parseAddrInto(host: string, out: Uint8Array, o: number): void {
  if (host.indexOf(':') < 0) {
    // RFC 4291 §2.5.5.2 IPv4-mapped IPv6 address.
    for (let k = 0; k < 10; k++) out[o + k] = 0;
    out[o + 10] = 0xff;
    out[o + 11] = 0xff;
    if (!parseV4Into(host, 0, host.length, out, o + 12)) badAddr(host);
  } else if (!parseV6Into(host, out, o)) {
    badAddr(host);
  }
}

/**
 * Writes `host` (IPv4 dotted quad or IPv6 text; IPv4 is stored as
 * ::ffff:a.b.c.d) and `port` into slot `i` of `addrs`, and zeroes the
 * slot's local address (the kernel then chooses the source; see
 * {@link writeAddrSlotLocal}). A zone suffix (`fe80::1%eth0`) is rejected.
 * Throws `net: …` on a malformed address, a port outside 0..65535, or a
 * slot index past the end of `addrs`.
 */
export function writeAddrSlot(addrs: Uint8Array, i: number, host: string, port: number): void {
  const o = checkSlot(addrs, i);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`net: port ${port} out of range 0..65535`);
  }
  parseAddrInto(host, addrs, o);
  addrs[o + 16] = port >>> 8;
  addrs[o + 17] = port & 0xff;
  addrs[o + 18] = 0;
  addrs[o + 19] = 0;
  addrs.fill(0, o + LOCAL_OFF, o + ADDR_SLOT_BYTES);
}

/**
 * Sets the local (source) address of slot `i`: IPv4 dotted quad or IPv6
 * text, or null to clear it (the kernel chooses). The unspecified addresses
 * `0.0.0.0` and `::` also clear it. The native socket sends the slot from
 * this address, which must be one of the host's own and of the peer's family
 * (a local address of the other family is ignored; one the host no longer
 * has makes the kernel refuse the slot, counted as a send error). Throws
 * `net: …` on a malformed address or a slot index past the end of `addrs`.
 */
export function writeAddrSlotLocal(addrs: Uint8Array, i: number, host: string | null): void {
  const o = checkSlot(addrs, i) + LOCAL_OFF;
  if (host === null) {
    addrs.fill(0, o, o + 16);
    return;
  }
  parseAddrInto(host, addrs, o);
  let zero = true;
  for (let k = 12; k < 16; k++) if (addrs[o + k] !== 0) zero = false;
  if (zero && (isMappedAt(addrs, o) || addrs.subarray(o, o + 12).every((x) => x === 0))) {
    addrs.fill(0, o, o + 16); // 0.0.0.0 or ::: unspecified
  }
}

/** True when slot `i` carries a local address (no allocation). */
export function hasAddrSlotLocal(addrs: Uint8Array, i: number): boolean {
  const o = i * ADDR_SLOT_BYTES + LOCAL_OFF;
  for (let k = 0; k < 16; k++) if (addrs[o + k] !== 0) return true;
  return false;
}

/**
 * Returns the local address of slot `i` as text (dotted quad for IPv4, RFC
 * 5952 IPv6 otherwise), or null when unspecified (sockets that cannot read
 * pktinfo, or a slot written by {@link writeAddrSlot}). Allocates a string:
 * for logs and control paths, not per packet.
 */
export function readAddrSlotLocal(addrs: Uint8Array, i: number): string | null {
  const o = checkSlot(addrs, i);
  if (!hasAddrSlotLocal(addrs, i)) return null;
  return formatAddr(addrs, o + LOCAL_OFF);
}

function isMappedAt(addrs: Uint8Array, o: number): boolean {
  for (let k = 0; k < 10; k++) if (addrs[o + k] !== 0) return false;
  return addrs[o + 10] === 0xff && addrs[o + 11] === 0xff;
}

/** True when slot `i` holds an IPv4-mapped peer address (::ffff:a.b.c.d). */
export function isAddrSlotV4(addrs: Uint8Array, i: number): boolean {
  return isMappedAt(addrs, i * ADDR_SLOT_BYTES);
}

/**
 * Returns the peer address in slot `i` as text: dotted quad for IPv4-mapped
 * addresses, otherwise the RFC 5952 canonical IPv6 form (as Node prints it).
 * Allocates a string: for logs and control paths, not per packet.
 */
export function readAddrSlotHost(addrs: Uint8Array, i: number): string {
  return formatAddr(addrs, checkSlot(addrs, i));
}

/** Formats the 16-byte address at addrs[o..o+16). */
function formatAddr(addrs: Uint8Array, o: number): string {
  if (isMappedAt(addrs, o)) {
    return `${addrs[o + 12]}.${addrs[o + 13]}.${addrs[o + 14]}.${addrs[o + 15]}`;
  }
  // RFC 5952 §4.2: compress the longest run (≥2) of zero groups, first wins.
  let bestStart = -1;
  let bestLen = 0;
  let runStart = -1;
  for (let g = 0; g <= 8; g++) {
    const zero = g < 8 && addrs[o + g * 2] === 0 && addrs[o + g * 2 + 1] === 0;
    if (zero) {
      if (runStart < 0) runStart = g;
    } else if (runStart >= 0) {
      const len = g - runStart;
      if (len > bestLen) {
        bestLen = len;
        bestStart = runStart;
      }
      runStart = -1;
    }
  }
  if (bestLen < 2) bestStart = -1;
  let s = '';
  for (let g = 0; g < 8; g++) {
    if (g === bestStart) {
      s += '::';
      g += bestLen - 1;
      continue;
    }
    if (s.length > 0 && !s.endsWith(':')) s += ':';
    // RFC 5952 §4.1 no leading zeros; §4.3 lower case.
    s += ((addrs[o + g * 2] << 8) | addrs[o + g * 2 + 1]).toString(16);
  }
  return s;
}

/** Returns the peer port stored in slot `i`. */
export function readAddrSlotPort(addrs: Uint8Array, i: number): number {
  const o = checkSlot(addrs, i);
  return (addrs[o + 16] << 8) | addrs[o + 17];
}

/**
 * Copies the whole slot `from` of `src` to slot `to` of `dst`, local address
 * included (no allocation). This is the reply-to-sender path: a received
 * slot copied into a send slot makes the reply leave from the address the
 * datagram arrived on.
 */
export function copyAddrSlot(src: Uint8Array, from: number, dst: Uint8Array, to: number): void {
  const s = from * ADDR_SLOT_BYTES;
  const d = to * ADDR_SLOT_BYTES;
  for (let k = 0; k < ADDR_SLOT_BYTES; k++) dst[d + k] = src[s + k];
}

/**
 * Copies only the local address of slot `from` of `src` into slot `to` of
 * `dst`, keeping dst's peer (no allocation). For a sender that rewrote the
 * peer with {@link writeAddrSlot} (which clears the local part) and wants to
 * keep answering from the address the peer last reached.
 */
export function copyAddrSlotLocal(src: Uint8Array, from: number, dst: Uint8Array, to: number): void {
  const s = from * ADDR_SLOT_BYTES + LOCAL_OFF;
  const d = to * ADDR_SLOT_BYTES + LOCAL_OFF;
  for (let k = 0; k < 16; k++) dst[d + k] = src[s + k];
}

/**
 * True when slot `a` of `x` and slot `b` of `y` hold the same peer address
 * and port (no allocation). The local address is deliberately NOT compared.
 * This answers "is it the same peer?", which is what the callers ask: the
 * QUIC endpoint matches a datagram against a client connection's send slot
 * (whose local part is zero: it was written by writeAddrSlot), and decides
 * whether the QUIC engine must be told of a new peer address. Comparing the local
 * part would make those checks fail for every pktinfo-carrying slot. A
 * peer's packet arriving on another local address is, strictly, a new path
 * (RFC 9000 §9: a path is the 4-tuple); callers that care use
 * {@link addrSlotPathEquals}.
 */
export function addrSlotEquals(x: Uint8Array, a: number, y: Uint8Array, b: number): boolean {
  const p = a * ADDR_SLOT_BYTES;
  const q = b * ADDR_SLOT_BYTES;
  for (let k = 0; k < PEER_BYTES; k++) if (x[p + k] !== y[q + k]) return false;
  return true;
}

/**
 * True when the two slots hold the same peer address and port AND the same
 * local address: the same network path (RFC 9000 §9: a path is the 4-tuple).
 * No allocation. Reserved bytes are ignored.
 */
export function addrSlotPathEquals(x: Uint8Array, a: number, y: Uint8Array, b: number): boolean {
  if (!addrSlotEquals(x, a, y, b)) return false;
  const p = a * ADDR_SLOT_BYTES + LOCAL_OFF;
  const q = b * ADDR_SLOT_BYTES + LOCAL_OFF;
  for (let k = 0; k < 16; k++) if (x[p + k] !== y[q + k]) return false;
  return true;
}
