#!/usr/bin/env bash
# The agent's data path on its native thread (tun.thread: true; both legs,
# TUN → UDP and UDP → TUN) against the event loop (tun.thread: false), mtun
# with offloads, the runs interleaved so that a noisy box hits both settings
# alike. Not a timed test: it prints a table of medians and saves each run.
#
#   sudo bash bench/tun-thread.sh              # 3 repetitions (~4 minutes)
#   TT_REPS=5 TT_SECONDS=8 sudo -E bash bench/tun-thread.sh
#   TT_REVERSE=1 sudo -E bash bench/tun-thread.sh   # the transfer towards the agent (iperf3 -R)
#   TT_DAEMON=gateway sudo -E bash bench/tun-thread.sh   # the gateway's tun.thread on / off (the agent's on)
#   TT_TBF=400mbit sudo -E bash bench/tun-thread.sh   # a bottleneck: tbf at that rate on the gateway's underlay
#                                                     # link (limit 32 MB, above the 8 MB socket buffer)
#
# Per run: 200 pings at 50/s on an idle tunnel (the median RTT), then
# iperf3 TCP for TT_SECONDS from the agent's side (to it with TT_REVERSE=1)
# with pings at 20/s riding along from 2 s in, and each daemon's CPU time
# (utime + stime) over the transfer. Results in bench/results/<UTC time>-tun-thread/ (runs.jsonl, report.md).
set -euo pipefail
shopt -s inherit_errexit
NAME=tun-thread PFX=tt
. "$(dirname "$0")/ab-lab.sh"
REPS=${TT_REPS:-3}
SECS=${TT_SECONDS:-8}
REVERSE=${TT_REVERSE:-0}
DAEMON=${TT_DAEMON:-agent}
case "$DAEMON" in agent) SWITCH=MTUN_TUN_THREAD ADMIN=9093 NS_OF_ADMIN=NSA ;; gateway) SWITCH=MTUN_GW_TUN_THREAD ADMIN=9092 NS_OF_ADMIN=NSB ;; *) echo "tun-thread: TT_DAEMON must be agent or gateway" >&2; exit 1 ;; esac
case "$REVERSE" in 0) RFLAG=() ;; 1) RFLAG=(-R) ;; *) echo "tun-thread: TT_REVERSE must be 0 or 1" >&2; exit 1 ;; esac
[ "$SECS" -ge 6 ] || { echo "tun-thread: TT_SECONDS must be at least 6" >&2; exit 1; }
TBF=${TT_TBF:-}
[[ -z "$TBF" || "$TBF" =~ ^[1-9][0-9]*[kmg]bit$ ]] || { echo "tun-thread: TT_TBF must be a rate like 400mbit" >&2; exit 1; }
PINGS=$(( (SECS - 3) * 20 ))

# One run: $1 = 1 (thread) | 0 (event loop). Prints one JSON line.
run() {
  local thread=$1 t="$W/t"
  rm -rf "$t"; mkdir -p "$t"
  env "$SWITCH=$thread" W="$t" timeout 60 bash "$TUN" up >/dev/null
  # shellcheck disable=SC1091
  . "$t/env"
  [ -z "$TBF" ] || ip netns exec "$NSB" tc qdisc replace dev "${P}b0" root tbf rate "$TBF" burst 64kb limit 32mb
  ab_measure "$t"
  local sent written stalls metrics
  metrics=$( { ip netns exec "${!NS_OF_ADMIN}" curl -s --max-time 5 "http://127.0.0.1:$ADMIN/metrics" || true; } )
  sent=$(echo "$metrics" | awk -v m="mtun_${DAEMON}_tun_thread_packets_total{path=\"thread\"}" 'index($0, m) == 1 {n += $2} END {print n + 0}')
  written=$(echo "$metrics" | awk -v m="mtun_${DAEMON}_tun_thread_events_total{event=\"rx_tun_written\"}" 'index($0, m) == 1 {n += $2} END {print n + 0}')
  # Times a full socket buffer (EAGAIN) made the daemon's sender keep its tail (endpoint and thread).
  stalls=$(echo "$metrics" | awk -v m="mtun_quic_udp_send_events_total{role=\"$DAEMON\",event=\"stalled\"}" 'index($0, m) == 1 {n += $2} END {print n + 0}')
  W="$t" timeout 20 bash "$TUN" down >/dev/null 2>&1 || true
  node -e '
    const fs = require("fs");
    const [thread, idleFile, loadFile, ipFile, secs, aT, gT, sent, written, reverse, stalls] = process.argv.slice(1);
    const rtts = (f) => [...fs.readFileSync(f, "utf8").matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1])).sort((a, b) => a - b);
    const med = (v) => v.length ? v[Math.floor(v.length / 2)] : null;
    const ip = JSON.parse(fs.readFileSync(ipFile, "utf8"));
    const hz = 100;
    const idle = rtts(idleFile), load = rtts(loadFile);
    console.log(JSON.stringify({ thread: Number(thread), idleMedMs: med(idle), idleP90Ms: idle.length ? idle[Math.floor(idle.length * 0.9)] : null,
      loadMedMs: med(load), gbps: ip.end?.sum_received ? ip.end.sum_received.bits_per_second / 1e9 : null,
      retransmits: ip.end?.sum_sent?.retransmits ?? null,
      agentCpu: Number(aT) / hz / Number(secs), gatewayCpu: Number(gT) / hz / Number(secs), threadSent: Number(sent),
      threadWritten: Number(written), reverse: reverse === "1", sendStalls: Number(stalls) }));
  ' "$thread" "$t/idle.txt" "$t/load.txt" "$t/iperf3.json" "$SECS" "$AB_ACPU" "$AB_GCPU" "${sent:-0}" "${written:-0}" "$REVERSE" "${stalls:-0}"
}

ab_interleave 1 0

node -e '
  const fs = require("fs");
  const runs = fs.readFileSync(process.argv[1], "utf8").trim().split("\n").map((l) => JSON.parse(l));
  const med = (xs) => { const v = xs.filter((x) => x !== null).sort((a, b) => a - b); return v.length ? v[Math.floor(v.length / 2)] : NaN; };
  const rows = [`| ${process.env.TT_DAEMON === "gateway" ? "gateway" : "agent"} data path on${runs[0]?.reverse ? " (transfer to the agent)" : ""} | idle ping median, ms | idle ping p90, ms | ping under load, median ms | TCP Gbit/s | agent CPU (cores) | gateway CPU (cores) | packets the thread sent / wrote into the TUN | send stalls (EAGAIN) | TCP retransmits |`, "|---|---|---|---|---|---|---|---|---|---|"];
  for (const th of [1, 0]) {
    const r = runs.filter((x) => x.thread === th);
    if (r.length === 0) continue;
    const list = (k, d = 2) => r.map((x) => x[k] === null ? "–" : x[k].toFixed(d)).join(" / ");
    rows.push(`| ${th ? "the thread" : "the event loop"} | **${med(r.map((x) => x.idleMedMs)).toFixed(3)}** (${list("idleMedMs", 3)}) | ${med(r.map((x) => x.idleP90Ms)).toFixed(3)} | ${med(r.map((x) => x.loadMedMs)).toFixed(2)} (${list("loadMedMs")}) | ${med(r.map((x) => x.gbps)).toFixed(2)} (${list("gbps")}) | ${med(r.map((x) => x.agentCpu)).toFixed(2)} | ${med(r.map((x) => x.gatewayCpu)).toFixed(2)} | ${list("threadSent", 0)}; ${list("threadWritten", 0)} | ${list("sendStalls", 0)} | ${list("retransmits", 0)} |`);
  }
  const md = rows.join("\n");
  fs.writeFileSync(process.argv[2], md + "\n");
  console.log(md);
' "$OUT/runs.jsonl" "$OUT/report.md"
echo "tun-thread: results in $OUT"
