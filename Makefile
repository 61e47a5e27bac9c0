# pgrepart: build like a PostgreSQL client. Paths come from pg_config; the
# libraries are Debian's packages (libpq, libpqtypes, xxHash), never vendored.

PG_CONFIG ?= pg_config
PREFIX    ?= /usr/local
VERSION   := 0.1.0

PG_INCLUDEDIR := $(shell $(PG_CONFIG) --includedir 2>/dev/null)
PG_LIBDIR     := $(shell $(PG_CONFIG) --libdir 2>/dev/null)
PG_BINDIR     := $(shell $(PG_CONFIG) --bindir 2>/dev/null)

# The build's packages that are not here: plain make names them rather than
# failing on a missing header (make deps, make check and make demo install
# them).
MISSING_PACKAGES := $(strip \
    $(if $(and $(PG_INCLUDEDIR),$(wildcard $(PG_INCLUDEDIR)/libpq-fe.h)),,libpq-dev) \
    $(if $(wildcard /usr/include/libpqtypes.h),,libpqtypes-dev) \
    $(if $(wildcard /usr/include/xxhash.h),,libxxhash-dev))

CC      ?= cc
CFLAGS  ?= -O2 -g
WARNINGS = -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wmissing-prototypes \
           -Wstrict-prototypes -Wvla -Wpointer-arith -Wno-missing-field-initializers
CPPFLAGS += -Iinclude -I$(PG_INCLUDEDIR) -D_GNU_SOURCE \
            -DPGREPART_VERSION='"$(VERSION)"'
LDLIBS  += -L$(PG_LIBDIR) -lpqtypes -lpq -lxxhash -lm
SANITIZE = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

# BUILD is where objects go; the sanitizer build uses its own tree so the two
# never mix objects.
BUILD ?= build
BIN   ?= pgrepart

SRCS      := $(wildcard src/*.c)
LIB_SRCS  := $(filter-out src/main.c,$(SRCS))
LIB_OBJS  := $(LIB_SRCS:src/%.c=$(BUILD)/src/%.o)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

ALL_CFLAGS = -std=c11 $(WARNINGS) $(CFLAGS) $(EXTRA_CFLAGS)

.PHONY: all deps packages asan check check-run check-asan check-faults lint fuzz bench demo demo-run clean install

all: $(BIN) $(UNIT_BINS)

$(BIN): $(LIB_OBJS) $(BUILD)/src/main.o
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/src/%.o: src/%.c $(wildcard include/pgrepart/*.h) | packages $(BUILD)/src
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c tests/unit/tap.h $(LIB_OBJS) | $(BUILD)/tests
	$(CC) $(CPPFLAGS) -Itests/unit $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(LIB_OBJS) $(LDLIBS)

$(BUILD)/src $(BUILD)/tests:
	mkdir -p $@

packages:
ifneq ($(MISSING_PACKAGES),)
	@echo "pgrepart: the build needs Debian's $(MISSING_PACKAGES)." >&2
	@echo "pgrepart: run \"make deps\" (it installs them with apt-get), or apt-get install them yourself." >&2
	@exit 1
endif

# The sanitizer build: ./build/asan/pgrepart and its unit tests.
asan:
	$(MAKE) --no-print-directory BUILD=build/asan BIN=build/asan/pgrepart EXTRA_CFLAGS="$(SANITIZE) -O1" \
	        LDFLAGS="$(SANITIZE)" all

# What the build and the tests need from Debian's archive, where missing.
deps:
	@bash .ci/deps

# Every test: unit tests (pure code) and integration tests against throwaway
# PostgreSQL clusters, all under prove so the closing line is its summary.
# make check calls make deps first, by name, so the README's two commands work
# on a fresh machine; a fresh make then reads pg_config's paths.  The tests
# themselves (check-run, check-asan) install nothing.
check: deps
	@$(MAKE) --no-print-directory check-run

# Two test files at a time (each with its own cluster): most of a test's time
# is spent waiting on its load or its server, and every test must hold on a
# busy machine anyway.  PROVE_FLAGS= runs them one by one.
PROVE_FLAGS ?= -j2

check-run: all
	PGREPART=$(CURDIR)/$(BIN) PGREPART_FIXTURES=$(CURDIR)/tests/fixtures \
	PG_BINDIR=$(PG_BINDIR) prove -I tests/lib $(PROVE_FLAGS) $(UNIT_BINS) tests/t/

check-asan: asan
	PGREPART_SANITIZED=1 $(MAKE) --no-print-directory BUILD=build/asan BIN=build/asan/pgrepart EXTRA_CFLAGS="$(SANITIZE) -O1" \
	        LDFLAGS="$(SANITIZE)" check-run

# Static analysis: cppcheck, then clang-tidy with .clang-tidy's checks; both
# must be silent.
lint:
	cppcheck -q --enable=warning,style,portability,performance --std=c11 -Iinclude -D_GNU_SOURCE \
	    --suppress=missingIncludeSystem --inline-suppr --error-exitcode=1 src/
	for f in $(SRCS); do \
	    clang-tidy -quiet $$f -- $(CPPFLAGS) -std=c11 2>/dev/null || exit 1; \
	done

# Every fault at every phase of a run under load (tests/faults.pl);
# FAULT_RUNS repeats the whole table, FAULTS= and POINTS= narrow it.
check-faults: all
	PGREPART=$(CURDIR)/$(BIN) PGREPART_FIXTURES=$(CURDIR)/tests/fixtures \
	PG_BINDIR=$(PG_BINDIR) perl -I tests/lib tests/faults.pl

# Fuzz the pgoutput decoder and the binary COPY reader with libFuzzer
# (clang); FUZZ_SECONDS bounds each target's run.
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_FLAGS    = $(CPPFLAGS) -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined
fuzz: | $(BUILD)/src
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $(BUILD)/fuzz_pgout tests/fuzz/fuzz_pgout.c \
	    src/pgout.c src/wire.c src/mem.c src/buf.c
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $(BUILD)/fuzz_copybin tests/fuzz/fuzz_copybin.c \
	    src/copybin.c src/wire.c src/mem.c src/buf.c
	mkdir -p $(BUILD)/fuzz-corpus/pgout $(BUILD)/fuzz-corpus/copybin
	$(BUILD)/fuzz_pgout -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	    $(BUILD)/fuzz-corpus/pgout tests/fuzz/corpus/pgout
	$(BUILD)/fuzz_copybin -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	    $(BUILD)/fuzz-corpus/copybin tests/fuzz/corpus/copybin

# Benchmarks print "bench NAME: ..." lines; they never decide pass or fail.
BENCHES ?= apply verify backfill cutover memory throttle load copy_order revert
bench: all
	for b in $(BENCHES); do \
	    PGREPART=$(CURDIR)/$(BIN) PG_BINDIR=$(PG_BINDIR) perl -I tests/lib tests/bench/$$b.pl || exit 1; \
	done

# The main job on a built-in default: a throwaway cluster, a live table under
# load, migrated online and verified (ROWS rows, default 1000000).
demo: deps
	@$(MAKE) --no-print-directory demo-run

demo-run: all
	PGREPART=$(CURDIR)/$(BIN) PG_BINDIR=$(PG_BINDIR) perl -I tests/lib tests/demo.pl

install: $(BIN)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/pgrepart
	install -m 0644 docs/pgrepart.1 $(DESTDIR)$(PREFIX)/share/man/man1/pgrepart.1

clean:
	rm -rf build pgrepart
