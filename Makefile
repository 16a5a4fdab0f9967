# The front door. `make run` and `make test` do every set-up step themselves on a fresh
# Debian 12 machine (see README.md).
SHELL := /bin/bash
DATA_DIR ?= $(HOME)/.keyfoundry/data
LISTEN ?= 127.0.0.1:8443
FUZZ_SECONDS ?= 30

.PHONY: run test deps build release fuzz-build asan tsan fuzz bench lint format clean

deps:
	@bash scripts/install-deps.sh

release: deps
	@cmake --preset release >/dev/null
	@cmake --build --preset release

# The fuzz preset builds only the fuzzers; CTest's short fuzz runs use them.
fuzz-build: deps
	@cmake --preset fuzz >/dev/null
	@cmake --build --preset fuzz --target fuzzers

run: release
	./build/release/src/server/keyfoundryd serve --data-dir "$(DATA_DIR)" --listen "$(LISTEN)"

test: release fuzz-build
	@ctest --preset release

asan: deps fuzz-build
	@cmake --preset asan >/dev/null
	@cmake --build --preset asan
	@ctest --preset asan

tsan: deps fuzz-build
	@cmake --preset tsan >/dev/null
	@cmake --build --preset tsan
	@ctest --preset tsan

# A long fuzzing session of every fuzzer: make fuzz FUZZ_SECONDS=3600
fuzz: fuzz-build
	@bash tests/fuzz/run.sh build/fuzz $(FUZZ_SECONDS)

bench: release
	@bash bench/run.sh
	@bash bench/keyvault_bench.sh

lint: release
	@git ls-files '*.h' '*.cc' | xargs clang-format --dry-run --Werror
	@# Production code only: tests are held to the compiler's -Werror warnings, and gtest's
	@# macros trip checks that are about production code.
	@git ls-files 'src/*.cc' | grep -v '_test\.cc$$' | \
	  xargs run-clang-tidy -quiet -j 2 -p build/release >build/clang-tidy.log 2>&1 \
	  || { grep -E 'error:|warning:' build/clang-tidy.log; exit 1; }

format:
	@git ls-files '*.h' '*.cc' | xargs clang-format -i

clean:
	rm -rf build
