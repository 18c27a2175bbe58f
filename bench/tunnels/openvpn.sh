#!/usr/bin/env bash
# OpenVPN 2.6 point-to-point over UDP, TLS with self-signed certificates
# pinned by --peer-fingerprint, AES-256-GCM data channel, no compression,
# userspace data path (--disable-dco).
source "$(dirname "$0")/common.sh"
IA="${P}oa"; IB="${P}ob"
cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=bench-$1" -keyout "$W/$1.key" -out "$W/$1.crt" 2>/dev/null
  openssl x509 -in "$W/$1.crt" -noout -fingerprint -sha256 | sed 's/.*=//'
}
common=(--dev-type tun --proto udp --topology p2p --tun-mtu 1420 --mssfix 0
  --data-ciphers AES-256-GCM --disable-dco --auth-nocache --verb 1 --ping 10 --ping-restart 60)
case "$1" in
  up)
    umask 077
    fa=$(cert a); fb=$(cert b)
    start "$NSA" ovpna openvpn "${common[@]}" --dev "$IA" --tls-server --dh none \
      --cert "$W/a.crt" --key "$W/a.key" --peer-fingerprint "$fb" \
      --local "$UA" --lport 1194 --remote "$UB" --rport 1194 --ifconfig 10.93.0.1 10.93.0.2
    start "$NSB" ovpnb openvpn "${common[@]}" --dev "$IB" --tls-client \
      --cert "$W/b.crt" --key "$W/b.key" --peer-fingerprint "$fa" \
      --local "$UB" --lport 1194 --remote "$UA" --rport 1194 --ifconfig 10.93.0.2 10.93.0.1
    for i in $(seq 100); do grep -q 'Initialization Sequence Completed' "$W/ovpnb.log" 2>/dev/null && break; sleep 0.1; done
    alive ovpna; alive ovpnb
    grep -q 'Initialization Sequence Completed' "$W/ovpnb.log" || { echo "bench: openvpn did not complete its handshake" >&2; tail -20 "$W/ovpnb.log" >&2; exit 1; }
    cat >"$W/env" <<E
SRC=10.93.0.1
DST=10.93.0.2
KIND=user
PIDS="a:$(pid_of ovpna) b:$(pid_of ovpnb)"
MTU=1420
VERSION="$(openvpn --version | head -1 | cut -d' ' -f1-2), AES-256-GCM, TLS p2p, no DCO"
E
    ;;
  down) stop ovpna ovpnb ;;
esac
