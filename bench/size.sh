#!/bin/sh
# make size: what stream_ws.h costs in flash and RAM.
#
# Cortex-M4 (arm-none-eabi-gcc -Os -mcpu=cortex-m4 -mthumb, newlib), with the
# built-in sockets and TLS compiled out (STWS_NO_SOCKETS, STWS_NO_TLS), no
# stdio logger (STWS_NO_STDIO) and no built-in random generator
# (STWS_NO_DEFAULT_RANDOM): the application supplies the transport (its
# TCP/TLS stack), a clock, a random source (its TRNG) and an allocator.
#
# The header has no switch to leave layers out, so the three configurations
# are measured by linking: one implementation object built with
# -ffunction-sections -fdata-sections, a tiny main per configuration
# (bench/size_main.c) that calls only that configuration's API, and
# `ld -r --gc-sections -e main`, which keeps only what main reaches.  Our
# size = that relocatable minus main's own object (arm-none-eabi-size,
# Berkeley: .text counts code and read-only data).  mbedTLS is left
# unresolved (Debian ships no ARM build of it): the functions we reference
# are listed instead.  A last column links a complete image against
# newlib-nano (crt0, libc, libgcc; mbedTLS replaced by empty stubs) to show
# what the C library adds.
#
# Then x86-64 -Os sizes of the whole library next to Debian's wslay and
# libwebsockets shared objects.
#
# Writes only under $BUILD/bench/size/.  Prints Markdown.
# shellcheck disable=SC2086,SC2046,SC2016,SC2012  # flag lists split on purpose
set -e
BUILD=${BUILD:-build}
OUT="$BUILD/bench/size"
HOST_CC=${HOST_CC:-gcc}
MBEDTLS_INC=${MBEDTLS_INC:-/usr/include}   # where mbedtls/ and jsmn.h live
GOAL=24576                                  # the issue: client .text < 24 KiB
LIBDIR=/usr/lib/x86_64-linux-gnu

for t in arm-none-eabi-gcc arm-none-eabi-ld arm-none-eabi-size arm-none-eabi-nm arm-none-eabi-objdump; do
    command -v "$t" >/dev/null 2>&1 || { echo "size.sh: $t not found (make size installs gcc-arm-none-eabi)" >&2; exit 1; }
done
if [ ! -f "$MBEDTLS_INC/mbedtls/version.h" ] || [ ! -f "$MBEDTLS_INC/jsmn.h" ]; then
    echo "size.sh: mbedTLS/jsmn headers not found under $MBEDTLS_INC" >&2
    exit 1
fi

rm -rf "$OUT"
mkdir -p "$OUT/inc"
# The cross compiler must not see the host's /usr/include (glibc): give it
# only the two header sets it needs.
ln -s "$MBEDTLS_INC/mbedtls" "$OUT/inc/mbedtls"
ln -s "$MBEDTLS_INC/jsmn.h" "$OUT/inc/jsmn.h"

ARCH="-mcpu=cortex-m4 -mthumb"
ARM_CFLAGS="-std=c99 -Wall -Wextra -Werror -Os $ARCH -ffunction-sections -fdata-sections"
ARM_INC="-I. -Ibench -I$OUT/inc -DMBEDTLS_CONFIG_FILE=<size_mbedtls_config.h>"
FW_DEFS="-DSTWS_NO_SOCKETS -DSTWS_NO_TLS -DSTWS_NO_STDIO"
# The macro that drops the default CTR-DRBG, if the header has it (older
# headers do not): a firmware build gives its TRNG as the random hook.  The
# rows then also show what keeping the generator costs.
NORANDOM=""
grep -q 'STWS_NO_DEFAULT_RANDOM' stream_ws.h && NORANDOM="-DSTWS_NO_DEFAULT_RANDOM"
FW_DEFS="$FW_DEFS $NORANDOM"

# berkeley FILE -> "text data bss"
berkeley() { "$1" "$2" | awk 'NR == 2 { print $1, $2, $3 }'; }
kib() { awk -v b="$1" 'BEGIN { printf "%.1f KiB", b / 1024 }'; }

# impl NAME EXTRA_DEFS: the implementation object for the firmware build
impl() {
    arm-none-eabi-gcc $ARM_CFLAGS $ARM_INC $FW_DEFS $2 -DSTREAM_WS_IMPLEMENTATION \
        -x c -c stream_ws.h -o "$OUT/$1.o"
}
# link N IMPL: configuration N against an implementation object; prints
# "text data bss" of our part
link() {
    [ -f "$OUT/main$1.o" ] ||
        arm-none-eabi-gcc $ARM_CFLAGS $ARM_INC -DSIZE_CONFIG="$1" -c bench/size_main.c -o "$OUT/main$1.o"
    arm-none-eabi-ld -r --gc-sections -e main -o "$OUT/cfg$1-$2.o" "$OUT/main$1.o" "$OUT/$2.o"
    set -- $(berkeley arm-none-eabi-size "$OUT/cfg$1-$2.o") $(berkeley arm-none-eabi-size "$OUT/main$1.o")
    echo $(($1 - $4)) $(($2 - $5)) $(($3 - $6))
}
# refs N IMPL: external functions configuration N really calls (undefined
# symbols that some kept relocation names; ld -r keeps every undefined
# symbol of the input in the symbol table, used or not)
refs() {
    arm-none-eabi-objdump -r "$OUT/cfg$1-$2.o" |
        awk 'NF == 3 && $1 ~ /^[0-9a-f]+$/ { sub(/[+-]0x.*/, "", $3); print $3 }' | sort -u > "$OUT/relocs$1"
    arm-none-eabi-nm -u "$OUT/cfg$1-$2.o" | awk '{ print $NF }' | sort -u | comm -12 - "$OUT/relocs$1"
}
# image N IMPL: .text of a complete newlib-nano image with mbedTLS stubbed
image() {
    refs "$1" "$2" | grep '^mbedtls_' |
        awk '{ printf "int %s(void);\nint %s(void) { return -1; }\n", $1, $1 }' > "$OUT/stubs$1.c"
    arm-none-eabi-gcc -std=c99 -Wall -Wextra -Werror -Os $ARCH -ffunction-sections \
        -c "$OUT/stubs$1.c" -o "$OUT/stubs$1.o"
    arm-none-eabi-gcc $ARCH --specs=nano.specs --specs=nosys.specs -Wl,--gc-sections \
        -Wl,-Map="$OUT/image$1-$2.map" -o "$OUT/image$1-$2.elf" \
        "$OUT/main$1.o" "$OUT/$2.o" "$OUT/stubs$1.o" > "$OUT/image$1-$2.log" 2>&1 ||
        { cat "$OUT/image$1-$2.log" >&2; exit 1; }
    berkeley arm-none-eabi-size "$OUT/image$1-$2.elf" | awk '{ print $1 }'
}

impl fw ""
impl fw_ndebug "-DNDEBUG"
[ -n "$NORANDOM" ] && impl fw_random "-USTWS_NO_DEFAULT_RANDOM"

gccv=$(arm-none-eabi-gcc -dumpversion)
mbedv=$(awk '/define MBEDTLS_VERSION_STRING /{ gsub(/"/, "", $3); print $3 }' "$MBEDTLS_INC/mbedtls/version.h")
echo "## Firmware size: Cortex-M4"
echo
echo "arm-none-eabi-gcc $gccv \`-Os -mcpu=cortex-m4 -mthumb -ffunction-sections -fdata-sections\`, newlib;"
echo "\`$(echo $FW_DEFS | sed 's/-D//g')\`; the application gives the transport, clock, random hook"
echo "and allocator (bench/size_main.c).  **Our code only**: \`ld -r --gc-sections\` from a main that calls"
echo "just that configuration's API, minus the main; \`.text\` includes read-only data.  mbedTLS $mbedv is"
echo "not included (no ARM build in Debian; headers with bench/size_mbedtls_config.h)."
echo
echo "| Configuration | .text | .data | .bss | image with newlib-nano¹ |"
echo "|---|---:|---:|---:|---:|"
row() { # label cfg impl
    sizes=$(link "$2" "$3")
    img=$(image "$2" "$3")
    set -- "$1" $sizes
    printf '| %s | %s B (%s) | %s | %s | %s B |\n' "$1" "$2" "$(kib "$2")" "$3" "$4" "$img"
}
row "(1) codec alone" 1 fw
row "(2) codec + handshake + connection" 2 fw
row "(3) whole Stream client (+ JSON reader and writer, JWT)" 3 fw
row "(3) with -DNDEBUG" 3 fw_ndebug
[ -n "$NORANDOM" ] && row "(3) keeping the default CTR-DRBG (no STWS_NO_DEFAULT_RANDOM)" 3 fw_random
set -- $(berkeley arm-none-eabi-size "$OUT/fw.o")
printf '| every function, no gc (the whole object) | %s B (%s) | %s | %s | — |\n' "$1" "$(kib "$1")" "$2" "$3"
echo
echo "¹ A complete linked image (\`--specs=nano.specs --specs=nosys.specs -Wl,--gc-sections\`): our code,"
echo "crt0, newlib-nano, libgcc and empty mbedTLS stubs.  The difference is mostly newlib's printf family"
echo "and stdio (snprintf/vsnprintf for error details; assert's message pulls in FILE output, hence the"
echo "NDEBUG row), string functions and libgcc's 64-bit division; most firmware links these anyway."
echo
set -- $(link 3 fw)
if [ "$1" -lt "$GOAL" ]; then
    echo "Goal (issue): whole client \`.text\` under 24 KiB ($GOAL B): **met**, $1 B ($((GOAL - $1)) B to spare)."
else
    echo "Goal (issue): whole client \`.text\` under 24 KiB ($GOAL B): **not met**, $1 B ($(($1 - GOAL)) B over)."
fi
echo
arm-none-eabi-nm -S --size-sort "$OUT/cfg3-fw.o" | grep -v ' main$' | tail -n 8 | sort -k2 -r > "$OUT/largest"
first=1
while read -r _ sz _ name; do
    [ $first = 1 ] || printf ', '
    note=""
    case "$name" in CSWTCH*) note=" (a switch turned into a lookup table)" ;; esac
    printf '`%s`%s %d B' "$name" "$note" "$((0x$sz))"
    first=0
done < "$OUT/largest" > "$OUT/largest.md"
echo "Largest functions and tables in (3): $(cat "$OUT/largest.md")."
echo
echo "mbedTLS functions referenced (what the application's mbedTLS build must provide):"
echo
echo "| mbedTLS function | module | (1) codec | (2) conn | (3) client |"
echo "|---|---|:-:|:-:|:-:|"
for n in 1 2 3; do refs "$n" fw > "$OUT/refs$n"; done
cat "$OUT/refs1" "$OUT/refs2" "$OUT/refs3" | grep '^mbedtls_' | sort -u | while read -r f; do
    case "$f" in
    mbedtls_sha1*) m="sha1.c (Sec-WebSocket-Accept)" ;;
    mbedtls_base64*) m="base64.c (key, accept, JWT)" ;;
    mbedtls_md_*) m="md.c + sha256.c (JWT HMAC-SHA256)" ;;
    mbedtls_ctr_drbg*) m="ctr_drbg.c + aes.c (default random)" ;;
    mbedtls_entropy*) m="entropy.c (default random)" ;;
    mbedtls_platform_zeroize) m="platform_util.c" ;;
    *) m="" ;;
    esac
    c1=""; c2=""; c3=""
    grep -qx "$f" "$OUT/refs1" && c1="x"
    grep -qx "$f" "$OUT/refs2" && c2="x"
    grep -qx "$f" "$OUT/refs3" && c3="x"
    echo "| \`$f\` | $m | $c1 | $c2 | $c3 |"
done
echo
if [ -n "$NORANDOM" ]; then
    echo "Without STWS_NO_DEFAULT_RANDOM the CTR-DRBG and entropy functions stay referenced even when a"
    echo "random hook is given (the default generator is chosen at run time), so the firmware's mbedTLS"
    echo "would need ctr_drbg.c, aes.c and entropy.c (with a hardware entropy source); (3) then also"
    echo "references $(refs 3 fw_random | grep -E '^mbedtls_(ctr_drbg|entropy)' | tr '\n' ' ' | sed 's/ $//; s/ /, /g')."
else
    echo "The CTR-DRBG and entropy functions stay referenced even when a random hook is given (the default"
    echo "generator is chosen at run time), so the firmware's mbedTLS must include ctr_drbg.c, aes.c and"
    echo "entropy.c (with a hardware entropy source) anyway."
fi
echo
for n in 1 2 3; do
    printf 'C library, (%s): %s.\n' "$n" "$(grep -v '^mbedtls_' "$OUT/refs$n" | tr '\n' ' ' | sed 's/ $//; s/ /, /g')"
done
echo

# ---- x86-64 ----------------------------------------------------------------
HOST_FLAGS="-std=c99 -Wall -Wextra -Werror -Os -fPIC -I."
$HOST_CC $HOST_FLAGS -DSTREAM_WS_IMPLEMENTATION -x c -c stream_ws.h -o "$OUT/x86.o"
strip --strip-unneeded -o "$OUT/x86-stripped.o" "$OUT/x86.o"
$HOST_CC $HOST_FLAGS -DSTREAM_WS_IMPLEMENTATION $FW_DEFS -x c -c stream_ws.h -o "$OUT/x86-nosock.o"
strip --strip-unneeded -o "$OUT/x86-nosock-stripped.o" "$OUT/x86-nosock.o"
$HOST_CC -shared -o "$OUT/libstream_ws.so" "$OUT/x86.o" -lmbedtls -lmbedx509 -lmbedcrypto
strip -o "$OUT/libstream_ws-stripped.so" "$OUT/libstream_ws.so"
xrow() { # label file
    set -- "$1" "$2" $(berkeley size "$2")
    printf '| %s | %s | %s | %s |\n' "$1" "$3" "$4" "$5"
}
wslay_so=$(ls "$LIBDIR"/libwslay.so.*.*.* 2>/dev/null | head -n 1)
lws_so=$(ls "$LIBDIR"/libwebsockets.so.[0-9]* 2>/dev/null | head -n 1)
echo "## Library size: x86-64"
echo
echo "$($HOST_CC --version | head -n 1), \`-Os\`, \`size\` (Berkeley; \`.text\` includes read-only data and"
echo "unwind tables, and for shared objects the dynamic symbol tables too).  Debian's libraries as installed."
echo
echo "| Library | .text | .data | .bss |"
echo "|---|---:|---:|---:|"
xrow "stream_ws.h, whole library (TCP, TLS glue, proxy, conn, JSON, JWT, client), stripped .o" "$OUT/x86-stripped.o"
xrow "stream_ws.h, whole library, stripped .so (mbedTLS linked dynamically, not counted)" "$OUT/libstream_ws-stripped.so"
xrow "stream_ws.h without sockets, TLS and stdio (the firmware set), stripped .o" "$OUT/x86-nosock-stripped.o"
[ -n "$wslay_so" ] && xrow "wslay $(dpkg-query -W -f='${Version}' libwslay-dev 2>/dev/null) ($(basename "$wslay_so"))" "$wslay_so"
[ -n "$lws_so" ] && xrow "libwebsockets $(dpkg-query -W -f='${Version}' libwebsockets-dev 2>/dev/null) ($(basename "$lws_so"))" "$lws_so"
echo
echo "wslay is a framing library only (no handshake, sockets or TLS; the application does those)."
echo "libwebsockets does much more than a client: server and client roles, HTTP/1 and HTTP/2, an"
echo "event loop with plugins, CGI, file serving, its own TLS glue; its size is not a like-for-like"
echo "comparison.  stream_ws.h's figures include the Stream protocol client, which neither has."
