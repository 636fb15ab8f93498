#!/usr/bin/env bash
# Issue 21's proof without an Arm machine: cross-builds libmyconv for aarch64 (the NEON kernels
# in) against PyPI's aarch64 torch of the pinned version, and runs under qemu-aarch64
#  1. the kernels' GoogleTest (tests/cpp/test_kernels.cpp: tile and depthwise kernels of every
#     instruction set, float32, float16, bfloat16), statically linked;
#  2. the CPU parity, gradient, packed-filter and fused-epilogue pytest cases with an aarch64
#     CPython, once per aarch64 kernel (MYCONV_CPU_ISA=scalar, neon), then the microkernel tests
#     with the best kernel (NEON), with qemu's `-cpu max` (every optional Arm extension visible);
#  3. the NEON tile kernel's inner loop, counted from the cross-built object's disassembly
#     (FMAs, vector loads, stack accesses), written to build/aarch64/neon-inner-loop.md (a run's
#     figures are recorded in benchmarks/results/aarch64-neon.md).
# Needs Debian's and PyPI's registries only: the cross compiler, qemu-user and arm64 CPython's
# debs (unpacked into a sysroot, no multiarch install), then scripts/aarch64-requirements.txt's
# wheels (2.6 GB, unpacked to 3.8 GB) and a stub libcupti (../shared/aarch64-emulation.md says why).
# Everything is cached under build/aarch64: a second run only rebuilds and tests. About 15 minutes
# on 2 cores from a fresh machine, 8 cached; not part of CI (make test-aarch64).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
# Downloads and what is made of them (sysroot, site, cupti stub, googletest) are cached in
# MYCONV_AARCH64_DIR (default build/aarch64: several clones can share one); builds go to build/aarch64.
A=$(realpath -m "${MYCONV_AARCH64_DIR:-build/aarch64}")
B=$(realpath -m build/aarch64)
JOBS=${MAX_JOBS:-$(nproc)}
mkdir -p "$A" "$B"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo

# 1. Debian: the cross compiler, qemu, and an aarch64 CPython unpacked into a sysroot.
need=()
command -v aarch64-linux-gnu-g++ > /dev/null || need+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64 > /dev/null || need+=(qemu-user)
command -v unzip > /dev/null || need+=(unzip)
[ -d /usr/src/googletest/googletest ] || need+=(googletest)
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
if [ ! -x "$A/sysroot/usr/bin/python3.11" ]; then
  dpkg --print-foreign-architectures | grep -qx arm64 || $SUDO dpkg --add-architecture arm64
  $SUDO apt-get update -qq
  mkdir -p "$A/debs" && (cd "$A/debs" && apt-get download python3.11-minimal:arm64 libpython3.11-minimal:arm64 \
    libpython3.11-stdlib:arm64 libc6:arm64 libexpat1:arm64 zlib1g:arm64 libffi8:arm64 libssl3:arm64 libbz2-1.0:arm64 \
    liblzma5:arm64 libsqlite3-0:arm64 libuuid1:arm64 libncursesw6:arm64 libtinfo6:arm64 libreadline8:arm64 \
    libdb5.3:arm64 libgcc-s1:arm64 libstdc++6:arm64 libgomp1:arm64)
  for deb in "$A"/debs/*.deb; do dpkg-deb -x "$deb" "$A/sysroot"; done
fi

# 2. PyPI: the pinned aarch64 wheels, each unpacked into one site directory once (a wheel is a zip
# of it; the archive is not kept: 2.6 GB).
platforms=()
for p in manylinux_2_28_aarch64 manylinux_2_27_aarch64 manylinux_2_17_aarch64 manylinux2014_aarch64 \
         manylinux_2_34_aarch64 any; do platforms+=(--platform "$p"); done
mkdir -p "$A/site/.installed"
grep -v '^#' scripts/aarch64-requirements.txt | grep -v '^\s*$' | while read -r requirement; do
  [ -f "$A/site/.installed/$requirement" ] && continue
  rm -rf "$A/download" && mkdir -p "$A/download"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 "${platforms[@]}" "$requirement" \
    -d "$A/download" < /dev/null
  unzip -q -o "$A"/download/*.whl -d "$A/site"
  rm -rf "$A/download"
  touch "$A/site/.installed/$requirement"
done

# The cupti functions torch's libraries bind at load, from a stub with the soname they name.
if [ ! -f "$A/cupti/libcupti.so.13" ]; then
  mkdir -p "$A/cupti"
  symbols=$(for lib in "$A"/site/torch/lib/*.so; do readelf --dyn-syms -W "$lib"; done |
            grep -o 'cupti[A-Za-z0-9_]*@libcupti.so.13' | sed 's/@.*//' | sort -u)
  { echo "libcupti.so.13 { global:"; for s in $symbols; do echo "  $s;"; done; echo "local: *; };"; } > "$A/cupti/cupti.map"
  for s in $symbols; do echo "int $s(void) { return 1; }"; done > "$A/cupti/cupti.c"
  aarch64-linux-gnu-gcc -shared -fPIC -Wl,-soname,libcupti.so.13 -Wl,--version-script="$A/cupti/cupti.map" \
    "$A/cupti/cupti.c" -o "$A/cupti/libcupti.so.13"
fi

# 3. libmyconv for aarch64 with the project's CMake: a cross toolchain, and the wheel's CPU
# libraries as find_package(Torch) (its own config insists on a CUDA toolkit for the target).
cat > "$B/toolchain.cmake" <<EOF
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_FIND_ROOT_PATH $A/site $A/sysroot)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
EOF
mkdir -p "$B/torch-cpu"
cat > "$B/torch-cpu/TorchConfig.cmake" <<EOF
set(_torch "$A/site/torch")
add_library(torch_aarch64_cpu INTERFACE IMPORTED)
set_target_properties(torch_aarch64_cpu PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "\${_torch}/include;\${_torch}/include/torch/csrc/api/include"
  INTERFACE_LINK_LIBRARIES "\${_torch}/lib/libtorch.so;\${_torch}/lib/libtorch_cpu.so;\${_torch}/lib/libc10.so"
  INTERFACE_COMPILE_DEFINITIONS "_GLIBCXX_USE_CXX11_ABI=1")
set(TORCH_LIBRARIES torch_aarch64_cpu)
set(TORCH_LIBRARY "\${_torch}/lib/libtorch.so")
set(CAFFE2_USE_CUDA OFF)
set(Torch_FOUND TRUE)
EOF
cmake -S . -B "$B/cmake" -DCMAKE_TOOLCHAIN_FILE="$B/toolchain.cmake" -DTorch_DIR="$B/torch-cpu" -DMYCONV_CUDA=OFF \
  -DMYCONV_BUILD_TESTS=OFF -DMYCONV_PYTHON_PACKAGE=ON -DCMAKE_CXX_FLAGS=-Werror | grep "myconv"
cmake --build "$B/cmake" --target myconv -j "$JOBS"
rm -rf "$B/python" && mkdir -p "$B/python" && cp -r python/myconv "$B/python/"
rm -rf "$B/python/myconv/lib" "$B/python/myconv/include" && mkdir "$B/python/myconv/lib"
cp "$B/cmake/libmyconv.so" "$B/python/myconv/lib/"

# 4. The kernels' GoogleTest, static (no sysroot needed), under qemu.
G=/usr/src/googletest/googletest
if [ ! -f "$A/gtest/gtest_main.o" ]; then
  mkdir -p "$A/gtest"
  aarch64-linux-gnu-g++ -std=c++17 -O2 -I$G/include -I$G -c $G/src/gtest-all.cc -o "$A/gtest/gtest-all.o"
  aarch64-linux-gnu-g++ -std=c++17 -O2 -I$G/include -I$G -c $G/src/gtest_main.cc -o "$A/gtest/gtest_main.o"
fi
K=csrc/myconv/cpu/microkernel
aarch64-linux-gnu-g++ -std=c++17 -O3 -Wall -Wextra -Werror -static -DMYCONV_NEON_KERNELS -Icsrc -I$G/include \
  tests/cpp/test_kernels.cpp $K/tile_scalar.cpp $K/tile_neon.cpp $K/depthwise_neon.cpp \
  "$A/gtest/gtest-all.o" "$A/gtest/gtest_main.o" -lpthread -o "$B/test_kernels" 2> >(grep -v "getaddrinfo\|MakeConnection" >&2 || true)
qemu-aarch64 -cpu max "$B/test_kernels"

# 5. pytest under qemu, once per aarch64 kernel. (The tests that start Python subprocesses are
# left out: a process qemu runs cannot exec an aarch64 binary without binfmt registration; this
# loop is what they do.)
LIBS="$A/site/torch/lib:$A/cupti:$(ls -d "$A"/site/nvidia/*/lib | paste -sd:)"
aarch64_python() {  # aarch64_python ISA ARGS...: the aarch64 python3.11 ARGS, MYCONV_CPU_ISA=ISA ("": the best)
  local isa=$1
  shift
  qemu-aarch64 -cpu max -L "$A/sysroot" -E LD_LIBRARY_PATH="$LIBS" -E PYTHONPATH="$A/site:$B/python" \
    -E OMP_NUM_THREADS="$JOBS" -E MYCONV_CPU_ISA="$isa" "$A/sysroot/usr/bin/python3.11" "$@"
}
for isa in scalar neon; do
  echo "== MYCONV_CPU_ISA=$isa under qemu-aarch64"
  aarch64_python $isa -c "import torch, myconv; print(torch.__version__, torch.ops.myconv.cpu_isa()); \
assert torch.ops.myconv.cpu_isa() == '$isa'"
  aarch64_python $isa -m pytest -q -p no:cacheprovider -k cpu \
    tests/python/test_parity.py tests/python/test_gradients.py tests/python/test_packed_filters.py \
    tests/python/test_fused.py
done
echo "== the microkernel tests under qemu-aarch64 (NEON chosen as the best kernel)"
aarch64_python "" -m pytest -q -p no:cacheprovider tests/python/test_microkernel.py \
  -k "not every_compiled_path and not forced_through_the_phases and not unknown_isa and not build_lacks"

# 6. The NEON tile kernel's inner loop (the innermost loop with the most FMAs), from the object
# (benchmarks/results/aarch64-neon.md records a run's figures).
"$PY" scripts/neon_inner_loop.py "$B/cmake/CMakeFiles/myconv.dir/$K/tile_neon.cpp.o" "$B/neon-inner-loop.md"
echo "aarch64: every check passed"
