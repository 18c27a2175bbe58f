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
# addon and runs as the non-root user "mtun" with file capabilities
# (CAP_NET_ADMIN only); stage "tools" holds curl, iperf3 and socat for the
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
# node-gyp needs a C toolchain and Python to build src/native (binding.gyp).
RUN apt-ensure python3 make g++
WORKDIR /app
COPY package.json package-lock.json tsconfig.json binding.gyp ./
COPY src ./src
COPY bin ./bin
# npm ci builds the addon (node-gyp rebuild) and runs tsc (postinstall);
# --omit=dev afterwards leaves only what the runtime stage copies.
RUN npm ci --no-audit --no-fund \
 && npm prune --omit=dev --no-audit --no-fund \
 && rm -rf node_modules/typescript node_modules/@typescript build/Release/obj.target build/Release/.deps

FROM base AS mtun
# iproute2 and nftables: the daemons configure their TUN, routes and MSS
# clamping; libcap2-bin to give those programs CAP_NET_ADMIN as file
# capabilities, so the daemon runs as a non-root user.
RUN apt-ensure iproute2 nftables ca-certificates libcap2-bin \
 && setcap cap_net_admin+ep "$(readlink -f "$(command -v node)")" \
 && setcap cap_net_admin+ep "$(readlink -f "$(command -v ip)")" \
 && setcap cap_net_admin+ep "$(readlink -f "$(command -v nft)")" \
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
ENTRYPOINT ["node", "/app/bin/mtun.js"]
CMD ["--help"]

FROM base AS tools
# Programs for the demo's client and server containers.
RUN apt-ensure curl iperf3 iproute2 iputils-ping socat busybox ca-certificates
CMD ["sleep", "infinity"]
