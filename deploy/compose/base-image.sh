#!/usr/bin/env bash
# Builds the offline base image mtun-base:offline (no image registry needed):
#   1. debootstrap --variant=minbase bookworm from the Debian mirror this
#      machine's apt uses (read from the apt sources at run time);
#   2. the host's Node 20 (binary, npm, headers for node-gyp) copied in;
#   3. tar | docker import.
# Builds only if the image is missing (MTUN_BASE_REBUILD=1 forces it).
# Needs root, debootstrap and a running dockerd.
set -euo pipefail

IMAGE="${MTUN_BASE_IMAGE:-mtun-base:offline}"
SUITE=bookworm
# Runtime programs the daemons and the demo workloads use, from the mirror.
INCLUDE=ca-certificates,iproute2,nftables,iputils-ping,curl,iperf3,socat,busybox,procps

if [ "${MTUN_BASE_REBUILD:-0}" != 1 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "base image $IMAGE present"
  exit 0
fi

# The first deb.debian.org-style URI for the main archive in the apt sources
# (deb822 .sources files or one-line sources.list), never a hard-coded host.
mirror_from_apt() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' "$f"
  done
  if [ -f /etc/apt/sources.list ]; then
    awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\// && $i !~ /security/) { print $i; exit } }' /etc/apt/sources.list
  fi
}
MIRROR="${MTUN_DEBIAN_MIRROR:-$(mirror_from_apt | head -1)}"
[ -n "$MIRROR" ] || { echo "base-image: no Debian mirror found in /etc/apt/sources.list*" >&2; exit 1; }

NODE="$(command -v node)" || { echo "base-image: node not on PATH" >&2; exit 1; }
NODE_MAJOR="$("$NODE" -p 'process.versions.node.split(".")[0]')"
[ "$NODE_MAJOR" -ge 20 ] || { echo "base-image: host node is $("$NODE" -v), need >= 20" >&2; exit 1; }
NODE_PREFIX="$(cd "$(dirname "$(readlink -f "$NODE")")/.." && pwd)"

ROOTFS="$(mktemp -d /tmp/mtun-base.XXXXXX)"
trap 'rm -rf --one-file-system "$ROOTFS"' EXIT

echo "base-image: debootstrap $SUITE from $MIRROR (takes a few minutes)"
started=$(date +%s)
debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 \
  || { tail -30 "$ROOTFS.log" >&2; echo "base-image: debootstrap failed (log $ROOTFS.log)" >&2; exit 1; }
rm -f "$ROOTFS.log"

echo "base-image: adding node $("$NODE" -v) from $NODE_PREFIX"
install -m 0755 "$(readlink -f "$NODE")" "$ROOTFS/usr/bin/node"
# npm (for the build stage) and the headers node-gyp needs without a download.
if [ -d "$NODE_PREFIX/lib/node_modules/npm" ]; then
  mkdir -p "$ROOTFS/usr/lib/node_modules"
  cp -a "$NODE_PREFIX/lib/node_modules/npm" "$ROOTFS/usr/lib/node_modules/"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$ROOTFS/usr/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$ROOTFS/usr/bin/npx"
fi
[ -d "$NODE_PREFIX/include/node" ] && cp -a "$NODE_PREFIX/include/node" "$ROOTFS/usr/include/"
# The host's trust store (Debian's CAs plus any local ones, such as a
# TLS-inspecting proxy's): the build stage's npm reaches the registry the
# way the host does. This image is built locally and never published.
if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
  mkdir -p "$ROOTFS/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
fi
# Trim what a container never uses.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
       "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/locale/*

tar --numeric-owner -C "$ROOTFS" -c . \
  | docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' -c 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' -c 'CMD ["/bin/bash"]' - "$IMAGE" >/dev/null
echo "base-image: $IMAGE built in $(( $(date +%s) - started )) s, $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
