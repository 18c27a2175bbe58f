/**
 * The gateway's kernel-side limit on QUIC Initial packets: an nftables rule
 * at the raw prerouting hook drops client Initials to the gateway's UDP port
 * over a packet rate, before the socket, conntrack and the event loop see
 * them. A flood of spoofed Initials (RFC 9000 §8.1, §21.1) otherwise costs
 * the gateway a receive (copy, syscall share, wake-up) per packet even
 * though the endpoint drops almost all of them over its Retry rate: in the
 * lab's 50k/s flood that receive path was most of the gateway's CPU.
 * Established connections use short headers (and Handshake packets) and
 * are never matched. One table per port, replaced as a whole and deleted on
 * stop; a restarted gateway replaces a crashed one's table.
 */
import { runNft } from './nft.js';

/** The nftables table name for a gateway port. */
export function initialLimitTableName(port: number): string {
  return `mtun_quic_${port}`;
}

/**
 * The `nft -f` script that (re)creates the table: UDP to `port` whose
 * payload's first byte has the long-header form, fixed bit and Initial type
 * bits (RFC 9000 §17.2: 0b1100xxxx; `@th,64,8` is the byte after the 8-byte
 * UDP header) is dropped over `packetsPerSecond` (burst as large), counted.
 */
export function initialLimitRuleset(port: number, packetsPerSecond: number): string {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RangeError(`gateway: bad port ${port}`);
  if (!Number.isInteger(packetsPerSecond) || packetsPerSecond < 1) throw new RangeError(`gateway: bad Initial rate ${packetsPerSecond}`);
  const t = initialLimitTableName(port);
  return [
    `table inet ${t}`,
    `delete table inet ${t}`,
    `table inet ${t} {`,
    '  chain prerouting {',
    '    type filter hook prerouting priority raw; policy accept;',
    `    udp dport ${port} @th,64,8 & 0xf0 == 0xc0 limit rate over ${packetsPerSecond}/second burst ${packetsPerSecond} packets counter drop`,
    '  }',
    '}',
    '',
  ].join('\n');
}

/** Installs or replaces the Initial limit for `port`. */
export async function applyInitialLimit(port: number, packetsPerSecond: number): Promise<void> {
  await runNft(['-f', '-'], initialLimitRuleset(port, packetsPerSecond), 'gateway');
}

/** Removes the table of `port` (no error when it is absent). */
export async function removeInitialLimit(port: number): Promise<void> {
  const t = initialLimitTableName(port);
  await runNft(['-f', '-'], `table inet ${t}\ndelete table inet ${t}\n`, 'gateway');
}

/** Initials the rule has dropped so far (its counter), from `nft -j`. */
export async function initialLimitDrops(port: number): Promise<number> {
  return counterPackets(await runNft(['-j', 'list', 'table', 'inet', initialLimitTableName(port)], null, 'gateway'));
}

/** Sum of the packet counters of the rules in `nft -j list …` output (0 when there are none). */
export function counterPackets(json: string): number {
  const j = JSON.parse(json) as { nftables?: Array<{ rule?: { expr?: Array<{ counter?: { packets?: number } }> } }> };
  let packets = 0;
  for (const item of j.nftables ?? []) for (const e of item.rule?.expr ?? []) packets += e.counter?.packets ?? 0;
  return packets;
}
