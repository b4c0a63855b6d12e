# stream_ws.h — build, tests, fuzzing.  `make test` is the one command a newcomer needs.
CC      ?= cc
CXX     ?= c++
PYTHON  ?= /usr/bin/python3
BUILD   ?= build
CFLAGS  ?= -O2 -g
SAN     ?=
WARN     = -Wall -Wextra -Werror
ALL_CFLAGS = -std=c99 $(WARN) $(CFLAGS) $(SAN) -I.
LIBS     = -lmbedtls -lmbedx509 -lmbedcrypto -pthread
FUZZ_SECONDS ?= 30
SOAK_SECONDS ?= 3600

EXAMPLE_SRCS := $(wildcard examples/*.c)
EXAMPLES  := $(patsubst examples/%.c,$(BUILD)/examples/%,$(EXAMPLE_SRCS))
TEST_SRCS := $(wildcard tests/test_*.c)
TESTS     := $(patsubst tests/%.c,$(BUILD)/%,$(TEST_SRCS))
TEST_HDRS := $(wildcard tests/*.h) stream_ws_test.h
FUZZ_SRCS := $(wildcard fuzz/fuzz_*.c)
FUZZERS   := $(patsubst fuzz/%.c,build/fuzz/%,$(FUZZ_SRCS))

.PHONY: all test check deps compile-check stack-check test-tsan fuzz soak demo bench size clean install \
        test-packaging test-mbedtls3 test-mbedtls4 test-windows

# A plain `make` needs one C compiler; the compile matrix (gcc, g++, clang,
# clang++) runs in `make check`, which `make test` runs after installing them.
all: $(BUILD)/stws $(EXAMPLES) $(TESTS)

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
compile-check: $(BUILD)/impl.o stack-check
	@mkdir -p $(BUILD)/compile
	@set -e; for cc in gcc clang; do \
	  for std in c99 c11; do \
	    $$cc -std=$$std $(WARN) -Wpedantic -c tests/compile/impl.c -o $(BUILD)/compile/$$cc-$$std.o; \
	    $$cc -std=$$std $(WARN) -Wpedantic -DSTWS_STATIC -c tests/compile/impl.c -o $(BUILD)/compile/$$cc-$$std-static.o; \
	    $$cc -std=$$std $(WARN) -Wpedantic -c tests/compile/decl_only.c -o $(BUILD)/compile/$$cc-$$std-decl.o; \
	  done; \
	  $$cc -std=c99 $(WARN) -Wpedantic $(FW_DEFS) -c tests/compile/impl.c -o $(BUILD)/compile/$$cc-fw.o; \
	  $$cc -std=c99 $(WARN) -Wpedantic -DSTWS_NO_THREADS -c tests/compile/impl.c -o $(BUILD)/compile/$$cc-nothreads.o; \
	done; \
	for cxx in g++ clang++; do \
	  $$cxx -std=c++11 $(WARN) -c tests/compile/impl.cc -o $(BUILD)/compile/$$cxx.o; \
	  $$cxx -std=c++11 $(WARN) -DSTWS_STATIC -c tests/compile/impl.cc -o $(BUILD)/compile/$$cxx-static.o; \
	done; \
	if gcc -std=c99 $(WARN) -c tests/compile/jsmn_first.c -o $(BUILD)/compile/jsmn-first.o 2> $(BUILD)/compile/jsmn-first.err; then \
	  echo "compile-check: jsmn.h without parent links first must not build"; exit 1; fi; \
	grep -q 'jsmn.h was included before the implementation' $(BUILD)/compile/jsmn-first.err || \
	  { cat $(BUILD)/compile/jsmn-first.err; echo "compile-check: no clear message for the jsmn include order"; exit 1; }; \
	gcc -std=c99 $(WARN) -DJSMN_FIRST_CONFIGURED -c tests/compile/jsmn_first.c -o $(BUILD)/compile/jsmn-first-ok.o; \
	bad=$$(nm -g --defined-only $(BUILD)/compile/gcc-c99.o $(BUILD)/compile/g++.o | awk 'NF==3 {print $$3}' | grep -v '^stws_' || true); \
	if [ -n "$$bad" ]; then echo "compile-check: non-stws_ symbols exported: $$bad"; exit 1; fi; \
	bad=$$(nm -u $(BUILD)/compile/gcc-fw.o | grep -E 'mbedtls_(ctr_drbg|entropy)|getaddrinfo|poll$$|fprintf' || true); \
	if [ -n "$$bad" ]; then echo "compile-check: the firmware set still references: $$bad"; exit 1; fi; \
	nm -g --defined-only $(BUILD)/compile/gcc-c99-static.o | awk 'NF==3 {print $$3}' | grep -v '^compile_check' | grep -q . && { echo "compile-check: STWS_STATIC exports symbols"; exit 1; } || true; \
	echo "compile-check: C99/C11/C++11 with gcc and clang, static mode, firmware set, no threads, jsmn include order, exports only stws_*: ok"

# No public call puts a big object on the caller's stack: stws_handshake_key
# without a random hook once held a 38 KB entropy context there (gcc's
# -fstack-usage, the frame of each stws_* function at -O2, limit 4 KiB).
stack-check:
	@mkdir -p $(BUILD)/compile
	@gcc -std=c99 $(WARN) -O2 -fstack-usage -c tests/compile/impl.c -o $(BUILD)/compile/stack.o
	@big=$$(awk -F'\t' '{ n = split($$1, p, ":"); if (p[n] ~ /^stws_/ && $$2 + 0 > 4096) print p[n], $$2 }' $(BUILD)/compile/stack.su); \
	if [ -n "$$big" ]; then echo "stack-check: frames over 4 KiB: $$big"; exit 1; fi; \
	echo "stack-check: every stws_* frame under 4 KiB: ok"

deps:
	@sh tools/deps.sh

# Build and run every suite; `make test` then does it again under ASan+UBSan.
check: all compile-check test-packaging
	@sh tools/run-tests.sh $(BUILD)

test: deps
	$(MAKE) check
	$(MAKE) check CC=clang BUILD=build/asan CFLAGS="-O1 -g" \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
	$(MAKE) test-tsan

# The thread-safe calls (stws_client_post/wake) and the resolver's helper
# thread under ThreadSanitizer: the two suites that start threads.
TSAN_TESTS = $(BUILD)/tsan/test_threads $(BUILD)/tsan/test_resolve
$(BUILD)/tsan/test_%: tests/test_%.c tests/impl.c stream_ws.h $(TEST_HDRS)
	@mkdir -p $(BUILD)/tsan
	clang $(ALL_CFLAGS) -O1 -fsanitize=thread -o $@ $< tests/impl.c -lcmocka $(LIBS)

test-tsan: $(TSAN_TESTS)
	@set -e; for t in $(TSAN_TESTS); do TSAN_OPTIONS=halt_on_error=1 $$t; done

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

build/fuzz/fuzz_client_tls: fuzz/fuzz_client.c  # it includes the plain target

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

# Not part of `make test`: SOAK_SECONDS of flapping ws:// and wss://
# connections against two mock coordinators, the driver under ASan+UBSan;
# a line per client every minute, non-zero on any loss, duplicate or leak
# (tools/soak.py).  CI runs `make soak SOAK_SECONDS=300`.
soak: deps
	$(MAKE) build/asan/soak CC=clang BUILD=build/asan CFLAGS="-O1 -g" \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
	$(PYTHON) tools/soak.py --seconds $(SOAK_SECONDS) --driver build/asan/soak

$(BUILD)/soak: tools/soak.c stream_ws.h
	@mkdir -p $(BUILD)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIBS)

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

# Install for consumers: the header, stream_ws.pc and the CMake package
# (find_package(stream_ws), relocatable).  DESTDIR stages; PREFIX is what the
# files name.  CMakeLists.txt's `cmake --install` writes the same layout.
PREFIX     ?= /usr/local
INCLUDEDIR ?= $(PREFIX)/include
LIBDIR     ?= $(PREFIX)/lib
STWS_VERSION := $(shell sed -n 's/^\#define STWS_VERSION_STRING "\(.*\)"/\1/p' stream_ws.h)
PC_INCLUDEDIR = $(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))
install:
	install -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(LIBDIR)/cmake/stream_ws
	install -m 644 stream_ws.h $(DESTDIR)$(INCLUDEDIR)/stream_ws.h
	install -m 644 stream_ws_test.h $(DESTDIR)$(INCLUDEDIR)/stream_ws_test.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@INCLUDEDIR@|$(PC_INCLUDEDIR)|' -e 's|@STWS_VERSION@|$(STWS_VERSION)|' \
	    -e 's|@STWS_PC_CFLAGS@||' -e 's|@STWS_PC_LIBS@|$(LIBS)|' -e 's| *$$||' \
	    stream_ws.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/stream_ws.pc
	sed -e "s|@STWS_CONFIG_TO_INCLUDEDIR@|$$(realpath -m -s --relative-to=$(LIBDIR)/cmake/stream_ws $(INCLUDEDIR))|" \
	    cmake/stream_wsConfig.cmake.in > $(DESTDIR)$(LIBDIR)/cmake/stream_ws/stream_wsConfig.cmake
	sed -e 's|@STWS_VERSION@|$(STWS_VERSION)|' cmake/stream_wsConfigVersion.cmake.in \
	    > $(DESTDIR)$(LIBDIR)/cmake/stream_ws/stream_wsConfigVersion.cmake
	install -m 644 cmake/stream_wsDependencies.cmake $(DESTDIR)$(LIBDIR)/cmake/stream_ws/

# Consumers built the way users build them (tools/test-packaging.sh): CMake
# with add_subdirectory, find_package after `make install DESTDIR=...` and
# after `cmake --install`, and pkg-config flags; each checks JWT known answers.
test-packaging:
	@CC="$(CC)" SAN="$(SAN)" sh tools/test-packaging.sh $(BUILD)

$(BUILD)/examples/%: examples/%.c stream_ws.h stream_ws_test.h
	@mkdir -p $(BUILD)/examples
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIBS)

$(BUILD)/stws: tools/stws.c stream_ws.h
	@mkdir -p $(BUILD)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIBS)
