#!/usr/bin/env bash
# Two clusters joined by mtun, built from network namespaces.
#
#   cluster A (10.10.0.0/24, fd00:a::/64)          WAN (192.0.2.0/24, fd00:77::/64)          cluster B (10.20.0.0/24, fd00:b::/64)
#
#  ┌──────────────┐        ┌──────────────────────┐                  ┌──────────────────────┐        ┌──────────────┐
#  │ ${P}client   │        │ ${P}agent            │                  │ ${P}gw               │        │ ${P}server   │
#  │  ca0         ├────────┤ ca1        wa0       ├──────────────────┤ wg0        cb1       ├────────┤ cb0          │
#  │  10.10.0.2   │  veth  │ 10.10.0.1  192.0.2.1 │       veth       │ 192.0.2.2  10.20.0.1 │  veth  │  10.20.0.2   │
#  │  fd00:a::2   │        │ fd00:a::1  fd00:77::1│                  │ fd00:77::2 fd00:b::1 │        │  fd00:b::2   │
#  │              │        │   mtun-a (TUN, agent)│ == QUIC/UDP ==>  │   mtun-g (TUN, gw)   │        │              │
#  └──────────────┘        └──────────────────────┘                  └──────────────────────┘        └──────────────┘
#
# The client and the server route everything through their cluster's
# router (agent / gateway). Only the mtun daemons add routes between the
# clusters (10.20.0.0/24 via the agent's TUN, 10.10.0.0/24 via the
# gateway's TUN), so nothing crosses unless the tunnel carries it, and the
# server sees the client's own address (no NAT anywhere).
# A second agent cluster (C: 10.30.0.0/24, fd00:c::/64) is added with
# `up2`: ${P}client2 ── ${P}agent2 ── (198.51.100.0/31, fd00:78::/64) ── ${P}gw,
# its agent reaching the gateway's WAN address 192.0.2.2 / fd00:77::2.
#
# Usage: topology.sh up PREFIX | up2 PREFIX | down PREFIX
# Every namespace is named PREFIX<role>; `down` removes all of them.
set -euo pipefail

cmd=${1:?usage: topology.sh up|up2|down PREFIX}
P=${2:?usage: topology.sh up|up2|down PREFIX}

ns() { ip netns exec "$1" "${@:2}"; }

down() {
  for n in $(ip netns list | awk '{print $1}' | grep "^${P}" || true); do
    ip netns pids "$n" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$n" 2>/dev/null || true
  done
}

sysctls() {
  ns "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=0
  ns "$1" sysctl -qw net.ipv6.conf.default.accept_dad=0
  ns "$1" sysctl -qw net.ipv6.conf.all.accept_dad=0
  ns "$1" ip link set lo up
}

router() {
  ns "$1" sysctl -qw net.ipv4.ip_forward=1
  ns "$1" sysctl -qw net.ipv6.conf.all.forwarding=1
}

# link NS_A IF_A NS_B IF_B
link() {
  ip link add "$2" netns "$1" type veth peer name "$4" netns "$3"
  ns "$1" ip link set "$2" up
  ns "$3" ip link set "$4" up
}

up() {
  for r in client agent gw server; do ip netns add "${P}$r"; sysctls "${P}$r"; done
  router "${P}agent"
  router "${P}gw"

  link "${P}client" ca0 "${P}agent" ca1
  link "${P}agent" wa0 "${P}gw" wg0
  link "${P}gw" cb1 "${P}server" cb0

  ns "${P}client" ip addr add 10.10.0.2/24 dev ca0
  ns "${P}client" ip addr add fd00:a::2/64 dev ca0 nodad
  ns "${P}client" ip route add default via 10.10.0.1
  ns "${P}client" ip -6 route add default via fd00:a::1

  ns "${P}agent" ip addr add 10.10.0.1/24 dev ca1
  ns "${P}agent" ip addr add fd00:a::1/64 dev ca1 nodad
  ns "${P}agent" ip addr add 192.0.2.1/24 dev wa0
  ns "${P}agent" ip addr add fd00:77::1/64 dev wa0 nodad

  ns "${P}gw" ip addr add 192.0.2.2/24 dev wg0
  ns "${P}gw" ip addr add fd00:77::2/64 dev wg0 nodad
  ns "${P}gw" ip addr add 10.20.0.1/24 dev cb1
  ns "${P}gw" ip addr add fd00:b::1/64 dev cb1 nodad

  ns "${P}server" ip addr add 10.20.0.2/24 dev cb0
  ns "${P}server" ip addr add fd00:b::2/64 dev cb0 nodad
  ns "${P}server" ip route add default via 10.20.0.1
  ns "${P}server" ip -6 route add default via fd00:b::1
}

up2() {
  ip netns add "${P}client2"; sysctls "${P}client2"
  ip netns add "${P}agent2"; sysctls "${P}agent2"
  router "${P}agent2"
  link "${P}client2" cc0 "${P}agent2" cc1
  # The second agent joins the WAN through a veth into the gateway namespace.
  link "${P}agent2" wa2 "${P}gw" wg2
  ns "${P}client2" ip addr add 10.30.0.2/24 dev cc0
  ns "${P}client2" ip addr add fd00:c::2/64 dev cc0 nodad
  ns "${P}client2" ip route add default via 10.30.0.1
  ns "${P}client2" ip -6 route add default via fd00:c::1
  ns "${P}agent2" ip addr add 10.30.0.1/24 dev cc1
  ns "${P}agent2" ip addr add fd00:c::1/64 dev cc1 nodad
  ns "${P}agent2" ip addr add 198.51.100.1/31 dev wa2
  ns "${P}agent2" ip addr add fd00:78::1/64 dev wa2 nodad
  ns "${P}gw" ip addr add 198.51.100.0/31 dev wg2
  ns "${P}gw" ip addr add fd00:78::2/64 dev wg2 nodad
  ns "${P}agent2" ip route add 192.0.2.2/32 via 198.51.100.0
  ns "${P}agent2" ip -6 route add fd00:77::2/128 via fd00:78::2
}

case "$cmd" in
  up) down; up ;;
  up2) up2 ;;
  down) down ;;
  *) echo "usage: topology.sh up|up2|down PREFIX" >&2; exit 2 ;;
esac
