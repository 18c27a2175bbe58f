#!/usr/bin/env bash
# engine-proto: a throw-away CA, a server certificate for "localhost" and a
# client certificate whose only identity is a SPIFFE URI SAN, into DIR.
set -euo pipefail
dir=${1:?usage: gen-certs.sh DIR}
cd "$dir"
ossl() { openssl "$@" 2>/dev/null; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=engine-proto-ca -keyout ca.key -out ca.pem \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
leaf() { # name subject san eku
  ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr"
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\nkeyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n' "$3" "$4" >"$1.ext"
  ossl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile "$1.ext" -out "$1.pem"
}
leaf server /CN=localhost DNS:localhost,IP:127.0.0.1 serverAuth
leaf client /O=engine-proto URI:spiffe://mtun.test/agent/a1 clientAuth
