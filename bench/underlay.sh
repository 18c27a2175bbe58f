# The two-namespace underlay shared by bench/run.sh, bench/inspect-cost.sh and bench/mtun-sessions.sh
# (sourced): namespaces $NSA and $NSB, rp_filter off, joined by the veth pair
# ${P}a0 ($UA/24) — ${P}b0 ($UB/24), MTU 1500. The caller removes them
# with remove_netns.
make_underlay() {
  local n
  for n in "$NSA" "$NSB"; do
    ip netns add "$n"
    ip netns exec "$n" ip link set lo up
    ip netns exec "$n" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  done
  ip link add "${P}a0" netns "$NSA" type veth peer name "${P}b0" netns "$NSB"
  ip netns exec "$NSA" ip addr add "$UA/24" dev "${P}a0"
  ip netns exec "$NSB" ip addr add "$UB/24" dev "${P}b0"
  ip netns exec "$NSA" ip link set "${P}a0" mtu 1500 up
  ip netns exec "$NSB" ip link set "${P}b0" mtu 1500 up
}

# Kills what runs in each named namespace and deletes it; absent ones are skipped (for cleanup traps).
remove_netns() {
  local n
  for n in "$@"; do
    ip netns pids "$n" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$n" 2>/dev/null || true
  done
}
