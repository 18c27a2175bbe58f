# Set-up shared by the interleaved A/B lab scripts (bench/queue-delay.sh,
# bench/tun-thread.sh, bench/ab-build.sh), sourced after `set -euo pipefail`, with NAME (for
# messages and the results folder) and PFX (namespace prefix) set: checks
# root, the tools and dist/; exports ROOT, the underlay namespaces NSA/NSB
# and their addresses; sets W (a scratch folder), OUT (the results folder),
# TUN (the mtun-offload tunnel script); builds the underlay; and removes
# everything on exit. Also defines ab_measure (one transfer's measurement)
# and ab_interleave (the rounds), below.
[ "$(id -u)" = 0 ] || { echo "$NAME: needs root (network namespaces)" >&2; exit 1; }
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export ROOT P="$PFX$$x" UA=192.0.2.1 UB=192.0.2.2
export NSA="${P}a" NSB="${P}b"
W=$(mktemp -d "/tmp/mtun-$NAME.XXXXXX")
OUT="$ROOT/bench/results/$(date -u +%Y%m%dT%H%M%SZ)-$NAME"
. "$ROOT/bench/underlay.sh"
TUN="$ROOT/bench/tunnels/mtun-offload.sh"

ab_cleanup() {
  W="$W/t" timeout 20 bash "$TUN" down >/dev/null 2>&1 || true
  remove_netns "$NSA" "$NSB" "${P}ns"
  rm -rf "$W"
}
trap ab_cleanup EXIT
for c in iperf3 ping curl; do command -v "$c" >/dev/null || { echo "$NAME: $c missing (apt-get install -y iperf3 iputils-ping curl)" >&2; exit 1; }; done
[ -f "$ROOT/dist/cli/main.js" ] || { echo "$NAME: dist/ missing; run npx tsc -p tsconfig.json" >&2; exit 1; }
mkdir -p "$OUT"
make_underlay

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# The measurement the A/B scripts share, on a tunnel that is up with its env
# sourced (SRC, DST, DSTNS, PIDS): 200 idle pings, then iperf3 for $SECS
# ("${RFLAG[@]}": -R for the download) with $PINGS pings under that load
# from its 2nd second. Files in $1 (idle.txt, load.txt, iperf3.json); sets
# AB_ACPU and AB_GCPU, the agent's and the gateway's CPU ticks over the transfer.
ab_measure() {
  local t=$1 apid gpid a0 g0 ip
  apid=$(echo "$PIDS" | tr ' ' '\n' | sed -n 's/^a://p'); gpid=$(echo "$PIDS" | tr ' ' '\n' | sed -n 's/^b://p')
  ip netns exec "$NSA" ping -n -c 200 -i 0.02 -I "$SRC" "$DST" >"$t/idle.txt" 2>&1 || true
  ip netns exec "$DSTNS" iperf3 -s -D -p 5201 -1 >/dev/null 2>&1
  sleep 0.3
  a0=$(cpu_ticks "$apid"); g0=$(cpu_ticks "$gpid")
  ip netns exec "$NSA" timeout $((SECS + 20)) iperf3 -c "$DST" -B "$SRC" -p 5201 -t "$SECS" "${RFLAG[@]}" -J >"$t/iperf3.json" 2>&1 &
  ip=$!
  sleep 2
  ip netns exec "$NSA" timeout $((SECS + 5)) ping -n -c "$PINGS" -i 0.05 -I "$SRC" "$DST" >"$t/load.txt" 2>&1 || true
  wait "$ip" || true
  AB_ACPU=$(( $(cpu_ticks "$apid") - a0 )); AB_GCPU=$(( $(cpu_ticks "$gpid") - g0 ))
}

# $REPS rounds of the caller's `run "$1"` and `run "$2"`, which goes first
# alternating; each line it prints goes to $OUT/runs.jsonl and stdout.
ab_interleave() {
  local a=$1 b=$2 rep x
  for rep in $(seq 1 "$REPS"); do
    local order=("$a" "$b")
    [ $((rep % 2)) = 1 ] || order=("$b" "$a")
    for x in "${order[@]}"; do
      run "$x" | tee -a "$OUT/runs.jsonl"
    done
  done
}
