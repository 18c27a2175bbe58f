#!/usr/bin/env bash
# Two builds of mtun side by side, interleaved: this checkout against another
# one (a clone at an older commit with its own dist/ and build/), each rep
# running both in turn, which goes first alternating. Per run: idle ping
# (200 at 50/s), one TCP stream for AB_SECONDS (8) from the agent's side to
# the server behind the gateway (the upload, where the gateway is the slower
# daemon), ping under that load, and each daemon's CPU (utime + stime) over
# the transfer. The tunnel is bench/tunnels/mtun-offload.sh of each checkout.
#
#   sudo AB_BASE=/tmp/base [AB_REPS=3] [AB_SECONDS=8] [AB_REVERSE=1] bash bench/ab-build.sh
#
# AB_REVERSE=1 measures the download (iperf3 -R) instead.
# Output: bench/results/<time>-ab-build/ (runs.jsonl, report.md) and the table on stdout.
set -euo pipefail
shopt -s inherit_errexit
NAME=ab-build PFX=ab
. "$(dirname "$0")/ab-lab.sh"
BASE=${AB_BASE:?ab-build: set AB_BASE to the other checkout (with dist/ and build/)}
BASE=$(cd "$BASE" && pwd)
[ -f "$BASE/dist/cli/main.js" ] && [ -f "$BASE/bench/tunnels/mtun-offload.sh" ] || { echo "ab-build: $BASE has no dist/ or bench/tunnels/mtun-offload.sh" >&2; exit 1; }
REPS=${AB_REPS:-3}
SECS=${AB_SECONDS:-8}
case "${AB_REVERSE:-0}" in 0) RFLAG=() ;; 1) RFLAG=(-R) ;; *) echo "ab-build: AB_REVERSE must be 0 or 1" >&2; exit 1 ;; esac
[ "$SECS" -ge 6 ] || { echo "ab-build: AB_SECONDS must be at least 6" >&2; exit 1; }
PINGS=$(( (SECS - 3) * 20 ))
HERE=$ROOT
label() { if [ "$1" = "$HERE" ]; then echo "this ($(git -C "$1" rev-parse --short HEAD)+$(git -C "$1" status --porcelain | grep -c . || true) changed)"; else echo "base ($(git -C "$1" rev-parse --short HEAD))"; fi; }

run() {
  local tree=$1 t="$W/t"
  rm -rf "$t"; mkdir -p "$t"
  ROOT=$tree W="$t" timeout 60 bash "$tree/bench/tunnels/mtun-offload.sh" up >/dev/null
  # shellcheck disable=SC1091
  . "$t/env"
  ab_measure "$t"
  ROOT=$tree W="$t" timeout 20 bash "$tree/bench/tunnels/mtun-offload.sh" down >/dev/null 2>&1 || true
  node -e '
    const fs = require("fs");
    const [label, idleFile, loadFile, ipFile, secs, aT, gT] = process.argv.slice(1);
    const rtts = (f) => [...fs.readFileSync(f, "utf8").matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1])).sort((a, b) => a - b);
    const med = (v) => v.length ? v[Math.floor(v.length / 2)] : null;
    let ip = {};
    try { ip = JSON.parse(fs.readFileSync(ipFile, "utf8")); } catch {}
    const hz = 100;
    const gbps = ip.end?.sum_received ? ip.end.sum_received.bits_per_second / 1e9 : null;
    const cores = (Number(aT) + Number(gT)) / hz / Number(secs);
    console.log(JSON.stringify({ label, idleMedMs: med(rtts(idleFile)), loadMedMs: med(rtts(loadFile)), gbps,
      retransmits: ip.end?.sum_sent?.retransmits ?? null, agentCpu: Number(aT) / hz / Number(secs), gatewayCpu: Number(gT) / hz / Number(secs),
      cpuSecPerGbit: gbps ? cores / gbps : null }));
  ' "$(label "$tree")" "$t/idle.txt" "$t/load.txt" "$t/iperf3.json" "$SECS" "$AB_ACPU" "$AB_GCPU"
}

ab_interleave "$HERE" "$BASE"

node -e '
  const fs = require("fs");
  const runs = fs.readFileSync(process.argv[1], "utf8").trim().split("\n").map((l) => JSON.parse(l));
  const med = (xs) => { const v = xs.filter((x) => x !== null).sort((a, b) => a - b); return v.length ? v[Math.floor(v.length / 2)] : NaN; };
  const rows = [`| build${process.argv[3] === "1" ? " (download)" : ""} | TCP Gbit/s | tunnel CPU-s per Gbit | agent CPU (cores) | gateway CPU (cores) | idle ping median, ms | ping under load, ms | retransmits |`, "|---|---|---|---|---|---|---|---|"];
  for (const label of [...new Set(runs.map((r) => r.label))]) {
    const r = runs.filter((x) => x.label === label);
    const list = (k, d = 2) => r.map((x) => x[k] === null ? "–" : x[k].toFixed(d)).join(" / ");
    rows.push(`| ${label} | **${med(r.map((x) => x.gbps)).toFixed(2)}** (${list("gbps")}) | ${med(r.map((x) => x.cpuSecPerGbit)).toFixed(2)} (${list("cpuSecPerGbit")}) | ${med(r.map((x) => x.agentCpu)).toFixed(2)} | ${med(r.map((x) => x.gatewayCpu)).toFixed(2)} | ${med(r.map((x) => x.idleMedMs)).toFixed(3)} | ${med(r.map((x) => x.loadMedMs)).toFixed(2)} | ${list("retransmits", 0)} |`);
  }
  const md = rows.join("\n");
  fs.writeFileSync(process.argv[2], md + "\n");
  console.log(md);
' "$OUT/runs.jsonl" "$OUT/report.md" "${AB_REVERSE:-0}"
echo "ab-build: results in $OUT"
