/**
 * The address pools one gateway replica leases from: each configured pool,
 * or this replica's slice of it (`pools.slice`), and the prefixes to route
 * to the TUN for them.
 */
import type { GatewayConfig } from '../config/index.js';
import { AddressPool } from '../masque/address-pool.js';
import { formatPrefix, type IpPrefix } from '../packet/ip-address.js';

/** A replica's pools; `prefixes` is what it leases from (the slices when sliced). */
export interface ReplicaPools {
  readonly v4?: AddressPool;
  readonly v6?: AddressPool;
  readonly prefixes: IpPrefix[];
}

/** Builds the pools of `pools` (validated config). Throws `masque: …` on a slice the pool cannot hold. */
export function replicaPools(pools: GatewayConfig['pools']): ReplicaPools {
  const make = (p: IpPrefix | undefined) => (p === undefined ? undefined : new AddressPool({ prefix: formatPrefix(p), slice: pools.slice, minPrefixLength: p.version === 4 ? pools.minPrefixLength.ipv4 : pools.minPrefixLength.ipv6, maxLeasesPerOwner: pools.maxLeasesPerIdentity }));
  const v4 = make(pools.ipv4);
  const v6 = make(pools.ipv6);
  return { v4, v6, prefixes: [...(v4?.prefixes ?? []), ...(v6?.prefixes ?? [])] };
}
