# stream_ws.h — build, tests, fuzzing.  `make test` is the one command a newcomer needs.
CC      ?= cc
CXX     ?= c++
PYTHON  ?= /usr/bin/python3
BUILD   ?= build
CFLAGS  ?= -O2 -g
SAN     ?=
WARN     = -Wall -Wextra -Werror
ALL_CFLAGS = -std=c99 $(WARN) $(CFLAGS) $(SAN) -I.
LIBS     = -lmbedtls -lmbedx509 -lmbedcrypto
FUZZ_SECONDS ?= 30

EXAMPLE_SRCS := $(wildcard examples/*.c)
EXAMPLES  := $(patsubst examples/%.c,$(BUILD)/examples/%,$(EXAMPLE_SRCS))
TEST_SRCS := $(wildcard tests/test_*.c)
TESTS     := $(patsubst tests/%.c,$(BUILD)/%,$(TEST_SRCS))
TEST_HDRS := $(wildcard tests/*.h)
FUZZ_SRCS := $(wildcard fuzz/fuzz_*.c)
FUZZERS   := $(patsubst fuzz/%.c,build/fuzz/%,$(FUZZ_SRCS))

.PHONY: all test check deps compile-check fuzz demo bench size clean test-mbedtls3 test-mbedtls4 test-windows

all: $(BUILD)/stws $(EXAMPLES) $(TESTS) compile-check

$(BUILD)/impl.o: tests/impl.c stream_ws.h
	@mkdir -p $(BUILD)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/test_%: tests/test_%.c $(BUILD)/impl.o $(TEST_HDRS)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/impl.o -lcmocka $(LIBS)

# The header as C99, C11 and C++ with gcc and clang, in STWS_STATIC mode too,
# and in the firmware set (which must not reference sockets, stdio or
# mbedTLS's entropy/CTR-DRBG); an implementation object must export nothing
# but stws_* symbols.
FW_DEFS = -DSTWS_NO_SOCKETS -DSTWS_NO_TLS -DSTWS_NO_STDIO -DSTWS_NO_DEFAULT_RANDOM
compile-check: $(BUILD)/impl.o
	@mkdir -p $(BUILD)/compile
	@set -e; for cc in gcc clang; do \
	  for std in c99 c11; do \
	    $$cc -std=$$std $(WARN) -Wpedantic -c tests/compile/impl.c -o $(BUILD)/compile/$$cc-$$std.o; \
	    $$cc -std=$$std $(WARN) -Wpedantic -DSTWS_STATIC -c tests/compile/impl.c -o $(BUILD)/compile/$$cc-$$std-static.o; \
	    $$cc -std=$$std $(WARN) -Wpedantic -c tests/compile/decl_only.c -o $(BUILD)/compile/$$cc-$$std-decl.o; \
	  done; \
	  $$cc -std=c99 $(WARN) -Wpedantic $(FW_DEFS) -c tests/compile/impl.c -o $(BUILD)/compile/$$cc-fw.o; \
	done; \
	for cxx in g++ clang++; do \
	  $$cxx -std=c++11 $(WARN) -c tests/compile/impl.cc -o $(BUILD)/compile/$$cxx.o; \
	  $$cxx -std=c++11 $(WARN) -DSTWS_STATIC -c tests/compile/impl.cc -o $(BUILD)/compile/$$cxx-static.o; \
	done; \
	bad=$$(nm -g --defined-only $(BUILD)/compile/gcc-c99.o $(BUILD)/compile/g++.o | awk 'NF==3 {print $$3}' | grep -v '^stws_' || true); \
	if [ -n "$$bad" ]; then echo "compile-check: non-stws_ symbols exported: $$bad"; exit 1; fi; \
	bad=$$(nm -u $(BUILD)/compile/gcc-fw.o | grep -E 'mbedtls_(ctr_drbg|entropy)|getaddrinfo|poll$$|fprintf' || true); \
	if [ -n "$$bad" ]; then echo "compile-check: the firmware set still references: $$bad"; exit 1; fi; \
	nm -g --defined-only $(BUILD)/compile/gcc-c99-static.o | awk 'NF==3 {print $$3}' | grep -v '^compile_check' | grep -q . && { echo "compile-check: STWS_STATIC exports symbols"; exit 1; } || true; \
	echo "compile-check: C99/C11/C++11 with gcc and clang, static mode, firmware set, exports only stws_*: ok"

deps:
	@sh tools/deps.sh

# Build and run every suite; `make test` then does it again under ASan+UBSan.
check: all
	@sh tools/run-tests.sh $(BUILD)

test: deps
	$(MAKE) check
	$(MAKE) check CC=clang BUILD=build/asan CFLAGS="-O1 -g" \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"

# The unit suites and the TLS integration suites against mbedTLS built from
# source (tools/mbedtls-src.sh): 3.6 in its default config and with
# MBEDTLS_USE_PSA_CRYPTO + TLS 1.2 only; 4.x (cmake) in its default config.
# CI runs them when ../shared/deps holds the tarballs.
MBEDTLS3_TARBALL ?= ../shared/deps/mbedtls-3.6.6-src.tar.gz
MBEDTLS4_TARBALL ?= ../shared/deps/mbedtls-4.0.0-src.tar.gz
test-mbedtls3: deps
	@PYTHON=$(PYTHON) sh tools/mbedtls-src.sh 3 $(MBEDTLS3_TARBALL)

test-mbedtls4: deps
	@sh tools/deps.sh mbedtls4
	@PYTHON=$(PYTHON) sh tools/mbedtls-src.sh 4 $(MBEDTLS4_TARBALL)

# libFuzzer targets (clang), each run for FUZZ_SECONDS on its seed corpus.
build/fuzz/%: fuzz/%.c stream_ws.h
	@mkdir -p build/fuzz
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -I. -o $@ $< $(LIBS)

fuzz: deps $(FUZZERS)
	@set -e; for f in $(FUZZERS); do \
	  name=$$(basename $$f); mkdir -p build/fuzz/corpus-$$name; \
	  echo "fuzz: $$name for $(FUZZ_SECONDS) s"; \
	  if $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=build/fuzz/$$name- \
	       build/fuzz/corpus-$$name fuzz/corpus/$$name > build/fuzz/$$name.log 2>&1; then \
	    tail -n 12 build/fuzz/$$name.log; \
	  else \
	    tail -n 60 build/fuzz/$$name.log; echo "fuzz: $$name FAILED (input saved under build/fuzz/)"; exit 1; \
	  fi; \
	done

# The README's main command: a mock Stream coordinator on a free port and
# `stws listen` against it for about 15 s (events, a forced drop, the
# reconnect, a token refresh), then everything it started is stopped.
demo: deps $(BUILD)/stws
	@PYTHON=$(PYTHON) sh tools/demo.sh $(BUILD)/stws

# Benchmarks against wslay and libwebsockets (bench/README.md), and the
# firmware-size build; both install what they need first.
bench: $(BUILD)/stws
	@sh tools/deps.sh bench
	@PYTHON=$(PYTHON) BUILD=$(BUILD) sh bench/run.sh

size:
	@sh tools/deps.sh size
	@BUILD=$(BUILD) sh bench/size.sh

# The header on Windows: mingw-w64 and mbedTLS 3.6.6 built from its source
# tarball, the unit suites and a loopback echo test under wine.  Skipped, with
# a message, when the tarball (MBEDTLS3_TARBALL, as above) is absent.
test-windows:
	@MBEDTLS3_TARBALL=$(MBEDTLS3_TARBALL) BUILD=$(BUILD) PYTHON=$(PYTHON) sh tools/test-windows.sh

clean:
	rm -rf build

$(BUILD)/examples/%: examples/%.c stream_ws.h
	@mkdir -p $(BUILD)/examples
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIBS)

$(BUILD)/stws: tools/stws.c stream_ws.h
	@mkdir -p $(BUILD)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIBS)
