# mtun container images (multi-stage).
#
#   docker build -t mtun:dev .                  # the daemon image (default target "mtun")
#   docker build -t mtun-tools:dev --target tools .   # client/server test tools
#
# Stage "build" compiles the TypeScript and the native TUN/UDP addon;
# stage "mtun" carries only production dependencies plus dist/ and the
# addon; stage "tools" holds curl, iperf3 and socat for the demo topology.

FROM node:20-bookworm-slim AS build
# node-gyp needs a C toolchain and Python to build src/native (binding.gyp).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json tsconfig.json binding.gyp ./
COPY src ./src
COPY bin ./bin
# npm ci builds the addon (node-gyp rebuild) and runs tsc (postinstall).
RUN npm ci --no-audit --no-fund

FROM node:20-bookworm-slim AS mtun
# iproute2 and nftables: the daemons configure their TUN, routes and MSS clamping.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 nftables ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only; scripts are skipped (dist/ and the addon come from "build").
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund
COPY --from=build /app/dist ./dist
COPY --from=build /app/build/Release ./build/Release
COPY bin ./bin
COPY config ./config
COPY docs ./docs
ENV NODE_ENV=production
# Admin endpoint (metrics, healthz, readyz, status) and the QUIC listener.
EXPOSE 9090/tcp 4433/udp
ENTRYPOINT ["node", "/app/bin/mtun.js"]
CMD ["--help"]

FROM debian:bookworm-slim AS tools
# Programs for the demo's client and server containers.
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl iperf3 iproute2 iputils-ping socat busybox ca-certificates \
 && rm -rf /var/lib/apt/lists/*
CMD ["sleep", "infinity"]
