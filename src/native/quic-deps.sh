#!/bin/sh
# Prints compiler (--cflags) or linker (--libs) flags for the QUIC engine
# (ngtcp2 0.12 + GnuTLS), or fails with the Debian packages to install.
# Called by binding.gyp during `npm install` / node-gyp rebuild.
set -u
MODS="libngtcp2 libngtcp2_crypto_gnutls gnutls"
if ! command -v pkg-config >/dev/null 2>&1; then
  echo "mtun: pkg-config not found. Install it and the QUIC engine libraries: apt-get install pkg-config libngtcp2-dev libngtcp2-crypto-gnutls-dev libgnutls28-dev" >&2
  exit 1
fi
for m in $MODS; do
  if ! pkg-config --exists "$m"; then
    case $m in
      libngtcp2) pkg=libngtcp2-dev ;;
      libngtcp2_crypto_gnutls) pkg=libngtcp2-crypto-gnutls-dev ;;
      gnutls) pkg=libgnutls28-dev ;;
    esac
    echo "mtun: the QUIC engine needs $m (Debian package $pkg). Install: apt-get install libngtcp2-dev libngtcp2-crypto-gnutls-dev libgnutls28-dev" >&2
    exit 1
  fi
done
exec pkg-config "$1" $MODS
