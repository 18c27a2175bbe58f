#!/usr/bin/env bash
# mtun CONNECT-IP, site-to-site: the agent in NSA advertises 10.10.0.0/24 and
# its inner address 10.10.0.1 sits on NSA's loopback; the gateway in NSB
# advertises 10.20.0.0/24, and the host measured against, 10.20.0.2, sits
# behind it in a namespace of its own (${P}ms), as the lab's server does: the
# gateway refuses its own addresses as destinations (masque/destination-policy.ts).
#
#   NSA: agent, lo 10.10.0.1 ══ QUIC :4433 ══ NSB: gateway, ${P}mb 10.20.0.254/24 ── veth ── ${P}ms: ${P}ms0 10.20.0.2/24
#
# `up` writes DSTNS (the server's namespace) to $W/env beside DST; iperf3 -s runs there.
# MTUN_NODE_FLAGS (optional) is passed to both node processes (e.g. --cpu-prof).
# MTUN_OFFLOAD=1 is the `tun.offload: true` variant (bench/tunnels/mtun-offload.sh):
# its own port, admin ports, prefixes and TUN names, so both run side by side.
# MTUN_H2=1 is the HTTP/2 fallback (bench/tunnels/mtun-h2.sh): nftables drops
# UDP to and from its port in both namespaces' input hooks, so the agent's
# race ends on HTTP/2 over TCP (docs/http2-fallback.md). Its port (4436),
# subnets and pool are apart from bench/mtun-sessions.sh's (4435, 10.22.0.0/24,
# 10.202.0.0/18), which run.sh starts while this tunnel is still up.
source "$(dirname "$0")/common.sh"
MTUN="$ROOT/bin/mtun.js"
# --max-semi-space-size=2 as bin/mtun.js's shebang (its comment says why); MTUN_NODE_FLAGS adds to it.
read -r -a NODE_FLAGS <<<"--max-semi-space-size=2 ${MTUN_NODE_FLAGS:-}"
if [ "${MTUN_H2:-0}" = 1 ]; then
  OFFLOAD=false; PORT=4436; GADM=9094; AADM=9095; AN=10.12.0; BN=10.23.0; POOL=10.203.0.0/24; POOL6=fd00:203::/64; K=h
elif [ "${MTUN_OFFLOAD:-0}" = 1 ]; then
  OFFLOAD=true; PORT=4434; GADM=9092; AADM=9093; AN=10.11.0; BN=10.21.0; POOL=10.201.0.0/24; POOL6=fd00:201::/64; K=n
else
  OFFLOAD=false; PORT=4433; GADM=9090; AADM=9091; AN=10.10.0; BN=10.20.0; POOL=10.200.0.0/24; POOL6=fd00:200::/64; K=m
fi
# MTUN_TXQUEUELEN (optional): both daemons' tun.txQueueLen, to compare queue lengths.
TXQ=${MTUN_TXQUEUELEN:+, txQueueLen: $MTUN_TXQUEUELEN}
# MTUN_QUEUE_DELAY_MS (optional): both daemons' tun.queueDelay.targetMs (0: CoDel off), to compare (bench/queue-delay.sh).
TXQ+=${MTUN_QUEUE_DELAY_MS:+, queueDelay: { targetMs: $MTUN_QUEUE_DELAY_MS \}}
# MTUN_TUN_THREAD=1 / 0 (optional): the agent's tun.thread on / off (default: the product's, on), to compare (bench/tun-thread.sh).
ATHREAD=${MTUN_TUN_THREAD:+, thread: $([ "$MTUN_TUN_THREAD" = 1 ] && echo true || echo false)}
# MTUN_GW_TUN_THREAD=1 / 0 (optional): the gateway's tun.thread on / off (default: the product's, on), to compare.
GTHREAD=${MTUN_GW_TUN_THREAD:+, thread: $([ "$MTUN_GW_TUN_THREAD" = 1 ] && echo true || echo false)}
TA=${P}${K}a; TG=${P}${K}g
# The server's namespace and the veth pair to it (${P}${K}b in NSB, ${P}${K}s0 in NSS).
NSS=${P}${K}s
case "$1" in
  up)
    [ -f "$ROOT/dist/cli/main.js" ] || { echo "bench: dist/ missing; run npx tsc -p tsconfig.json" >&2; exit 1; }
    node "$MTUN" certs --out "$W/certs" --agents cluster-a --gateway-san "$UB" >/dev/null
    cat >"$W/gateway.yaml" <<Y
listen: "$UB:$PORT"
tls: { cert: certs/gateway.pem, key: certs/gateway-key.pem, ca: certs/ca.pem, requireClientCert: true }
pools: { ipv4: $POOL, ipv6: "$POOL6" }
advertise: [$BN.0/24]
policy:
  - identity: spiffe://cluster.local/agent/cluster-a
    allow:
      - { prefixes: [$BN.0/24], protocols: [tcp, udp], ports: [5201] }
      - { prefixes: [$BN.0/24], protocols: [icmp] }
    advertise: [$AN.0/24]
tun: { name: $TG, offload: $OFFLOAD$TXQ$GTHREAD }
maxSessions: 1024
# The sessions phase opens up to 100 sessions as one identity (cluster-a).
maxSessionsPerIdentity: 1024
telemetry:
  workloads: { $AN.0/24: site-a, $BN.0/24: site-b, $POOL: sessions }
  flowLog: { enabled: true, path: flows-gateway.jsonl }
admin: { enabled: true, listen: "127.0.0.1:$GADM" }
logLevel: info
Y
    cat >"$W/agent.yaml" <<Y
gateway: { address: "$UB:$PORT", serverName: gateway }
mode: site-to-site
tls: { cert: certs/agent-cluster-a.pem, key: certs/agent-cluster-a-key.pem, ca: certs/ca.pem }
advertise: [$AN.0/24]
acceptRoutes: true
tun: { name: $TA, offload: $OFFLOAD$TXQ$ATHREAD }
mssClamp: true
telemetry:
  workloads: { $AN.0/24: site-a, $BN.0/24: site-b }
  flowLog: { enabled: true, path: flows-agent.jsonl }
admin: { enabled: true, listen: "127.0.0.1:$AADM" }
logLevel: info
Y
    na ip addr add $AN.1/32 dev lo
    ip netns add "$NSS"
    ip netns exec "$NSS" ip link set lo up
    ip link add "${P}${K}b" netns "$NSB" type veth peer name "${P}${K}s0" netns "$NSS"
    nb ip addr add $BN.254/24 dev "${P}${K}b"
    ip netns exec "$NSS" ip addr add $BN.2/24 dev "${P}${K}s0"
    nb ip link set "${P}${K}b" up
    ip netns exec "$NSS" ip link set "${P}${K}s0" up
    ip netns exec "$NSS" ip route add default via $BN.254
    nb sysctl -qw net.ipv4.ip_forward=1
    if [ "${MTUN_H2:-0}" = 1 ]; then
      # Drop the QUIC flow both ways (input hooks: no sender sees EPERM).
      for x in "na sport" "nb dport"; do
        read -r ns match <<<"$x"
        $ns nft add table inet mtun_h2_bench
        $ns nft add chain inet mtun_h2_bench in '{ type filter hook input priority 0; }'
        $ns nft add rule inet mtun_h2_bench in udp "$match" "$PORT" drop
      done
    fi
    start "$NSB" mtung node "${NODE_FLAGS[@]}" "$MTUN" gateway -c "$W/gateway.yaml"
    for i in $(seq 100); do nb curl -sf -o /dev/null http://127.0.0.1:$GADM/healthz && break; alive mtung; sleep 0.1; done
    start "$NSA" mtuna node "${NODE_FLAGS[@]}" "$MTUN" agent -c "$W/agent.yaml"
    for i in $(seq 150); do na curl -sf -o /dev/null http://127.0.0.1:$AADM/readyz && break; alive mtuna; sleep 0.1; done
    na curl -sf -o /dev/null http://127.0.0.1:$AADM/readyz || { echo "bench: mtun agent not ready after 15 s" >&2; tail -20 "$W/mtuna.log" >&2; exit 1; }
    # /readyz turns 200 before both sides' routes are in: wait for traffic.
    wait_ping $AN.1 $BN.2 10
    mtu=$(na cat "/sys/class/net/$TA/mtu" 2>/dev/null || echo "?")
    cat >"$W/env" <<E
SRC=$AN.1
DST=$BN.2
DSTNS=$NSS
KIND=user
PIDS="a:$(pid_of mtuna) b:$(pid_of mtung)"
MTU=$mtu
VERSION="mtun $(node -p "require('$ROOT/package.json').version")@${MTUN_COMMIT:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)}, node $(node -v), ngtcp2 $(pkg-config --modversion libngtcp2 2>/dev/null || echo '?') + GnuTLS $(pkg-config --modversion gnutls 2>/dev/null || echo '?'), tun.offload $OFFLOAD$([ "${MTUN_H2:-0}" = 1 ] && echo ", over HTTP/2 (UDP blocked)")"
E
    ;;
  down)
    stop mtuna mtung
    if [ "${MTUN_H2:-0}" = 1 ]; then
      na nft delete table inet mtun_h2_bench 2>/dev/null || true
      nb nft delete table inet mtun_h2_bench 2>/dev/null || true
    fi
    na ip addr del $AN.1/32 dev lo 2>/dev/null || true
    # Deleting the namespace deletes the veth pair; what runs there (iperf3 -s) goes first.
    ip netns pids "$NSS" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$NSS" 2>/dev/null || true
    ;;
esac
