#!/bin/sh
# The in-memory codec benchmark (bench/bench_codec.c): stream_ws.h's codec vs
# wslay vs floors, on identical bytes from bench/workload.h.  Prints Markdown:
# timing tables (medians of alternating runs), then, when valgrind is
# installed, instructions per message from callgrind, which unlike time do
# not move with the load of the machine.
#   BUILD=build  ROUNDS=11 (timing runs per contender)  CG_EVENTS=5000
set -e
BUILD=${BUILD:-build}
ROUNDS=${ROUNDS:-11}
CG_EVENTS=${CG_EVENTS:-5000}
CC=${CC:-cc}
out="$BUILD/bench/codec"
mkdir -p "$out"
flags="-std=c99 -Wall -Wextra -Werror -O2 -g -I."
libs="-lwslay -lmbedtls -lmbedx509 -lmbedcrypto"

$CC $flags -c bench/codec_impl.c -o "$out/codec_impl.o"
$CC $flags -o "$out/bench_codec" bench/bench_codec.c "$out/codec_impl.o" $libs

echo "## Codec in memory (no sockets)"
echo
"$out/bench_codec" "$ROUNDS"

if command -v valgrind >/dev/null 2>&1; then
    counts="$out/callgrind-counts.txt"
    : > "$counts"
    for key in $("$out/bench_codec" keys); do
        # Only bench_measured (one pass after a warm-up pass) is collected.
        # Above a threshold glibc's memcpy/memset use `rep movsb/stosb`, which
        # callgrind counts once per byte: keep them on vector loops here.
        GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=2147483647:glibc.cpu.x86_rep_stosb_threshold=2147483647 \
        valgrind --tool=callgrind --callgrind-out-file=/dev/null \
            --toggle-collect='bench_measured*' \
            "$out/bench_codec" count "$key" "$CG_EVENTS" \
            > "$out/cg-$key.out" 2> "$out/cg-$key.err" || { cat "$out/cg-$key.err" >&2; exit 1; }
        ins=$(sed -n 's/.*Collected : *\([0-9][0-9]*\).*/\1/p' "$out/cg-$key.err")
        msgs=$(awk '{print $2}' "$out/cg-$key.out")
        if [ -n "$ins" ] && [ -n "$msgs" ]; then echo "$key $ins $msgs" >> "$counts"; fi
    done
    echo "Instruction counts: $CG_EVENTS events of the same mix, valgrind $(valgrind --version | sed 's/valgrind-//'), one pass after a warm-up pass; glibc's memcpy kept off \`rep movsb\` (callgrind would count it once per byte)."
    echo
    "$out/bench_codec" report "$counts"
else
    echo "(valgrind not installed: no instruction counts)"
fi
