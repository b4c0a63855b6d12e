#!/bin/sh
# make test-packaging: build tests/consumer the four ways a user would and run
# it (it checks PROTOCOL.md §7's JWT known answers):
#   1. CMake, add_subdirectory() of this checkout
#   2. CMake, find_package() after `make install DESTDIR=... PREFIX=/usr/local`
#   3. CMake, find_package() after `cmake --install --prefix ...` of CMakeLists.txt
#   4. $CC with `pkg-config --cflags --libs stream_ws` on the staged install of 2
#   5. the ESP-IDF component, structurally (no ESP-IDF here): CMakeLists.txt
#      through imitations of IDF's two passes (tests/consumer/esp-idf-mock/),
#      Kconfig's symbols against the CMake file's, the manifest's version
# Everything lands under $1 (default build)/packaging; CC and SAN (sanitizer
# flags) come from make so the ASan pass builds the consumers with them too.
set -eu
BUILD=${1:-build}
CC=${CC:-cc}
SAN=${SAN:-}
REPO=$(pwd)
OUT=$REPO/$BUILD/packaging
rm -rf "$OUT"
mkdir -p "$OUT"
VERSION=$(sed -n 's/^#define STWS_VERSION_STRING "\(.*\)"/\1/p' stream_ws.h)
log=$OUT/log
fail() { echo "test-packaging: $1 FAILED"; tail -n 40 "$log"; exit 1; }

cmake_consumer() {   # cmake_consumer NAME ARGS...: configure, build, run tests/consumer
    name=$1; shift
    cmake -S tests/consumer -B "$OUT/$name" -DCMAKE_C_COMPILER="$CC" -DCMAKE_C_FLAGS="$SAN" \
        -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DSTWS_EXPECT_VERSION="$VERSION" "$@" >>"$log" 2>&1 &&
    cmake --build "$OUT/$name" >>"$log" 2>&1 &&
    "$OUT/$name/consumer" >>"$log" 2>&1 || fail "$name"
}

: >"$log"
# 1. add_subdirectory
cmake_consumer subdirectory -DSTWS_CONSUMER=subdirectory -DSTWS_SOURCE_DIR="$REPO"

# 2. make install into a staging root, then find_package from it
STAGE=$OUT/stage
make -s install DESTDIR="$STAGE" PREFIX=/usr/local >>"$log" 2>&1 || fail "make install DESTDIR"
for f in include/stream_ws.h include/stream_ws_test.h lib/pkgconfig/stream_ws.pc lib/cmake/stream_ws/stream_wsConfig.cmake \
         lib/cmake/stream_ws/stream_wsConfigVersion.cmake lib/cmake/stream_ws/stream_wsDependencies.cmake; do
    [ -f "$STAGE/usr/local/$f" ] || { echo "make install: no $f" >>"$log"; fail "make install DESTDIR"; }
done
# The .pc names the real prefix, never the staging directory.
grep -qx 'prefix=/usr/local' "$STAGE/usr/local/lib/pkgconfig/stream_ws.pc" ||
    { cat "$STAGE/usr/local/lib/pkgconfig/stream_ws.pc" >>"$log"; fail "stream_ws.pc prefix"; }
cmake_consumer find-make-install -DSTWS_CONSUMER=package -DCMAKE_PREFIX_PATH="$STAGE/usr/local" \
    -DSTWS_EXPECT_DIR="$STAGE/usr/local/lib/cmake/stream_ws"

# 3. the CMake project's own install, then find_package from it
cmake -S . -B "$OUT/self" >>"$log" 2>&1 && cmake --install "$OUT/self" --prefix "$OUT/cmake-prefix" >>"$log" 2>&1 ||
    fail "cmake --install"
cfgdir=$(dirname "$(find "$OUT/cmake-prefix" -name stream_wsConfig.cmake)")
cmake_consumer find-cmake-install -DSTWS_CONSUMER=package -DCMAKE_PREFIX_PATH="$OUT/cmake-prefix" \
    -DSTWS_EXPECT_DIR="$cfgdir"
grep -qx "prefix=$OUT/cmake-prefix" "$(find "$OUT/cmake-prefix" -name stream_ws.pc)" ||
    { cat "$(find "$OUT/cmake-prefix" -name stream_ws.pc)" >>"$log"; fail "cmake --install stream_ws.pc prefix"; }

# 4. pkg-config on the staged install (SYSROOT maps /usr/local to the stage)
export PKG_CONFIG_PATH="$STAGE/usr/local/lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$STAGE"
[ "$(pkg-config --modversion stream_ws)" = "$VERSION" ] || fail "pkg-config --modversion"
flags=$(pkg-config --cflags --libs stream_ws)
echo "pkg-config --cflags --libs stream_ws: $flags" >>"$log"
# shellcheck disable=SC2086
$CC -std=c99 -Wall -Wextra -Werror $SAN -o "$OUT/pkg-config-consumer" tests/consumer/main.c $flags >>"$log" 2>&1 &&
    "$OUT/pkg-config-consumer" >>"$log" 2>&1 || fail "pkg-config consumer"

# 5. ESP-IDF component structure
cmake -DCOMPONENT_DIR="$REPO" -P tests/consumer/esp-idf-mock/early.cmake >>"$log" 2>&1 ||
    fail "esp-idf early expansion"
for off in OFF ON; do
    cmake -S tests/consumer/esp-idf-mock -B "$OUT/esp-idf-mock-$off" -DCOMPONENT_DIR="$REPO" \
        -DALL_OFF=$off >>"$log" 2>&1 || fail "esp-idf mock (options off: $off)"
done
used=$(grep -o 'CONFIG_STWS_[A-Z_]*' CMakeLists.txt | sed 's/^CONFIG_//' | sort -u)
declared=$(sed -n 's/^ *config \(STWS_[A-Z_]*\)$/\1/p' Kconfig | sort -u)
[ "$used" = "$declared" ] ||
    { printf 'CMakeLists.txt uses:\n%s\nKconfig declares:\n%s\n' "$used" "$declared" >>"$log"; fail "Kconfig symbols"; }
[ "$(sed -n 's/^version: *"\(.*\)"$/\1/p' idf_component.yml)" = "$VERSION" ] ||
    { echo "idf_component.yml's version is not the header's $VERSION" >>"$log"; fail "idf_component.yml version"; }

echo "test-packaging: add_subdirectory, find_package (make install DESTDIR, cmake --install), pkg-config, ESP-IDF structure: ok"
