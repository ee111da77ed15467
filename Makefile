# entrowatch: the two commands.
#   make demo   set up, build, run entrowatchd on the default config, drive it
#               with `entrowatch simulate`, show status and metrics, stop it
#   make test   set up, build, run the whole test suite
BUILD ?= build
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

clean:
	rm -rf $(BUILD) $(BUILD).configure.log
