# Set-up shared by the interleaved A/B lab scripts (bench/queue-delay.sh,
# bench/tun-thread.sh), sourced after `set -euo pipefail`, with NAME (for
# messages and the results folder) and PFX (namespace prefix) set: checks
# root, the tools and dist/; exports ROOT, the underlay namespaces NSA/NSB
# and their addresses; sets W (a scratch folder), OUT (the results folder),
# TUN (the mtun-offload tunnel script); builds the underlay; and removes
# everything on exit.
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
