#!/bin/sh
# Micro benchmark (bench/bench_micro.c): JWT mint, reading an event as the
# client does, jsmn alone for reference, the JSON writer.  One Markdown table:
# ns per call (medians of alternating runs) and, when valgrind is installed,
# instructions per call from callgrind (repeatable on a loaded machine).
#   BUILD=build  ROUNDS=9  CG_CALLS=2000
set -e
BUILD=${BUILD:-build}
ROUNDS=${ROUNDS:-9}
CG_CALLS=${CG_CALLS:-2000}
CC=${CC:-cc}
out="$BUILD/bench/codec"   # shares the codec benchmark's directory
mkdir -p "$out"

$CC -std=c99 -Wall -Wextra -Werror -O2 -g -I. -o "$out/bench_micro" bench/bench_micro.c \
    -lmbedtls -lmbedx509 -lmbedcrypto

counts="$out/micro-counts.txt"
: > "$counts"
if command -v valgrind >/dev/null 2>&1; then
    for key in $("$out/bench_micro" keys); do
        # Above a threshold glibc's memcpy/memset use `rep movsb/stosb`, which
        # callgrind counts once per byte: keep them on vector loops here.
        GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=2147483647:glibc.cpu.x86_rep_stosb_threshold=2147483647 \
        valgrind --tool=callgrind --callgrind-out-file=/dev/null \
            --toggle-collect='bench_measured*' \
            "$out/bench_micro" count "$key" "$CG_CALLS" \
            > "$out/cg-micro-$key.out" 2> "$out/cg-micro-$key.err" || { cat "$out/cg-micro-$key.err" >&2; exit 1; }
        ins=$(sed -n 's/.*Collected : *\([0-9][0-9]*\).*/\1/p' "$out/cg-micro-$key.err")
        calls=$(awk '{print $2}' "$out/cg-micro-$key.out")
        if [ -n "$ins" ] && [ -n "$calls" ]; then echo "$key $ins $calls" >> "$counts"; fi
    done
fi

echo "## Micro"
echo
"$out/bench_micro" "$ROUNDS" "$counts"
if [ ! -s "$counts" ]; then echo; echo "(valgrind not installed: no instruction counts)"; fi
