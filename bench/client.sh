#!/bin/sh
# The Stream client end to end against the mock coordinator (Python, so the
# mock is the bottleneck for events/s; the client's own CPU per event is the
# number that matters): `stws listen` throughput, and the pump time per frame
# of examples/game_loop at 60 Hz through drops and reconnects.
set -e
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
N=${CLIENT_EVENTS:-20000}
ROUNDS=${CLIENT_ROUNDS:-3}
make -s "$BUILD/stws" "$BUILD/examples/game_loop" >/dev/null
tmp=$(mktemp -d)
mock=""
cleanup() {
    [ -n "$mock" ] && kill "$mock" 2>/dev/null && wait "$mock" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

start_mock() {
    "$PYTHON" tools/mock_coordinator.py -q --api-key key --secret secret "$@" >"$tmp/port" 2>"$tmp/mock.log" &
    mock=$!
    i=0
    while ! grep -q '^PORT ' "$tmp/port" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 300 ] || ! kill -0 "$mock" 2>/dev/null; then echo "client.sh: mock did not start"; cat "$tmp/mock.log"; exit 1; fi
        sleep 0.1
    done
    url="ws://127.0.0.1:$(sed -n 's/^PORT //p' "$tmp/port")/api/v2/connect"
}
stop_mock() {
    kill "$mock" 2>/dev/null; wait "$mock" 2>/dev/null || true; mock=""
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

: >"$tmp/listen"
r=0
while [ $r -lt "$ROUNDS" ]; do
    start_mock --events-per-second 1000000 --health-interval 30
    # wall s, user s, sys s, max RSS KiB
    /usr/bin/time -f '%e %U %S %M' -o "$tmp/time" "$BUILD/stws" listen --url "$url" --api-key key \
        --user-id bench --secret secret --max-events "$N" >"$tmp/out" 2>/dev/null
    lines=$(wc -l <"$tmp/out")
    [ "$lines" -eq "$N" ] || { echo "client.sh: stws listen printed $lines lines, expected $N"; exit 1; }
    bytes=$(wc -c <"$tmp/out")
    awk -v n="$N" -v b="$bytes" '{printf "%.0f %.0f %.2f %d %.0f\n", n/$1, ($2+$3)*1e9/n, ($2+$3)/$1*100, $4, b/n}' "$tmp/time" >>"$tmp/listen"
    stop_mock
    r=$((r + 1))
done
echo "## Stream client: \`stws listen\` from the mock coordinator ($N events, median of $ROUNDS)"
echo
echo "| events/s (mock-bound) | stws CPU ns/event (user+sys, incl. printing) | stws CPU % | peak RSS KiB | bytes/event |"
echo "|---:|---:|---:|---:|---:|"
printf '| %s | %s | %s | %s | %s |\n' "$(cut -d' ' -f1 "$tmp/listen" | median)" "$(cut -d' ' -f2 "$tmp/listen" | median)" \
    "$(cut -d' ' -f3 "$tmp/listen" | median)" "$(cut -d' ' -f4 "$tmp/listen" | median)" "$(cut -d' ' -f5 "$tmp/listen" | median)"
echo

start_mock --events-per-second 200 --drop-every 2 --health-interval 1
STREAM_WS_URL=$url STREAM_API_KEY=key STREAM_API_SECRET=secret STREAM_USER_ID=bench \
    "$BUILD/examples/game_loop" 10 >"$tmp/game" 2>/dev/null
stop_mock
echo "## Stream client: examples/game_loop, 60 Hz, stws_client_poll(c, 0) once per frame, 10 s, 200 events/s, a drop every 2 s"
echo
echo "| frames | events | connects | pump median ms | pump worst ms |"
echo "|---:|---:|---:|---:|---:|"
sed -n 's/^frames \([0-9]*\) in [0-9.]* s, events \([0-9]*\) (message.new [0-9]*), connects \([0-9]*\)$/\1 \2 \3/p' "$tmp/game" >"$tmp/g1"
sed -n 's/^pump time per frame: median \(.*\) ms, worst \(.*\) ms$/\1 \2/p' "$tmp/game" >"$tmp/g2"
[ -s "$tmp/g1" ] && [ -s "$tmp/g2" ] || { echo "client.sh: game_loop output not understood:"; cat "$tmp/game"; exit 1; }
read -r f e c <"$tmp/g1"
read -r pm pw <"$tmp/g2"
echo "| $f | $e | $c | $pm | $pw |"
