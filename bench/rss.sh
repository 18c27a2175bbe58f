#!/usr/bin/env bash
# Where each daemon's resident memory goes, for the #13 goal (RSS <= 80 MB per
# daemon). Brings up the lab pair (bench/tunnels/mtun-offload.sh), waits
# RSS_SETTLE seconds, runs RSS_SECONDS (5) of upload then of download through
# it, and reads each daemon's /proc/PID/status (VmHWM: the peak the bench
# reports; VmRSS, RssAnon, RssFile) and /proc/PID/smaps, summed by kind of
# mapping: the node binary and shared libraries (file-backed), glibc's main
# heap ([heap]), anonymous mappings of 64 MiB-aligned glibc arenas (one per
# thread that called malloc), thread stacks, and the rest (V8's heap pages
# and code space, our rings).
#
# Variants run interleaved, RSS_REPS (2) rounds, which goes first alternating.
# RSS_VARIANTS is a ';'-separated list of `label=ENV ... [-- node flags]`
# (the node flags add to bin/mtun.js's own, through MTUN_NODE_FLAGS):
#
#   sudo RSS_VARIANTS='default=;arena2=MALLOC_ARENA_MAX=2;pool1=-- --v8-pool-size=1' bash bench/rss.sh
#
# Output: bench/results/<time>-rss/ (runs.jsonl) and a table on stdout.
set -euo pipefail
shopt -s inherit_errexit
NAME=rss PFX=rs
. "$(dirname "$0")/ab-lab.sh"
REPS=${RSS_REPS:-2}
SECS=${RSS_SECONDS:-5}
SETTLE=${RSS_SETTLE:-3}
IFS=';' read -r -a VARIANTS <<<"${RSS_VARIANTS:-default=}"

# smaps of PID summed by kind, as JSON (kB).
rss_of() {
  node -e '
    const fs = require("fs");
    const pid = process.argv[1];
    const st = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (k) => Number((new RegExp(k + ":\\s+(\\d+)")).exec(st)?.[1] ?? NaN);
    const out = { hwm: kb("VmHWM"), rss: kb("VmRSS"), anon: kb("RssAnon"), file: kb("RssFile"), threads: kb("Threads"),
      byKind: { binary: 0, libs: 0, heap: 0, arenas: 0, stacks: 0, otherAnon: 0 } };
    let kind = null;
    for (const line of fs.readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n")) {
      const head = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
      if (head) {
        const start = BigInt("0x" + head[1]), size = BigInt("0x" + head[2]) - start, name = head[3];
        if (name.endsWith("/node")) kind = "binary";
        else if (name.startsWith("/")) kind = "libs";
        else if (name === "[heap]") kind = "heap";
        else if (name === "[stack]") kind = "stacks";
        else if (name === "" && (start & 0x3ffffffn) === 0n && size <= 0x4000000n) kind = "arenas";
        else kind = "otherAnon";
        continue;
      }
      const rss = /^Rss:\s+(\d+) kB/.exec(line);
      if (rss && kind) out.byKind[kind] += Number(rss[1]);
    }
    console.log(JSON.stringify(out));
  ' "$1"
}

run() {
  local spec=$1 label=${1%%=*} rest=${1#*=} envs flags t="$W/t" apid gpid a g
  envs=${rest%%--*}; flags=""
  [[ "$rest" == *--* ]] && flags=${rest#*--}
  rm -rf "$t"; mkdir -p "$t"
  # shellcheck disable=SC2086
  env $envs MTUN_NODE_FLAGS="$flags" ROOT="$ROOT" W="$t" timeout 60 bash "$TUN" up >/dev/null
  # shellcheck disable=SC1091
  . "$t/env"
  apid=$(echo "$PIDS" | tr ' ' '\n' | sed -n 's/^a://p'); gpid=$(echo "$PIDS" | tr ' ' '\n' | sed -n 's/^b://p')
  sleep "$SETTLE"
  local ai gi; ai=$(rss_of "$apid"); gi=$(rss_of "$gpid")
  ip netns exec "$DSTNS" iperf3 -s -D -p 5201 >/dev/null 2>&1
  sleep 0.3
  ip netns exec "$NSA" timeout $((SECS + 20)) iperf3 -c "$DST" -B "$SRC" -p 5201 -t "$SECS" -J >"$t/up.json" 2>&1 || true
  ip netns exec "$NSA" timeout $((SECS + 20)) iperf3 -c "$DST" -B "$SRC" -p 5201 -t "$SECS" -R -J >"$t/down.json" 2>&1 || true
  a=$(rss_of "$apid"); g=$(rss_of "$gpid")
  ip netns exec "$DSTNS" pkill -x iperf3 2>/dev/null || true
  ROOT="$ROOT" W="$t" timeout 20 bash "$TUN" down >/dev/null 2>&1 || true
  node -e '
    const [label, ai, gi, a, g, up, down] = process.argv.slice(1);
    const gbps = (f) => { try { return JSON.parse(require("fs").readFileSync(f, "utf8")).end.sum_received.bits_per_second / 1e9; } catch { return null; } };
    console.log(JSON.stringify({ label, agentIdle: JSON.parse(ai), gatewayIdle: JSON.parse(gi), agent: JSON.parse(a), gateway: JSON.parse(g), upGbps: gbps(up), downGbps: gbps(down) }));
  ' "$label" "$ai" "$gi" "$a" "$g" "$t/up.json" "$t/down.json"
}

for rep in $(seq 1 "$REPS"); do
  order=("${VARIANTS[@]}")
  if [ $((rep % 2)) = 0 ]; then
    order=(); for ((i = ${#VARIANTS[@]} - 1; i >= 0; i--)); do order+=("${VARIANTS[$i]}"); done
  fi
  for v in "${order[@]}"; do run "$v" | tee -a "$OUT/runs.jsonl"; done
done

node -e '
  const fs = require("fs");
  const runs = fs.readFileSync(process.argv[1], "utf8").trim().split("\n").map((l) => JSON.parse(l));
  const mb = (k) => (k / 1024).toFixed(1);
  const rows = ["| variant | daemon | peak RSS (VmHWM) MB | idle RSS MB | after traffic: anon / file MB | binary / libs / [heap] / arenas / other anon MB | threads | up / down Gbit/s |", "|---|---|---|---|---|---|---|---|"];
  for (const r of runs) for (const d of ["agent", "gateway"]) {
    const x = r[d], k = x.byKind;
    rows.push(`| ${r.label} | ${d} | **${mb(x.hwm)}** | ${mb(r[d + "Idle"].rss)} | ${mb(x.anon)} / ${mb(x.file)} | ${mb(k.binary)} / ${mb(k.libs)} / ${mb(k.heap)} / ${mb(k.arenas)} / ${mb(k.otherAnon + k.stacks)} | ${x.threads} | ${r.upGbps?.toFixed(2) ?? "–"} / ${r.downGbps?.toFixed(2) ?? "–"} |`);
  }
  console.log(rows.join("\n"));
' "$OUT/runs.jsonl" | tee "$OUT/report.md"
echo "rss: results in $OUT"
