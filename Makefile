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

lint: release
	@git ls-files '*.h' '*.cc' | xargs clang-format --dry-run --Werror
	@git ls-files 'src/*.cc' | xargs run-clang-tidy -quiet -p build/release >/dev/null 2>build/clang-tidy.log \
	  || { cat build/clang-tidy.log; exit 1; }

format:
	@git ls-files '*.h' '*.cc' | xargs clang-format -i

clean:
	rm -rf build
