# mtun container images (multi-stage).
#
#   docker build -t mtun:dev .                          # the daemon image (default target "mtun")
#   docker build -t mtun-tools:dev --target tools .     # client/server test tools
#
# BASE is any Debian bookworm image with Node >= 20 and npm: the public
# node:20-bookworm-slim by default, or the offline base that
# deploy/compose/base-image.sh builds without a registry (it already holds
# the runtime packages, so the install steps below skip them):
#
#   docker build --network host --build-arg BASE=mtun-base:offline -t mtun:dev .
#
# Stage "build" compiles the TypeScript and the native TUN/UDP addon;
# stage "mtun" carries only production dependencies plus dist/ and the
# addon and runs as the non-root user "mtun" with CAP_NET_ADMIN only;
# stage "tools" holds curl, iperf3 and socat for the
# demo topology.
ARG BASE=node:20-bookworm-slim

# Installs the Debian packages named in $PKGS that the base lacks (none on
# the offline base for the runtime stages), then drops the apt lists.
FROM ${BASE} AS base
RUN printf '%s\n' '#!/bin/sh' 'set -e' 'missing=""' \
      'for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done' \
      '[ -z "$missing" ] && exit 0' \
      'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing && rm -rf /var/lib/apt/lists/*' \
      > /usr/local/bin/apt-ensure && chmod 0755 /usr/local/bin/apt-ensure

FROM base AS build
# node-gyp needs a C toolchain and Python to build src/native (binding.gyp),
# and the QUIC engine ngtcp2 + GnuTLS with pkg-config (docs/decisions/0001).
RUN apt-ensure python3 make g++ pkg-config libngtcp2-dev libngtcp2-crypto-gnutls-dev libgnutls28-dev
WORKDIR /app
# Dependencies first: this layer is reused until the lockfile changes.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json binding.gyp ./
COPY src ./src
COPY bin ./bin
# The addon, with npm's own node-gyp against the Node headers in the image
# (no header download); then dist/ (tsc); then only production dependencies
# stay for the runtime stage.
RUN for d in /usr /usr/local; do [ -f "$d/include/node/node_api.h" ] && export npm_config_nodedir="$d" && break; done; \
    node "$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js" rebuild \
 && npx tsc -p tsconfig.json \
 && npm prune --omit=dev --no-audit --no-fund

FROM base AS mtun
# iproute2 and nftables: the daemons configure their TUN, routes and MSS
# clamping. The daemon runs as the non-root user "mtun" and gets only
# CAP_NET_ADMIN, as an ambient capability so that the `ip` and `nft` it runs
# inherit it (ip drops file capabilities unless CAP_NET_ADMIN is inheritable):
# mtun-netadmin is util-linux's setpriv with the file capability
# cap_net_admin+p, and the entrypoint uses it to raise CAP_NET_ADMIN into
# the inheritable and ambient sets before it execs node.
RUN apt-ensure iproute2 nftables ca-certificates libcap2-bin util-linux libngtcp2-9 libngtcp2-crypto-gnutls2 libgnutls30 \
 && install -m 0755 "$(command -v setpriv)" /usr/local/sbin/mtun-netadmin \
 && setcap cap_net_admin+p /usr/local/sbin/mtun-netadmin \
 && groupadd --system --gid 10001 mtun && useradd --system --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin mtun \
 && install -d -o 10001 -g 10001 /etc/mtun/certs
WORKDIR /app
COPY package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/build/Release/*.node ./build/Release/
COPY bin ./bin
COPY config ./config
ENV NODE_ENV=production
USER 10001:10001
# Admin endpoint (metrics, healthz, readyz, status) and the QUIC listener.
EXPOSE 9090/tcp 4433/udp
ENTRYPOINT ["/usr/local/sbin/mtun-netadmin", "--inh-caps", "+net_admin", "--ambient-caps", "+net_admin", "--", "node", "--max-semi-space-size=2", "/app/bin/mtun.js"]
CMD ["--help"]

FROM base AS tools
# Programs for the demo's client and server containers.
RUN apt-ensure curl iperf3 iproute2 iputils-ping socat busybox ca-certificates
CMD ["sleep", "infinity"]
