#!/bin/sh
# bench/loopback.sh: events over loopback.  A flood server (bench/flood_server.c)
# writes the bench/workload.h stream (EVENTS Stream events of 200-2000 B, plus
# a 64 KiB one every 5,000 and a 1 MiB one every 100,000) as fast as the client
# reads, then a close frame 1000.  Each client receives every event, validates
# its UTF-8, tokenizes it (jsmn, or stream_ws.h's JSON reader for ours), reads
# "type", counts, and checks the count.  Clients (bench/loop_*.c):
#   ours     stream_ws.h: stws_conn + the client's event path (one tokenless
#            pass: grammar, limits, "type"; no tokens, look-ups walk the text)
#   ours-lookup  the same, plus one path look-up per event ("user.id", unescaped)
#   ours-256k  ours with recv_buffer_size = 256 KiB (default 16 KiB)
#   wslay    wslay event API, non-blocking socket, poll
#   lws      libwebsockets client, defaults
#   floor    recv() only (no parsing at all)
#   floor+   recv, walk frames, UTF-8, jsmn, type: the issue's reference floor
# Each client runs against a fresh server, clients alternate, ROUNDS rounds;
# medians.  CPU = the client's own getrusage (user+sys) over the whole run.
# Then callgrind instruction counts (user space only) on a small stream.
#
# Environment: BUILD (build), LOOP_EVENTS (200000), LOOP_ROUNDS (5),
# LOOP_CG_EVENTS (20000, no big events; 0 skips callgrind), LOOP_PROFILE=1
# (also print callgrind_annotate's top functions for ours), CC, CFLAGS.
set -eu
BUILD=${BUILD:-build}
OUT=$BUILD/bench/loop
EVENTS=${LOOP_EVENTS:-200000}
ROUNDS=${LOOP_ROUNDS:-5}
CG_EVENTS=${LOOP_CG_EVENTS:-20000}
CC=${CC:-cc}
FLAGS="-std=c99 -Wall -Wextra -Werror ${CFLAGS:--O2 -g}"
CLIENTS="ours ours-lookup ours-256k wslay lws floor floor+"
CG_CLIENTS="ours ours-lookup wslay lws floor floor+"   # ours-256k: same instructions as ours

mkdir -p "$OUT"
spid=""
cleanup() {
    if [ -n "$spid" ]; then kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true; spid=""; fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

# ---- build -------------------------------------------------------------------
$CC $FLAGS -o "$OUT/flood_server" bench/flood_server.c -lmbedcrypto
$CC $FLAGS -I. -o "$OUT/loop_ours" bench/loop_ours.c -lmbedtls -lmbedx509 -lmbedcrypto
$CC $FLAGS -o "$OUT/loop_wslay" bench/loop_wslay.c -lwslay -lmbedcrypto
$CC $FLAGS -o "$OUT/loop_lws" bench/loop_lws.c -lwebsockets -lmbedcrypto
$CC $FLAGS -o "$OUT/loop_floor" bench/loop_floor.c -lmbedcrypto

# client name -> command line prefix (PORT and EVENTS are appended)
cmd_of() {
    case $1 in
    ours) echo "$OUT/loop_ours" ;;
    ours-256k | ours-lookup) echo "$OUT/loop_ours" ;;
    wslay) echo "$OUT/loop_wslay" ;;
    lws) echo "$OUT/loop_lws" ;;
    floor) echo "$OUT/loop_floor raw" ;;
    floor+) echo "$OUT/loop_floor plus" ;;
    esac
}
extra_of() {
    case $1 in
    ours-256k) echo 262144 ;;
    ours-lookup) echo 0 lookup ;;
    esac
}

# start_server EVENTS BIG: a fresh one-connection server; sets spid and port
start_server() {
    rm -f "$OUT/port"
    "$OUT/flood_server" "$1" "$2" 1 >"$OUT/port" 2>"$OUT/server.log" &
    spid=$!
    i=0
    while [ ! -s "$OUT/port" ]; do
        i=$((i + 1))
        if [ $i -gt 300 ] || ! kill -0 "$spid" 2>/dev/null; then
            echo "loopback: flood server did not start" >&2; cat "$OUT/server.log" >&2; exit 1
        fi
        sleep 0.02
    done
    port=$(head -n 1 "$OUT/port")
}

# stop_server: wait for it (it exits after its one connection), kill if stuck
stop_server() {
    i=0
    while kill -0 "$spid" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 250 ]; then kill "$spid" 2>/dev/null || true; break; fi
        sleep 0.02
    done
    wait "$spid" 2>/dev/null || { echo "loopback: flood server failed:" >&2; cat "$OUT/server.log" >&2; }
    spid=""
}

# ---- timed rounds --------------------------------------------------------------
res=$OUT/results.txt
: >"$res"
r=0
while [ $r -lt "$ROUNDS" ]; do
    # rotate the order every round so no client always runs first
    order=$(echo $CLIENTS | tr ' ' '\n' | awk -v r=$r '{a[NR]=$0} END {for (i=0;i<NR;i++) print a[(i+r)%NR+1]}')
    for c in $order; do
        start_server "$EVENTS" 1
        set +e
        line=$(timeout 120 $(cmd_of "$c") "$port" "$EVENTS" $(extra_of "$c"))
        rc=$?
        set -e
        stop_server
        if [ $rc -ne 0 ]; then echo "loopback: client $c failed (exit $rc): $line" >&2; exit 1; fi
        echo "$line" | sed "s/client=[^ ]*/client=$c/" >>"$res"
    done
    r=$((r + 1))
done

# ---- tables ---------------------------------------------------------------------
echo "## Events over loopback (${EVENTS} events, ${ROUNDS} rounds, medians)"
echo
echo "Flood server on 127.0.0.1 writes the workload.h stream (200-2000 B events, ~12% non-ASCII,"
echo "64 KiB every 5,000, 1 MiB every 100,000); each client UTF-8-validates, tokenizes and reads"
echo "\`type\` of every event.  CPU = the client's getrusage user+sys over its whole run (setup"
echo "included), divided by the events; wall = connect to close."
echo
awk -v clients="$CLIENTS" '
function median(list,   n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{
    for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
    c = f["client"]; ev = f["events"] + 0
    rate[c] = rate[c] " " ev / (f["wall_ns"] / 1e9)
    cpu[c] = cpu[c] " " (f["user_us"] + f["sys_us"]) * 1000 / ev
    usr[c] = usr[c] " " f["user_us"] * 1000 / ev
    sys[c] = sys[c] " " f["sys_us"] * 1000 / ev
    rss[c] = rss[c] " " f["maxrss_kb"]
}
END {
    n = split(clients, cl, " ")
    for (i = 1; i <= n; i++) {
        c = cl[i]
        R[c] = median(rate[c]); C[c] = median(cpu[c]); U[c] = median(usr[c]); S[c] = median(sys[c]); M[c] = median(rss[c])
    }
    print "### Throughput and CPU per event"
    print ""
    print "| client | messages/s (wall) | CPU ns/msg | user ns/msg | sys ns/msg | CPU vs ours |"
    print "|---|---:|---:|---:|---:|---:|"
    for (i = 1; i <= n; i++) { c = cl[i]
        printf "| %s | %.0f | %.0f | %.0f | %.0f | %.2fx |\n", c, R[c], C[c], U[c], S[c], C[c] / C["ours"] }
    print ""
    printf "ours / floor+ CPU: %.2fx (goal <= 1.2x); ours / floor+ messages/s: %.2fx; ours-lookup / floor+ CPU: %.2fx\n", C["ours"] / C["floor+"], R["ours"] / R["floor+"], C["ours-lookup"] / C["floor+"]
    print ""
    print "### Peak memory"
    print ""
    print "| client | peak RSS (ru_maxrss) | vs ours |"
    print "|---|---:|---:|"
    for (i = 1; i <= n; i++) { c = cl[i]
        printf "| %s | %.1f MiB | %.2fx |\n", c, M[c] / 1024, M[c] / M["ours"] }
}' "$res"

# ---- callgrind ------------------------------------------------------------------
if [ "$CG_EVENTS" -gt 0 ] && command -v valgrind >/dev/null 2>&1; then
    cg=$OUT/callgrind.txt
    : >"$cg"
    for c in $CG_CLIENTS; do
        for n in 0 "$CG_EVENTS"; do
            start_server "$n" 0
            out=/dev/null
            if [ "$c" = ours ] && [ "$n" != 0 ]; then out=$OUT/callgrind.ours.out; fi
            set +e
            timeout 240 valgrind --tool=callgrind --callgrind-out-file="$out" \
                $(cmd_of "$c") "$port" "$n" $(extra_of "$c") >/dev/null 2>"$OUT/valgrind.log"
            rc=$?
            set -e
            stop_server
            if [ $rc -ne 0 ]; then echo "loopback: callgrind $c $n failed (exit $rc)" >&2; cat "$OUT/valgrind.log" >&2; exit 1; fi
            ir=$(sed -n 's/.*Collected : *\([0-9]*\).*/\1/p' "$OUT/valgrind.log")
            echo "$c $n $ir" >>"$cg"
        done
    done
    echo
    echo "### Instructions per event (callgrind, ${CG_EVENTS} events without the big ones)"
    echo
    echo "User-space instructions of the client process (the kernel's recv copies are not counted)."
    echo "Per event = (run with ${CG_EVENTS} events - run with 0 events) / ${CG_EVENTS}; setup = the 0-event run."
    echo
    awk -v clients="$CG_CLIENTS" -v n="$CG_EVENTS" '
    { ir[$1 "," $2] = $3 }
    END {
        k = split(clients, cl, " ")
        print "| client | instructions/event | vs ours | setup (0 events) |"
        print "|---|---:|---:|---:|"
        base = (ir["ours," n] - ir["ours,0"]) / n
        for (i = 1; i <= k; i++) { c = cl[i]
            per = (ir[c "," n] - ir[c ",0"]) / n
            printf "| %s | %.0f | %.2fx | %.0f |\n", c, per, per / base, ir[c ",0"] }
        fl = (ir["floor+," n] - ir["floor+,0"]) / n
        printf "\nours / floor+ instructions: %.2fx; ours-lookup / floor+: %.2fx\n", base / fl, ((ir["ours-lookup," n] - ir["ours-lookup,0"]) / n) / fl
    }' "$cg"
    if [ "${LOOP_PROFILE:-0}" = 1 ] && command -v callgrind_annotate >/dev/null 2>&1; then
        # top functions by self cost; the second profile is a -fno-inline
        # build of the same client, so that inlined helpers (the nesting
        # pre-check, the grammar check's string scan, jsmn) get their own rows
        $CC $FLAGS -fno-inline -I. -o "$OUT/loop_ours_noinline" bench/loop_ours.c -lmbedtls -lmbedx509 -lmbedcrypto
        start_server "$CG_EVENTS" 0
        set +e
        timeout 240 valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.ours-noinline.out" \
            "$OUT/loop_ours_noinline" "$port" "$CG_EVENTS" >/dev/null 2>"$OUT/valgrind.log"
        rc=$?
        set -e
        stop_server
        if [ $rc -ne 0 ]; then echo "loopback: callgrind ours (no inline) failed" >&2; cat "$OUT/valgrind.log" >&2; exit 1; fi
        for prof in ours ours-noinline; do
            echo
            echo "### Where ours spends its instructions: $prof (callgrind_annotate, self cost, ${CG_EVENTS} events, setup included)"
            echo
            echo '```'
            callgrind_annotate --threshold=100 --auto=no "$OUT/callgrind.$prof.out" 2>/dev/null |
                sed -n '/PROGRAM TOTALS/,$p' | grep -v -e '^-\{10,\}' -e '^Ir ' -e '^$' | head -n 16 |
                sed 's# \[[^]]*\]$##'
            echo '```'
        done
    fi
fi
