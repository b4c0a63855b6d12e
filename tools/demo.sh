#!/bin/sh
# make demo: a mock Stream coordinator on a free loopback port, and
# `stws listen` against it for about 15 s: events, a forced drop, the
# reconnect, an expired token refreshed (code 40 -> new token), then a clean
# stop of everything this script started.
STWS=${1:-build/stws}
PYTHON=${PYTHON:-/usr/bin/python3}
SECONDS_TO_RUN=${DEMO_SECONDS:-15}
tmp=$(mktemp -d)
mock=""; listener=""; reader=""
cleanup() {
    for p in $listener $reader $mock; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

"$PYTHON" tools/mock_coordinator.py --health-interval 3 --events-per-second 2 \
    --drop-every 6 --expire-after 8 >"$tmp/port" 2>"$tmp/mock.log" &
mock=$!
i=0
while ! grep -q '^PORT ' "$tmp/port" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 "$mock" 2>/dev/null; then
        echo "demo: the mock coordinator did not start:"; cat "$tmp/mock.log"; exit 1
    fi
    sleep 0.1
done
port=$(sed -n 's/^PORT //p' "$tmp/port")
url="ws://127.0.0.1:$port/api/v2/connect"
echo "demo: mock Stream coordinator at $url"
echo "demo: it sends events, a health.check every 3 s, drops every connection after 6 s,"
echo "demo: and rejects tokens issued more than 8 s ago (code 40): the client re-mints."
echo "demo: stws listen --url $url --api-key key --user-id alice --secret ***"
echo "demo: (server events on stdout, cut to 150 columns; lifecycle lines start with 'stws:')"
echo

mkfifo "$tmp/out"
# line by line, so events and lifecycle lines appear in the order they happen
while IFS= read -r line; do printf '%.150s\n' "$line"; done <"$tmp/out" &
reader=$!
"$STWS" listen --url "$url" --api-key key --user-id alice --secret secret >"$tmp/out" &
listener=$!
sleep "$SECONDS_TO_RUN"
kill -TERM "$listener" 2>/dev/null
wait "$listener"
status=$?
listener=""
wait "$reader" 2>/dev/null
reader=""
kill -TERM "$mock" 2>/dev/null
wait "$mock" 2>/dev/null
mock=""
echo
echo "demo: stws listen exited with status $status"
echo "demo: mock summary: $(tail -n 1 "$tmp/mock.log")"
exit $status
