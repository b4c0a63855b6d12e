#!/bin/sh
# Run every test program in $1 (default build; examples named test_* too) and the Python integration
# suites, then print one closing line: "N passed, N failed".
BUILD=${1:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
passed=0; failed=0; failures=""
for t in "$BUILD"/test_* "$BUILD"/examples/test_*; do
    [ -x "$t" ] || continue
    if "$t"; then passed=$((passed+1)); else failed=$((failed+1)); failures="$failures $(basename "$t")"; fi
done
for t in tests/integration/test_*.py; do
    [ -f "$t" ] || continue
    if STWS_BUILD="$BUILD" "$PYTHON" "$t"; then passed=$((passed+1)); else failed=$((failed+1)); failures="$failures $(basename "$t")"; fi
done
[ -n "$failures" ] && echo "failed suites:$failures"
echo "suites: $passed passed, $failed failed"
[ "$failed" = 0 ]
