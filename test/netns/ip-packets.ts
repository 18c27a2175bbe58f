/** IP packets the TUN-thread tests send through a tunnel (test/netns/tun-thread*.test.ts). */

/**
 * An IPv4 UDP packet 10.79.0.<src>:sport → 10.79.0.1:9999, TTL 64, carrying
 * `text` (UDP checksum 0: none, RFC 768), after `prefix` (an HTTP Datagram's
 * quarter stream ID and context); `moreFragments`: a first fragment.
 */
export function ipUdp(prefix: Uint8Array, src: number, text: string, moreFragments = false, sport = 12345): Uint8Array {
  const payload = Buffer.from(text, 'latin1');
  const len = 28 + payload.length;
  const b = new Uint8Array(prefix.length + len);
  b.set(prefix, 0);
  const p = b.subarray(prefix.length);
  p.set([0x45, 0, len >> 8, len & 0xff, 0, 0, moreFragments ? 0x20 : 0x40, 0, 64, 17, 0, 0, 10, 79, 0, src, 10, 79, 0, 1]);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += (p[i]! << 8) | p[i + 1]!;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  p[10] = ~sum >> 8 & 0xff;
  p[11] = ~sum & 0xff;
  p.set([sport >> 8, sport & 0xff, 0x27, 0x0f, (8 + payload.length) >> 8, (8 + payload.length) & 0xff, 0, 0], 20);
  p.set(payload, 28);
  return b;
}
