#!/usr/bin/env bash
# `npm run bench`: mtun against the tunnels users would pick instead, side by
# side, in one run on one topology, repetitions interleaved (A B C A B C …).
#
#   ┌───────────────────────────────┐                 ┌───────────────────────────────┐
#   │ ${P}a                          │  veth, MTU 1500 │ ${P}b                          │
#   │  ${P}a0 192.0.2.1/24       ────┼─────────────────┼──── ${P}b0 192.0.2.2/24        │
#   │  iperf3 -c / ping  (-B inner) │                 │  iperf3 -s                    │
#   │  vxlan   10.91.0.1            │                 │  vxlan   10.91.0.2            │
#   │  wg-go   10.92.0.1            │                 │  wg-go   10.92.0.2            │
#   │  openvpn 10.93.0.1            │                 │  openvpn 10.93.0.2            │
#   │  quicktun 10.94.0.1           │                 │  quicktun 10.94.0.2           │
#   │  mtun agent, lo 10.10.0.1     │ == QUIC :4433 =>│  mtun gateway ── ${P}ms 10.20.0.2 │
#   │  (tun.offload) lo 10.11.0.1   │ == QUIC :4434 =>│  (tun.offload) ── ${P}ns 10.21.0.2│
#   │  (HTTP/2)      lo 10.12.0.1   │ == TCP  :4436 =>│  (HTTP/2)      ── ${P}hs 10.23.0.2│  (UDP :4436 dropped by nft)
#   └───────────────────────────────┘                 └───────────────────────────────┘
#   (mtun's iperf3 server and ping target sit in a namespace behind the gateway,
#   ${P}ms/ns/hs, since the gateway refuses its own addresses: bench/tunnels/mtun.sh)
#
# Every tunnel is up at once, each on its own inner subnet and UDP port; the
# measurement walks them in turn (bench/tunnels/measure.mjs). Then mtun alone:
# the sessions ladder and idle test (bench/mtun-sessions.sh) and a CPU
# profile of agent and gateway under TCP load (bench/report/profile.mjs).
# Results: bench/results/<run>/ (raw JSON, logs, profiles, report.md, chart);
# a full run (all tunnels, >= 3 repetitions) also rewrites the generated part
# of BENCHMARKS.md and bench/report/tcp-throughput.svg.
#
# Knobs: BENCH_REPS (3), BENCH_TUNNELS (direct,vxlan,wireguard-go,openvpn,quicktun,mtun,mtun-offload,mtun-h2),
# BENCH_TCP_SECONDS (5), BENCH_TCP_REVERSE=1 (TCP tests in the download direction, iperf3 -R), BENCH_UPDATE=1 (rewrite BENCHMARKS.md even for a partial run),
# BENCH_SKIP_MTUN_EXTRAS=1 (no sessions / profile phase), BENCH_SESSIONS_QUICK=1 (short sessions phase),
# BENCH_SESSIONS_WORKERS (load-generator processes, 4).
# Needs root (namespaces, TUN); installs missing Debian packages with apt-get.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
REPS=${BENCH_REPS:-3}
ALL_TUNNELS=direct,vxlan,wireguard-go,openvpn,quicktun,mtun,mtun-offload,mtun-h2
TUNNELS=${BENCH_TUNNELS:-$ALL_TUNNELS}
TCP_SECONDS=${BENCH_TCP_SECONDS:-5}
PROFILE_SECONDS=8
P=mb$$x
NSA=${P}a
NSB=${P}b
UA=192.0.2.1
UB=192.0.2.2
RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/results/$RUN_ID
W=$OUT/work
export P NSA NSB UA UB ROOT

log() { echo "bench: $*" >&2; }
warn() { echo "bench: WARNING: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
  log "needs root (network namespaces, TUN devices, apt-get); nothing measured"
  exit 1
fi
mkdir -p "$W"
log "run $RUN_ID, namespaces ${P}*, results in $OUT"

# ------------------------------------------------------------------ packages
apt_updated=0
# need_cmd CMD PACKAGE: installs PACKAGE when CMD is missing; fails if it cannot.
need_cmd() {
  command -v "$1" >/dev/null 2>&1 && return 0
  log "$1 missing: apt-get install -y $2"
  if [ $apt_updated = 0 ]; then timeout 300 apt-get update -qq >/dev/null 2>&1 || true; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq "$2" >/dev/null 2>&1 || return 1
  command -v "$1" >/dev/null 2>&1
}
for c in "iperf3 iperf3" "ping iputils-ping" "curl curl" "openssl openssl" "ip iproute2"; do
  set -- $c
  need_cmd "$1" "$2" || { log "cannot install $2 (needed for every tunnel); giving up"; exit 1; }
done
declare -A PEER_CMDS=([wireguard-go]="wireguard-go:wireguard-go wg:wireguard-tools" [openvpn]="openvpn:openvpn" [quicktun]="quicktun:quicktun keypair:quicktun")
selected=()
IFS=, read -r -a wanted <<<"$TUNNELS"
for t in "${wanted[@]}"; do
  [ -f "$ROOT/bench/tunnels/$t.sh" ] || { warn "unknown tunnel '$t' (have: $ALL_TUNNELS); skipped"; continue; }
  ok=1
  for pair in ${PEER_CMDS[$t]:-}; do
    need_cmd "${pair%%:*}" "${pair#*:}" || { warn "SKIPPING $t: cannot install Debian package ${pair#*:}"; ok=0; break; }
  done
  [ $ok = 1 ] && selected+=("$t")
done
[ ${#selected[@]} -gt 0 ] || { log "no tunnel left to measure"; exit 1; }

# ------------------------------------------------------------------ teardown
up_tunnels=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  log "tearing down ${P}*"
  local e
  for e in "${up_tunnels[@]}"; do # "script|work dir"
    W="$W/${e#*|}" timeout 20 bash "$ROOT/bench/tunnels/${e%|*}.sh" down >/dev/null 2>&1 || true
  done
  remove_netns "$NSA" "$NSB"
  rm -f /var/run/wireguard/${P}*.sock
  exit $rc
}
# shellcheck disable=SC1091
. "$ROOT/bench/underlay.sh"
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ------------------------------------------------------------------ topology
make_underlay

measured=()
for t in "${selected[@]}"; do
  up_tunnels+=("$t|$t")
  if W="$W/$t" timeout 60 bash "$ROOT/bench/tunnels/$t.sh" up; then
    # shellcheck disable=SC1090
    . "$W/$t/env"
    if W="$W/$t" bash -c 'source "$ROOT/bench/tunnels/common.sh"; wait_ping "$0" "$1" 10' "$SRC" "$DST"; then
      measured+=("$t")
      log "$t up ($SRC -> $DST, MTU $MTU)"
      continue
    fi
  fi
  warn "SKIPPING $t: setup failed (logs in $W/$t/)"
done
[ ${#measured[@]} -gt 0 ] || { log "no tunnel came up"; exit 1; }
list=$(IFS=,; echo "${measured[*]}")

# ------------------------------------------------------------------ matrix
budget=$(( REPS * ${#measured[@]} * 90 + 60 ))
log "measuring $list, $REPS repetitions interleaved (at most ${budget}s)"
timeout --foreground "$budget" node "$ROOT/bench/tunnels/measure.mjs" --nsa "$NSA" --nsb "$NSB" --work "$W" \
  --tunnels "$list" --reps "$REPS" --tcp-seconds "$TCP_SECONDS" --out "$OUT/matrix.json" ||
  warn "measurement ended early (exit $?); reporting what was recorded"

# ------------------------------------------------------------------ mtun alone
metric_sum() { # metric_sum NS PORT NAME: sum of a counter over its label sets
  ip netns exec "$1" curl -sf "http://127.0.0.1:$2/metrics" | awk -v m="$3" '$1 ~ "^"m"({|$)" {s += $2} END {print s + 0}'
}
if [[ " ${measured[*]} " == *" mtun "* ]] && [ "${BENCH_SKIP_MTUN_EXTRAS:-0}" != 1 ]; then
  # Sessions (issue #17): ladder 1/10/100/300/1,000 busy sessions and 10,000 idle ones held
  # 5 min, on a gateway of its own (port 4435) driven by several load-generator processes;
  # BENCH_SESSIONS_QUICK=1 runs the short variant (ladder to 300, 2,000 idle for 30 s).
  # bench/mtun-sessions.sh raises the open-file limit itself and bounds every step in time.
  sflags=()
  [ "${BENCH_SESSIONS_QUICK:-0}" = 1 ] && sflags=(--quick)
  log "mtun: sessions ladder and idle test${sflags:+ (quick)}"
  NSA=$NSA NSB=$NSB UA=$UA UB=$UB P=$P timeout --foreground 2400 bash "$ROOT/bench/mtun-sessions.sh" "${sflags[@]}" \
    --out "$OUT/sessions" || warn "sessions phase failed"
fi
for v in mtun mtun-offload; do
  [[ " ${measured[*]} " == *" $v "* ]] && [ "${BENCH_SKIP_MTUN_EXTRAS:-0}" != 1 ] || continue
  log "$v: CPU profile of agent and gateway under ${PROFILE_SECONDS}s of TCP load"
  # shellcheck disable=SC1090
  . "$W/$v/env"
  W="$W/$v" bash "$ROOT/bench/tunnels/$v.sh" down
  PD="$OUT/profile/$v"
  mkdir -p "$PD"
  up_tunnels+=("$v|$v-prof")
  if W="$W/$v-prof" MTUN_NODE_FLAGS="--cpu-prof --cpu-prof-dir=$PD --cpu-prof-interval=250" \
      timeout 60 bash "$ROOT/bench/tunnels/$v.sh" up; then
    apid=$(cat "$W/$v-prof/mtuna.pid"); gpid=$(cat "$W/$v-prof/mtung.pid")
    aadm=$(sed -n 's/.*listen: "127.0.0.1:\([0-9]*\)".*/\1/p' "$W/$v-prof/agent.yaml")
    gadm=$(sed -n 's/.*listen: "127.0.0.1:\([0-9]*\)".*/\1/p' "$W/$v-prof/gateway.yaml")
    sleep 1.2
    a0=$(metric_sum "$NSA" "$aadm" mtun_tunnel_sent_datagrams_total); a0r=$(metric_sum "$NSA" "$aadm" mtun_tunnel_received_datagrams_total)
    g0=$(metric_sum "$NSB" "$gadm" mtun_tunnel_sent_datagrams_total); g0r=$(metric_sum "$NSB" "$gadm" mtun_tunnel_received_datagrams_total)
    ip netns exec "${DSTNS:-$NSB}" timeout $((PROFILE_SECONDS + 20)) iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
    disown
    sleep 0.3
    ip netns exec "$NSA" timeout $((PROFILE_SECONDS + 15)) iperf3 -c "$DST" -B "$SRC" -p 5201 -t "$PROFILE_SECONDS" -J >"$PD/iperf3.json" || warn "$v profile load failed"
    sleep 1.2
    a1=$(metric_sum "$NSA" "$aadm" mtun_tunnel_sent_datagrams_total); a1r=$(metric_sum "$NSA" "$aadm" mtun_tunnel_received_datagrams_total)
    g1=$(metric_sum "$NSB" "$gadm" mtun_tunnel_sent_datagrams_total); g1r=$(metric_sum "$NSB" "$gadm" mtun_tunnel_received_datagrams_total)
    W="$W/$v-prof" bash "$ROOT/bench/tunnels/$v.sh" down
    cat >"$PD/meta.json" <<J
{"variant": "$v", "seconds": $PROFILE_SECONDS, "agentPid": $apid, "gatewayPid": $gpid,
 "agentDatagrams": {"sent": $((a1 - a0)), "received": $((a1r - a0r))},
 "gatewayDatagrams": {"sent": $((g1 - g0)), "received": $((g1r - g0r))}}
J
  else
    warn "$v profile phase: mtun did not come up with --cpu-prof"
  fi
done

# ------------------------------------------------------------------ report
update=""
if [ "${BENCH_UPDATE:-0}" = 1 ] || { [ "$list" = "$ALL_TUNNELS" ] && [ "$REPS" -ge 3 ]; }; then update="--update"; fi
# The published tables are the upload direction: a download run (-R) never rewrites them.
if [ "${BENCH_TCP_REVERSE:-0}" = 1 ]; then update=""; echo "bench: BENCH_TCP_REVERSE=1: TCP columns are the download direction (iperf3 -R); BENCHMARKS.md left as it is" >&2; fi
node "$ROOT/bench/report/report.mjs" --results "$OUT" --command "${BENCH_COMMAND:-npm run bench}" $update
log "done: $OUT/report.md"
