#!/usr/bin/env bash
# Installs entrowatch's build and test dependencies from Debian's packages.
# Idempotent and quiet when everything is present. Usage: setup-deps.sh [build|test]
set -euo pipefail
what=${1:-build}
pkgs=(cmake make g++ pkg-config
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
      prometheus-cpp-dev libcivetweb-dev libspdlog-dev libyaml-cpp-dev libhwy-dev libsqlite3-dev
      libcurl4-openssl-dev nlohmann-json3-dev libcli11-dev libgtest-dev libgmock-dev libbenchmark-dev
      curl libjs-dygraphs)
if [ "$what" = test ]; then
  pkgs+=(prometheus prometheus-alertmanager python3-grpcio python3-protobuf python3-pytest
         python3-venv python3-setuptools python3-numpy python3-torch yamllint clang libclang-rt-14-dev chromium)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "setup-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
