#!/usr/bin/env bash
# Gateway capacity in sessions (issue #17): the busy ladder and the idle test
# against one mtun gateway, with the load spread over several load-generator
# processes, each on its own source address.
#
#   ┌────────────────────────────────┐               ┌────────────────────────────┐        ┌──────────────────┐
#   │ ${P}a                           │ veth MTU 1500 │ ${P}b                       │  veth  │ ${P}t             │
#   │  ${P}a0 192.0.2.1/24, .11 .. .1W├───────────────┤ ${P}b0 192.0.2.2/24         ├────────┤ ${P}t0 10.22.0.1  │
#   │  bench/mtun-sessions.mjs        │== QUIC :4435 >│  mtun gateway, TUN ${P}sg   │${P}bt   │ (echo target: a  │
#   │   └ W × mtun-sessions-worker.mjs│               │  pool 10.202.0.0/18,        │10.22.0.2│  host behind the │
#   │     (N/W sessions each)         │               │  forwarding on              │        │  gateway)        │
#   └────────────────────────────────┘               └────────────────────────────┘        └──────────────────┘
#
# The echo target sits in its own namespace because the gateway refuses
# packets to its own addresses (destination policy).
# Standalone (builds its own namespaces) or from bench/run.sh (NSA/NSB/UA/UB/P/W set).
# Usage: bench/mtun-sessions.sh [--quick] [--counts LIST] [--idle N] [--hold S]
#        [--bulk N] [--agents LIST] [--compare ROOT_B] [--profile] [--out DIR]
#   --quick         ladder 1,10,100,300 for 2 s and an idle test of 2,000 sessions held 30 s
#   --counts ""     no busy steps; --idle 0: no idle test (idle sessions open 32 at a time per load generator)
#   --compare DIR   also run the gateway from DIR (another checkout with dist/ and build/),
#                   interleaved with this one (A B A B per step), same load generator
#   --profile       run the gateway under node --cpu-prof (profiles in OUT/profile-<label>)
#   --agents LIST   aggregate throughput of several site-to-site agents on the gateway (issue #13,
#                   "2 agents >= 1.7x one"): for each K in LIST (e.g. 1,2,4), K real agents, each in
#                   its own namespace with its own underlay veth, token identity (site-agent-K) and
#                   site 10.10.(100+K).0/24, run iperf3 TCP to the target at the same time (each to
#                   its own iperf3 server) for BENCH_BULK_SECONDS; reports the sum, its ratio to one
#                   agent's, and the CPU each daemon used.
#   --bulk N        also the site-to-site goal of #17: a real agent (site-to-site, TUN,
#                   token identity bulk-agent, advertising 10.10.99.0/24 from NSA's lo)
#                   on the same gateway runs iperf3 TCP to the target (BENCH_BULK_SECONDS,
#                   default 8 s) alone, then while N busy sessions echo: loaded / unloaded.
# Knobs: BENCH_SESSIONS_WORKERS (load-generator processes, default 4);
#        BENCH_SESSIONS_SECONDS (length of each busy step's echo phase, default 3, 2 with --quick);
#        BENCH_SESSIONS_GATEWAY_WRAP (a command the gateway's node runs under,
#        e.g. "heaptrack -o /tmp/gw": where its native memory goes).
# Needs root. Raises the open-file limit (each session is one fd-less QUIC
# connection, but the load generators and the gateway's sockets, TUN and
# log files need headroom; 10,000 sessions need no more than 4,096).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
QUICK=0; COMPARE=""; PROFILE=0; OUTDIR=""; BULK=0; AGENTS=
unset COUNTS IDLE HOLD  # unset = default; --counts "" = no busy steps, --idle 0 = no idle test
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --counts) COUNTS=$2; shift ;;
    --idle) IDLE=$2; shift ;;
    --hold) HOLD=$2; shift ;;
    --compare) COMPARE=$(cd "$2" && pwd); shift ;;
    --profile) PROFILE=1 ;;
    --bulk) BULK=$2; shift ;;
    --agents) AGENTS=$2; shift ;;
    --out) OUTDIR=$2; shift ;;
    *) echo "bench: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [ $QUICK = 1 ]; then
  : "${COUNTS=1,10,100,300}" "${IDLE=2000}" "${HOLD=30}"; SECONDS_PER=2
else
  : "${COUNTS=1,10,100,300,1000}" "${IDLE=10000}" "${HOLD=300}"; SECONDS_PER=3
fi
SECONDS_PER=${BENCH_SESSIONS_SECONDS:-$SECONDS_PER}
WORKERS=${BENCH_SESSIONS_WORKERS:-4}
log() { echo "bench: $*" >&2; }
[ "$(id -u)" = 0 ] || { log "sessions: needs root (network namespaces, TUN)"; exit 1; }

# File descriptors: gateway + workers + their logs; raise explicitly, fail loudly if we cannot.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
[ "$(ulimit -n)" -ge 4096 ] || { log "sessions: open-file limit $(ulimit -n) < 4096 (raise the hard limit)"; exit 1; }

OWN_NS=0
if [ -z "${NSA:-}" ]; then
  OWN_NS=1
  P=ms$$x; NSA=${P}a; NSB=${P}b; UA=192.0.2.1; UB=192.0.2.2
fi
: "${OUTDIR:=${W:-$ROOT/bench/results/sessions-$(date -u +%Y%m%dT%H%M%SZ)}}"
SW=$OUTDIR/sessions-work
mkdir -p "$SW"
NST=""
GPID=""
APID=""
# --agents: the most agents of any step (their namespaces exist from set-up to cleanup).
MAXK=0
[ -n "$AGENTS" ] && MAXK=$(echo "$AGENTS" | tr , '\n' | sort -n | tail -1)
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$APID" ] && { kill -TERM "$APID" 2>/dev/null || true; sleep 1; kill -KILL "$APID" 2>/dev/null || true; }
  [ -n "$GPID" ] && { kill -TERM "$GPID" 2>/dev/null || true; sleep 1; kill -KILL "$GPID" 2>/dev/null || true; }
  [ -n "$NST" ] && { ip netns pids "$NST" 2>/dev/null | xargs -r kill -9 2>/dev/null || true; }
  [ -n "${NSA:-}" ] && ip netns exec "$NSA" ip addr del 10.10.99.1/32 dev lo 2>/dev/null || true
  for i in $(seq "$WORKERS"); do ip netns exec "$NSA" ip addr del "192.0.2.$((10 + i))/24" dev "${P}a0" 2>/dev/null || true; done
  for k in $(seq "$MAXK"); do remove_netns "${P}s$k"; done
  remove_netns "$NST"
  if [ $OWN_NS = 1 ]; then remove_netns "$NSA" "$NSB"; fi
  exit $rc
}
# shellcheck disable=SC1091
. "$ROOT/bench/underlay.sh"
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

if [ $OWN_NS = 1 ]; then make_underlay; fi
BINDS=""
for i in $(seq "$WORKERS"); do
  ip netns exec "$NSA" ip addr add "192.0.2.$((10 + i))/24" dev "${P}a0"
  BINDS="$BINDS${BINDS:+,}192.0.2.$((10 + i))"
done
NST=${P}t
ip netns add "$NST"
ip netns exec "$NST" ip link set lo up
ip link add "${P}t0" netns "$NST" type veth peer name "${P}bt" netns "$NSB"
ip netns exec "$NST" ip addr add 10.22.0.1/24 dev "${P}t0"
ip netns exec "$NSB" ip addr add 10.22.0.2/24 dev "${P}bt"
ip netns exec "$NST" ip link set "${P}t0" up
ip netns exec "$NSB" ip link set "${P}bt" up
ip netns exec "$NST" ip route add 10.202.0.0/18 via 10.22.0.2
ip netns exec "$NSB" sysctl -qw net.ipv4.ip_forward=1
# Socket buffers for bursts of 1,000 handshakes (the gateway asks for 4 MiB; the kernel caps at rmem_max).
for n in "$NSA" "$NSB"; do ip netns exec "$n" sysctl -qw net.core.rmem_max=8388608 net.core.wmem_max=8388608 2>/dev/null || true; done

node "$ROOT/bin/mtun.js" certs --out "$SW/certs" --agents cluster-a --gateway-san "$UB" >/dev/null
# Each agent is its own identity (bearer token, RFC 9484 §11 leaves client
# authentication to the deployment): the pool leases at most 4 addresses per
# identity, so one identity per 4 sessions, as many clusters would have.
# TLS still authenticates the gateway; client certificates are not asked for.
node -e '
const n = Math.ceil(Number(process.argv[1]) / 4);
const lines = [];
for (let k = 0; k < n; k++) lines.push(`    - { identity: agent-${String(k).padStart(6, "0")}, token: bench-session-token-${String(k).padStart(12, "0")} }`);
process.stdout.write(lines.join("\n") + "\n");
' "$(echo "$COUNTS,$IDLE,$BULK" | tr , '\n' | sort -n | tail -1)" >"$SW/tokens.yaml"
# The --bulk agent: a site-to-site agent of its own identity (token; 32+ characters).
echo "    - { identity: bulk-agent, token: bench-bulk-agent-token-000000000000 }" >>"$SW/tokens.yaml"
for k in $(seq "$MAXK"); do echo "    - { identity: site-agent-$k, token: bench-site-agent-token-$(printf %012d "$k") }" >>"$SW/tokens.yaml"; done
{
cat <<Y
listen: "$UB:4435"
tls: { cert: certs/gateway.pem, key: certs/gateway-key.pem, requireClientCert: false }
auth:
  tokens:
Y
cat "$SW/tokens.yaml"
cat <<Y
pools: { ipv4: 10.202.0.0/18 }
advertise: [10.22.0.0/24]
policy:
  - identity: agent-*
    allow:
      - { prefixes: [10.22.0.0/24], protocols: [tcp, udp], ports: [7] }
      - { prefixes: [10.22.0.0/24], protocols: [icmp] }
  - identity: bulk-agent
    allow:
      - { prefixes: [10.22.0.0/24], protocols: [tcp], ports: [5201] }
      - { prefixes: [10.22.0.0/24], protocols: [icmp] }
    advertise: [10.10.99.0/24]
  - identity: site-agent-*
    allow:
      - { prefixes: [10.22.0.0/24], protocols: [tcp], ports: ["5211-5226"] }
      - { prefixes: [10.22.0.0/24], protocols: [icmp] }
    advertise: [10.10.96.0/20]
tun: { name: ${P}sg }
maxSessions: 12000
maxSessionsPerIdentity: 4
maxConnectionsPerPeerIp: 12000
telemetry:
  workloads: { 10.22.0.0/24: target, 10.202.0.0/18: sessions }
  flowLog: { enabled: true, path: flows-gateway.jsonl }
admin: { enabled: true, listen: "127.0.0.1:9095" }
logLevel: info
Y
} >"$SW/gateway.yaml"

# start_gateway ROOT LABEL: runs that checkout's gateway in NSB; sets GPID.
start_gateway() {
  local root=$1 label=$2 flags=(--max-semi-space-size=2)
  [ $PROFILE = 1 ] && { mkdir -p "$OUTDIR/profile-$label"; flags+=(--cpu-prof "--cpu-prof-dir=$OUTDIR/profile-$label"); }
  local wrap=()
  [ -n "${BENCH_SESSIONS_GATEWAY_WRAP:-}" ] && read -r -a wrap <<<"$BENCH_SESSIONS_GATEWAY_WRAP"
  setsid ip netns exec "$NSB" "${wrap[@]}" node "${flags[@]}" "$root/bin/mtun.js" gateway -c "$SW/gateway.yaml" >"$SW/gateway-$label.log" 2>&1 </dev/null &
  GPID=$!
  for _ in $(seq 100); do
    ip netns exec "$NSB" curl -sf -o /dev/null http://127.0.0.1:9095/healthz && return 0
    kill -0 "$GPID" 2>/dev/null || break
    sleep 0.1
  done
  log "sessions: gateway ($label) did not start"; tail -20 "$SW/gateway-$label.log" >&2; return 1
}
stop_gateway() {
  # The gateway leads its own process group (setsid): a wrapper's child gets the signal too.
  kill -TERM -- "-$GPID" 2>/dev/null || kill -TERM "$GPID" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$GPID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$GPID" 2>/dev/null || true
  GPID=""
}
# Where packets were dropped (for a reply ratio below 100 %): kernel UDP/IP
# counters of both namespaces (nstat, since the previous call), the TUN's
# queue drops, and the gateway's own counters (/metrics, drop reasons), with its event-loop
# delay since the previous scrape (prom-client resets it on each) and its GC time: whether a
# long RTT tail is the gateway stalling.
diagnostics() {
  local d=$OUTDIR/diag-$1 ns
  mkdir -p "$d"
  for ns in "$NSA" "$NSB" "$NST"; do
    NSTAT_HISTORY=$SW/nstat-$ns ip netns exec "$ns" nstat -z 2>/dev/null | grep -E 'Udp(InErrors|RcvbufErrors|SndbufErrors|InDatagrams|OutDatagrams)|IcmpIn(Echos|EchoReps)|IcmpOut(Echos|EchoReps)|IpOutDiscards|IpInDiscards' >"$d/nstat-${ns#"$P"}.txt" || true
  done
  ip netns exec "$NSB" ip -s link show "${P}sg" >"$d/tun-link.txt" 2>&1 || true
  ip netns exec "$NSB" curl -sf http://127.0.0.1:9095/metrics 2>/dev/null | grep -v '^#' | grep -iE 'drop|stall|full|suppress|fail|mtun_quic_datagrams_total|tun_thread_events_total|^mtun_nodejs_heap_size_used_bytes|^mtun_nodejs_external_memory_bytes|^mtun_process_resident_memory_bytes|^mtun_nodejs_heap_size_total_bytes|^mtun_nodejs_eventloop_lag_(p50|p99|max)_seconds|^mtun_nodejs_gc_duration_seconds_(sum|count)' | grep -vE ' 0$' >"$d/gateway-metrics.txt" || true
}

# load_generator TIMEOUT_S LABEL NAME ARGS...: the coordinator (bench/mtun-sessions.mjs) against the
# running gateway, its load generators on BINDS; JSON to OUTDIR/sessions-LABEL-NAME.json.
load_generator() {
  local limit=$1 label=$2 name=$3; shift 3
  timeout --foreground "$limit" ip netns exec "$NSA" node "$ROOT/bench/mtun-sessions.mjs" --gateway "$UB:4435" \
    --certs "$SW/certs" --target 10.22.0.1 --gateway-pid "$GPID" --binds "$BINDS" --workers "$WORKERS" \
    --label "$label" --out "$OUTDIR/sessions-$label-$name.json" "$@"
}

# run_step LABEL ROOT ARGS...: one gateway run, one load-generator run; JSON to OUTDIR/sessions-LABEL-*.json.
run_step() {
  local label=$1 root=$2 name=$3 ns; shift 3
  start_gateway "$root" "$label" || return 1
  for ns in "$NSA" "$NSB" "$NST"; do NSTAT_HISTORY=$SW/nstat-$ns ip netns exec "$ns" nstat -n 2>/dev/null || true; done
  load_generator $((HOLD + 900)) "$label" "$name" "$@" || log "sessions: $label $name ended early (exit $?)"
  diagnostics "$label-$name"
  stop_gateway
}

# --bulk: the site-to-site agent's config, its loopback address and the target's route back.
if [ "$BULK" -gt 0 ]; then
  cat >"$SW/agent-bulk.yaml" <<Y
gateway: { address: "$UB:4435", serverName: gateway }
mode: site-to-site
tls: { ca: certs/ca.pem }
auth: { token: bench-bulk-agent-token-000000000000 }
advertise: [10.10.99.0/24]
acceptRoutes: true
tun: { name: ${P}ba, offload: true }
mssClamp: true
telemetry:
  workloads: { 10.10.99.0/24: bulk-site, 10.22.0.0/24: target }
admin: { enabled: true, listen: "127.0.0.1:9096" }
logLevel: info
Y
  ip netns exec "$NSA" ip addr add 10.10.99.1/32 dev lo
  ip netns exec "$NST" ip route add 10.10.99.0/24 via 10.22.0.2
  (setsid ip netns exec "$NST" iperf3 -s -B 10.22.0.1 >"$SW/iperf3-server.log" 2>&1 </dev/null &)
fi
BULK_SECONDS=${BENCH_BULK_SECONDS:-8}
# iperf3_bulk OUT: one TCP run from the bulk site to the target; prints Gbit/s received (0 on failure).
iperf3_bulk() {
  timeout $((BULK_SECONDS + 20)) ip netns exec "$NSA" iperf3 -c 10.22.0.1 -B 10.10.99.1 -t "$BULK_SECONDS" -J >"$1" 2>&1 || true
  node -e 'try { const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(((j.end.sum_received.bits_per_second || 0) / 1e9).toFixed(3)); } catch { console.log("0"); }' "$1"
}
# run_bulk LABEL ROOT N: the gateway, the bulk agent, iperf3 alone, then iperf3 while N sessions echo.
run_bulk() {
  local label=$1 root=$2 n=$3 ok=0 alone loaded lg
  start_gateway "$root" "$label" || return 1
  setsid ip netns exec "$NSA" node --max-semi-space-size=2 "$root/bin/mtun.js" agent -c "$SW/agent-bulk.yaml" >"$SW/agent-bulk-$label.log" 2>&1 </dev/null &
  APID=$!
  for _ in $(seq 150); do
    ip netns exec "$NSA" ping -c1 -W1 -I 10.10.99.1 10.22.0.1 >/dev/null 2>&1 && { ok=1; break; }
    kill -0 "$APID" 2>/dev/null || break
    sleep 0.1
  done
  if [ $ok = 1 ]; then
    alone=$(iperf3_bulk "$OUTDIR/bulk-$label-alone.json")
    load_generator 900 "$label" "bulk-$n" --counts "$n" --seconds $((BULK_SECONDS + 8)) --rate 50 &
    lg=$!
    # iperf3 starts once the N sessions are open (the gateway counts them, the agent's included).
    for _ in $(seq 600); do
      [ "$(ip netns exec "$NSB" curl -sf http://127.0.0.1:9095/metrics 2>/dev/null | awk '/^mtun_tunnel_sessions\{/ { s += $2 } END { print s + 0 }')" -gt "$n" ] && break
      kill -0 "$lg" 2>/dev/null || break
      sleep 0.1
    done
    sleep 2
    loaded=$(iperf3_bulk "$OUTDIR/bulk-$label-loaded-$n.json")
    wait "$lg" || log "sessions: $label bulk load generator ended early"
    log "$label: bulk TCP alone $alone Gbit/s, under $n busy sessions $loaded Gbit/s ($(node -p "($loaded / Math.max($alone, 1e-9) * 100).toFixed(0)") %)"
    echo "{\"label\":\"$label\",\"sessions\":$n,\"bulkAloneGbps\":$alone,\"bulkLoadedGbps\":$loaded}" >"$OUTDIR/bulk-$label.json"
  else
    log "sessions: $label: the bulk agent's tunnel did not come up"; tail -20 "$SW/agent-bulk-$label.log" >&2
  fi
  kill -TERM "$APID" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$APID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$APID" 2>/dev/null || true
  APID=""
  diagnostics "$label-bulk-$n"
  stop_gateway
}

# --agents: agent K's namespace ${P}sK joins the gateway's through a veth of its own (198.18.K.0/30),
# holds its site address 10.10.(100+K).1 on lo; the target answers it through the gateway and runs
# one iperf3 server per agent (port 5210+K).
for k in $(seq "$MAXK"); do
  n=${P}s$k
  ip netns add "$n"
  ip netns exec "$n" ip link set lo up
  ip link add "${P}s${k}a" netns "$n" type veth peer name "${P}s${k}b" netns "$NSB"
  ip netns exec "$n" ip addr add "198.18.$k.1/30" dev "${P}s${k}a"
  ip netns exec "$NSB" ip addr add "198.18.$k.2/30" dev "${P}s${k}b"
  ip netns exec "$n" ip link set "${P}s${k}a" up
  ip netns exec "$NSB" ip link set "${P}s${k}b" up
  ip netns exec "$n" ip route add "$UB/32" via "198.18.$k.2"
  ip netns exec "$n" ip addr add "10.10.$((100 + k)).1/32" dev lo
  ip netns exec "$NST" ip route add "10.10.$((100 + k)).0/24" via 10.22.0.2
  (setsid ip netns exec "$NST" iperf3 -s -B 10.22.0.1 -p $((5210 + k)) >"$SW/iperf3-server-$k.log" 2>&1 </dev/null &)
  cat >"$SW/agent-site-$k.yaml" <<Y
gateway: { address: "$UB:4435", serverName: gateway }
mode: site-to-site
tls: { ca: certs/ca.pem }
auth: { token: bench-site-agent-token-$(printf %012d "$k") }
advertise: [10.10.$((100 + k)).0/24]
acceptRoutes: true
tun: { name: ${P}k$k, offload: true }
mssClamp: true
telemetry:
  workloads: { 10.10.$((100 + k)).0/24: site-$k, 10.22.0.0/24: target }
admin: { enabled: true, listen: "127.0.0.1:9096" }
logLevel: info
Y
done
# cpu_s PID: utime + stime of a process in seconds (0 when gone).
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# run_agents LABEL ROOT K: the gateway and K site agents; K iperf3 runs at once; the sum.
run_agents() {
  local label=$1 root=$2 K=$3 k ok pids=() ipids=() g0 g1 a0=() a1=() sum=0 rates=() cpu_agents=0
  start_gateway "$root" "$label" || return 1
  for k in $(seq "$K"); do
    setsid ip netns exec "${P}s$k" node --max-semi-space-size=2 "$root/bin/mtun.js" agent -c "$SW/agent-site-$k.yaml" >"$SW/agent-site-$k-$label-$K.log" 2>&1 </dev/null &
    pids+=($!)
  done
  for k in $(seq "$K"); do
    ok=0
    for _ in $(seq 200); do
      ip netns exec "${P}s$k" ping -c1 -W1 -I "10.10.$((100 + k)).1" 10.22.0.1 >/dev/null 2>&1 && { ok=1; break; }
      sleep 0.1
    done
    [ $ok = 1 ] || { log "sessions: $label: site agent $k did not come up"; tail -5 "$SW/agent-site-$k-$label-$K.log" >&2; break; }
  done
  if [ $ok = 1 ]; then
    # The daemons' node processes (ip netns exec + setsid leave node as the leaf).
    local apids=() p
    for k in $(seq "$K"); do
      p=$(ip netns pids "${P}s$k" 2>/dev/null | xargs -r -I{} sh -c 'tr "\0" " " </proc/{}/cmdline | grep -q " agent " && echo {}' | head -1)
      apids+=("${p:-0}")
    done
    local gpid
    gpid=$(ip netns pids "$NSB" | xargs -r -I{} sh -c 'tr "\0" " " </proc/{}/cmdline | grep -q " gateway " && echo {}' | head -1)
    local box0 box1
    box0=$(head -1 /proc/stat)
    g0=$(cpu_s "$gpid"); for p in "${apids[@]}"; do a0+=("$(cpu_s "$p")"); done
    for k in $(seq "$K"); do
      timeout $((BULK_SECONDS + 20)) ip netns exec "${P}s$k" iperf3 -c 10.22.0.1 -B "10.10.$((100 + k)).1" -p $((5210 + k)) \
        -t "$BULK_SECONDS" -J >"$OUTDIR/agents-$label-$K-$k.json" 2>&1 &
      ipids+=($!)
    done
    for p in "${ipids[@]}"; do wait "$p" || true; done
    g1=$(cpu_s "$gpid"); for p in "${apids[@]}"; do a1+=("$(cpu_s "$p")"); done
    box1=$(head -1 /proc/stat)
    # The whole box over the transfer (/proc/stat: user nice system idle iowait irq softirq steal): busy and softirq, % of all cores.
    local busy
    busy=$(node -e 'const a = process.argv[1].trim().split(/\s+/).slice(1).map(Number), b = process.argv[2].trim().split(/\s+/).slice(1).map(Number);
const d = b.map((x, i) => x - a[i]); const all = d.slice(0, 8).reduce((x, y) => x + y, 0);
console.log(`box ${(100 - (d[3] + d[4]) / all * 100).toFixed(0)} % busy, softirq ${(d[6] / all * 100).toFixed(0)} %`);' "$box0" "$box1")
    for k in $(seq "$K"); do
      rates+=("$(node -e 'try { const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(((j.end.sum_received.bits_per_second || 0) / 1e9).toFixed(3)); } catch { console.log("0"); }' "$OUTDIR/agents-$label-$K-$k.json")")
    done
    sum=$(node -p "[$(IFS=,; echo "${rates[*]}")].reduce((a, b) => a + b, 0).toFixed(3)")
    for i in "${!a0[@]}"; do cpu_agents=$(node -p "$cpu_agents + ${a1[$i]} - ${a0[$i]}"); done
    local gcpu
    gcpu=$(node -p "(($g1 - $g0) / $BULK_SECONDS * 100).toFixed(0)")
    log "$label: $K agents at once: $sum Gbit/s in all (each: ${rates[*]}), gateway $gcpu % of a core, agents $(node -p "($cpu_agents / $BULK_SECONDS * 100).toFixed(0)") % in all, $busy of $(nproc) cores, load avg $(cut -d' ' -f1 /proc/loadavg)"
    echo "{\"label\":\"$label\",\"agents\":$K,\"sumGbps\":$sum,\"eachGbps\":[$(IFS=,; echo "${rates[*]}")],\"gatewayCpuPctOfCore\":$gcpu,\"agentsCpuPctOfCore\":$(node -p "($cpu_agents / $BULK_SECONDS * 100).toFixed(0)"),\"cores\":$(nproc),\"seconds\":$BULK_SECONDS}" >"$OUTDIR/agents-$label-$K.json"
  fi
  diagnostics "$label-agents-$K"
  for k in $(seq "$K"); do
    ip netns exec "${P}s$k" curl -sf http://127.0.0.1:9096/metrics 2>/dev/null | grep -v '^#' | grep -iE 'drop|full|refused|mtun_quic_datagrams_total' | grep -vE ' 0$' \
      >"$OUTDIR/diag-$label-agents-$K/agent-$k-metrics.txt" || true
  done
  # The agents (and nothing else) run in their namespaces: TERM, then KILL what is left.
  for k in $(seq "$K"); do ip netns pids "${P}s$k" 2>/dev/null | xargs -r kill -TERM 2>/dev/null || true; done
  for _ in $(seq 50); do
    local left=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && left=1; done
    [ $left = 0 ] && break
    sleep 0.1
  done
  for k in $(seq "$K"); do ip netns pids "${P}s$k" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true; done
  stop_gateway
}

labels=(this); roots=("$ROOT")
[ -n "$COMPARE" ] && { labels=(before this); roots=("$COMPARE" "$ROOT"); }
IFS=, read -r -a steps <<<"$COUNTS"
for n in "${steps[@]}"; do
  for k in "${!labels[@]}"; do
    log "sessions: ${labels[$k]}: $n busy sessions, $WORKERS load generators, load avg $(cut -d' ' -f1 /proc/loadavg)"
    run_step "${labels[$k]}" "${roots[$k]}" "busy-$n" --counts "$n" --seconds "$SECONDS_PER" --rate 50
  done
done
if [ "$BULK" -gt 0 ]; then
  for k in "${!labels[@]}"; do
    log "sessions: ${labels[$k]}: bulk TCP alone and under $BULK busy sessions, load avg $(cut -d' ' -f1 /proc/loadavg)"
    run_bulk "${labels[$k]}" "${roots[$k]}" "$BULK"
  done
fi
if [ -n "$AGENTS" ]; then
  IFS=, read -r -a ksteps <<<"$AGENTS"
  for K in "${ksteps[@]}"; do
    for k in "${!labels[@]}"; do
      log "sessions: ${labels[$k]}: $K site agents, bulk TCP each, load avg $(cut -d' ' -f1 /proc/loadavg)"
      run_agents "${labels[$k]}" "${roots[$k]}" "$K"
    done
  done
  node -e '
const fs = require("fs"); const d = process.argv[1];
const rows = fs.readdirSync(d).filter((f) => /^agents-[a-z]+-\d+\.json$/.test(f)).map((f) => JSON.parse(fs.readFileSync(`${d}/${f}`, "utf8")));
for (const label of new Set(rows.map((r) => r.label))) {
  const mine = rows.filter((r) => r.label === label).sort((a, b) => a.agents - b.agents);
  const one = mine.find((r) => r.agents === 1);
  for (const r of mine) console.error(`bench: ${label}: ${r.agents} agent(s) ${r.sumGbps} Gbit/s${one ? ` = ${(r.sumGbps / one.sumGbps).toFixed(2)}x one agent` : ""} (gateway ${r.gatewayCpuPctOfCore} % of a core, agents ${r.agentsCpuPctOfCore} %, ${r.cores} cores)`);
}' "$OUTDIR"
fi
if [ "$IDLE" -gt 0 ]; then
  for k in "${!labels[@]}"; do
    log "sessions: ${labels[$k]}: $IDLE idle sessions held ${HOLD}s, load avg $(cut -d' ' -f1 /proc/loadavg)"
    run_step "${labels[$k]}" "${roots[$k]}" "idle-$IDLE" --idle "$IDLE" --hold-seconds "$HOLD" --keepalive-ms 15000 \
      --open-timeout-ms 600000 --open-concurrency 32
  done
fi
node -e '
const fs = require("fs"); const d = process.argv[1]; const rows = [];
for (const f of fs.readdirSync(d).filter((f) => /^sessions-.*\.json$/.test(f)).sort()) {
  const j = JSON.parse(fs.readFileSync(`${d}/${f}`, "utf8"));
  for (const r of j.results) rows.push({ label: j.label, ...r });
  if (j.idle) rows.push({ label: j.label, ...j.idle });
}
fs.writeFileSync(`${d}/sessions.json`, JSON.stringify(rows, null, 1));
' "$OUTDIR"
log "sessions: done, $OUTDIR/sessions.json"
