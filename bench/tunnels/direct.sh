#!/usr/bin/env bash
# Baseline: the bare veth, no tunnel (what the underlay carries).
source "$(dirname "$0")/common.sh"
case "$1" in
  up)
    cat >"$W/env" <<E
SRC=$UA
DST=$UB
KIND=kernel
PIDS=""
MTU=1500
VERSION="veth, kernel $(uname -r)"
E
    ;;
  down) ;;
esac
