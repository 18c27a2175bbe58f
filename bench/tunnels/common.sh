# Shared helpers for bench/tunnels/*.sh (sourced). Each tunnel script is called
# as `<tunnel>.sh up|down` with NSA, NSB (namespaces), UA, UB (underlay
# addresses on the veth), P (per-run prefix), W (this tunnel's work dir) and
# ROOT (repository) in the environment. `up` writes $W/env with SRC (inner
# address in NSA), DST (inner address in NSB, or in DSTNS when set), KIND (user|kernel), PIDS
# ("role:pid ..."), MTU and VERSION; `down` undoes everything `up` did.
set -euo pipefail
: "${NSA:?} ${NSB:?} ${UA:?} ${UB:?} ${P:?} ${W:?} ${ROOT:?}"
mkdir -p "$W"
na() { ip netns exec "$NSA" "$@"; }
nb() { ip netns exec "$NSB" "$@"; }

# start NS NAME CMD...: runs CMD in namespace NS in the background (own
# session, so a Ctrl-C to the benchmark does not kill it before teardown),
# output to $W/NAME.log, pid (same process: ip netns exec execs) to $W/NAME.pid.
start() {
  local ns=$1 name=$2; shift 2
  setsid ip netns exec "$ns" "$@" >"$W/$name.log" 2>&1 < /dev/null &
  echo $! >"$W/$name.pid"
}

# stop NAME...: SIGTERM, wait up to 5 s, then SIGKILL.
stop() {
  local name pid i
  for name in "$@"; do
    [ -f "$W/$name.pid" ] || continue
    pid=$(cat "$W/$name.pid")
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$W/$name.pid"
  done
}

pid_of() { cat "$W/$1.pid"; }

# alive NAME: fails loudly when the process already exited.
alive() {
  kill -0 "$(pid_of "$1")" 2>/dev/null || { echo "bench: $1 exited; log:" >&2; tail -20 "$W/$1.log" >&2; return 1; }
}

# wait_ping SRC DST SECONDS: until one ping from NSA crosses the tunnel.
wait_ping() {
  local src=$1 dst=$2 t=$3 i
  for i in $(seq $((t * 5))); do
    na ping -c1 -W1 -I "$src" "$dst" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "bench: no ping $src -> $dst after ${t}s" >&2
  return 1
}
