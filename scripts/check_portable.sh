#!/usr/bin/env bash
# The portable build (issue 21's first step): what a non-x86 target compiles, without the AVX2 and
# AVX-512 kernel files. On this machine it
#  1. builds that configuration (MYCONV_X86_KERNELS=OFF, CPU only) beside the main build and runs
#     the CPU suites against it (parity, gradients, packed filters, fused, transposed, microkernel
#     selection);
#  2. where the aarch64 cross compiler is installed (Debian: g++-aarch64-linux-gnu), compiles every
#     CPU translation unit for aarch64 against torch's headers (no link, no run: make test-aarch64
#     links against the aarch64 torch and runs under qemu).
# About 5 minutes on 2 cores; not part of CI (make test-portable).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
BUILD=build/portable
TORCH_PREFIX=$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')
TORCH_INCLUDE=$("$PY" -c 'import torch.utils.cpp_extension as e; print(" ".join("-isystem " + p for p in e.include_paths()))')

cmake -S . -B "$BUILD/cmake" -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" -DMYCONV_X86_KERNELS=OFF -DMYCONV_CUDA=OFF \
  -DMYCONV_BUILD_TESTS=OFF -DMYCONV_PYTHON_PACKAGE=ON | grep "myconv"
cmake --build "$BUILD/cmake" --target myconv -j "${MAX_JOBS:-2}"
rm -rf "$BUILD/python" && mkdir -p "$BUILD/python/myconv/lib"
cp -r python/myconv/. "$BUILD/python/myconv/" && rm -rf "$BUILD/python/myconv/lib" && mkdir "$BUILD/python/myconv/lib"
cp "$BUILD/cmake/libmyconv.so" "$BUILD/python/myconv/lib/"
PYTHONPATH="$PWD/$BUILD/python" "$PY" -c 'import torch, myconv; assert torch.ops.myconv.cpu_compiled_isas() == ["scalar"], torch.ops.myconv.cpu_compiled_isas(); print("portable build loads:", myconv.__file__)'
PYTHONPATH="$PWD/$BUILD/python" "$PY" -m pytest -q -p no:cacheprovider -k "cpu or isa or instruction" \
  tests/python/test_parity.py tests/python/test_gradients.py tests/python/test_packed_filters.py \
  tests/python/test_fused.py tests/python/test_transpose.py tests/python/test_microkernel.py

if command -v aarch64-linux-gnu-g++ > /dev/null; then
  for source in $(git ls-files 'csrc/*.cpp' | grep -v '_avx'); do
    aarch64-linux-gnu-g++ -std=c++17 -fsyntax-only -Wall -Wextra -Werror -Icsrc $TORCH_INCLUDE \
      -DMYCONV_VERSION='"check"' -DMYCONV_NEON_KERNELS "$source"
  done
  echo "every CPU translation unit compiles for aarch64"
else
  echo "aarch64-linux-gnu-g++ not installed: the aarch64 compile check was skipped (apt-get install g++-aarch64-linux-gnu)"
fi
