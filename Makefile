# mcpgate build. Everything but gateway/main.c builds into one static library
# (build/libmcpgate.a) that the binary, unit tests, fuzzers and benches link;
# the files under web/ go into it as C (web/embed.c, a host tool, writes
# build/web/assets.c), so nothing is deployed beside the binary.
#
#   make            build/mcpgate            (-Werror when CI is set)
#   make asan       build-asan/mcpgate       (ASan + UBSan, own directory)
#   make deps       install missing Debian packages and the npm test tools
#   make run        deps + build + serve on 127.0.0.1:8080 with data in ./data
#   make test       deps + check-layers + build + unit tests + integration
#                   (plain and ASan)
#   make bench      benchmarks (BENCH=policy,sweep,scim,call,audit,idle,cold,proxy,offboard picks)
#   make clean      every build directory (build, build-asan, build-fuzz, build-fuzzcov, build-tsan)

CC      ?= cc
BUILD   ?= build
MODULES := gateway store scim policy auth vault audit web
LLHTTP_SRC := /usr/share/llhttp
LLHTTP_INC := /usr/share/include/llhttp

PKGS    := libuv libssl libcrypto libcurl jansson
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wno-unused-parameter \
               -I. -I$(LLHTTP_INC) -MMD -MP
ifdef CI
CFLAGS_BASE += -Werror
endif
OPT     ?= -O2 -g
SAN_FLAGS :=
# -g1: the line tables a sanitizer's report needs (function, file:line),
# without the variables' locations: the ASan build, on CI's critical path,
# compiles ~22 % faster (gcc's var-tracking at -O1 -g)
ifeq ($(SANITIZE),1)
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT := -O1 -g1
endif
# ThreadSanitizer (make tsan): its own build; libuv, libcurl, LMDB, jansson
# and OpenSSL come uninstrumented from Debian (tests/tsan.supp says why
# each suppression is there)
ifeq ($(SANITIZE),thread)
SAN_FLAGS := -fsanitize=thread -fno-omit-frame-pointer
OPT := -O1 -g
endif
FUZZ_LINK := -fsanitize=address,undefined,fuzzer
# (-g1: line tables, what a crash's stack names; ~8 % less compile time
# in CI, where this build runs behind the plain tests)
ifeq ($(SANITIZE),fuzz)
SAN_FLAGS := -fsanitize=address,undefined,fuzzer-no-link -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT := -O1 -g1
endif
# source-based coverage of the fuzz targets (make fuzz-coverage)
ifeq ($(SANITIZE),fuzzcov)
SAN_FLAGS := -fprofile-instr-generate -fcoverage-mapping -fsanitize=fuzzer-no-link
FUZZ_LINK := -fprofile-instr-generate -fcoverage-mapping -fsanitize=fuzzer
OPT := -O1 -g
endif
CFLAGS  := $(CFLAGS_BASE) $(OPT) $(SAN_FLAGS) $(EXTRA_CFLAGS)
# The gateway binary is linked with link-time optimisation: the data path's
# small helpers (buffers, pools, request memory, header lookups) live in
# other files than their callers and are inlined only then (3 % fewer
# instructions per tools/call; docs/performance.md). The library's objects
# are fat (LTO bytecode and plain code), so the unit tests, fuzzers and
# benches link them as usual. Not in the sanitizer builds. LTO= turns it off.
ifeq ($(SANITIZE),)
LTO ?= -flto=auto -ffat-lto-objects
endif
# (the linker would otherwise run LTO for every unit test and bench too)
NO_LTO := $(if $(LTO),-fno-lto)
LDLIBS  := -luv -lssl -lcrypto -lcurl -ljansson -llmdb -lpthread -lm
LDFLAGS := $(SAN_FLAGS)

LIB_SRC := $(filter-out gateway/main.c web/embed.c,$(sort $(shell find $(MODULES) -name "*.c")))
# + the web files, embedded at build time (web/embed.c writes them as C)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o) $(BUILD)/web/assets.o
WEB_FILES := $(sort $(shell find web -type f \( -name "*.html" -o -name "*.css" -o -name "*.js" \
               -o -name "*.svg" -o -name "*.png" \)))
HOSTCC  ?= cc
LLHTTP_OBJ := $(BUILD)/llhttp/api.o $(BUILD)/llhttp/http.o $(BUILD)/llhttp/llhttp.o
UNIT_SRC := $(wildcard tests/unit/test_*.c)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
BENCH_SRC := $(wildcard tests/bench/bench_*.c)
BENCH_BIN := $(BENCH_SRC:tests/bench/%.c=$(BUILD)/bench/%)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all asan tsan soak deps deps-build run test unit integration clean fuzz fuzz-bins fuzz-coverage bench check-layers FORCE
all: $(BUILD)/mcpgate
FORCE:

$(BUILD)/libmcpgate.a: $(LIB_OBJ) $(LLHTTP_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/mcpgate: $(BUILD)/gateway/main.o $(BUILD)/libmcpgate.a
	$(CC) $(LDFLAGS) $(if $(LTO),$(OPT) -flto=auto) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LTO) -c -o $@ $<

# llhttp's generated C: compiled as-is, without our warning set, in its
# strict mode. That is a compile-time switch (llhttp.c holds two generated
# parsers, chosen by LLHTTP_STRICT_MODE); the runtime lenient flags are
# another thing, and gateway/http/http.c sets none. Built without it (found
# by review) the parser took any two bytes after chunk data for CRLF, CR and
# any byte for the end of the headers, a TAB in the target, a space in a
# header name: behind a front proxy that reads those otherwise, a second
# request hidden in the first one's body (request smuggling).
$(BUILD)/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 $(OPT) $(SAN_FLAGS) $(LTO) -DLLHTTP_STRICT_MODE=1 -I$(LLHTTP_INC) -w -c -o $@ $<

# The web files as C. web/embed.c is a host tool (HOSTCC, no sanitizers: it
# runs at build time and never ships). assets.list holds the file list and
# changes only when the list does, so adding or deleting a file regenerates
# assets.c as well as editing one.
$(BUILD)/web/embed: web/embed.c
	@mkdir -p $(dir $@)
	$(HOSTCC) -std=c11 -O2 -Wall -Wextra $(if $(CI),-Werror) -o $@ $<

$(BUILD)/web/assets.list: FORCE
	@mkdir -p $(dir $@)
	@echo '$(WEB_FILES)' | cmp -s - $@ || echo '$(WEB_FILES)' > $@

$(BUILD)/web/assets.c: $(BUILD)/web/embed $(BUILD)/web/assets.list $(WEB_FILES)
	$(BUILD)/web/embed $@ web/ $(WEB_FILES)

$(BUILD)/web/assets.o: $(BUILD)/web/assets.c
	$(CC) $(CFLAGS) -c -o $@ $<

# Unicode's simple case foldings as a C table (store/text.c: how userName
# and displayName compare without case), from Debian's unicode-data at
# build time: nothing generated is kept in the tree.
CASEFOLDING ?= /usr/share/unicode/CaseFolding.txt
$(BUILD)/store/casefold.inc: store/casefold.awk $(CASEFOLDING)
	@mkdir -p $(dir $@)
	awk -f store/casefold.awk $(CASEFOLDING) > $@.tmp && mv $@.tmp $@
$(BUILD)/store/text.o: $(BUILD)/store/casefold.inc
$(BUILD)/store/text.o: CFLAGS += -I$(BUILD)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libmcpgate.a tests/unit/unit.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(NO_LTO) -MF $(dir $@).$(notdir $@).d $(LDFLAGS) -o $@ $< $(BUILD)/libmcpgate.a $(LDLIBS)

# LD_PRELOAD shims the integration tests use (tests/tools/slowdns.c: a
# slow DNS server; slowopen.c: a process descheduled at an open): no
# sanitizer (they are loaded before its runtime)
$(BUILD)/tests/%.so: tests/tools/%.c
	@mkdir -p $(dir $@)
	$(HOSTCC) -std=c11 -Wall -Wextra -Werror -O1 -shared -fPIC -o $@ $< -ldl

unit-bins: $(UNIT_BIN) $(BUILD)/tests/slowdns.so $(BUILD)/tests/slowopen.so

# libFuzzer drivers (clang): make fuzz builds them in build-fuzz/;
# tests/run.sh replays each corpus and fuzzes each briefly.
$(BUILD)/fuzz/%: tests/fuzz/%.c $(BUILD)/libmcpgate.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MF $(dir $@).$(notdir $@).d $(FUZZ_LINK) -o $@ $< $(BUILD)/libmcpgate.a $(LDLIBS)

fuzz-bins: $(FUZZ_BIN)

# make fuzz: builds the drivers; with FUZZ_SECONDS=N also replays every
# corpus and fuzzes each target for N seconds (tests/run.sh's fuzz part).
fuzz:
	$(MAKE) BUILD=build-fuzz CC=clang SANITIZE=fuzz fuzz-bins
	@if [ -n "$(FUZZ_SECONDS)" ]; then TEST_ONLY=fuzz FUZZ_SECONDS=$(FUZZ_SECONDS) sh tests/run.sh; fi

# make fuzz-coverage: each target's line coverage of the module code over
# its committed corpus (llvm-cov), so weak targets are visible.
fuzz-coverage:
	$(MAKE) BUILD=build-fuzzcov CC=clang SANITIZE=fuzzcov fuzz-bins
	@sh tests/tools/fuzz-coverage.sh build-fuzzcov

$(BUILD)/bench/%: tests/bench/%.c $(BUILD)/libmcpgate.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(NO_LTO) -O2 -MF $(dir $@).$(notdir $@).d $(LDFLAGS) -o $@ $< $(BUILD)/libmcpgate.a $(LDLIBS)

# DESIGN.md's dependency order, checked on the #include lines (the first
# step of `make test`: it fails in a second, before the builds).
check-layers:
	@sh tests/tools/check-layers.sh

asan:
	$(MAKE) BUILD=build-asan SANITIZE=1 all unit-bins

# make tsan: ThreadSanitizer over the unit tests and the proxy, revocation,
# SCIM, audit and approval suites (the writer, audit and worker threads,
# two loops, libuv's pool). Not in `make test`: it would not fit CI's budget.
# Files limited to some runs by a ci-variants line run here too.
TSAN_FILES ?= $(wildcard tests/integration/proxy*.test.mjs tests/integration/hardening-revocation*.test.mjs \
  tests/integration/offboard*.test.mjs tests/integration/scim*.test.mjs tests/integration/workers*.test.mjs \
  tests/integration/audit.test.mjs tests/integration/approvals.test.mjs)
tsan: deps
	$(MAKE) BUILD=build-tsan SANITIZE=thread all unit-bins
	TSAN_OPTIONS="suppressions=$(CURDIR)/tests/tsan.supp halt_on_error=0 second_deadlock_stack=1 $(TSAN_OPTIONS)" \
	  TEST_ONLY=unit TEST_VARIANTS=build-tsan sh tests/run.sh
	TSAN_OPTIONS="suppressions=$(CURDIR)/tests/tsan.supp halt_on_error=0 second_deadlock_stack=1 $(TSAN_OPTIONS)" \
	  TEST_ONLY=integration TEST_VARIANTS=build-tsan TEST_WORKERS=2 TEST_CONCURRENCY=2 TEST_ALL_VARIANTS=1 \
	  TEST_FILES="$(TSAN_FILES)" sh tests/run.sh

deps:
	@sh tests/deps.sh

deps-build:
	@sh tests/deps.sh --build

run: deps-build all
	@mkdir -p -m 700 data
	@echo "mcpgate: serving http://127.0.0.1:8080 with data in ./data (Ctrl-C stops it)"
	@echo "mcpgate: the operator token is in ./data/admin.token (created on first start, mode 0600)"
	@echo "mcpgate: next, in another terminal: ./$(BUILD)/mcpgate tenant create acme --name \"Acme Corp\""
	./$(BUILD)/mcpgate serve --listen 127.0.0.1:8080 --data ./data

# (each phase says when it starts: CI's log then shows where its 15 minutes go.
# Once the plain build is done, its unit tests start in the background, and
# so do the ASan and fuzz builds, niced, with their output in
# build/test-logs/behind.log: the plain integration pass mostly waits on
# timers and sockets, and the compilers take the CPU it leaves instead of
# running ~125 s before any test. tests/run.sh --unit-started --behind runs
# the plain pass, reads the plain unit tests run beside it, waits for the ASan build (not
# the fuzz build: behind.asan.rc), then runs the ASan pass with the ASan
# unit tests and, once their build is done, the fuzzers (niced) beside it:
# it leaves a quarter of the CPU idle. Started during the fuzz build, the
# ASan unit tests took CPU enough to stretch it from 49 to 109 s.)
test: deps
	$(MAKE) check-layers
	@echo "== $$(date +%T) make test: builds"
	$(MAKE) all unit-bins
	@sh tests/run.sh --unit-start build
	@echo "== $$(date +%T) make test: tests (the ASan and fuzz builds behind the plain ones: build/test-logs/behind.log)"
	@mkdir -p build/test-logs && rm -f build/test-logs/behind.rc build/test-logs/behind.asan.rc && \
	 ( { echo "== $$(date +%T) ASan build"; nice -n 19 $(MAKE) asan; echo $$? >build/test-logs/behind.asan.rc; \
	     echo "== $$(date +%T) fuzz build" && nice -n 19 $(MAKE) fuzz FUZZ_SECONDS= && \
	     echo "== $$(date +%T) done"; } >build/test-logs/behind.log 2>&1; \
	   echo $$? >build/test-logs/behind.rc ) &
	sh tests/run.sh --unit-started --behind build/test-logs/behind

# make soak: mixed traffic for SOAK_SECS (default 300) against the real
# binary; RSS and descriptors over time must stay flat, no unexpected error
# (tests/soak/soak.mjs). SANITIZE=1 soaks the ASan build. Not in `make test`.
SOAK_SECS ?= 300
ifeq ($(SANITIZE),1)
SOAK_BIN := build-asan/mcpgate
else
SOAK_BIN := $(BUILD)/mcpgate
endif
soak: deps
	$(MAKE) $(if $(filter 1,$(SANITIZE)),BUILD=build-asan SANITIZE=1,) all
	node tests/soak/soak.mjs --secs $(SOAK_SECS) --bin $(SOAK_BIN)

# Benchmarks print numbers against a baseline run in the same invocation;
# they assert nothing and are not part of `make test`.
# the benches' C upstream (tests/bench/upstream.c): llhttp comes from the library
$(BUILD)/bench/upstream: tests/bench/upstream.c $(BUILD)/libmcpgate.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(NO_LTO) -O2 -MF $(dir $@).$(notdir $@).d $(LDFLAGS) -o $@ $< $(BUILD)/libmcpgate.a $(LDLIBS)

BENCH ?= all
# ... and its open-loop load generator (latency at a set rate)
$(BUILD)/bench/rate: tests/bench/rate.c $(BUILD)/libmcpgate.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(NO_LTO) -O2 -MF $(dir $@).$(notdir $@).d $(LDFLAGS) -o $@ $< $(BUILD)/libmcpgate.a $(LDLIBS)

bench: deps all $(BENCH_BIN) $(BUILD)/bench/upstream $(BUILD)/bench/rate
	@BUILD=$(BUILD) sh tests/bench/run.sh $(BENCH)

clean:
	rm -rf build build-asan build-fuzz build-fuzzcov build-tsan

-include $(LIB_OBJ:.o=.d) $(BUILD)/gateway/main.d $(foreach b,$(UNIT_BIN) $(FUZZ_BIN),$(dir $(b)).$(notdir $(b)).d)
