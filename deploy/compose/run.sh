#!/usr/bin/env bash
# `npm run compose`: the container twin of `npm run demo`. Root only.
#
#   cluster-a (10.10.0.0/24)          wan (198.51.100.0/24)               cluster-b (10.20.0.0/24)
#   client 10.10.0.2 ── agent 10.10.0.1 | 198.51.100.1 ══ QUIC ══ 198.51.100.2 | 10.20.0.1 gateway ── server 10.20.0.2
#
# Starts dockerd if none answers (and stops it again), builds the offline base
# image if missing, builds mtun:dev and mtun-tools:dev from the Dockerfile,
# runs `docker-compose up` on the shipped docker-compose.yml, checks traffic
# through the containers, kills the gateway and waits for traffic to resume
# after its restart, and tears down everything it created, also on failure.
#
# Environment: MTUN_COMPOSE_RMI=1 also removes the images it built;
# MTUN_COMPOSE_BASE=<image> builds on that base instead of the offline one
# (e.g. node:20-bookworm-slim where a registry is reachable).
set -uo pipefail

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$REPO/deploy/compose"
PROJECT="${MTUN_COMPOSE_PROJECT:-mtuncompose}"
BASE="${MTUN_COMPOSE_BASE:-mtun-base:offline}"
WORK="$(mktemp -d /tmp/mtun-compose.XXXXXX)"
DC=(docker-compose -p "$PROJECT" -f "$REPO/docker-compose.yml" --project-directory "$REPO")
STARTED_DOCKERD=""
FAILED=0
T0=$(date +%s)

say() { printf '%s\n' "$*"; }
elapsed() { echo "$(( $(date +%s) - T0 )) s"; }
check() { # check <what> <0|1 ok?> <detail>
  if [ "$2" = 0 ]; then say "  ok    $1: $3"; else say "  FAIL  $1: $3"; FAILED=$((FAILED + 1)); fi
}

if [ "$(id -u)" != 0 ]; then
  say "npm run compose needs root: it starts dockerd and creates TUN devices in containers (try: sudo npm run compose)"
  exit 2
fi
for tool in docker dockerd docker-compose debootstrap; do
  command -v "$tool" >/dev/null || { say "compose: $tool is not installed (apt-get install docker.io docker-compose debootstrap)"; exit 2; }
done

# The daemons run as uid 10001 with only CAP_NET_ADMIN, so they open
# /dev/net/tun through its file mode, which docker copies from the host into
# each container. udev makes it 0666; a host without udev keeps the kernel's
# 0600, and the daemons fail with "not permitted to create TUN interface".
# For this run only, widen it; teardown restores it.
TUN_MODE_WAS=""
if [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
  TUN_MODE_WAS="$(stat -c %a /dev/net/tun)"
fi

teardown() {
  local rc=$?
  trap - EXIT INT TERM
  say ""
  say "== teardown"
  if [ -n "$TUN_MODE_WAS" ]; then
    chmod "$TUN_MODE_WAS" /dev/net/tun && say "  /dev/net/tun back to mode $TUN_MODE_WAS"
  fi
  if docker info >/dev/null 2>&1; then
    "${DC[@]}" logs --no-color >"$WORK/compose.log" 2>&1 || true
    "${DC[@]}" down --volumes --remove-orphans --timeout 5 >"$WORK/down.log" 2>&1 \
      || { say "compose: docker-compose down failed:"; tail -5 "$WORK/down.log"; rc=1; }
    if [ "${MTUN_COMPOSE_RMI:-0}" = 1 ]; then
      docker image rm mtun:dev mtun-tools:dev >/dev/null 2>&1 || true
      say "removed images mtun:dev mtun-tools:dev"
    fi
    left="$(docker ps -a -q --filter "label=com.docker.compose.project=$PROJECT"; docker network ls -q --filter "label=com.docker.compose.project=$PROJECT"; docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT")"
    if [ -z "$left" ]; then say "  ok    nothing left: no containers, networks or volumes of project $PROJECT"
    else say "compose: left behind: $left"; rc=1; fi
  fi
  if [ -n "$STARTED_DOCKERD" ]; then
    kill "$STARTED_DOCKERD" 2>/dev/null
    for _ in $(seq 1 60); do kill -0 "$STARTED_DOCKERD" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$STARTED_DOCKERD" 2>/dev/null && { kill -9 "$STARTED_DOCKERD"; say "dockerd did not stop: killed"; }
    say "stopped the dockerd this run started (log: $WORK/dockerd.log)"
  fi
  say "logs kept in $WORK; total $(elapsed)"
  [ "$FAILED" = 0 ] || rc=1
  exit "$rc"
}
trap teardown EXIT
trap 'say "interrupted"; exit 130' INT TERM

say "mtun compose — two clusters in containers joined by mtun"
sed -n '4,5p' "$0"
say ""
if [ -n "$TUN_MODE_WAS" ]; then
  chmod 0666 /dev/net/tun || { say "compose: cannot make /dev/net/tun usable by the non-root daemons (mode $TUN_MODE_WAS)"; exit 1; }
  say "note: /dev/net/tun had mode $TUN_MODE_WAS (a host without udev); 0666 for this run, as udev sets it, so the non-root daemons in the containers can open it"
fi

# --- dockerd -----------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  say "== starting dockerd (--iptables=false: container networks get no NAT; nothing here needs the internet)"
  dockerd --iptables=false --ip6tables=false >"$WORK/dockerd.log" 2>&1 &
  STARTED_DOCKERD=$!
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { tail -20 "$WORK/dockerd.log"; say "compose: dockerd did not come up"; exit 1; }
fi

# --- images ------------------------------------------------------------------
if [ "$BASE" = mtun-base:offline ]; then
  MTUN_BASE_IMAGE="$BASE" bash "$HERE/base-image.sh" || exit 1
fi
say "== building mtun:dev and mtun-tools:dev on $BASE"
tb=$(date +%s)
for target in mtun tools; do
  tag=mtun:dev; [ "$target" = tools ] && tag=mtun-tools:dev
  # --network host: the build stage's apt and npm reach their registries
  # without NAT on the default bridge.
  docker build --force-rm --network host --build-arg BASE="$BASE" --target "$target" -t "$tag" "$REPO" >"$WORK/build-$target.log" 2>&1 \
    || { tail -30 "$WORK/build-$target.log"; say "compose: docker build --target $target failed"; exit 1; }
done
say "  built in $(( $(date +%s) - tb )) s; runtime image mtun:dev $(docker image inspect -f '{{.Size}}' mtun:dev | awk '{printf "%.0f MB", $1/1e6}'), mtun-tools:dev $(docker image inspect -f '{{.Size}}' mtun-tools:dev | awk '{printf "%.0f MB", $1/1e6}')"

# --- up ----------------------------------------------------------------------
say "== docker-compose up (docker-compose.yml as shipped)"
"${DC[@]}" up -d --no-build >"$WORK/up.log" 2>&1 \
  || { cat "$WORK/up.log"; "${DC[@]}" logs --no-color --tail 30 gateway agent; say "compose: docker-compose up failed"; exit 1; }
say "  up after $(elapsed)"

id_of() { "${DC[@]}" ps -q "$1"; }
declare -A CID
for svc in client server agent gateway; do CID[$svc]="$(id_of "$svc")"; done
# docker exec on the container ids: docker-compose exec costs a Python start each time.
ex() {
  local detach=()
  if [ "$1" = -d ]; then detach=(-d); shift; fi
  local svc=$1; shift
  docker exec "${detach[@]}" "${CID[$svc]}" "$@"
}
# Waits (at most $1 s) until the client's ping reaches the server; prints the seconds it took.
wait_for_traffic() {
  local limit=$1 start=$SECONDS
  while (( SECONDS - start < limit )); do
    if ex client ping -c 1 -W 1 10.20.0.2 >/dev/null 2>&1; then echo $(( SECONDS - start )); return 0; fi
    sleep 0.5
  done
  echo "more than $limit"
  return 1
}

# The client's route may be added a moment after `up` returns.
for _ in $(seq 1 40); do ex client ip route show 10.20.0.0/24 | grep -q via && break; sleep 0.25; done
t="$(wait_for_traffic 30)" || say "  (no ping answer within 30 s of up)"

say "== traffic through the tunnel"
out="$(ex client ping -c 3 -i 0.2 -W 2 10.20.0.2 2>&1)"; rc=$?
check "ping 10.20.0.2" $rc "$(grep -o '[0-9]* received' <<<"$out"), $(grep -o 'rtt.*' <<<"$out")"
out="$(ex client ping -6 -c 3 -i 0.2 -W 2 fd00:b::2 2>&1)"; rc=$?
check "ping fd00:b::2" $rc "$(grep -o '[0-9]* received' <<<"$out"), $(grep -o 'rtt.*' <<<"$out")"

want="$(ex server sha256sum /srv/10M.bin | cut -d' ' -f1)"
out="$(ex client sh -c 'curl -sf --max-time 60 -o /tmp/10M.bin -w "%{size_download} %{speed_download}\\n" http://10.20.0.2/10M.bin && sha256sum /tmp/10M.bin' 2>&1)"; rc=$?
got="$(awk 'NR==2 {print $1}' <<<"$out")"
[ "$rc" = 0 ] && [ -n "$want" ] && [ "$got" = "$want" ] || rc=1
check "curl 10 MiB + sha256" $rc "$(head -1 <<<"$out" | awk '{printf "%d bytes at %.0f Mbit/s", $1, $2*8/1e6}'), sha256 ${got:0:16}… (server ${want:0:16}…)"

out="$(ex client iperf3 -c 10.20.0.2 -t 3 -J 2>&1)"; rc=$?
check "iperf3 TCP 3 s" $rc "$(node -e 'try{const j=JSON.parse(require("fs").readFileSync(0,"utf8"));console.log(`${(j.end.sum_received.bits_per_second/1e6).toFixed(0)} Mbit/s, ${j.end.sum_sent.retransmits} retransmits`)}catch{console.log("no result")}' <<<"$out")"

out="$(ex client sh -c 'printf "mtun-udp-echo\n" | socat -t 3 - UDP:10.20.0.2:7' 2>&1)"
[ "$out" = mtun-udp-echo ]; check "UDP echo 10.20.0.2:7" $? "got '${out}'"

ex client curl -s --max-time 3 -o /dev/null http://10.20.0.2:8080/; rc=$?
[ "$rc" != 0 ]; check "policy denies 10.20.0.2:8080" $? "curl exit $rc (not in the gateway's allow list)"

# Unsolicited: a workload in cluster B opens a connection into cluster A.
# Checked at the receiving end, not by the connection's outcome (a reply the
# gateway's policy drops would also make it fail): the client must see
# neither the UDP datagram nor the TCP SYN (no SYN-RECV socket, no accept).
ex -d client sh -c 'exec socat -u UDP-RECV:9999 OPEN:/tmp/unsolicited-udp,creat,append'
ex -d client sh -c 'exec socat -u TCP-LISTEN:8081,reuseaddr,fork OPEN:/tmp/unsolicited-tcp,creat,append'
sleep 0.5
# The UDP receiver works: a local datagram arrives (then the file is emptied).
[ "$(ex client sh -c 'printf local | socat -u - UDP:127.0.0.1:9999; sleep 0.3; cat /tmp/unsolicited-udp 2>/dev/null; : > /tmp/unsolicited-udp')" = local ]
local_ok=$?
# The gateway's inbound default-deny (#12 item 8) counts what it refuses.
inbound_drops() {
  ex gateway node -e "fetch('http://127.0.0.1:9090/metrics').then(r=>r.text()).then(t=>{let n=0;for(const l of t.split('\\n'))if(l.startsWith('mtun_tunnel_dropped_packets_total{')&&l.includes('reason=\"inbound_unsolicited\"'))n+=Number(l.split(' ').pop());console.log(n)},()=>console.log(-1))"
}
drops_before="$(inbound_drops)"
ex -d server sh -c 'curl -s --max-time 4 -o /dev/null http://10.10.0.2:8081/'
ex server sh -c 'printf unsolicited | socat -u - UDP:10.10.0.2:9999'
syn_recv=0
for _ in 1 2 3 4 5 6; do
  n="$(ex client ss -Htn state syn-recv '( sport = :8081 )' | wc -l)"
  [ "$n" -gt "$syn_recv" ] && syn_recv=$n
  sleep 0.5
done
udp_got="$(ex client sh -c 'cat /tmp/unsolicited-udp 2>/dev/null' | wc -c)"
tcp_acc="$(ex client sh -c 'ls /tmp/unsolicited-tcp 2>/dev/null' | wc -l)"
drops=$(( $(inbound_drops) - drops_before ))
[ "$local_ok" = 0 ] && [ "$syn_recv" = 0 ] && [ "$udp_got" = 0 ] && [ "$tcp_acc" = 0 ] && [ "$drops" -gt 0 ]
check "B -> A unsolicited is denied" $? "at the client: $syn_recv TCP SYN-RECV sockets, $tcp_acc accepted, $udp_got UDP bytes received (must all be 0; local receiver check exit $local_ok); gateway counted $drops inbound_unsolicited drops"

# --- flow records ------------------------------------------------------------
say "== flow records (closed flows; bytes are unique payload bytes)"
sleep 3
docker logs "${CID[agent]}" >"$WORK/agent.log" 2>&1
docker logs "${CID[gateway]}" >"$WORK/gateway.log" 2>&1
node "$HERE/flow-table.mjs" "$WORK/agent.log" "$WORK/gateway.log"; rc=$?
check "flow records at both ends" $rc "from docker logs of agent and gateway"

# --- gateway kill and restart ------------------------------------------------
gw_id="${CID[gateway]}"
restarts() { docker inspect -f '{{.RestartCount}}' "$gw_id"; }
running() { [ "$(docker inspect -f '{{.State.Running}}' "$gw_id")" = true ]; }

say "== docker-compose kill -s KILL gateway"
before="$(restarts)"
"${DC[@]}" kill -s KILL gateway >/dev/null 2>&1
for _ in $(seq 1 20); do running && break; sleep 0.5; done
if running; then
  say "  restarted by its restart policy (restart count $before -> $(restarts))"
else
  # dockerd counts `docker kill` as a manual stop and skips the restart
  # policy (moby: HasBeenManuallyStopped); start it as an operator would.
  say "  not restarted after 10 s: dockerd $(docker version -f '{{.Server.Version}}') treats docker kill as a manual stop, so restart: unless-stopped does not apply; docker-compose start gateway"
  "${DC[@]}" start gateway >/dev/null 2>&1
fi
t="$(wait_for_traffic 90)"; rc=$?
check "traffic resumes after the killed gateway starts again" $rc "ping answered $t s after the gateway started"

# A crash, which the restart policy does handle: SIGKILL to the gateway's
# process from the host (not through the Docker API).
say "== gateway crash: kill -9 of its process; the restart policy brings it back"
before="$(restarts)"
kill -9 "$(docker inspect -f '{{.State.Pid}}' "$gw_id")"
t0=$SECONDS
for _ in $(seq 1 40); do [ "$(restarts)" != "$before" ] && running && break; sleep 0.5; done
after="$(restarts)"
[ "$after" != "$before" ]; check "restart policy restarted the crashed gateway" $? "restart count $before -> $after after $(( SECONDS - t0 )) s"
t="$(wait_for_traffic 90)"; rc=$?
check "traffic resumes after the restart" $rc "ping answered $t s after the restart"
out="$(ex client sh -c 'curl -sf --max-time 30 -o /dev/null -w "%{size_download}" http://10.20.0.2/10M.bin' 2>&1)"; rc=$?
[ "$out" = 10485760 ] || rc=1
check "curl 10 MiB after restart" $rc "$out bytes"

say ""
if [ "$FAILED" = 0 ]; then say "all checks passed in $(elapsed)"; else say "$FAILED check(s) FAILED"; fi
