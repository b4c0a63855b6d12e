#!/bin/sh
# `make test-mbedtls3` / `make test-mbedtls4`: the unit suites and the
# TLS-exercising integration suites against mbedTLS built from its source
# tarball.  Usage: mbedtls-src.sh 3|4 TARBALL
#   3  mbedTLS 3.6 (make), in two configs:
#        mbedtls3     3.6's own config (TLS 1.3 on: Python's ssl negotiates 1.3)
#        mbedtls3-fw  tests/mbedtls3_fw_config.h: MBEDTLS_USE_PSA_CRYPTO, TLS
#                     1.2 only (what ESP-IDF / Zephyr ship; needs psa_crypto_init)
#   4  mbedTLS 4.x (cmake; crypto in TF-PSA-Crypto), its own config: mbedtls4
# Each library is unpacked and built once under build/deps/NAME (a stamp holds
# the tarball's and the config's checksums); the suites build in build/NAME,
# statically linked.  (run_variant runs under ||, where set -e does not
# apply: each step there checks its own status.)
set -e
cd "$(dirname "$0")/.."
MAJOR=$1
TARBALL=$2
PYTHON=${PYTHON:-/usr/bin/python3}
case "$MAJOR" in 3|4) ;; *) echo "usage: $0 3|4 TARBALL" >&2; exit 2 ;; esac
if [ ! -f "$TARBALL" ]; then
    echo "test-mbedtls$MAJOR: $TARBALL not found (set MBEDTLS${MAJOR}_TARBALL)" >&2
    exit 1
fi
ROOT=$(pwd)
FWCFG="$ROOT/tests/mbedtls3_fw_config.h"

# build_lib DIR CONFIG_FILE_OR_EMPTY
build_lib() {
    dir=$1 cfg=$2
    key="src-layout-1 $(cksum < "$TARBALL") $( [ -n "$cfg" ] && cksum < "$cfg")"
    if [ -f "$dir/.stws-built" ] && [ "$(cat "$dir/.stws-built")" = "$key" ]; then
        return 0
    fi
    echo "test-mbedtls$MAJOR: building $(basename "$TARBALL") into $dir${cfg:+ with $(basename "$cfg")}"
    rm -rf "$dir"
    mkdir -p "$dir/src"
    tar xzf "$TARBALL" -C "$dir/src" --strip-components=1 || return 1
    if [ "$MAJOR" = 3 ]; then
        # the library's own CFLAGS plus the user config, like the tests get it
        nice make -s -C "$dir/src" -j2 lib \
            CFLAGS="-O2${cfg:+ -DMBEDTLS_USER_CONFIG_FILE='\"$cfg\"'}" > "$dir.log" 2>&1 ||
            { tail -n 30 "$dir.log"; echo "test-mbedtls$MAJOR: library build failed (log: $dir.log)" >&2; return 1; }
    else
        { nice cmake -S "$dir/src" -B "$dir/cmake" -DENABLE_PROGRAMS=OFF -DENABLE_TESTING=OFF \
              -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$dir/inst" -DCMAKE_INSTALL_LIBDIR=lib &&
          nice cmake --build "$dir/cmake" -j2 && cmake --install "$dir/cmake"; } > "$dir.log" 2>&1 ||
            { tail -n 30 "$dir.log"; echo "test-mbedtls$MAJOR: library build failed (log: $dir.log)" >&2; return 1; }
    fi
    echo "$key" > "$dir/.stws-built"
}

# run_variant NAME CONFIG_FILE_OR_EMPTY EXPECTED_TLS_VERSION
run_variant() {
    name=$1 cfg=$2 tlsv=$3
    lib="$ROOT/build/deps/$name"
    out="build/$name"
    build_lib "$lib" "$cfg" || return 1
    if [ "$MAJOR" = 3 ]; then
        inc="-I$lib/src/include"
        libs="$lib/src/library/libmbedtls.a $lib/src/library/libmbedx509.a $lib/src/library/libmbedcrypto.a"
    else
        inc="-I$lib/inst/include"
        libs="$lib/inst/lib/libmbedtls.a $lib/inst/lib/libmbedx509.a $lib/inst/lib/libtfpsacrypto.a"
    fi
    # the define goes through make's shell once more: keep its quotes
    def=""
    [ -n "$cfg" ] && def="-DMBEDTLS_USER_CONFIG_FILE='\"$cfg\"'"
    targets="$out/stws"
    for f in tests/test_*.c; do t=${f#tests/}; targets="$targets $out/${t%.c}"; done
    for f in examples/*.c; do t=${f#examples/}; targets="$targets $out/examples/${t%.c}"; done
    echo "test-mbedtls$MAJOR: [$name] building the tool, examples and unit suites in $out"
    # shellcheck disable=SC2086
    nice make -s BUILD="$out" CFLAGS="-O2 -g $inc $def" \
        LIBS="$libs" \
        $targets || { echo "test-mbedtls$MAJOR: [$name] build failed" >&2; return 1; }
    # the compile checks (C99 and C++11, gcc and clang, static mode) on this config
    mkdir -p "$out/compile"
    cdef=""
    [ -n "$cfg" ] && cdef="-DMBEDTLS_USER_CONFIG_FILE=\"$cfg\""
    # (and the firmware set of the Makefile's compile-check)
    for cc in gcc clang; do
        $cc -std=c99 -Wall -Wextra -Werror -Wpedantic $inc ${cdef:+"$cdef"} \
            -c tests/compile/impl.c -o "$out/compile/$cc.o" &&
        $cc -std=c99 -Wall -Wextra -Werror -Wpedantic -DSTWS_STATIC $inc ${cdef:+"$cdef"} \
            -c tests/compile/impl.c -o "$out/compile/$cc-static.o" &&
        $cc -std=c99 -Wall -Wextra -Werror -Wpedantic $inc ${cdef:+"$cdef"} -DSTWS_NO_SOCKETS \
            -DSTWS_NO_TLS -DSTWS_NO_STDIO -DSTWS_NO_DEFAULT_RANDOM \
            -c tests/compile/impl.c -o "$out/compile/$cc-fw.o" ||
            { echo "test-mbedtls$MAJOR: [$name] compile check failed ($cc)" >&2; return 1; }
    done
    for cxx in g++ clang++; do
        $cxx -std=c++11 -Wall -Wextra -Werror $inc ${cdef:+"$cdef"} \
            -c tests/compile/impl.cc -o "$out/compile/$cxx.o" ||
            { echo "test-mbedtls$MAJOR: [$name] compile check failed ($cxx)" >&2; return 1; }
    done
    echo "test-mbedtls$MAJOR: [$name] compile checks (gcc, clang, g++, clang++; static, firmware set): ok"
    passed=0 failed=0 failures=""
    for t in "$out"/test_*; do
        [ -x "$t" ] || continue
        if "$t" > "$t.log" 2>&1; then passed=$((passed+1));
        else cat "$t.log"; failed=$((failed+1)); failures="$failures $(basename "$t")"; fi
    done
    # the suites that run TLS: wss:// through the tool (test_stws.py, which
    # also checks the negotiated version) and the TLS custom-transport example
    for t in tests/integration/test_stws.py tests/integration/test_listen.py; do
        if STWS_BUILD="$out" STWS_EXPECT_TLS="$tlsv" "$PYTHON" "$t" > "$out/$(basename "$t").log" 2>&1; then
            passed=$((passed+1))
        else
            tail -n 60 "$out/$(basename "$t").log"; failed=$((failed+1)); failures="$failures $(basename "$t")"
        fi
    done
    echo "test-mbedtls$MAJOR: [$name] suites: $passed passed, $failed failed${failures:+ (failed:$failures)}"
    [ "$failed" = 0 ]
}

status=0
if [ "$MAJOR" = 3 ]; then
    run_variant mbedtls3 "" TLSv1.3 || status=1
    run_variant mbedtls3-fw "$FWCFG" TLSv1.2 || status=1
else
    run_variant mbedtls4 "" TLSv1.3 || status=1
fi
exit $status
