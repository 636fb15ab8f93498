#!/usr/bin/env bash
# One command for a GPU machine that has torch, nvcc, CMake, ninja and pytest preinstalled and no
# network: builds in place with that machine's Python (no .venv, no downloads) for its own card,
# then runs, each phase under its own time limit, in the order of what only a GPU can show:
#   1. the CUDA tests (pytest -k cuda), 2. the same under MYCONV_CUDA_ENGINE=implicit_gemm (the
#   CUTLASS kernels), 3. the GPU benchmark forward on both engines, 4. forward + backward, 5. the
#   rest of pytest, 6. GoogleTest, 7. the slow sweep's CUDA cases, while time is left.
# CUTLASS's headers must come with the tree (no network there): the device run carries
# .venv/lib/python3.11/site-packages/cutlass_library/source/include (27 MB), which CMake finds.
# Logs are written as the phases run, under $OUT when set (else build/gpu-check), so a run cut short
# still returns what it did; benchmarks/results/gpu-<card>*.md are copied there too.
#
# Environment: PYTHON (default python3); MYCONV_GPU_CHECK_SECONDS, the whole run's budget (default
# 560, under the device's 600 s a command); MYCONV_GTEST_SOURCE, a googletest source tree to build where the
# machine has no GoogleTest; TORCH_CUDA_ARCH_LIST (default: the card's own); MYCONV_CUDA (default
# 1: fail rather than build CPU-only). The build ends with scripts/check_library.py: on this
# workplace's H200 image the link once took a static libstdc++, and Python crashed on every C++
# error message that formats a number. Exit status 0 only when every phase ran and passed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOGS=${OUT:-build/gpu-check}
SELF="$PWD/scripts/gpu_check.sh"

case "${1:-}" in
  _build)  # the package, in place, as `import myconv` from python/ finds it; then its library checks
    MYCONV_CUDA=${MYCONV_CUDA:-1} MAX_JOBS=$(nproc) "$PY" setup.py -q build_ext --inplace || exit
    exec "$PY" scripts/check_library.py python/myconv/lib/libmyconv.so ;;
  _ctest)  # GoogleTest in the tree setup.py configured (the library is already built there)
    set -e
    gtest=()
    if [ -n "${MYCONV_GTEST_SOURCE:-}" ]; then
      cmake -S "$MYCONV_GTEST_SOURCE" -B build/googletest -DBUILD_GMOCK=OFF \
        -DCMAKE_INSTALL_PREFIX="$PWD/build/googletest-install"
      cmake --build build/googletest -j "$(nproc)"
      cmake --install build/googletest
      gtest=(-DGTest_ROOT="$PWD/build/googletest-install")
    fi
    cmake -S . -B build/cmake -DMYCONV_BUILD_TESTS=ON "${gtest[@]}"
    cmake --build build/cmake -j "$(nproc)"
    exec ctest --test-dir build/cmake --output-on-failure ;;
esac

mkdir -p "$LOGS"
BUDGET=${MYCONV_GPU_CHECK_SECONDS:-560}
START=$SECONDS
status=0
log() { echo "== $(date -u +%H:%M:%S) +$((SECONDS - START))s $*" | tee -a "$LOGS/check.log"; }

# phase NAME LIMIT LOGFILE COMMAND...: runs COMMAND for at most LIMIT seconds or what is left of
# the budget, whichever is less, its output appended to LOGFILE; a phase with no time is skipped.
phase() {
  local name=$1 limit=$2 logfile="$LOGS/$3"; shift 3
  local remaining=$((BUDGET - (SECONDS - START)))
  (( limit > remaining )) && limit=$remaining
  if (( limit < 15 )); then
    log "$name: SKIPPED (${remaining}s of the budget left)"; status=1; return 1
  fi
  log "$name: start (limit ${limit}s) -> $(basename "$logfile")"
  echo "== $name: $*" >>"$logfile"
  timeout --kill-after=10 "$limit" "$@" >>"$logfile" 2>&1
  local rc=$?
  case $rc in
    0) log "$name: passed" ;;
    124|137) log "$name: TIMED OUT after ${limit}s"; status=1 ;;
    *) log "$name: FAILED (exit $rc)"; status=1 ;;
  esac
  tail -n 4 "$logfile" | sed 's/^/   | /' | tee -a "$LOGS/check.log"
  return $rc
}

collect() { cp benchmarks/results/gpu-*.md "$LOGS"/ 2>/dev/null; true; }
trap collect EXIT

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  "$PY" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda,
            "cuDNN", torch.backends.cudnn.version(), "device", torch.cuda.get_device_name(0),
            "capability", torch.cuda.get_device_capability(0))'
  nvcc --version | tail -2; cmake --version | head -1; echo "CXX=${CXX:-unset}"; nproc
} >>"$LOGS/check.log" 2>&1
if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
  TORCH_CUDA_ARCH_LIST=$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability(0))') \
    || { log "no CUDA device visible to $PY"; exit 1; }
fi
export TORCH_CUDA_ARCH_LIST
log "budget ${BUDGET}s; building for TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST with $(nproc) jobs"

phase build 240 build.log "$SELF" _build || exit 1
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
# Spread the CPU-side tests over the machine's cores when pytest-xdist is there.
parallel=()
"$PY" -c 'import xdist' 2>/dev/null && parallel=(-n 12)

phase "pytest, CUDA cases" 150 pytest-cuda.log env OMP_NUM_THREADS=2 "$PY" -m pytest -q -rs -m "not slow" -k cuda "${parallel[@]}"
if "$PY" -c 'import sys, torch, myconv; sys.exit(not torch.ops.myconv.cuda_implicit_gemm_compiled())'; then
  phase "pytest, CUDA cases, implicit GEMM" 120 pytest-cuda-implicit-gemm.log \
    env OMP_NUM_THREADS=2 MYCONV_CUDA_ENGINE=implicit_gemm "$PY" -m pytest -q -rs -m "not slow" -k cuda "${parallel[@]}"
  phase "benchmark, forward, implicit GEMM" 110 bench.log \
    env PYTHONUNBUFFERED=1 bash -c 'cd benchmarks && exec "$0" bench_gpu.py --engine implicit_gemm --repeats 10 --min-time 0.01' "$PY"
else
  log "implicit GEMM: NOT BUILT (no CUTLASS headers: carry .venv/lib/python3.11/site-packages/cutlass_library/source/include)"
  status=1
fi
phase "benchmark, forward" 110 bench.log \
  env PYTHONUNBUFFERED=1 bash -c 'cd benchmarks && exec "$0" bench_gpu.py --repeats 10 --min-time 0.01' "$PY"
phase "benchmark, forward + backward" 170 bench.log \
  env PYTHONUNBUFFERED=1 bash -c 'cd benchmarks && exec "$0" bench_gpu.py --train --repeats 10 --min-time 0.01' "$PY"
phase "pytest, the rest" 180 pytest.log \
  env OMP_NUM_THREADS=2 "$PY" -m pytest -q -rs -m "not slow" -k "not cuda" "${parallel[@]}"
phase "GoogleTest" 150 ctest.log "$SELF" _ctest
phase "pytest -m slow, CUDA cases" 200 pytest-cuda.log env OMP_NUM_THREADS=2 "$PY" -m pytest -q -rs -m slow -k cuda "${parallel[@]}"
log "done: exit $status"
exit $status
