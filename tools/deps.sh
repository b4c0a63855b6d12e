#!/bin/sh
# Install the Debian packages the build and the tests need, if any is missing.
# `deps.sh bench` adds the benchmark peers and tools, `deps.sh size` the
# Cortex-M4 cross compiler, `deps.sh mbedtls4` cmake (to build mbedTLS 4),
# `deps.sh windows` mingw-w64, 64-bit wine and what builds cmocka from its
# Debian source package (make test-windows).
set -e
PKGS="libmbedtls-dev libjsmn-dev libcmocka-dev python3-websockets openssl tinyproxy clang libclang-rt-14-dev"
case "$1" in
bench) PKGS="$PKGS libwslay-dev libwebsockets-dev valgrind" ;;
size) PKGS="$PKGS gcc-arm-none-eabi libnewlib-arm-none-eabi libwslay-dev libwebsockets-dev" ;;
mbedtls4) PKGS="$PKGS cmake" ;;
windows) PKGS="$PKGS gcc-mingw-w64-x86-64 g++-mingw-w64-x86-64 wine wine64 cmake dpkg-dev xz-utils" ;;
esac
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends $missing
