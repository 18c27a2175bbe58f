{
  "targets": [
    {
      "target_name": "mtun_native",
      "sources": [
        "src/native/codel.c",
        "src/native/codel-napi.c",
        "src/native/common.c",
        "src/native/dataplane.c",
        "src/native/judge.c",
        "src/native/judge-napi.c",
        "src/native/poll.c",
        "src/native/tun.c",
        "src/native/tun-offload.c",
        "src/native/udp.c",
        "src/native/quic-conn.c",
        "src/native/quic-napi.c",
        "src/native/quic-napi-config.c",
        "src/native/quic-pages.c",
        "src/native/quic-stream.c",
        "src/native/quic-tls.c"
      ],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wshadow", "-Wno-unused-parameter", "-fvisibility=hidden",
                 "<!@(sh src/native/quic-deps.sh --cflags)"],
      "libraries": ["<!@(sh src/native/quic-deps.sh --libs)", "-lm"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"]
    }
  ]
}
