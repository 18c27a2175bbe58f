/**
 * Remote-access SNAT: rewrites the source of traffic leaving through the
 * TUN to the address the gateway assigned (RFC 9484 §4.7.1 ADDRESS_ASSIGN),
 * so hosts behind the agent can use a tunnel whose gateway only accepts the
 * assigned address (RFC 9484 §11). One nftables table per TUN, replaced as
 * a whole on every change and deleted on stop.
 */
import { runNft } from './nft.js';

/** The nftables table name for a TUN. */
export function snatTableName(tun: string): string {
  return `mtun_snat_${tun.replace(/[^A-Za-z0-9_]/g, '_')}`;
}

/**
 * The `nft -f` script that (re)creates the table: traffic out of `tun`
 * whose source is not the assigned address is SNATed to it, per family.
 */
export function snatRuleset(tun: string, v4: string | null, v6: string | null): string {
  const t = snatTableName(tun);
  const lines = [
    `table inet ${t}`,
    `delete table inet ${t}`,
    `table inet ${t} {`,
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat; policy accept;',
  ];
  if (v4 !== null) lines.push(`    oifname "${tun}" meta nfproto ipv4 ip saddr != ${v4} snat ip to ${v4}`);
  if (v6 !== null) lines.push(`    oifname "${tun}" meta nfproto ipv6 ip6 saddr != ${v6} snat ip6 to ${v6}`);
  lines.push('  }', '}', '');
  return lines.join('\n');
}

async function nft(script: string): Promise<void> {
  await runNft(['-f', '-'], script, 'agent');
}

/** Installs or replaces the SNAT rules of `tun`. */
export function applySnat(tun: string, v4: string | null, v6: string | null): Promise<void> {
  return nft(snatRuleset(tun, v4, v6));
}

/** Removes the SNAT table of `tun` (no error when it is absent). */
export function removeSnat(tun: string): Promise<void> {
  const t = snatTableName(tun);
  return nft(`table inet ${t}\ndelete table inet ${t}\n`);
}
