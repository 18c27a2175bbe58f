{
  "targets": [
    {
      "target_name": "mtun_native",
      "sources": [
        "src/native/common.c",
        "src/native/poll.c",
        "src/native/tun.c",
        "src/native/tun-offload.c",
        "src/native/udp.c"
      ],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wshadow", "-Wno-unused-parameter", "-fvisibility=hidden"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"]
    }
  ]
}
