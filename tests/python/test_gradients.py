"""Gradients: gradcheck/gradgradcheck in float64, float32 and half gradients against torch.conv2d's
(TF padding applied with F.pad), output_mask, empty batches and the C++-registered backward op."""

import random

import pytest
import torch

import myconv
from references import TOLERANCE, conv_torch, pads_tblr, relative_error
from test_parity import CASES, GROUPED

# (input NHWC, filter HWIO, stride, padding, dilation): every kind of forward configuration.
SMALL = [
    ((2, 5, 6, 3), (3, 3, 3, 4), (1, 1), "SAME", (1, 1)),
    ((1, 6, 6, 2), (3, 3, 2, 3), (2, 2), "SAME", (1, 1)),        # extra pad after
    ((1, 7, 6, 2), (2, 3, 2, 2), (2, 3), "VALID", (1, 1)),
    ((1, 7, 7, 2), (3, 2, 2, 2), (1, 1), "SAME", (2, 2)),        # dilation
    ((1, 8, 7, 2), (3, 2, 2, 3), (2, 2), "SAME", (2, 1)),        # stride and dilation together
    ((1, 6, 5, 2), (3, 3, 2, 2), (2, 1), [1, 0, 2, 1], (1, 1)),  # explicit, asymmetric
    ((2, 4, 5, 4), (1, 1, 4, 3), (1, 1), "SAME", (1, 1)),        # pointwise: direct GEMMs
    ((1, 5, 5, 4), (3, 3, 2, 4), (1, 1), "SAME", (1, 1)),        # 2 groups
    ((1, 6, 5, 3), (3, 3, 1, 3), (2, 1), "SAME", (1, 1)),        # depthwise
    ((1, 5, 6, 2), (3, 2, 1, 6), (1, 2), "VALID", (1, 2)),       # depthwise, multiplier 3
    ((1, 5, 6, 2), (1, 2, 2, 3), (1, 1), [2, 1, 3, 0], (1, 1)),  # padding beyond the window
    ((1, 5, 5, 2), (3, 3, 2, 2), (4, 4), "VALID", (1, 1)),       # one output: stride made 1
    ((2, 6, 7, 4), (3, 3, 4, 4), (1, 1), "SAME", (1, 1)),        # depthwise 1 / dense, stride 1
    ((1, 6, 7, 6), (3, 3, 1, 6), (1, 1), "VALID", (2, 1)),       # depthwise, stride 1, dilated
    ((4, 2, 2, 8), (1, 1, 8, 16), (2, 2), "SAME", (1, 1)),       # ResNet 1x1/2 shortcut, one output
]


def _ids(case):
    return "-".join(map(str, case)).replace(" ", "")


def _call(x, w, stride, padding, dilation, b):
    explicit = not isinstance(padding, str)
    return myconv.conv2d(x, w, stride, ((padding[0], padding[1]), (padding[2], padding[3]))
                         if explicit else padding, dilation, b)


@pytest.mark.parametrize("case", SMALL, ids=_ids)
@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
def test_gradcheck_and_gradgradcheck(case, with_bias, device):
    xs, ws, stride, padding, dilation = case
    x = torch.randn(xs, device=device, dtype=torch.float64, requires_grad=True)
    w = torch.randn(ws, device=device, dtype=torch.float64, requires_grad=True)
    inputs = [x, w]
    if with_bias:
        inputs.append(torch.randn(ws[3], device=device, dtype=torch.float64, requires_grad=True))

    def f(*args):
        return _call(args[0], args[1], stride, padding, dilation, args[2] if with_bias else None)

    assert torch.autograd.gradcheck(f, inputs)
    assert torch.autograd.gradgradcheck(f, inputs)


def _reference_grads(x, w, b, stride, padding, dilation, grad_output):
    xr, wr = x.detach().double().cpu().requires_grad_(), w.detach().double().cpu().requires_grad_()
    br = None if b is None else b.detach().double().cpu().requires_grad_()
    out = conv_torch(xr, wr, stride, padding, dilation, br)
    inputs = [xr, wr] + ([br] if br is not None else [])
    return torch.autograd.grad(out, inputs, grad_output.double().cpu())


def _check_grads(x, w, b, stride, padding, dilation, tolerance):
    x, w = x.requires_grad_(), w.requires_grad_()
    inputs = [x, w] + ([b.requires_grad_()] if b is not None else [])
    out = _call(x, w, stride, padding, dilation, b)
    grad_output = torch.randn_like(out)
    grads = torch.autograd.grad(out, inputs, grad_output)
    expected = _reference_grads(x, w, b, stride, padding, dilation, grad_output)
    for name, got, ref in zip(("input", "filter", "bias"), grads, expected):
        assert got.shape == ref.shape and got.dtype == x.dtype, name
        assert torch.isfinite(got).all(), f"{name}: unwritten (NaN-poisoned) gradient elements"
        err = relative_error(got, ref)
        assert err <= tolerance, f"grad {name}: relative error {err:.3g}"


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_float32_gradients_match_torch(case, device):
    n, h, w_, c, kh, kw, o, stride, padding, dilation = case
    x = torch.randn(n, h, w_, c, device=device)
    w = torch.randn(kh, kw, c, o, device=device)
    _check_grads(x, w, torch.randn(o, device=device), stride, padding, dilation, TOLERANCE[torch.float32])


@pytest.mark.parametrize("case", GROUPED, ids=_ids)
def test_grouped_and_depthwise_gradients(case, device):
    n, h, w_, c, kh, kw, cg, o, stride, padding, dilation = case
    x = torch.randn(n, h, w_, c, device=device)
    w = torch.randn(kh, kw, cg, o, device=device)
    _check_grads(x, w, torch.randn(o, device=device), stride, padding, dilation, TOLERANCE[torch.float32])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("groups", [1, 2, 6], ids=["dense", "grouped", "depthwise"])
@pytest.mark.parametrize("kernel", [3, 1], ids=["3x3", "1x1"])
def test_gradient_dtypes(dtype, groups, kernel, device):
    x = torch.randn(2, 9, 10, 6, device=device).to(dtype)
    w = torch.randn(kernel, kernel, 6 // groups, 12, device=device).to(dtype)
    b = torch.randn(12, device=device).to(dtype)
    stride, dilation = ((2, 1), (1, 2)) if kernel == 3 else ((1, 1), (1, 1))
    _check_grads(x, w, b, stride, "SAME", dilation, TOLERANCE[dtype])


def _random_geometry(rng):
    """A random conv2d: kernel 1-5, stride 1-4, dilation 1-3, SAME/VALID or explicit padding up to
    7 (past the window too), dense, grouped or depthwise."""
    groups, cg, og = rng.choice([(1, rng.randint(1, 5), rng.randint(1, 40)), (3, 2, 5), (rng.randint(2, 9), 1, 1)])
    padding = rng.choice(["SAME", "VALID", [rng.randint(0, 7) for _ in range(4)]])
    return (rng.randint(1, 3), rng.randint(1, 14), rng.randint(1, 14), groups * cg,
            rng.randint(1, 5), rng.randint(1, 5), cg, groups * og,
            (rng.randint(1, 4), rng.randint(1, 4)), padding, (rng.randint(1, 3), rng.randint(1, 3)))


@pytest.mark.parametrize("seed", range(4))
def test_input_gradient_on_random_geometry(seed, device):
    # Against float64 on random geometry: rows for one group of few channels (not float64), im2row
    # + GEMM for the other small strided shapes, and with MYCONV_CPU_DGRAD=phases
    # (test_microkernel.py) one forward convolution per phase of the stride, every phase shape
    # (taps a phase reaches, none, padding past the window, skipped rows).
    rng = random.Random(seed)
    for _ in range(40):
        n, h, w_, c, kh, kw, cg, o, stride, padding, dilation = _random_geometry(rng)
        pads = pads_tblr((n, h, w_, c), (kh, kw), stride, padding, dilation)
        if any((size + before + after - (k - 1) * d - 1) < 0
               for size, k, d, before, after in ((h, kh, dilation[0], *pads[:2]), (w_, kw, dilation[1], *pads[2:]))):
            continue  # no output
        dtype = rng.choice([torch.float64, torch.float32, torch.bfloat16])
        x = torch.randn(n, h, w_, c, device=device).to(dtype)
        w = torch.randn(kh, kw, cg, o, device=device).to(dtype)
        _check_grads(x, w, None, stride, padding, dilation, TOLERANCE[dtype])


def test_gradients_over_many_workspace_tiles(device):
    # More output pixels than one bounded tile, and a filter gradient above the chunked path's
    # bound (3x3x160x190 in float32: 1.09 MB > 1 MiB): tiles accumulate into the filter gradient
    # (under MYCONV_CPU_WGRAD=gemm, test_microkernel.py; by default the tile kernels sum 5 blocks
    # of pixels).
    x = torch.randn(1, 48, 48, 160, device=device)
    w = torch.randn(3, 3, 160, 190, device=device)
    _check_grads(x, w, None, (1, 1), "SAME", (1, 1), TOLERANCE[torch.float32])


# Filter gradients whose GEMM path (float64; float32 and half types under MYCONV_CPU_WGRAD=gemm,
# test_microkernel.py, else the tile kernels) sums fixed chunks of output pixels (from 2048 pixels, gradients up to 1 MB
# in float32): 2 to 16 chunks, im2row rows made in pieces, the input itself as the rows (unpadded
# pointwise), groups, strides and dilation.
CHUNKED = [
    ((2, 40, 40, 8), (3, 3, 8, 16), (1, 1), "SAME", (1, 1)),      # 3200 pixels: 2 chunks
    ((3, 61, 67, 5), (7, 7, 5, 24), (2, 2), "SAME", (1, 1)),      # stem-like, odd sizes
    ((4, 32, 32, 64), (1, 1, 64, 24), (1, 1), "VALID", (1, 1)),   # pointwise: the input is the rows
    ((2, 50, 45, 12), (3, 3, 4, 9), (1, 1), "SAME", (1, 2)),      # 3 groups, dilated
    ((8, 40, 41, 32), (3, 3, 32, 24), (1, 1), "SAME", (1, 1)),    # 13120 pixels: 12 chunks, pieces
    ((4, 64, 65, 8), (3, 3, 8, 16), (1, 1), "VALID", (1, 1)),     # 15996 pixels: 14 chunks
    ((4, 66, 67, 8), (3, 3, 8, 16), (1, 1), "SAME", (1, 1)),      # 17688 pixels: 16 chunks
]


@pytest.mark.parametrize("case", CHUNKED, ids=_ids)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_filter_gradients_in_chunks(case, dtype):
    xs, ws, stride, padding, dilation = case
    x, w = torch.randn(xs).to(dtype), torch.randn(ws).to(dtype)
    _check_grads(x, w, None, stride, padding, dilation, TOLERANCE[dtype])


# Filter gradients on the tile kernels (float32 and half types, not depthwise): grad_output's
# channels as the kernels' rows where they are the fewer, else the im2row rows' values; blocks of
# 512 pixels summed in order (1155 and 3280 pixels), partial panels and tiles, groups, explicit
# pads, dilation (a segment a tap), taps cut by the image's edges, A transposed in two chunks.
FILTER_TILES = [
    ((2, 9, 11, 8), (3, 3, 8, 32), (1, 1), "SAME", (1, 1)),
    ((1, 17, 13, 8), (2, 2, 8, 40), (2, 2), "SAME", (1, 1)),        # im2row rows as the rows
    ((2, 8, 9, 32), (3, 3, 16, 64), (1, 2), [1, 2, 0, 3], (1, 1)),  # 2 groups
    ((1, 20, 21, 16), (3, 3, 16, 48), (1, 1), "VALID", (2, 2)),
    ((2, 10, 13, 8), (3, 2, 8, 33), (2, 1), "SAME", (1, 2)),        # 33 channels: a partial tile
    ((2, 40, 41, 32), (1, 1, 32, 96), (1, 1), "SAME", (1, 1)),      # input rows as the rows
    ((1, 35, 33, 12), (3, 3, 12, 40), (1, 1), "SAME", (1, 1)),
    ((1, 50, 50, 512), (3, 3, 8, 2048), (1, 1), "SAME", (1, 1)),  # 64 groups: A in chunks of 2048 pixels
    ((2, 30, 31, 80), (1, 1, 80, 24), (1, 1), "SAME", (1, 1)),      # B copied from input pixels (1x1)
    ((1, 7, 9, 48), (1, 1, 24, 16), (1, 1), "VALID", (1, 1)),       # the same, 2 groups
]


@pytest.mark.parametrize("case", FILTER_TILES, ids=_ids)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_filter_gradients_on_the_tile_kernels(case, dtype):
    xs, ws, stride, padding, dilation = case
    x, w = torch.randn(xs).to(dtype), torch.randn(ws).to(dtype)
    _check_grads(x, w, torch.randn(ws[3]).to(dtype), stride, padding, dilation, TOLERANCE[dtype])


# Input gradients of one group of at most 8 input channels run as rows (grad_output x filter^T on
# the tile kernels, then row2im): the stem, in chunks of 356 output rows (of 5 images x 80: the
# second starts inside the fifth image); taps as one span a pixel or, with width dilation, one a
# tap; padding (past the window too), strides 1-3, 8 channels, a strided 1x1.
INPUT_ROWS = [
    ((5, 160, 160, 3), (7, 7, 3, 64), (2, 2), "SAME", (1, 1)),
    ((1, 9, 8, 2), (2, 3, 2, 5), (2, 2), [3, 1, 4, 5], (1, 1)),
    ((2, 9, 10, 8), (1, 1, 8, 24), (2, 2), "SAME", (1, 1)),
    ((2, 13, 17, 3), (3, 3, 3, 32), (1, 1), "SAME", (1, 1)),
    ((1, 14, 15, 8), (3, 5, 8, 20), (3, 2), [2, 1, 0, 3], (1, 1)),
    ((2, 12, 19, 4), (3, 3, 4, 16), (2, 1), "VALID", (2, 3)),
    ((1, 9, 9, 1), (4, 4, 1, 7), (2, 2), "SAME", (1, 1)),
]


@pytest.mark.parametrize("case", INPUT_ROWS, ids=_ids)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_input_gradients_as_rows(case, dtype):
    xs, ws, stride, padding, dilation = case
    x, w = torch.randn(xs).to(dtype), torch.randn(ws).to(dtype)
    _check_grads(x, w, None, stride, padding, dilation, TOLERANCE[dtype])


# Depthwise filter gradients (one output channel per input channel), summed in per-chunk partials
# and added in order: channel counts from 2 to 192, multiples of 64 (blocks of 64 channels x 16
# pixels, rows longer than a block), padding, strides, dilation, 7x7.
DEPTHWISE_FILTER = [
    ((2, 9, 37, 2), (3, 3, 1, 2), (1, 1), "SAME", (1, 1)),
    ((1, 7, 20, 16), (3, 3, 1, 16), (2, 2), "SAME", (1, 1)),
    ((2, 11, 33, 63), (5, 5, 1, 63), (1, 1), "SAME", (1, 2)),
    ((1, 6, 17, 64), (3, 3, 1, 64), (1, 1), "VALID", (1, 1)),
    ((2, 8, 19, 65), (3, 3, 1, 65), (1, 2), [2, 0, 1, 3], (1, 1)),
    ((1, 9, 40, 100), (7, 7, 1, 100), (1, 1), "SAME", (1, 1)),
    ((3, 14, 14, 144), (3, 3, 1, 144), (2, 2), "SAME", (2, 1)),
    ((2, 9, 37, 128), (3, 3, 1, 128), (2, 1), [1, 2, 0, 3], (1, 2)),
    ((1, 8, 21, 192), (5, 5, 1, 192), (1, 1), "SAME", (1, 1)),
]


@pytest.mark.parametrize("case", DEPTHWISE_FILTER, ids=_ids)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_depthwise_filter_gradients(case, dtype):
    xs, ws, stride, padding, dilation = case
    x, w = torch.randn(xs).to(dtype), torch.randn(ws).to(dtype)
    _check_grads(x, w, torch.randn(ws[3]).to(dtype), stride, padding, dilation, TOLERANCE[dtype])


# (input, filter, stride, output_mask, dtype) on each path whose sums threads share: the tile
# kernels' filter gradients (grad_output or the input as the rows, bfloat16), the GEMM's chunked
# and tiled filter gradients (float64), a small strided input gradient (im2row + GEMM), a float64 forward
# (the last two differed in their last bits between 1 and 2 threads while MKL threaded their
# GEMMs); and the depthwise filter gradient's partial sums, added like the chunked ones.
SUMMING_PATHS = [
    ((8, 40, 41, 32), (3, 3, 32, 64), (1, 1), [False, True, False], torch.float32),
    ((4, 30, 31, 32), (1, 1, 32, 96), (1, 1), [False, True, False], torch.float32),
    ((2, 30, 31, 16), (3, 3, 16, 48), (2, 1), [False, True, False], torch.bfloat16),
    ((2, 9, 9, 3), (3, 3, 3, 40), (1, 1), [False, True, False], torch.float32),    # A in 2 ranges at 3 threads
    ((1, 50, 50, 512), (3, 3, 8, 2048), (1, 1), [False, True, False], torch.float32),  # A in 2 chunks
    ((8, 40, 41, 8), (3, 3, 8, 24), (1, 1), [False, True, False], torch.float64),      # GEMM in chunks
    ((1, 12, 13, 512), (5, 5, 512, 24), (2, 2), [False, True, False], torch.float64),  # GEMM in tiles
    ((1, 5, 19, 42), (1, 1, 42, 9), (3, 4), [True, False, False], torch.float32),
    ((3, 19, 11, 55), (3, 3, 55, 83), (3, 2), None, torch.float64),
    ((8, 14, 14, 100), (3, 3, 1, 100), (1, 1), [False, True, False], torch.float32),  # depthwise partials
    ((8, 14, 19, 128), (3, 3, 1, 128), (1, 1), [False, True, False], torch.float32),  # in 64-channel blocks
]


def _summing_path_result(case):
    xs, ws, stride, mask, dtype = case
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(xs, generator=gen, dtype=dtype), torch.randn(ws, generator=gen, dtype=dtype)
    if mask is None:
        return myconv.conv2d(x, w, stride, "SAME")
    grad_output = torch.randn(myconv.conv2d(x, w, stride, "SAME").shape, generator=gen, dtype=dtype)
    grads = torch.ops.myconv.conv2d_backward(grad_output, x, w, list(stride), "SAME", [1, 1], mask)
    return grads[mask.index(True)]


@pytest.mark.parametrize("case", SUMMING_PATHS, ids=_ids)
def test_summing_paths_do_not_depend_on_thread_count(case):
    previous = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3, 1):
            torch.set_num_threads(threads)
            results.append(_summing_path_result(case))
    finally:
        torch.set_num_threads(previous)
    assert all(torch.equal(results[0], r) for r in results[1:])


@pytest.mark.parametrize("case", SUMMING_PATHS, ids=_ids)
def test_summing_paths_run_in_inference_mode(case):
    # Their sums run on worker threads, which do not inherit the caller's inference mode.
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        expected = _summing_path_result(case)
        with torch.inference_mode():
            got = _summing_path_result(case)
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(got, expected)


def test_noncontiguous_grad_output_and_inputs(device):
    x = torch.randn(2, 11, 13, 10, device=device)[:, 1:10:2, ::2, 1:7]
    w = torch.randn(6, 3, 3, 4, device=device).permute(1, 2, 0, 3)
    assert not x.is_contiguous() and not w.is_contiguous()
    x, w = x.detach().requires_grad_(), w.detach().requires_grad_()
    out = myconv.conv2d(x, w, (1, 2), "SAME")
    grad_output = torch.randn(out.shape[::-1], device=device).permute(3, 2, 1, 0)  # strided
    assert not grad_output.is_contiguous()
    grads = torch.autograd.grad(out, (x, w), grad_output)
    expected = _reference_grads(x, w, None, (1, 2), "SAME", (1, 1), grad_output)
    for got, ref in zip(grads, expected):
        assert relative_error(got, ref) <= TOLERANCE[torch.float32]


@pytest.mark.parametrize("padding", ["SAME", [1, 0, 0, 2]], ids=["same", "explicit"])
def test_output_mask_skips_gradients(padding, device):
    x = torch.randn(2, 7, 6, 4, device=device)
    w = torch.randn(3, 3, 4, 5, device=device)
    op = torch.ops.myconv.conv2d_backward.default if isinstance(padding, str) else \
        torch.ops.myconv.conv2d_backward.explicit
    out = _call(x, w, (2, 1), padding, (1, 1), None)
    grad_output = torch.randn_like(out)
    full = op(grad_output, x, w, [2, 1], padding, [1, 1], [True, True, True])
    assert full[2].shape == (5,)
    torch.testing.assert_close(full[2], grad_output.sum((0, 1, 2)))
    for mask in ([True, False, False], [False, True, False], [False, False, True], [False] * 3):
        partial = op(grad_output, x, w, [2, 1], padding, [1, 1], mask)
        for wanted, got, ref in zip(mask, partial, full):
            assert (got is None) == (not wanted)
            if wanted:
                assert torch.equal(got, ref)


def test_only_the_needed_gradients_are_computed(device):
    # A frozen input (the first layer of a network) and a bias-free layer.
    x = torch.randn(1, 6, 6, 3, device=device)
    w = torch.randn(3, 3, 3, 4, device=device, requires_grad=True)
    out = myconv.conv2d(x, w, 1, "SAME")
    (grad_w,) = torch.autograd.grad(out.square().sum(), (w,))
    assert torch.isfinite(grad_w).all()


def test_empty_batch_gradients_are_zero(device):
    x = torch.randn(0, 9, 8, 4, device=device, requires_grad=True)
    w = torch.randn(3, 3, 4, 5, device=device, requires_grad=True)
    b = torch.randn(5, device=device, requires_grad=True)
    out = myconv.conv2d(x, w, 2, "SAME", 1, b)
    out.sum().backward()
    assert x.grad.shape == x.shape
    assert torch.equal(w.grad, torch.zeros_like(w)) and torch.equal(b.grad, torch.zeros_like(b))


def test_module_trains(device):
    # Fit a student to a teacher of the same architecture: the loss must fall well below its start.
    def net():
        return torch.nn.Sequential(myconv.Conv2d(3, 8, 3, strides=2, padding="same"), torch.nn.ReLU(),
                                   myconv.Conv2d(8, 4, 3, padding="valid")).to(device)

    teacher, student = net(), net()
    x = torch.randn(8, 12, 12, 3, device=device)
    with torch.no_grad():
        target = teacher(x)
    optimizer = torch.optim.Adam(student.parameters(), lr=0.02)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(student(x), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses


def test_backward_rejects_a_wrong_grad_output_shape():
    x = torch.randn(1, 6, 6, 2)
    w = torch.randn(3, 3, 2, 3)
    with pytest.raises(ValueError, match=r"grad_output must have the output's shape \[1, 6, 6, 3\]"):
        torch.ops.myconv.conv2d_backward(torch.randn(1, 6, 6, 4), x, w, [1, 1], "SAME", [1, 1],
                                         [True, True, True])
    with pytest.raises(TypeError, match="grad_output dtype must match"):
        torch.ops.myconv.conv2d_backward(torch.randn(1, 6, 6, 3).double(), x, w, [1, 1], "SAME",
                                         [1, 1], [True, True, True])
