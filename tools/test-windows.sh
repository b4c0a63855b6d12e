#!/bin/sh
# make test-windows: the header built for Windows with mingw-w64 against
# mbedTLS 3.6.6; the unit suites, then examples/echo_client.c and
# examples/stream_events.c against Python peers on loopback
# (tests/integration/windows_echo.py), run under wine.
#
#   MBEDTLS3_TARBALL  mbedTLS 3.6.6 source (default ../shared/deps/...); when
#                      it is absent the target is skipped with a message
#   BUILD              build directory (default build); all of this goes to
#                      $BUILD/win, and mbedTLS, cmocka and the wine prefix stay
#                      there between runs
#
# cmocka: Debian ships no mingw build of it, so its Debian source package, the
# version of the installed libcmocka-dev (apt-get source, with a private
# package list under $BUILD/win/cmocka/apt so the system's sources are not
# touched; apt checks it against the signed archive), is built with its own
# CMake for x86_64-w64-mingw32.  The suites run on the same cmocka as on Linux.
set -e
cd "$(dirname "$0")/.."
TARBALL=${MBEDTLS3_TARBALL:-../shared/deps/mbedtls-3.6.6-src.tar.gz}
W=${BUILD:-build}/win
PYTHON=${PYTHON:-/usr/bin/python3}
if [ ! -f "$TARBALL" ]; then
    echo "test-windows: skipped: no mbedTLS 3.6.6 source at $TARBALL (set MBEDTLS3_TARBALL)"
    exit 0
fi
sh tools/deps.sh windows
CC=x86_64-w64-mingw32-gcc
CXX=x86_64-w64-mingw32-g++
AR=x86_64-w64-mingw32-ar
mkdir -p "$W"
W=$(cd "$W" && pwd)

# ---- mbedTLS 3.6.6, static, for Windows (its own Makefile; about 30 s once)
M=$W/mbedtls-3.6.6
if [ ! -f "$M/library/libmbedcrypto.a" ] || [ ! -f "$M/library/libmbedtls.a" ]; then
    echo "test-windows: building mbedTLS 3.6.6 with $CC"
    rm -rf "$M"
    tar xzf "$TARBALL" -C "$W"
    nice make -s -C "$M" -j2 lib CC=$CC AR=$AR WINDOWS_BUILD=1 > "$W/mbedtls-build.log" 2>&1 ||
        { tail -n 30 "$W/mbedtls-build.log"; echo "test-windows: mbedTLS build failed"; exit 1; }
fi

# ---- cmocka from Debian's source package, static, for Windows
C=$W/cmocka
if [ ! -f "$C/build/src/libcmocka-static.a" ]; then
    v=$(dpkg-query -W -f='${source:Version}' libcmocka-dev)
    echo "test-windows: fetching Debian's cmocka $v source and building it with $CC"
    rm -rf "$C"
    mkdir -p "$C/apt/lists/partial" "$C/apt/cache/archives/partial" "$C/apt/sources" "$C/src"
    cat > "$C/apt/sources/deb-src.sources" <<EOF
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    set -- -q -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$C/apt/sources" \
        -o Dir::State::Lists="$C/apt/lists" -o Dir::Cache="$C/apt/cache" -o Debug::NoLocking=1 \
        -o APT::Sandbox::User="$(id -un)"
    apt-get "$@" update > "$C/apt.log" 2>&1 &&
        (cd "$C/src" && apt-get "$@" source "cmocka=$v" >> "$C/apt.log" 2>&1) ||
        { tail -n 20 "$C/apt.log"; echo "test-windows: could not fetch cmocka's source package"; exit 1; }
    S=$(ls -d "$C"/src/cmocka-*/ | head -n 1)
    mkdir -p "$C/build"
    (cd "$C/build" && cmake "$S" -DCMAKE_SYSTEM_NAME=Windows -DCMAKE_C_COMPILER=$CC \
        -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS=-D__USE_MINGW_ANSI_STDIO=1 -DWITH_STATIC_LIB=ON -DWITH_EXAMPLES=OFF -DUNIT_TESTING=OFF \
        > "$C/cmake.log" 2>&1 && nice make cmocka-static >> "$C/cmake.log" 2>&1) ||
        { tail -n 30 "$C/cmake.log"; echo "test-windows: cmocka build failed"; exit 1; }
    mkdir -p "$C/include"
    cp "$S"/include/cmocka.h "$C/include/"
fi

# ---- the suites and the echo client, as C99 with the project's warnings.
# jsmn is header-only: its Debian header is the same for any target.  The
# header alone builds against msvcrt's printf; the suites print with C99's %zu,
# which only mingw's own stdio (or MSVC 2015's UCRT) knows, hence
# __USE_MINGW_ANSI_STDIO for them (and for cmocka, which does their printing).
# cmocka.h still declares its printers with the msvcrt format archetype, so the
# suites are built without -Wformat here; the Linux builds check those formats.
# And without -Wmaybe-uninitialized: cmocka's _fail() (it longjmps) is not
# declared noreturn, so code after a fail_msg() looks reachable to mingw's gcc.
mkdir -p "$W/include"
ln -sf /usr/include/jsmn.h "$W/include/jsmn.h"
CFLAGS="-std=c99 -Wall -Wextra -Werror -O2 -I. -I$M/include -I$C/include -I$W/include"
LIBS="-L$M/library -lmbedtls -lmbedx509 -lmbedcrypto -lws2_32 -lbcrypt"
echo "test-windows: building the suites with $CC"
for std in c99 c11; do
    $CC $CFLAGS -std=$std -Wpedantic -c tests/compile/impl.c -o "$W/compile-$std.o"
done
$CC $CFLAGS -Wpedantic -DSTWS_STATIC -c tests/compile/impl.c -o "$W/compile-static.o"
$CC $CFLAGS -Wpedantic -c tests/compile/decl_only.c -o "$W/compile-decl.o" # the public API alone
$CC $CFLAGS -Wpedantic -DSTWS_NO_SOCKETS -DSTWS_NO_TLS -DSTWS_NO_STDIO -DSTWS_NO_DEFAULT_RANDOM \
    -c tests/compile/impl.c -o "$W/compile-fw.o"
clang --target=x86_64-w64-mingw32 -isystem /usr/x86_64-w64-mingw32/include $CFLAGS -Wpedantic \
    -fsyntax-only tests/compile/impl.c # a second compiler on the Windows path
$CXX -std=c++11 -Wall -Wextra -Werror -Wpedantic -I. -I$M/include -I$W/include -c tests/compile/impl.cc -o "$W/compile-cxx.o"
# (.refptr.* are mingw's pointers to imported data, not symbols of ours; the
# C++ object also holds mingw's inline stdio wrappers, so only C is checked)
bad=$(x86_64-w64-mingw32-nm -g --defined-only "$W/compile-c99.o" |
      awk 'NF==3 {print $3}' | grep -v -e '^stws_' -e '^\.refptr\.' || true)
[ -z "$bad" ] || { echo "test-windows: non-stws_ symbols exported: $bad"; exit 1; }
echo "test-windows: the header compiles (gcc: C99, C11, static, declarations only, firmware set; clang: C99; g++: C++11) and exports only stws_*"
for e in echo_client stream_events; do
    $CC $CFLAGS -c examples/$e.c -o "$W/$e.o"
done
CFLAGS="$CFLAGS -D__USE_MINGW_ANSI_STDIO=1 -Wno-format -Wno-maybe-uninitialized"
$CC $CFLAGS -c tests/impl.c -o "$W/impl.o"
# Every suite but test_resolve: its never-answering DNS server lives in a
# private Linux mount and network namespace (unshare, a resolv.conf of its
# own), which Windows has no counterpart of; on Windows the resolver thread
# and its notify socket pair are exercised by windows_echo.py's host-name
# test instead.  The parts of test_conn.c (section 10) and test_proxy.c
# (the real-socket proxy) that need POSIX sockets, signals or fork() are
# #ifndef _WIN32 there.  Linked -static, so that wine needs no mingw DLL
# (winpthreads, for test_threads).  test_http is skipped too: it puts every
# input chunk against a PROT_NONE page (mmap) and forks Python's http.server;
# the HTTP layer it tests is plain C with no platform code.
SKIP="test_resolve test_http"
suites=""
for t in tests/test_*.c; do
    n=$(basename "$t" .c)
    case " $SKIP " in *" $n "*) echo "test-windows: $n skipped (POSIX-only harness, see above)"; continue ;; esac
    $CC $CFLAGS -pthread -static -o "$W/$n.exe" "$t" "$W/impl.o" "$C/build/src/libcmocka-static.a" $LIBS
    suites="$suites $n"
done
for e in echo_client stream_events; do
    $CC -static -o "$W/$e.exe" "$W/$e.o" $LIBS
done

# ---- run them under wine (64-bit, its own prefix, no GUI, no Mono/Gecko)
export WINEPREFIX="$W/wineprefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
export WINEARCH=win64
[ -d "$WINEPREFIX" ] || { echo "test-windows: making the wine prefix"; wineboot -i > "$W/wineboot.log" 2>&1 || true; }
passed=0; failed=0; failures=""
for n in $suites; do
    if wine "$W/$n.exe"; then passed=$((passed+1)); else failed=$((failed+1)); failures="$failures $n"; fi
done
if STWS_WIN_BUILD="$W" "$PYTHON" tests/integration/windows_echo.py; then
    passed=$((passed+1))
else
    failed=$((failed+1)); failures="$failures windows_echo"
fi
wineserver -k 2>/dev/null || true
[ -n "$failures" ] && echo "test-windows: failed:$failures"
echo "test-windows: $passed passed, $failed failed (mingw-w64 $($CC -dumpversion), mbedTLS 3.6.6, $(wine --version))"
[ "$failed" = 0 ]
