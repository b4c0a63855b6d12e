#!/bin/sh
# make bench (via bench/run.sh): what a connection costs in heap.
#
# bench/connstat.c (a counting allocator hook, plus malloc/calloc/realloc
# interposed for the process-wide count, since mbedTLS allocates itself)
# against a local python-websockets echo peer (tests/integration/ws_peer.py)
# on 127.0.0.1, once over ws:// and once over wss:// with a CA and server
# certificate made here with openssl; and bench/clientstat.c, the same for
# the Stream client against tools/mock_coordinator.py (product events in,
# one queued message out per event, drops by SIGUSR1).  Every peer listens on
# a port the OS chose; everything started here is stopped on exit, also on
# failure or interruption.  Builds into $BUILD/bench/mem/.  Prints Markdown.
# shellcheck disable=SC2086  # flag lists split on purpose
set -e
BUILD=${BUILD:-build}
OUT="$BUILD/bench/mem"
PY=${PYTHON:-/usr/bin/python3}
CC=${CC:-cc}
MESSAGES=${MEM_MESSAGES:-1000}   # steady-state echoes per connstat run
SIZE=${MEM_SIZE:-1000}           # bytes per echoed message
EVENTS=${MEM_EVENTS:-1000}       # steady-state server events for the client
WARMUP=${MEM_WARMUP:-1000}       # events first, so buffers reach their size
RECONNECTS=${MEM_RECONNECTS:-3}  # forced drops for the client

"$PY" -c 'import websockets' 2>/dev/null ||
    { echo "memory.sh: $PY cannot import websockets (python3-websockets)" >&2; exit 1; }
command -v openssl >/dev/null 2>&1 || { echo "memory.sh: openssl not found" >&2; exit 1; }

mkdir -p "$OUT"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/stws-mem.XXXXXX")
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    for p in $PIDS; do wait "$p" 2>/dev/null || true; done
    PIDS=""
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

fail() { # message [log files...]
    echo "memory.sh: $1" >&2
    shift
    for f in "$@"; do [ -s "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done
    exit 1
}

LIBS="-lmbedtls -lmbedx509 -lmbedcrypto"
CFLAGS_MEM="-std=c99 -Wall -Wextra -Werror -O2 -g -I."
$CC $CFLAGS_MEM -o "$OUT/connstat" bench/connstat.c $LIBS
$CC $CFLAGS_MEM -o "$OUT/clientstat" bench/clientstat.c $LIBS

# Test CA and a server certificate for 127.0.0.1 (EC P-256), valid 2 days.
EC="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
openssl req -x509 -new $EC -keyout "$TMP/ca.key" -out "$TMP/ca.pem" -days 2 \
    -subj "/CN=stws bench CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" > "$TMP/openssl.log" 2>&1 ||
    fail "openssl: CA" "$TMP/openssl.log"
openssl req -new $EC -keyout "$TMP/server.key" -out "$TMP/server.csr" -subj "/CN=127.0.0.1" \
    >> "$TMP/openssl.log" 2>&1 || fail "openssl: server key" "$TMP/openssl.log"
printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1" > "$TMP/server.ext"
openssl x509 -req -in "$TMP/server.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" \
    -CAcreateserial -out "$TMP/server.pem" -days 2 -extfile "$TMP/server.ext" \
    >> "$TMP/openssl.log" 2>&1 || fail "openssl: server certificate" "$TMP/openssl.log"

# start NAME SED_PORT_EXPR CMD...: start a peer, wait (30 s at most) for the
# port it prints on its first line; sets PORT and PEER_PID.
start() {
    name=$1 expr=$2
    shift 2
    "$@" > "$TMP/$name.out" 2> "$TMP/$name.err" &
    PEER_PID=$!
    PIDS="$PIDS $PEER_PID"
    i=0
    PORT=""
    while [ $i -lt 300 ]; do
        PORT=$(sed -n "1{$expr;}" "$TMP/$name.out")
        [ -n "$PORT" ] && return 0
        kill -0 "$PEER_PID" 2>/dev/null || fail "$name exited before listening" "$TMP/$name.err"
        sleep 0.1
        i=$((i + 1))
    done
    fail "$name did not report a port within 30 s" "$TMP/$name.err"
}
stop() { # pid: stop one peer and forget it
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    rest=""
    for p in $PIDS; do [ "$p" = "$1" ] || rest="$rest $p"; done
    PIDS=$rest
}
# run OUT ERR CMD...: run a tool in the background and wait for it, so that a
# signal is handled at once (and the tool stopped) rather than after it ends.
run() {
    o=$1 e=$2
    shift 2
    "$@" > "$o" 2> "$e" &
    tool=$!
    PIDS="$PIDS $tool"
    if wait "$tool"; then rc=0; else rc=$?; fi
    stop "$tool"
    return $rc
}
PEER_PORT='s/.*"event": "listening", "port": \([0-9]*\).*/\1/p'

# connstat output -> KEY=value lines in $TMP/NAME.vals
connstat_run() { # name url [args]
    name=$1
    shift
    run "$TMP/$name.txt" "$TMP/$name.log" timeout 180 "$OUT/connstat" "$@" \
        --messages "$MESSAGES" --size "$SIZE" || fail "connstat $1 failed" "$TMP/$name.log" "$TMP/$name.txt"
    sed -n \
        -e 's/^idle conn: *\([0-9]*\) allocations, \([0-9]*\) bytes live via.*/idle_hook_allocs=\1 idle_hook_bytes=\2/p' \
        -e 's/^idle conn: *\([0-9]*\) allocations process-wide, \([0-9]*\) bytes of heap.*/idle_proc_allocs=\1 idle_heap_bytes=\2/p' \
        -e 's/^steady: *\([0-9]*\) echoed messages of [0-9]* B: \([0-9]*\) allocations via the hook, \([0-9]*\) process-wide.*/steady_n=\1 steady_hook_allocs=\2 steady_proc_allocs=\3/p' \
        -e 's/^open: *\([0-9.]*\) ms from create to OPEN.*/open_ms=\1/p' \
        -e 's/^reconnect: *\([0-9.]*\) ms, \([0-9]*\) allocations via the hook, \([0-9]*\) process-wide.*/reconnect_ms=\1 reconnect_n=1 reconnect_hook_allocs=\2 reconnect_proc_allocs=\3/p' \
        -e 's/^after destroy: *\([0-9]*\) bytes live.*/destroyed_hook_bytes=\1/p' \
        "$TMP/$name.txt" | tr ' ' '\n' > "$TMP/$name.vals"
    [ "$(wc -l < "$TMP/$name.vals")" -ge 13 ] || fail "connstat $1: unexpected output" "$TMP/$name.txt"
}
val() { sed -n "s/^$2=//p" "$TMP/$1.vals"; }

# ws://
start ws "$PEER_PORT" "$PY" tests/integration/ws_peer.py echo
connstat_run ws "ws://127.0.0.1:$PORT/"
stop "$PEER_PID"

# wss://
start wss "$PEER_PORT" "$PY" tests/integration/ws_peer.py echo --cert "$TMP/server.pem" --key "$TMP/server.key"
connstat_run wss "wss://127.0.0.1:$PORT/" --ca "$TMP/ca.pem"
stop "$PEER_PID"

# the Stream client against the mock coordinator
start mock 's/^PORT \([0-9]*\)$/\1/p' "$PY" tools/mock_coordinator.py --events-per-second 400 \
    --health-interval 1 -q
run "$TMP/client.txt" "$TMP/client.log" timeout 180 "$OUT/clientstat" \
    "ws://127.0.0.1:$PORT/api/v2/connect" --drop-pid "$PEER_PID" --events "$EVENTS" \
    --warmup "$WARMUP" \
    --reconnects "$RECONNECTS" || fail "clientstat failed" "$TMP/client.log" "$TMP/client.txt" "$TMP/mock.err"
sed -n 's/^\([a-z_]*\): \([-0-9.]*\)$/\1=\2/p' "$TMP/client.txt" |
    sed 's/^steady_events=/steady_n=/; s/^reconnects=/reconnect_n=/' > "$TMP/client.vals"
stop "$PEER_PID"

# ---- the table ---------------------------------------------------------------
# per NAME COUNT_KEY N_KEY: "a / b" allocations per unit, hook / process-wide
per() {
    n=$(val "$1" "$3")
    awk -v h="$(val "$1" "$2_hook_allocs")" -v p="$(val "$1" "$2_proc_allocs")" -v n="$n" \
        'BEGIN { f = (h == int(h / n) * n && p == int(p / n) * n) ? "%d / %d" : "%.3f / %.3f";
                 printf f, h / n, p / n }'
}
cell() { val "$1" "$2"; }
echo "## Memory per connection"
echo
echo "bench/connstat against a python-websockets echo peer (ws:// and wss://, EC P-256 certificate,"
echo "CA file), bench/clientstat: stws_client against tools/mock_coordinator.py (ws://, HS256 token"
echo "minted from the secret, 400 events/s, health check every second).  Hook = the desc's allocator"
echo "(everything stream_ws.h allocates); process-wide = every malloc/calloc/realloc call, mbedTLS's"
echo "included; heap = glibc mallinfo2 in-use bytes.  Defaults everywhere (16 KiB receive buffer, the"
echo "built-in CTR-DRBG, whose entropy context is most of the idle bytes; no random hook)."
echo
echo "| | ws:// conn | wss:// conn | Stream client (ws://) |"
echo "|---|---:|---:|---:|"
echo "| idle, allocations (hook) | $(cell ws idle_hook_allocs) | $(cell wss idle_hook_allocs) | $(cell client idle_hook_allocs) |"
echo "| idle, bytes live (hook) | $(cell ws idle_hook_bytes) | $(cell wss idle_hook_bytes) | $(cell client idle_hook_bytes) |"
echo "| idle, allocations (process-wide, from create to open) | $(cell ws idle_proc_allocs) | $(cell wss idle_proc_allocs) | $(cell client idle_proc_allocs) |"
echo "| idle, heap in use (process) | $(cell ws idle_heap_bytes) | $(cell wss idle_heap_bytes) | $(cell client idle_heap_bytes) |"
echo "| steady state, allocations per message (hook / process-wide) | $(per ws steady steady_n) | $(per wss steady steady_n) | $(per client steady steady_n) |"
echo "| steady state, messages measured (after warm-up) | $(val ws steady_n) echoes of $SIZE B | $(val wss steady_n) echoes of $SIZE B | $(val client steady_n) events in, 1 send each, after $(val client warmup_events) |"
echo "| per reconnect, allocations (hook / process-wide) | $(per ws reconnect reconnect_n) | $(per wss reconnect reconnect_n) | $(per client reconnect reconnect_n) |"
echo "| heap growth in use, steady window / all reconnects (process) | —² | —² | $(val client steady_heap_growth) / $(val client reconnect_heap_growth) B |"
echo "| time from create to open on loopback (ms) | $(cell ws open_ms) | $(cell wss open_ms) | — |"
echo "| time of one close + reconnect to open (ms) | $(cell ws reconnect_ms) | $(cell wss reconnect_ms) | — |"
echo "| after destroy, bytes live (hook) | $(cell ws destroyed_hook_bytes) | $(cell wss destroyed_hook_bytes) | $(cell client destroyed_hook_bytes) |"
echo
echo "Reconnect: connstat closes (1000) and connects again once; the client is dropped by the mock"
echo "$(val client reconnect_n) times (no close frame) and reconnects by itself (averaged).  The wss:// process-wide"
echo "allocations are mbedTLS's own, inside its TLS handshake (X.509 and ECDHE arithmetic), on every connect."
echo "² connstat prints allocation counts only there; with no allocation the heap cannot grow."
growth=$(val client steady_heap_growth)
if [ "$(val client steady_hook_allocs)" != 0 ]; then
    echo "Client steady state: an allocation there is a reused buffer growing to a larger event than the"
    echo "warm-up saw (heap +$growth B over the window), not a per-message cost."
fi
