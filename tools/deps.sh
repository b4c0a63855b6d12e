#!/bin/sh
# Install the Debian packages the build and the tests need, if any is missing:
# everything `make test` and `make demo` run, on a Debian 12 that has only git,
# make, gcc, libc6-dev and ca-certificates (tools/fresh-root-check.sh proves it
# in a debootstrapped root).  What each is for:
#   libmbedtls-dev libjsmn-dev   the library's dependencies
#   libcmocka-dev                the unit suites
#   g++ clang libclang-rt-14-dev the compile matrix (g++, clang, clang++) and
#                                the ASan+UBSan pass (clang's sanitizer runtime)
#   binutils                     nm in the compile matrix (gcc pulls it too)
#   python3-websockets openssl tinyproxy   the integration suites' peers
#   cmake pkgconf                the consumer builds in `make test-packaging`
#                                (pkgconf provides pkg-config)
# /usr/bin/python3 comes with python3-websockets; sh, sed, grep, awk, mkfifo,
# mktemp are in every Debian base.  `deps.sh bench` adds the benchmark peers
# and tools, `deps.sh size` the Cortex-M4 cross compiler, `deps.sh mbedtls4`
# cmake (to build mbedTLS 4), `deps.sh windows` mingw-w64, 64-bit wine and
# what builds cmocka from its Debian source package (make test-windows).
set -e
PKGS="libmbedtls-dev libjsmn-dev libcmocka-dev g++ clang libclang-rt-14-dev binutils
      python3-websockets openssl tinyproxy cmake pkgconf"
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
