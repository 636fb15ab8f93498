# make demo: set up everything, build, run the demo.  make test: set up, build, run every test.
PY := .venv/bin/python
TORCH_CMAKE = $(shell $(PY) -c "import torch; print(torch.utils.cmake_prefix_path)")
TORCH_DIR = $(shell $(PY) -c "import os, torch; print(os.path.dirname(torch.__file__))")
TORCH_LIB = $(TORCH_DIR)/lib
JOBS ?= $(shell nproc)
PREFIX_DIR := build/install
PACKAGE_BUILD := build/package
WHEEL_DIR := build/wheel
WHEEL_SITE := build/wheel-site
export MAX_JOBS := $(JOBS)

.PHONY: setup build demo test test-python test-cpp test-examples test-wheel test-sanitizers test-portable test-aarch64 bench-cpu bench-cpu-train gpu-check clean

setup:
	bash scripts/bootstrap.sh

# Builds libmyconv through setup.py -> CMake (build/cmake) and installs the package editable.
build: setup
	$(PY) -m pip install -q --no-build-isolation -e .

demo: build
	$(PY) examples/demo.py

test: test-python test-cpp test-examples test-wheel test-sanitizers

test-python: build
	$(PY) -m pytest

# GoogleTest through ctest, in the same CMake tree setup.py built the library in.
test-cpp: build
	cmake -S . -B build/cmake -DMYCONV_BUILD_TESTS=ON
	cmake --build build/cmake -j $(JOBS)
	ctest --test-dir build/cmake --output-on-failure

# Builds the installable package as a C++ user would: a fresh tree configured exactly once,
# installed to a temporary prefix; checks the installed library's search path; builds the
# examples (and README.md's C++ blocks) against that prefix alone and runs them; then one against the editable install's
# myconv.cmake_prefix_path (the source tree's package).
test-examples: build
	rm -rf $(PACKAGE_BUILD) $(PREFIX_DIR) build/examples
	cmake -S . -B $(PACKAGE_BUILD) -DCMAKE_PREFIX_PATH="$(TORCH_CMAKE)" -DMYCONV_BUILD_TESTS=OFF
	cmake --build $(PACKAGE_BUILD) -j $(JOBS)
	cmake --install $(PACKAGE_BUILD) --prefix $(PREFIX_DIR)
	$(PY) scripts/check_library.py --allow "$(TORCH_LIB)" $(PREFIX_DIR)/lib/libmyconv.so
	$(PY) scripts/readme_cpp.py README.md build/readme/readme_blocks.cpp
	cmake -S examples/cpp -B build/examples -DCMAKE_PREFIX_PATH="$(CURDIR)/$(PREFIX_DIR);$(TORCH_CMAKE)" \
	  -DMYCONV_README_BLOCKS="$(CURDIR)/build/readme/readme_blocks.cpp"
	cmake --build build/examples -j $(JOBS)
	build/examples/direct_conv
	$(PY) examples/cpp/torchscript/make_model.py build/examples/torchscript
	build/examples/run_torchscript build/examples/torchscript/model.pt build/examples/torchscript/data.pt
	$(PY) examples/cpp/aoti/make_package.py build/examples/aoti
	build/examples/run_aoti build/examples/aoti/model.pt2 build/examples/aoti/data.pt
	rm -rf build/examples-editable
	cmake -S examples/cpp -B build/examples-editable \
	  -DCMAKE_PREFIX_PATH="$$($(PY) -c 'import myconv; print(myconv.cmake_prefix_path)');$(TORCH_CMAKE)"
	cmake --build build/examples-editable -j $(JOBS) --target direct_conv
	build/examples-editable/direct_conv

# Builds the wheel, installs it into a separate site directory (with torch beside it, as in any
# environment where both are pip-installed), checks its library's search path, runs a smoke test
# from outside the source tree and builds a C++ example against the wheel's CMake package.
test-wheel: build
	rm -rf $(WHEEL_DIR) $(WHEEL_SITE) build/examples-wheel
	$(PY) -m pip wheel -q --no-build-isolation --no-deps . -w $(WHEEL_DIR)
	$(PY) -m pip install -q --no-deps --target $(WHEEL_SITE) $(WHEEL_DIR)/myconv-*.whl
	ln -s "$(TORCH_DIR)" $(WHEEL_SITE)/torch
	$(PY) scripts/check_library.py $(WHEEL_SITE)/myconv/lib/libmyconv.so
	cd /tmp && PYTHONPATH="$(CURDIR)/$(WHEEL_SITE)" "$(CURDIR)/$(PY)" "$(CURDIR)/scripts/wheel_smoke.py" "$(CURDIR)/$(WHEEL_SITE)"
	cmake -S examples/cpp -B build/examples-wheel \
	  -DCMAKE_PREFIX_PATH="$$(cd /tmp && PYTHONPATH="$(CURDIR)/$(WHEEL_SITE)" "$(CURDIR)/$(PY)" -c 'import myconv; print(myconv.cmake_prefix_path)');$(TORCH_CMAKE)"
	cmake --build build/examples-wheel -j $(JOBS) --target direct_conv
	build/examples-wheel/direct_conv

# The C++ tests once more under AddressSanitizer + UndefinedBehaviorSanitizer (CPU kernels).
test-sanitizers: setup
	cmake -S . -B build/sanitize -DCMAKE_PREFIX_PATH="$(TORCH_CMAKE)" -DMYCONV_SANITIZE=ON -DMYCONV_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build build/sanitize -j $(JOBS)
	ASAN_OPTIONS=abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --test-dir build/sanitize --output-on-failure

# The build without the x86 kernel files (what aarch64 compiles), its CPU suites, and an aarch64
# compile of every CPU source where g++-aarch64-linux-gnu is installed (not in CI: ~5 minutes).
test-portable: build
	bash scripts/check_portable.sh

# Cross-builds for aarch64 (NEON kernels) against PyPI's aarch64 torch and runs the kernels'
# GoogleTest and the CPU suites under qemu on each aarch64 kernel (not in CI: ~15 minutes fresh,
# ~8 cached; downloads 2.6 GB once).
test-aarch64: setup
	bash scripts/check_aarch64.sh

bench-cpu: build
	cd benchmarks && ../$(PY) bench_cpu.py

bench-cpu-train: build
	cd benchmarks && ../$(PY) bench_cpu.py --train

# On a GPU machine with a preinstalled torch (no network, no .venv): see scripts/gpu_check.sh.
gpu-check:
	bash scripts/gpu_check.sh

clean:
	rm -rf build python/myconv/libmyconv.so python/*.egg-info
