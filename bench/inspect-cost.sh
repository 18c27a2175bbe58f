#!/usr/bin/env bash
# Inspector cost at full throughput: mtun agent and gateway (bench/tunnels/mtun.sh,
# CONNECT-IP over QUIC between two namespaces) under one iperf3 TCP stream for
# INSPECT_COST_SECONDS (10), each daemon with `node --cpu-prof`; then the share
# of each daemon's busy CPU spent in dist/inspect/ (flow tracker, TCP state,
# RTT sampler, L7 / QUIC peeks), from bench/report/profile.mjs's layers.
#
#   ${P}a: mtun agent          ══ veth 192.0.2.0/24 ══   ${P}b: mtun gateway   ── veth ──   ${P}ms: iperf3 -s
#   iperf3 -c from 10.10.0.1 (lo)      QUIC :4433         10.20.0.254/24                  10.20.0.2/24
#
# The server sits in mtun.sh's third namespace (10.20.0.2) because the gateway
# refuses its own addresses as destinations (masque/destination-policy.ts).
#   sudo bench/inspect-cost.sh        (needs root, iperf3, a built dist/)
# Output: bench/results/inspect-cost-<time>/ (profiles, iperf3.json, summary.json) and a summary on stdout.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECONDS_LOAD=${INSPECT_COST_SECONDS:-10}
P=mc$$x
NSA=${P}a
NSB=${P}b
UA=192.0.2.1
UB=192.0.2.2
OUT=$ROOT/bench/results/inspect-cost-$(date -u +%Y%m%dT%H%M%SZ)
W=$OUT/work
export P NSA NSB UA UB ROOT
[ "$(id -u)" = 0 ] || { echo "inspect-cost: needs root" >&2; exit 1; }
command -v iperf3 >/dev/null || { echo "inspect-cost: needs iperf3" >&2; exit 1; }
mkdir -p "$W" "$OUT/profile"
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  W="$W/mtun" timeout 20 bash "$ROOT/bench/tunnels/mtun.sh" down >/dev/null 2>&1 || true
  remove_netns "$NSA" "$NSB"
  exit $rc
}
# shellcheck disable=SC1091
. "$ROOT/bench/underlay.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM
make_underlay

W="$W/mtun" MTUN_NODE_FLAGS="--cpu-prof --cpu-prof-dir=$OUT/profile --cpu-prof-interval=250" timeout 60 bash "$ROOT/bench/tunnels/mtun.sh" up
# shellcheck disable=SC1091
. "$W/mtun/env" # SRC, DST, DSTNS
apid=$(cat "$W/mtun/mtuna.pid"); gpid=$(cat "$W/mtun/mtung.pid")
ip netns exec "$DSTNS" timeout $((SECONDS_LOAD + 20)) iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
sleep 0.3
ip netns exec "$NSA" timeout $((SECONDS_LOAD + 15)) iperf3 -c "$DST" -B "$SRC" -p 5201 -t "$SECONDS_LOAD" -J >"$OUT/iperf3.json"
W="$W/mtun" bash "$ROOT/bench/tunnels/mtun.sh" down
sleep 0.5
node --input-type=module - "$OUT" "$apid" "$gpid" <<'JS'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
const [out, apid, gpid] = process.argv.slice(2);
const { summariseProfile } = await import(`${process.cwd()}/bench/report/profile.mjs`);
const ip = JSON.parse(readFileSync(`${out}/iperf3.json`, 'utf8'));
const mbps = ip.end.sum_received.bits_per_second / 1e6;
const res = { throughputMbps: Math.round(mbps), daemons: {} };
for (const f of readdirSync(`${out}/profile`).filter((x) => x.endsWith('.cpuprofile'))) {
  const role = f.includes(`.${apid}.`) ? 'agent' : f.includes(`.${gpid}.`) ? 'gateway' : f;
  const s = summariseProfile(`${out}/profile/${f}`, 400);
  const insp = s.layers.filter((l) => l.layer === 'mtun js: inspect').reduce((a, l) => a + l.ms, 0);
  res.daemons[role] = { busyMs: Math.round(s.busyMs), inspectMs: Math.round(insp), inspectPctOfBusy: +(100 * insp / s.busyMs).toFixed(2),
    topInspect: s.top.filter((t) => t.layer === 'mtun js: inspect').slice(0, 4).map((t) => `${t.fn} ${(100 * t.ms / s.busyMs).toFixed(2)}%`) };
}
writeFileSync(`${out}/summary.json`, JSON.stringify(res, null, 1));
console.log(JSON.stringify(res, null, 1));
JS
