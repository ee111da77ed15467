# entrowatch: the two commands.
#   make demo   set up, build, run entrowatchd on the default config, drive it
#               with `entrowatch simulate`, show status and metrics, stop it
#   make test   set up, build, run the whole test suite, then the unit and
#               integration tests again under AddressSanitizer and
#               UndefinedBehaviorSanitizer (make sanitize)
BUILD ?= build
SANITIZE_BUILD ?= build-asan
JOBS ?= 2
CMAKE_FLAGS ?=

.PHONY: demo test build deps deps-test configure sanitize clean

deps:
	@scripts/setup-deps.sh build

deps-test:
	@scripts/setup-deps.sh test

configure:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) > $(BUILD).configure.log 2>&1 \
	  || { cat $(BUILD).configure.log; exit 1; }

build: deps configure
	@cmake --build $(BUILD) -j $(JOBS)

demo: deps configure
	@cmake --build $(BUILD) -j $(JOBS) --target entrowatchd entrowatch
	@scripts/demo.sh $(BUILD)

test: deps-test configure
	@cmake --build $(BUILD) -j $(JOBS)
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 600
	@$(MAKE) --no-print-directory sanitize

# The C++ unit and integration tests (real daemon included) built with
# -fsanitize=address,undefined; any report fails the test that triggered it.
sanitize: deps-test
	@cmake -S . -B $(SANITIZE_BUILD) -DCMAKE_BUILD_TYPE=Debug -DENTROWATCH_CUDA=OFF \
	  -DENTROWATCH_BENCH=OFF -DENTROWATCH_SANITIZE=address,undefined > $(SANITIZE_BUILD).configure.log 2>&1 \
	  || { cat $(SANITIZE_BUILD).configure.log; exit 1; }
	@cmake --build $(SANITIZE_BUILD) -j $(JOBS)
	@cd $(SANITIZE_BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 600 -L 'unit|integration' \
	  -E 'python_client|^deploy\.'

clean:
	rm -rf $(BUILD) $(BUILD).configure.log $(SANITIZE_BUILD) $(SANITIZE_BUILD).configure.log
