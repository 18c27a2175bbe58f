#!/usr/bin/env bash
# wireguard-go (the binary first on PATH; Debian's package by default) configured with wg(8); userspace, one process per side.
source "$(dirname "$0")/common.sh"
# Interface names carry the run prefix: wireguard-go's UAPI socket lives in
# /var/run/wireguard/<name>.sock, shared by all namespaces.
IA="${P}wa"; IB="${P}wb"
case "$1" in
  up)
    umask 077
    # What actually runs: the binary first on PATH says its own version (a
    # build from source may shadow the Debian package).
    WG_BIN="$(command -v wireguard-go)"
    WG_VERSION="$("$WG_BIN" --version 2>&1 | head -1) at $WG_BIN, wireguard-tools $(wg --version 2>&1 | head -1 | cut -d' ' -f2)"
    wg genkey >"$W/a.key"; wg pubkey <"$W/a.key" >"$W/a.pub"
    wg genkey >"$W/b.key"; wg pubkey <"$W/b.key" >"$W/b.pub"
    start "$NSA" wga env WG_PROCESS_FOREGROUND=1 wireguard-go -f "$IA"
    start "$NSB" wgb env WG_PROCESS_FOREGROUND=1 wireguard-go -f "$IB"
    for i in $(seq 50); do [ -S "/var/run/wireguard/$IA.sock" ] && [ -S "/var/run/wireguard/$IB.sock" ] && break; sleep 0.1; done
    alive wga; alive wgb
    na wg set "$IA" private-key "$W/a.key" listen-port 51820 peer "$(cat "$W/b.pub")" allowed-ips 10.92.0.0/24 endpoint "$UB:51820"
    nb wg set "$IB" private-key "$W/b.key" listen-port 51820 peer "$(cat "$W/a.pub")" allowed-ips 10.92.0.0/24 endpoint "$UA:51820"
    na ip addr add 10.92.0.1/24 dev "$IA"; na ip link set "$IA" mtu 1420 up
    nb ip addr add 10.92.0.2/24 dev "$IB"; nb ip link set "$IB" mtu 1420 up
    cat >"$W/env" <<E
SRC=10.92.0.1
DST=10.92.0.2
KIND=user
PIDS="a:$(pid_of wga) b:$(pid_of wgb)"
MTU=1420
VERSION="$WG_VERSION"
E
    ;;
  down)
    stop wga wgb
    rm -f "/var/run/wireguard/$IA.sock" "/var/run/wireguard/$IB.sock"
    ;;
esac
