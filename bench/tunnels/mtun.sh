#!/usr/bin/env bash
# mtun CONNECT-IP, site-to-site: the agent in NSA advertises 10.10.0.0/24,
# the gateway in NSB advertises 10.20.0.0/24; each side's inner address sits
# on its loopback, so iperf3/ping run in the daemons' own namespaces.
# MTUN_NODE_FLAGS (optional) is passed to both node processes (e.g. --cpu-prof).
source "$(dirname "$0")/common.sh"
MTUN="$ROOT/bin/mtun.js"
read -r -a NODE_FLAGS <<<"${MTUN_NODE_FLAGS:-}"
case "$1" in
  up)
    [ -f "$ROOT/dist/cli/main.js" ] || { echo "bench: dist/ missing; run npx tsc -p tsconfig.json" >&2; exit 1; }
    node "$MTUN" certs --out "$W/certs" --agents cluster-a --gateway-san "$UB" >/dev/null
    cat >"$W/gateway.yaml" <<Y
listen: "$UB:4433"
tls: { cert: certs/gateway.pem, key: certs/gateway-key.pem, ca: certs/ca.pem, requireClientCert: true }
pools: { ipv4: 10.200.0.0/24, ipv6: "fd00:200::/64" }
advertise: [10.20.0.0/24]
policy:
  - identity: spiffe://cluster.local/agent/cluster-a
    allow:
      - { prefixes: [10.20.0.0/24], protocols: [tcp, udp], ports: [5201] }
      - { prefixes: [10.20.0.0/24], protocols: [icmp] }
    advertise: [10.10.0.0/24]
tun: { name: ${P}mg }
maxSessions: 1024
telemetry:
  workloads: { 10.10.0.0/24: site-a, 10.20.0.0/24: site-b, 10.200.0.0/24: sessions }
  flowLog: { enabled: true, path: flows-gateway.jsonl }
admin: { enabled: true, listen: "127.0.0.1:9090" }
logLevel: info
Y
    cat >"$W/agent.yaml" <<Y
gateway: { address: "$UB:4433", serverName: gateway }
mode: site-to-site
tls: { cert: certs/agent-cluster-a.pem, key: certs/agent-cluster-a-key.pem, ca: certs/ca.pem }
advertise: [10.10.0.0/24]
acceptRoutes: true
tun: { name: ${P}ma }
mssClamp: true
telemetry:
  workloads: { 10.10.0.0/24: site-a, 10.20.0.0/24: site-b }
  flowLog: { enabled: true, path: flows-agent.jsonl }
admin: { enabled: true, listen: "127.0.0.1:9091" }
logLevel: info
Y
    na ip addr add 10.10.0.1/32 dev lo
    nb ip addr add 10.20.0.1/32 dev lo
    start "$NSB" mtung node "${NODE_FLAGS[@]}" "$MTUN" gateway -c "$W/gateway.yaml"
    for i in $(seq 100); do nb curl -sf -o /dev/null http://127.0.0.1:9090/healthz && break; alive mtung; sleep 0.1; done
    start "$NSA" mtuna node "${NODE_FLAGS[@]}" "$MTUN" agent -c "$W/agent.yaml"
    for i in $(seq 150); do na curl -sf -o /dev/null http://127.0.0.1:9091/readyz && break; alive mtuna; sleep 0.1; done
    na curl -sf -o /dev/null http://127.0.0.1:9091/readyz || { echo "bench: mtun agent not ready after 15 s" >&2; tail -20 "$W/mtuna.log" >&2; exit 1; }
    # /readyz turns 200 before both sides' routes are in: wait for traffic.
    wait_ping 10.10.0.1 10.20.0.1 10
    mtu=$(na cat "/sys/class/net/${P}ma/mtu" 2>/dev/null || echo "?")
    cat >"$W/env" <<E
SRC=10.10.0.1
DST=10.20.0.1
KIND=user
PIDS="a:$(pid_of mtuna) b:$(pid_of mtung)"
MTU=$mtu
VERSION="mtun $(node -p "require('$ROOT/package.json').version")@${MTUN_COMMIT:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)}, node $(node -v), quiche via @matrixai/quic-linux-x64 $(node -p "require('$ROOT/node_modules/@matrixai/quic-linux-x64/package.json').version")"
E
    ;;
  down)
    stop mtuna mtung
    na ip addr del 10.10.0.1/32 dev lo 2>/dev/null || true
    nb ip addr del 10.20.0.1/32 dev lo 2>/dev/null || true
    ;;
esac
