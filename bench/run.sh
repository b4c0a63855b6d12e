#!/bin/sh
# make bench: every benchmark prints one Markdown table; peers side by side,
# medians of alternating runs, ratios against ours.  See bench/README.md.
set -e
BUILD=${BUILD:-build}
export BUILD
mkdir -p "$BUILD/bench"
cpu=$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1)
echo "# stream_ws.h benchmarks"
echo
echo "Machine: $(uname -m), $(nproc) cores, ${cpu:-unknown CPU}, $(uname -r); $(date -u +%Y-%m-%d)."
echo "Peers: wslay $(dpkg-query -W -f='${Version}' libwslay-dev), libwebsockets $(dpkg-query -W -f='${Version}' libwebsockets-dev), mbedTLS $(dpkg-query -W -f='${Version}' libmbedtls-dev)."
echo
for b in codec micro memory loopback client; do
    if [ -f "bench/$b.sh" ]; then sh "bench/$b.sh"; echo; fi
done
