#!/bin/sh
# `make test-mbedtls3`: the unit suites and the TLS-exercising integration
# suites against mbedTLS 3.6 built from its source tarball, in two configs:
#   default  3.6's own config (TLS 1.3 on: Python's ssl negotiates 1.3)
#   fw       tests/mbedtls3_fw_config.h: MBEDTLS_USE_PSA_CRYPTO, TLS 1.2 only
#            (what ESP-IDF / Zephyr ship; needs psa_crypto_init)
# Each library is unpacked and built once under build/deps/ (a stamp holds the
# tarball's and the config's checksums); the suites build in build/mbedtls3
# and build/mbedtls3-fw, statically linked.  Usage: mbedtls3.sh TARBALL
set -e
cd "$(dirname "$0")/.."
TARBALL=${1:-../shared/deps/mbedtls-3.6.6-src.tar.gz}
PYTHON=${PYTHON:-/usr/bin/python3}
if [ ! -f "$TARBALL" ]; then
    echo "test-mbedtls3: $TARBALL not found (set MBEDTLS3_TARBALL)" >&2
    exit 1
fi
ROOT=$(pwd)
FWCFG="$ROOT/tests/mbedtls3_fw_config.h"

# build_lib DIR CONFIG_FILE_OR_EMPTY
build_lib() {
    dir=$1 cfg=$2
    key="$(cksum < "$TARBALL") $( [ -n "$cfg" ] && cksum < "$cfg")"
    if [ -f "$dir/.stws-built" ] && [ "$(cat "$dir/.stws-built")" = "$key" ]; then
        return 0
    fi
    echo "test-mbedtls3: building $(basename "$TARBALL") into $dir${cfg:+ with $(basename "$cfg")}"
    rm -rf "$dir"
    mkdir -p "$dir"
    tar xzf "$TARBALL" -C "$dir" --strip-components=1
    # the library's own CFLAGS plus the user config, like the tests get it
    nice make -s -C "$dir" -j2 lib \
        CFLAGS="-O2${cfg:+ -DMBEDTLS_USER_CONFIG_FILE='\"$cfg\"'}" > "$dir.log" 2>&1 ||
        { tail -n 30 "$dir.log"; echo "test-mbedtls3: library build failed (log: $dir.log)" >&2; exit 1; }
    echo "$key" > "$dir/.stws-built"
}

# run_variant NAME CONFIG_FILE_OR_EMPTY EXPECTED_TLS_VERSION
run_variant() {
    name=$1 cfg=$2 tlsv=$3
    lib="$ROOT/build/deps/$name"
    out="build/$name"
    build_lib "$lib" "$cfg"
    inc="-I$lib/include"
    # the define goes through make's shell once more: keep its quotes
    def=""
    [ -n "$cfg" ] && def="-DMBEDTLS_USER_CONFIG_FILE='\"$cfg\"'"
    targets="$out/stws"
    for f in tests/test_*.c; do t=${f#tests/}; targets="$targets $out/${t%.c}"; done
    for f in examples/*.c; do t=${f#examples/}; targets="$targets $out/examples/${t%.c}"; done
    echo "test-mbedtls3: [$name] building the tool, examples and unit suites in $out"
    # shellcheck disable=SC2086
    nice make -s BUILD="$out" CFLAGS="-O2 -g $inc $def" \
        LIBS="$lib/library/libmbedtls.a $lib/library/libmbedx509.a $lib/library/libmbedcrypto.a" \
        $targets
    # the compile checks (C99 and C++11, gcc and clang, static mode) on this config
    mkdir -p "$out/compile"
    cdef=""
    [ -n "$cfg" ] && cdef="-DMBEDTLS_USER_CONFIG_FILE=\"$cfg\""
    for cc in gcc clang; do
        $cc -std=c99 -Wall -Wextra -Werror -Wpedantic $inc ${cdef:+"$cdef"} \
            -c tests/compile/impl.c -o "$out/compile/$cc.o"
        $cc -std=c99 -Wall -Wextra -Werror -Wpedantic -DSTWS_STATIC $inc ${cdef:+"$cdef"} \
            -c tests/compile/impl.c -o "$out/compile/$cc-static.o"
    done
    for cxx in g++ clang++; do
        $cxx -std=c++11 -Wall -Wextra -Werror $inc ${cdef:+"$cdef"} \
            -c tests/compile/impl.cc -o "$out/compile/$cxx.o"
    done
    echo "test-mbedtls3: [$name] compile checks (gcc, clang, g++, clang++): ok"
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
    echo "test-mbedtls3: [$name] suites: $passed passed, $failed failed${failures:+ (failed:$failures)}"
    [ "$failed" = 0 ]
}

status=0
run_variant mbedtls3 "" TLSv1.3 || status=1
run_variant mbedtls3-fw "$FWCFG" TLSv1.2 || status=1
exit $status
