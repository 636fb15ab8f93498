"""CUDA-only behaviour: agreement with the CPU backend, streams, device indices, 64-bit indexing."""

import pytest
import torch

import myconv
from references import conv_torch, keras_activation, relative_error

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]

SHAPES = [  # (input NHWC, filter HWIO, stride, padding, dilation)
    ((2, 17, 15, 8), (3, 3, 8, 16), (2, 2), "SAME", (1, 1)),
    ((2, 17, 15, 8), (3, 3, 1, 8), (1, 1), "SAME", (1, 1)),
    ((2, 17, 15, 8), (1, 1, 8, 16), (1, 1), "VALID", (1, 1)),
    ((1, 20, 21, 6), (5, 3, 3, 6), (1, 3), "SAME", (2, 1)),
]

# Shapes the implicit GEMMs implement (channels in multiples of 8): odd sizes, strides 1-3, TF's
# asymmetric SAME split (0 above and 1 below for 3x3/2 on 16; 0/1 for 2x2/1), VALID, explicit
# pads, dilation, 1x1, channels past one tile.
IMPLICIT_GEMM_SHAPES = [
    ((2, 16, 16, 8), (3, 3, 8, 16), (2, 2), "SAME", (1, 1)),
    ((1, 7, 9, 16), (2, 2, 16, 8), (1, 1), "SAME", (1, 1)),
    ((2, 17, 15, 8), (3, 3, 8, 16), (2, 2), "SAME", (1, 1)),
    ((3, 19, 23, 24), (5, 4, 24, 40), (3, 2), "SAME", (1, 2)),
    ((2, 16, 16, 64), (3, 3, 64, 136), (1, 1), "VALID", (1, 1)),
    ((1, 9, 11, 32), (2, 2, 32, 8), (2, 1), (3, 0, 1, 2), (1, 1)),
    ((4, 28, 28, 144), (1, 1, 144, 40), (2, 2), "SAME", (1, 1)),
    ((2, 30, 30, 16), (3, 3, 16, 32), (1, 1), "SAME", (3, 3)),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: str(s[1]))
def test_cpu_and_cuda_agree(shape, dtype):
    x_shape, w_shape, stride, padding, dilation = shape
    x, w = torch.randn(x_shape, dtype=dtype), torch.randn(w_shape, dtype=dtype)
    b = torch.randn(w_shape[3], dtype=dtype)
    cpu = myconv.conv2d(x, w, stride, padding, dilation, b)
    gpu = myconv.conv2d(x.cuda(), w.cuda(), stride, padding, dilation, b.cuda())
    tolerance = {torch.float64: 1e-12, torch.float32: 1e-5}.get(dtype, 1e-2)
    assert relative_error(gpu, cpu.double()) <= tolerance


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: str(s[1]))
def test_cpu_and_cuda_gradients_agree(shape, dtype):
    x_shape, w_shape, stride, padding, dilation = shape
    tensors = [torch.randn(x_shape, dtype=dtype), torch.randn(w_shape, dtype=dtype),
               torch.randn(w_shape[3], dtype=dtype)]
    grads = {}
    for device in ("cpu", "cuda"):
        leaves = [t.to(device).requires_grad_() for t in tensors]
        out = myconv.conv2d(leaves[0], leaves[1], stride, padding, dilation, leaves[2])
        grad_output = torch.randn(out.shape, dtype=dtype, generator=torch.Generator().manual_seed(0))
        grads[device] = torch.autograd.grad(out, leaves, grad_output.to(device))
    tolerance = {torch.float64: 1e-12, torch.float32: 1e-5}.get(dtype, 1e-2)
    for name, gpu, cpu in zip(("input", "filter", "bias"), grads["cuda"], grads["cpu"]):
        assert relative_error(gpu, cpu.double()) <= tolerance, name


def _arch():
    major, minor = torch.cuda.get_device_capability()
    return major * 10 + minor


def _cutlass_kernels(fn) -> list[str]:
    """The CUTLASS implicit-GEMM kernels fn launched, as the profiler saw the GPU run them (the
    engine choice's prediction is not evidence of what ran): names with ImplicitGemmConvolution
    (wgrad), ...StridedDgrad (dgrad) or ...WithFusedEpilogue (the forward)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return [event.name for event in prof.events() if "ImplicitGemmConvolution" in event.name]


def _ran_implicit_gemm(fn) -> bool:
    return bool(_cutlass_kernels(fn))


def _poison_cuda_cache():
    """Leaves NaN in the caching allocator's free blocks, so that an output element a kernel fails to
    write reads as NaN rather than as a zero some earlier tensor left there."""
    torch.full((1 << 24,), float("nan"), device="cuda")  # (freed at once, back to the cache)


needs_implicit_gemm = pytest.mark.skipif(
    not torch.ops.myconv.cuda_implicit_gemm_compiled() or not torch.cuda.is_available() or _arch() < 80,
    reason="no CUTLASS kernels in this build, or no device of compute capability 8.0")


@needs_implicit_gemm
@pytest.mark.parametrize("mode", ["fp32", "tf32", "fp16", "bf16"])
@pytest.mark.parametrize("shape", IMPLICIT_GEMM_SHAPES, ids=lambda s: str(s[:2]))
def test_implicit_gemm_matches_float64(monkeypatch, shape, mode):
    """MYCONV_CUDA_ENGINE=implicit_gemm runs the CUTLASS kernels (the engine's choice and the
    profiler's record of the launch both asserted, so this cannot quietly test im2row) and matches
    float64: fp32 (3xTF32) to 1e-5, TF32 and the half types to 1e-2."""
    monkeypatch.setenv("MYCONV_CUDA_ENGINE", "implicit_gemm")
    x_shape, w_shape, stride, padding, dilation = shape
    dtype = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[mode]
    choice = torch.ops.myconv.cuda_engine(list(x_shape), list(w_shape), dtype, list(stride),
                                          padding if isinstance(padding, str) else list(padding),
                                          list(dilation), _arch(), mode == "tf32")
    assert choice[0] == "implicit_gemm", choice
    x, w = torch.randn(x_shape, dtype=dtype), torch.randn(w_shape, dtype=dtype)
    b = torch.randn(w_shape[3], dtype=dtype)
    reference = myconv.conv2d(x.double(), w.double(), stride, padding, dilation, b.double())
    previous = torch.backends.cuda.matmul.fp32_precision
    torch.backends.cuda.matmul.fp32_precision = "tf32" if mode == "tf32" else "ieee"
    try:
        for bias in (b, None):
            outputs = []
            _poison_cuda_cache()
            assert any("WithFusedEpilogue" in name for name in _cutlass_kernels(lambda: outputs.append(myconv.conv2d(
                x.cuda(), w.cuda(), stride, padding, dilation, None if bias is None else bias.cuda()))))
            expected = reference if bias is not None else reference - b.double()
            assert relative_error(outputs[0], expected) <= (1e-5 if mode == "fp32" else 1e-2), (mode, bias is None)
    finally:
        torch.backends.cuda.matmul.fp32_precision = previous


@needs_implicit_gemm
@pytest.mark.parametrize("mode", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("shape", IMPLICIT_GEMM_SHAPES, ids=lambda s: str(s[:2]))
def test_implicit_gemm_gradients_match_float64(monkeypatch, shape, mode):
    """The input and filter gradients on the implicit GEMMs (dgrad, wgrad; asserted as for the
    forward) match float64, and a repeated backward is bitwise identical (no split-K, no atomics)."""
    monkeypatch.setenv("MYCONV_CUDA_ENGINE", "implicit_gemm")
    x_shape, w_shape, stride, padding, dilation = shape
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[mode]
    pad = padding if isinstance(padding, str) else list(padding)
    for direction in ("dgrad", "wgrad"):
        choice = torch.ops.myconv.cuda_engine(list(x_shape), list(w_shape), dtype, list(stride), pad,
                                              list(dilation), _arch(), False, direction)
        dilated_dgrad = direction == "dgrad" and max(dilation) > 1
        assert choice[0] == ("im2row" if dilated_dgrad else "implicit_gemm"), (direction, choice)
    x, w = torch.randn(x_shape, dtype=dtype), torch.randn(w_shape, dtype=dtype)
    x64, w64 = x.double().requires_grad_(), w.double().requires_grad_()
    out64 = myconv.conv2d(x64, w64, stride, padding, dilation)
    grad_output = torch.randn(out64.shape, dtype=dtype)
    reference = torch.autograd.grad(out64, [x64, w64], grad_output.double())
    results = []
    for _ in range(2):
        xc, wc = x.cuda().requires_grad_(), w.cuda().requires_grad_()
        out = myconv.conv2d(xc, wc, stride, padding, dilation)
        _poison_cuda_cache()
        names = _cutlass_kernels(lambda: results.append(torch.autograd.grad(out, [xc, wc], grad_output.cuda())))
        assert any("StridedDgrad" in name for name in names) == (max(dilation) == 1), names  # the input gradient
        assert any("StridedDgrad" not in name for name in names), names  # the filter gradient
    for name, got, expected in zip(("input", "filter"), results[0], reference):
        assert relative_error(got, expected) <= (1e-5 if mode == "fp32" else 1e-2), name
    for first, second in zip(*results):
        assert torch.equal(first, second)


@needs_implicit_gemm
def test_implicit_gemm_refuses_misaligned_data_by_running_im2row(monkeypatch):
    """A view whose data starts off a 16-byte boundary cannot feed the kernels' vector loads: the
    call runs im2row (the profiler sees no implicit GEMM) and gives the right answer; the aligned
    tensor of the same values runs the implicit GEMM."""
    monkeypatch.setenv("MYCONV_CUDA_ENGINE", "implicit_gemm")
    x_shape, w_shape = (2, 9, 9, 16), (3, 3, 16, 16)
    storage = torch.randn(1 + torch.Size(x_shape).numel(), device="cuda", dtype=torch.float16)
    x = storage[1:].view(x_shape)
    w = torch.randn(w_shape, device="cuda", dtype=torch.float16)
    outputs = []
    assert not _ran_implicit_gemm(lambda: outputs.append(myconv.conv2d(x, w, 1, "SAME")))
    assert relative_error(outputs[0], myconv.conv2d(x.double().cpu(), w.double().cpu(), 1, "SAME")) <= 1e-2
    assert _ran_implicit_gemm(lambda: myconv.conv2d(x.clone(), w, 1, "SAME"))


@needs_implicit_gemm
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_implicit_gemm_fuses_bias_residual_and_every_activation(monkeypatch, dtype):
    """conv2d_fused on the implicit GEMM: every Keras activation, with and without bias and residual
    (a strided residual too: the epilogue reads a packed copy), against the float64 definition."""
    monkeypatch.setenv("MYCONV_CUDA_ENGINE", "implicit_gemm")
    x, w = torch.randn(2, 11, 13, 16) * 2, torch.randn(3, 3, 16, 24) / 3
    b, residual = torch.randn(24), torch.randn(2, 6, 7, 24)
    alphas = {"leaky_relu": 0.3, "elu": 0.7}  # (their defaults run in the loop's other half)
    for activation in torch.ops.myconv.activations():
        for use_bias, use_residual in ((True, True), (False, True), (True, False), (False, False)):
            scale = 0.25 if activation == "exponential" and dtype != torch.float32 else 1.0
            args = [(x * scale).to(dtype), w.to(dtype)]
            bias = (b * scale).to(dtype) if use_bias else None
            r = (residual * scale).to(dtype) if use_residual else None
            # strided on the device: the kernel reads a packed copy of it
            r_cuda = torch.stack([r, r], -1).cuda()[..., 0] if use_residual else None
            alpha = alphas.get(activation) if use_bias else None
            outputs = []
            _poison_cuda_cache()
            assert any("WithFusedEpilogue" in name for name in _cutlass_kernels(lambda: outputs.append(myconv.conv2d(
                args[0].cuda(), args[1].cuda(), 2, "SAME", bias=None if bias is None else bias.cuda(),
                activation=activation, residual=r_cuda, alpha=alpha))))
            z = myconv.conv2d(args[0].double(), args[1].double(), 2, "SAME",
                              bias=None if bias is None else bias.double())
            expected = keras_activation(activation, z + (r.double() if use_residual else 0),
                                        **({} if alpha is None else {"alpha": alpha}))
            tolerance = 1e-5 if dtype == torch.float32 else 1e-2
            assert relative_error(outputs[0], expected) <= tolerance, (activation, use_bias, use_residual)


def test_runs_on_the_current_non_default_stream():
    x = torch.randn(4, 32, 32, 16, device="cuda")
    w = torch.randn(3, 3, 16, 32, device="cuda")
    expected = myconv.conv2d(x, w, 1, "SAME")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        out = myconv.conv2d(x, w, 1, "SAME")
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    assert torch.equal(out, expected)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_second_gpu():
    x = torch.randn(2, 9, 9, 4)
    w = torch.randn(3, 3, 4, 6)
    out = myconv.conv2d(x.to("cuda:1"), w.to("cuda:1"), 2, "SAME")
    assert out.device == torch.device("cuda:1")
    assert relative_error(out, conv_torch(x, w, (2, 2), "SAME", (1, 1))) <= 1e-5


@pytest.mark.parametrize("depthwise", [False, True], ids=["im2row", "depthwise"])
def test_indices_beyond_int32(depthwise):
    # 8192 * 8192 * 33 > 2**31 input elements: any 32-bit index math would wrap.
    h = w_ = 8192
    c = 33
    if torch.cuda.get_device_properties(0).total_memory < 24 * 2**30:
        pytest.skip("needs a GPU with 24 GiB")
    x = torch.randn(1, h, w_, c, device="cuda", dtype=torch.float16)
    filt = torch.randn(3, 3, 1, c, dtype=torch.float16) if depthwise else torch.randn(1, 1, c, 4, dtype=torch.float16)
    out = myconv.conv2d(x, filt.cuda(), 2, "SAME")
    corner = x[:, -8:, -8:, :].cpu()
    ref = conv_torch(corner, filt, (2, 2), "SAME", (1, 1))
    # Last output pixels: their windows lie inside the 8x8 corner (SAME pads after only here).
    assert relative_error(out[:, -3:, -3:, :], ref[:, -3:, -3:, :]) <= 1e-2
    del x, out
    torch.cuda.empty_cache()


def _set_legacy(on):
    torch.backends.cuda.matmul.allow_tf32 = on


def _set_matmul_fp32_precision(on):
    torch.backends.cuda.matmul.fp32_precision = "tf32" if on else "ieee"


def _set_matmul_precision(on):
    torch.set_float32_matmul_precision("high" if on else "highest")


@pytest.mark.parametrize("set_tf32", [_set_legacy, _set_matmul_fp32_precision, _set_matmul_precision],
                         ids=["allow_tf32", "fp32_precision", "set_float32_matmul_precision"])
@pytest.mark.parametrize("pointwise", [False, True], ids=["im2row", "1x1"])
def test_every_tf32_api_is_honoured_and_never_throws(set_tf32, pointwise):
    # Large reductions (K = 3*3*256) so that TF32's 10-bit mantissa shows against exact fp32.
    x = torch.randn(2, 24, 24, 256, device="cuda")
    w = torch.randn(1 if pointwise else 3, 1 if pointwise else 3, 256, 64, device="cuda")
    ref = conv_torch(x.cpu(), w.cpu(), (1, 1), "SAME", (1, 1))
    try:
        set_tf32(True)
        fast = myconv.conv2d(x, w, 1, "SAME")
        assert relative_error(fast, ref) <= 1e-3
        set_tf32(False)
        exact = myconv.conv2d(x, w, 1, "SAME")
        assert relative_error(exact, ref) <= 1e-5
        grads = torch.autograd.grad(myconv.conv2d(x.requires_grad_(), w, 1, "SAME").sum(), x)
        assert torch.isfinite(grads[0]).all()
    finally:
        _set_matmul_precision(False)
        torch.backends.cuda.matmul.fp32_precision = "ieee"


def test_no_tf32_guard_and_reduced_precision_settings():
    x = torch.randn(2, 16, 16, 128, device="cuda")
    w = torch.randn(3, 3, 128, 32, device="cuda")
    ref = conv_torch(x.cpu(), w.cpu(), (1, 1), "SAME", (1, 1))
    for half in (torch.float16, torch.bfloat16):
        previous = (torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction,
                    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction)
        try:
            torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
            torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
            out = myconv.conv2d(x.to(half), w.to(half), 1, "SAME")
            assert relative_error(out, ref) <= 1e-2
        finally:
            (torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction,
             torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction) = previous


def test_depthwise_kernels_are_deterministic():
    x = torch.randn(4, 33, 31, 48, device="cuda", requires_grad=True)
    w = torch.randn(3, 3, 1, 96, device="cuda", requires_grad=True)
    runs = []
    for _ in range(3):
        out = myconv.conv2d(x, w, 2, "SAME")
        runs.append((out, *torch.autograd.grad(out.square().sum(), (x, w))))
    for run in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(run, runs[0]))
