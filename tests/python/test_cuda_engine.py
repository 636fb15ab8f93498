"""The CUDA engine choice without a GPU: which kernel each benchmark layer and each CUDA test
shape gets under MYCONV_CUDA_ENGINE, with CUTLASS's own can_implement answering on the host."""

import sys
from pathlib import Path

import pytest
import torch

import myconv  # noqa: F401  (registers the ops)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from common import LAYERS  # noqa: E402

from test_cuda import IMPLICIT_GEMM_SHAPES, SHAPES  # noqa: E402

needs_cutlass = pytest.mark.skipif(not torch.ops.myconv.cuda_implicit_gemm_compiled(),
                                   reason="this build has no CUTLASS kernels")

DTYPES = {torch.float16: "sm80_f16", torch.bfloat16: "sm80_bf16", torch.float32: "sm80_3xtf32"}


DIRECTIONS = ["fprop", "dgrad", "wgrad"]


def engine(x_shape, w_shape, stride, padding="SAME", dilation=(1, 1), dtype=torch.float16, arch=90, tf32=False,
           direction="fprop"):
    return torch.ops.myconv.cuda_engine(list(x_shape), list(w_shape), dtype, list(stride),
                                        padding if isinstance(padding, str) else list(padding),
                                        list(dilation), arch, tf32, direction)


def test_a_request_without_cutlass_kernels_is_an_error(monkeypatch):
    monkeypatch.setenv("MYCONV_CUDA_ENGINE", "implicit_gemm")
    if torch.ops.myconv.cuda_implicit_gemm_compiled():
        assert engine((8, 56, 56, 64), (3, 3, 64, 64), (1, 1))[0] == "implicit_gemm"
    else:
        with pytest.raises(RuntimeError, match="this build of myconv has no CUTLASS kernels"):
            engine((8, 56, 56, 64), (3, 3, 64, 64), (1, 1))


def test_im2row_is_the_default(monkeypatch):
    monkeypatch.delenv("MYCONV_CUDA_ENGINE", raising=False)
    assert engine((8, 56, 56, 64), (3, 3, 64, 64), (1, 1))[0] == "im2row"
    monkeypatch.setenv("MYCONV_CUDA_ENGINE", "im2row")
    assert engine((8, 56, 56, 64), (3, 3, 64, 64), (1, 1))[0] == "im2row"


def test_a_bad_request_names_the_variable(monkeypatch):
    monkeypatch.setenv("MYCONV_CUDA_ENGINE", "cudnn")
    with pytest.raises(ValueError, match='MYCONV_CUDA_ENGINE must be auto, im2row or implicit_gemm.*"cudnn"'):
        engine((8, 56, 56, 64), (3, 3, 64, 64), (1, 1))


@needs_cutlass
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("dtype", list(DTYPES), ids=str)
@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.name)
def test_benchmark_layers(monkeypatch, layer, dtype, direction):
    """Every dense benchmark layer runs an implicit GEMM on request, in each direction, except the
    7x7 stem (C = 3 breaks the 16-byte alignment); depthwise layers keep their direct kernels."""
    monkeypatch.setenv("MYCONV_CUDA_ENGINE", "implicit_gemm")
    x_shape = (32, *layer.hwc)
    got = engine(x_shape, layer.hwio, (layer.stride, layer.stride), dtype=dtype, direction=direction)
    if layer.hwio[2] == 1:
        assert got[0] == "im2row" and "depthwise" in got[2]
    elif layer.hwc[2] == 3:
        assert got[0] == "im2row" and "CUTLASS cannot implement" in got[2]
    else:
        assert got[:2] == ["implicit_gemm", DTYPES[dtype]]
    # TF32 allowed: float32 switches kernel, the half types do not.
    tf32 = engine(x_shape, layer.hwio, (layer.stride, layer.stride), dtype=dtype, arch=80, tf32=True,
                  direction=direction)
    if got[0] == "implicit_gemm":
        assert tf32[1] == ("sm80_tf32" if dtype == torch.float32 else DTYPES[dtype])


@needs_cutlass
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("dtype", list(DTYPES), ids=str)
def test_cuda_suite_shapes(monkeypatch, dtype, direction):
    """test_cuda.py's implicit-GEMM shapes really reach the implicit GEMM (their GPU tests assert the
    same on the device), except the dilated input gradient (CUTLASS's strided dgrad has none),
    and its general shapes cover both engines."""
    monkeypatch.setenv("MYCONV_CUDA_ENGINE", "implicit_gemm")
    for x_shape, w_shape, stride, padding, dilation in IMPLICIT_GEMM_SHAPES:
        got = engine(x_shape, w_shape, stride, padding, dilation, dtype, direction=direction)[0]
        dilated_dgrad = direction == "dgrad" and max(dilation) > 1
        assert got == ("im2row" if dilated_dgrad else "implicit_gemm"), (x_shape, w_shape)
    engines = {engine(*shape, dtype, direction=direction)[0] for shape in SHAPES}
    assert engines == {"implicit_gemm", "im2row"}


@needs_cutlass
def test_a_bad_direction_is_named(monkeypatch):
    monkeypatch.setenv("MYCONV_CUDA_ENGINE", "implicit_gemm")
    with pytest.raises(ValueError, match='direction must be fprop, dgrad or wgrad, got "bprop"'):
        engine((8, 14, 14, 64), (3, 3, 64, 64), (1, 1), direction="bprop")


@needs_cutlass
def test_float64_and_old_cards_keep_im2row(monkeypatch):
    monkeypatch.setenv("MYCONV_CUDA_ENGINE", "implicit_gemm")
    assert engine((8, 14, 14, 64), (3, 3, 64, 64), (1, 1), dtype=torch.float64)[2] == "float64 runs im2row + cuBLAS"
    assert "compute capability 8.0" in engine((8, 14, 14, 64), (3, 3, 64, 64), (1, 1), arch=75)[2]
