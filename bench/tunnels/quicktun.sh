#!/usr/bin/env bash
# quicktun (Debian package), nacltai protocol (Curve25519 + XSalsa20-Poly1305), TUN mode.
# quicktun reads only IF_QT_* and IFACE from its environment and silently falls
# back to an unencrypted TAP without them, so every variable is set explicitly.
source "$(dirname "$0")/common.sh"
IA="${P}qa"; IB="${P}qb"
keys() { keypair 2>/dev/null | awk -v w="$W/$1" '/SECRET/{print $2 > (w ".sec")} /PUBLIC/{print $2 > (w ".pub")}'; }
qt() { # qt NS NAME IFACE LOCAL REMOTE MYKEY PEERKEY
  start "$1" "$2" env -i PATH="$PATH" IFACE="$3" IF_QT_TUN_MODE=1 IF_QT_PROTOCOL=nacltai \
    IF_QT_LOCAL_ADDRESS="$4" IF_QT_LOCAL_PORT=2998 IF_QT_REMOTE_ADDRESS="$5" IF_QT_REMOTE_PORT=2998 \
    IF_QT_PRIVATE_KEY="$(cat "$W/$6.sec")" IF_QT_PUBLIC_KEY="$(cat "$W/$7.pub")" IF_QT_NO_PRECREATE=1 \
    quicktun
}
case "$1" in
  up)
    umask 077
    keys a; keys b
    qt "$NSA" qta "$IA" "$UA" "$UB" a b
    qt "$NSB" qtb "$IB" "$UB" "$UA" b a
    for i in $(seq 50); do na ip link show "$IA" >/dev/null 2>&1 && nb ip link show "$IB" >/dev/null 2>&1 && break; sleep 0.1; done
    alive qta; alive qtb
    # Underlay 1500 - 20 IP - 8 UDP - nacltai overhead (16 tag + 16 nonce/timestamp) leaves 1456; use 1400 like the others' margins.
    na ip addr add 10.94.0.1/24 dev "$IA"; na ip link set "$IA" mtu 1400 up
    nb ip addr add 10.94.0.2/24 dev "$IB"; nb ip link set "$IB" mtu 1400 up
    na ip -d link show "$IA" | grep -q 'tun type tun' || { echo "bench: quicktun did not come up as a TUN (env not read?)" >&2; exit 1; }
    cat >"$W/env" <<E
SRC=10.94.0.1
DST=10.94.0.2
KIND=user
PIDS="a:$(pid_of qta) b:$(pid_of qtb)"
MTU=1400
VERSION="quicktun $(dpkg-query -W -f '${Version}' quicktun 2>/dev/null), nacltai"
E
    ;;
  down) stop qta qtb ;;
esac
