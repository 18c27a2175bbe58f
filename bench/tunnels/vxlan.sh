#!/usr/bin/env bash
# Kernel VXLAN over the veth: encapsulation without encryption (the machine's ceiling for a tunnel).
source "$(dirname "$0")/common.sh"
case "$1" in
  up)
    na ip link add "${P}vx" type vxlan id 42 local "$UA" remote "$UB" dstport 4789 dev "${P}a0"
    nb ip link add "${P}vx" type vxlan id 42 local "$UB" remote "$UA" dstport 4789 dev "${P}b0"
    na ip link set "${P}vx" mtu 1450 up
    nb ip link set "${P}vx" mtu 1450 up
    na ip addr add 10.91.0.1/24 dev "${P}vx"
    nb ip addr add 10.91.0.2/24 dev "${P}vx"
    cat >"$W/env" <<E
SRC=10.91.0.1
DST=10.91.0.2
KIND=kernel
PIDS=""
MTU=1450
VERSION="vxlan, kernel $(uname -r)"
E
    ;;
  down)
    na ip link del "${P}vx" 2>/dev/null || true
    nb ip link del "${P}vx" 2>/dev/null || true
    ;;
esac
