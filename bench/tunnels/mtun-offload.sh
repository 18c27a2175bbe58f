#!/usr/bin/env bash
# mtun CONNECT-IP with `tun.offload: true` on agent and gateway (IFF_VNET_HDR:
# GSO super-packets from the TUN split in C, TCP segments coalesced on write),
# next to the default mtun: agent 10.11.0.1, gateway 10.21.0.1, UDP 4434.
MTUN_OFFLOAD=1 exec bash "$(dirname "$0")/mtun.sh" "$@"
