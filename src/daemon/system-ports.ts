/**
 * The real ports of {@link DaemonIo}: TUN devices from the native addon,
 * iproute2 and nftables. Wired by the CLI; tests use memory doubles instead.
 */
import { applySnat, removeSnat } from './snat.js';
import { applyInitialLimit, initialLimitDrops, removeInitialLimit } from './initial-limit.js';
import { openTun } from '../tun/native-tun.js';
import { runIpBatchForce } from '../tun/ip-config.js';
import type { KernelConfig, TunFactory } from './ports.js';

/** Opens a native TUN (root or CAP_NET_ADMIN). */
export const nativeTunFactory: TunFactory = (req) => openTun({
  name: req.name,
  mtu: req.mtu,
  addresses: [],
  routes: req.routes ? [...req.routes] : undefined,
  offload: req.offload,
  txQueueLen: req.txQueueLen,
});

/** iproute2 (`ip -force -batch -`) and nftables (`nft -f -`) in this process's namespace. */
export const systemKernel: KernelConfig = {
  ipBatch: (lines) => runIpBatchForce(lines),
  applySnat,
  removeSnat,
  applyInitialLimit,
  removeInitialLimit,
  initialLimitDrops,
};
