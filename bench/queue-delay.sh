#!/usr/bin/env bash
# Ping under a bulk TCP transfer through mtun (offload), with CoDel on the
# tunnel's DATAGRAM send queue (tun.queueDelay, default target 1 ms) and
# without it (targetMs: 0), for the TCP inside on cubic and on bbr, the runs
# interleaved so that a noisy box hits both settings alike. Not a timed test:
# it prints a table of medians and saves every run's numbers.
#
#   sudo bash bench/queue-delay.sh            # 3 repetitions, 10 s transfers (~5 minutes)
#   QD_REPS=1 QD_SECONDS=6 sudo -E bash bench/queue-delay.sh
#   QD_CCS=bbr QD_REPS=6 sudo -E bash bench/queue-delay.sh   # one inner congestion control only
#
# Per run: iperf3 -C <cc> for QD_SECONDS from the agent's side; from 2 s in
# until 1 s before the end, pings at 20/s ride along; the gateway's socket
# queue is sampled; CoDel's drops are read from both daemons' metrics. Results in
# bench/results/<UTC time>-queue-delay/ (runs.jsonl, report.md).
set -euo pipefail
# run() is called inside $(...): without this, a failing step there would not stop it.
shopt -s inherit_errexit
NAME=queue-delay PFX=qd
. "$(dirname "$0")/ab-lab.sh"
REPS=${QD_REPS:-3}
SECS=${QD_SECONDS:-10}
[ "$SECS" -ge 6 ] || { echo "queue-delay: QD_SECONDS must be at least 6" >&2; exit 1; }
# Pings at 20/s from 2 s into the transfer until 1 s before its end.
PINGS=$(( (SECS - 3) * 20 ))

# One run: $1 = cubic|bbr, $2 = targetMs (0 = off). Prints one JSON line.
run() {
  local cc=$1 target=$2 t="$W/t"
  rm -rf "$t"; mkdir -p "$t"
  MTUN_QUEUE_DELAY_MS=$target W="$t" timeout 60 bash "$TUN" up >/dev/null
  # shellcheck disable=SC1091
  . "$t/env"
  ip netns exec "$DSTNS" iperf3 -s -D -p 5201 -1 >/dev/null 2>&1
  sleep 0.3
  ip netns exec "$NSA" timeout $((SECS + 20)) iperf3 -c "$DST" -B "$SRC" -p 5201 -t "$SECS" -C "$cc" -J >"$t/iperf3.json" 2>&1 &
  local ip=$!
  sleep 2
  local q=() i
  for i in 1 2 3 4 5; do q+=("$(ip netns exec "$NSB" ss -uanH "sport = :4434" | awk '{print $2}' | head -1)"); sleep 0.1; done
  ip netns exec "$NSA" timeout $((SECS + 5)) ping -n -q -c "$PINGS" -i 0.05 -I "$SRC" "$DST" >"$t/ping.txt" 2>&1 || true
  wait "$ip" || true
  local drops
  # Agent (9093) and gateway (9092) admin ports of the offload variant (bench/tunnels/mtun.sh).
  drops=$( { ip netns exec "$NSA" curl -s --max-time 5 "http://127.0.0.1:9093/metrics" || true; ip netns exec "$NSB" curl -s --max-time 5 "http://127.0.0.1:9092/metrics" || true; } |
    awk '/^mtun_quic_dgram_frames_dropped_total.*queue-delay/ {n += $2} END {print n + 0}')
  W="$t" timeout 20 bash "$TUN" down >/dev/null 2>&1 || true
  node -e '
    const fs = require("fs");
    const [cc, target, pingFile, ipFile, drops, ...q] = process.argv.slice(1);
    const ip = JSON.parse(fs.readFileSync(ipFile, "utf8"));
    const m = /= ([\d.]+)\/([\d.]+)\/([\d.]+)\/([\d.]+) ms/.exec(fs.readFileSync(pingFile, "utf8"));
    console.log(JSON.stringify({ cc, targetMs: Number(target), pingAvgMs: m ? Number(m[2]) : null, pingMaxMs: m ? Number(m[3]) : null,
      gbps: ip.end?.sum_received ? ip.end.sum_received.bits_per_second / 1e9 : null, retransmits: ip.end?.sum_sent?.retransmits ?? null,
      codelDrops: Number(drops || 0), gatewayRecvQ: q.map(Number) }));
  ' "$cc" "$target" "$t/ping.txt" "$t/iperf3.json" "${drops:-0}" "${q[@]}"
}

for rep in $(seq 1 "$REPS"); do
  # Which setting goes first alternates, so that neither always follows the other.
  if [ $((rep % 2)) = 1 ]; then order="1 0"; else order="0 1"; fi
  for cc in ${QD_CCS:-cubic bbr}; do
    for target in $order; do
      line=$(run "$cc" "$target")
      echo "$line" | tee -a "$OUT/runs.jsonl"
    done
  done
done

node -e '
  const fs = require("fs");
  const runs = fs.readFileSync(process.argv[1], "utf8").trim().split("\n").map((l) => JSON.parse(l));
  const med = (xs) => { const v = xs.filter((x) => x !== null).sort((a, b) => a - b); return v.length ? v[Math.floor(v.length / 2)] : NaN; };
  const rows = ["| inner TCP | tun.queueDelay | ping under load, ms (avg per run) | TCP Gbit/s | retransmits | CoDel drops | gateway socket queue, kB |", "|---|---|---|---|---|---|---|"];
  for (const cc of ["cubic", "bbr"]) for (const t of [1, 0]) {
    const r = runs.filter((x) => x.cc === cc && x.targetMs === t);
    if (r.length === 0) continue;
    const list = (k, d = 2) => r.map((x) => x[k] === null ? "–" : x[k].toFixed(d)).join(" / ");
    rows.push(`| ${cc} | ${t === 0 ? "off" : `target ${t} ms`} | **${med(r.map((x) => x.pingAvgMs)).toFixed(2)}** (${list("pingAvgMs")}) | ${med(r.map((x) => x.gbps)).toFixed(2)} (${list("gbps")}) | ${list("retransmits", 0)} | ${list("codelDrops", 0)} | ${med(r.flatMap((x) => x.gatewayRecvQ)) / 1000 | 0} |`);
  }
  const md = rows.join("\n");
  fs.writeFileSync(process.argv[2], md + "\n");
  console.log(md);
' "$OUT/runs.jsonl" "$OUT/report.md"
echo "queue-delay: results in $OUT"
