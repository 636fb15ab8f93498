#!/usr/bin/env bash
# One command for a GPU machine that has torch, nvcc, CMake, ninja and pytest preinstalled and
# no network: builds in place with the system Python (no .venv, no pip downloads), runs the CUDA
# tests (gradients included) and the GPU benchmark (forward, then forward + backward). Results
# land in benchmarks/results/ and, when $OUT is set, in $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-}
log() { echo "== $*"; }

log "$($PY -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "device", torch.cuda.get_device_name(0))')"
log "build (MYCONV_CUDA=1: fail rather than build CPU-only)"
MYCONV_CUDA=1 $PY -m pip install --no-build-isolation --no-deps --no-index -e . 2>&1 | tail -3 \
  || MYCONV_CUDA=1 $PY setup.py build_ext --inplace
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"

status=0
log "pytest (all tests, CUDA ones included)"
$PY -m pytest -q -m "not slow or slow" -rs 2>&1 | tee /tmp/myconv-pytest.log || status=1
log "GoogleTest"
{ cmake -S . -B build/cmake -DMYCONV_BUILD_TESTS=ON -DMYCONV_CUDA=ON \
    && cmake --build build/cmake -j "$(nproc)" && ctest --test-dir build/cmake --output-on-failure; } \
  2>&1 | tee /tmp/myconv-ctest.log || status=1
log "GPU benchmark: forward, then forward + backward"
(cd benchmarks && $PY bench_gpu.py && $PY bench_gpu.py --train) 2>&1 | tee /tmp/myconv-bench.log || status=1

if [ -n "$OUT" ]; then
  cp /tmp/myconv-pytest.log /tmp/myconv-ctest.log /tmp/myconv-bench.log "$OUT"/
  cp benchmarks/results/gpu-*.md "$OUT"/ 2>/dev/null || true
fi
exit $status
