#!/usr/bin/env bash
# Install what cellbox needs from Debian 12's packages (idempotent: asks apt
# only when something is missing).
set -euo pipefail
PKGS=(build-essential pkg-config musl-tools clang
      libuv1-dev libseccomp-dev libjansson-dev libarchive-dev libsqlite3-dev
      libhttp-parser-dev libwslay-dev libssl-dev libcap-dev
      xfsprogs iproute2 python3 python3-pytest bubblewrap runc wrk curl)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
