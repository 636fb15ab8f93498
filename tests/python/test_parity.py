"""myconv against three independent references, TF's golden values and the single-window identity."""

import itertools

import pytest
import torch

import myconv
from references import REFERENCES, TOLERANCE, conv_torch, relative_error, tf_padding

# (N, H, W, C, KH, KW, O, stride, padding, dilation)
CASES = [
    (2, 7, 9, 4, 3, 3, 5, (1, 1), "SAME", (1, 1)),        # odd sizes
    (2, 8, 8, 4, 3, 3, 6, (2, 2), "SAME", (1, 1)),        # even size, stride 2: pad (0, 1)
    (1, 9, 10, 3, 2, 2, 4, (2, 3), "SAME", (1, 1)),       # even kernel, per-axis strides
    (1, 11, 6, 5, 4, 3, 3, (3, 2), "same", (1, 1)),       # lower-case mode
    (2, 10, 12, 3, 7, 7, 8, (2, 2), "SAME", (1, 1)),      # 7x7 stem
    (1, 13, 13, 4, 5, 5, 4, (1, 1), "VALID", (1, 1)),
    (2, 12, 11, 6, 3, 3, 4, (2, 2), "valid", (1, 1)),
    (1, 15, 14, 3, 3, 3, 5, (1, 1), "SAME", (2, 3)),      # dilation
    (1, 16, 17, 4, 3, 2, 4, (2, 3), "SAME", (3, 2)),      # stride and dilation together
    (1, 14, 14, 4, 3, 3, 2, (3, 1), "VALID", (2, 2)),
    (2, 6, 9, 8, 1, 1, 16, (1, 1), "SAME", (1, 1)),       # pointwise: direct GEMM
    (2, 6, 9, 8, 1, 1, 16, (2, 2), "SAME", (1, 1)),       # strided pointwise
    (1, 9, 11, 5, 1, 5, 3, (1, 1), "SAME", (1, 1)),       # 1xN
    (1, 10, 8, 5, 6, 1, 3, (2, 1), "SAME", (1, 1)),       # Nx1
    (1, 9, 9, 6, 3, 3, 6, (1, 1), [1, 0, 2, 1], (1, 1)),  # explicit
    (1, 7, 8, 2, 3, 3, 3, (2, 2), [0, 3, 3, 0], (2, 1)),  # explicit, asymmetric, dilated
    (1, 1, 1, 3, 3, 3, 4, (1, 1), "SAME", (1, 1)),        # 1x1 input, all padding
    (1, 3, 3, 2, 3, 3, 3, (4, 4), "SAME", (1, 1)),        # stride larger than input
    # CPU microkernel segments (one per filter row): rows cut by both edges, rows wholly in the
    # padding, channel panels and pixel tiles left partial
    (1, 4, 3, 5, 3, 7, 20, (1, 1), "SAME", (1, 1)),       # filter wider than the input
    (2, 5, 6, 3, 2, 2, 17, (1, 2), [1, 0, 4, 2], (1, 1)), # left padding past the filter width
    # 32-channel panels (AVX-512): a full panel then a 1-channel one, a full one then 16 channels
    (1, 5, 7, 6, 3, 3, 33, (1, 1), "SAME", (1, 1)),
    (2, 4, 5, 8, 1, 1, 48, (1, 1), "VALID", (1, 1)),
]
# groups and depthwise: (N, H, W, C, KH, KW, Cg, O, stride, padding, dilation)
GROUPED = [
    (2, 9, 8, 6, 3, 3, 2, 9, (1, 1), "SAME", (1, 1)),     # 3 groups
    (1, 10, 10, 8, 3, 3, 4, 4, (2, 2), "SAME", (1, 1)),   # 2 groups
    (2, 9, 11, 6, 3, 3, 1, 6, (1, 1), "SAME", (1, 1)),    # depthwise
    (1, 12, 12, 5, 3, 3, 1, 5, (2, 2), "SAME", (1, 1)),   # depthwise stride 2
    (1, 10, 9, 4, 3, 3, 1, 12, (1, 2), "SAME", (2, 1)),   # depthwise multiplier 3, dilated
    (1, 9, 9, 4, 5, 5, 1, 4, (1, 1), "VALID", (1, 1)),
    (1, 8, 8, 6, 1, 1, 2, 6, (1, 1), "SAME", (1, 1)),     # grouped pointwise: direct GEMM
    (1, 6, 7, 6, 3, 3, 3, 40, (1, 1), "SAME", (1, 1)),    # 2 groups of 20 outputs: partial panels
    # CPU depthwise strips of 8 pixels (filter width 3/5, stride 1/2): inside and edge strips,
    # a partial last strip, a partial channel vector
    (2, 6, 30, 13, 3, 3, 1, 13, (1, 1), "SAME", (1, 1)),
    (1, 5, 37, 9, 3, 3, 1, 9, (1, 2), "VALID", (1, 1)),
    (1, 6, 29, 16, 5, 5, 1, 16, (1, 1), [1, 2, 0, 3], (1, 1)),
    (1, 7, 41, 20, 5, 5, 1, 20, (2, 2), "SAME", (1, 1)),
    (2, 9, 27, 11, 7, 7, 1, 11, (1, 1), "SAME", (1, 1)),   # 7x7 (ConvNeXt): wider edge strips
    (1, 8, 13, 18, 7, 7, 1, 18, (1, 1), [2, 4, 1, 5], (1, 1)),
    # strips of 3-wide filters with width dilation 2 and 4 (DeepLab): inside and edge strips, a
    # row narrower than one strip's 16 columns
    (1, 7, 35, 20, 3, 3, 1, 20, (1, 1), "SAME", (1, 2)),
    (2, 6, 40, 13, 3, 3, 1, 13, (1, 1), [1, 0, 4, 3], (2, 4)),
    (1, 5, 9, 17, 3, 3, 1, 17, (1, 1), "SAME", (1, 4)),
]


def _run_and_compare(x, w, stride, padding, dilation, bias, references=REFERENCES):
    out = myconv.conv2d(x, w, stride, padding if isinstance(padding, str) else
                        ((padding[0], padding[1]), (padding[2], padding[3])), dilation, bias)
    assert out.dtype == x.dtype and out.device == x.device and out.is_contiguous()
    for name, reference in references.items():
        ref = reference(x.cpu(), w.cpu(), stride, padding, dilation,
                        None if bias is None else bias.cpu())
        assert out.shape == ref.shape, name
        assert torch.isfinite(out).all(), f"{name}: unwritten (NaN-poisoned) or non-finite output"
        err = relative_error(out, ref)
        assert err <= TOLERANCE[x.dtype], f"{name}: relative error {err:.3g}"
    return out


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)).replace(" ", ""))
@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
def test_matches_references(case, with_bias, device):
    n, h, w_, c, kh, kw, o, stride, padding, dilation = case
    x = torch.randn(n, h, w_, c, device=device)
    w = torch.randn(kh, kw, c, o, device=device)
    b = torch.randn(o, device=device) if with_bias else None
    _run_and_compare(x, w, stride, padding, dilation, b)


@pytest.mark.parametrize("case", GROUPED, ids=lambda c: "-".join(map(str, c)).replace(" ", ""))
@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
def test_grouped_and_depthwise(case, with_bias, device):
    n, h, w_, c, kh, kw, cg, o, stride, padding, dilation = case
    x = torch.randn(n, h, w_, c, device=device)
    w = torch.randn(kh, kw, cg, o, device=device)
    _run_and_compare(x, w, stride, padding, dilation, torch.randn(o, device=device) if with_bias else None)


# Every case above as (N, H, W, C, KH, KW, Cg, O, stride, padding, dilation).
ALL_CASES = [(n, h, w_, c, kh, kw, c, o, s, pad, d) for n, h, w_, c, kh, kw, o, s, pad, d in CASES] + GROUPED


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: "-".join(map(str, c)).replace(" ", ""))
def test_half_types_on_every_case(case, dtype, device):
    # The CPU microkernels widen half inputs a block of rows at a time (dense) or as they load
    # them (depthwise) and narrow their outputs: every case's edges, tiles and strips, in both
    # half types.
    n, h, w_, c, kh, kw, cg, o, stride, padding, dilation = case
    x = torch.randn(n, h, w_, c, device=device, dtype=dtype)
    w = torch.randn(kh, kw, cg, o, device=device, dtype=dtype)
    _run_and_compare(x, w, stride, padding, dilation, torch.randn(o, device=device, dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("groups", [1, 2, 6], ids=["dense", "grouped", "depthwise"])
def test_dtypes(dtype, groups, device):
    x = torch.randn(2, 9, 10, 6, device=device, dtype=dtype)
    w = torch.randn(3, 3, 6 // groups, 12, device=device, dtype=dtype)
    b = torch.randn(12, device=device, dtype=dtype)
    _run_and_compare(x, w, (2, 1), "SAME", (1, 2), b)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types_accumulate_in_float32(dtype, device):
    # A long reduction (K = 3*3*512) of same-sign terms: half-precision accumulation would drift
    # by far more than the 1e-2 bound, float32 accumulation stays near the input rounding.
    x = torch.rand(1, 5, 5, 512, device=device).to(dtype)
    w = torch.rand(3, 3, 512, 4, device=device).to(dtype)
    out = myconv.conv2d(x, w, 1, "SAME")
    err = relative_error(out, conv_torch(x.cpu(), w.cpu(), (1, 1), "SAME", (1, 1)))
    assert err <= 4e-3, err


def test_tf_golden_values(device):
    def arange_nhwc(*shape):
        return torch.arange(1, 1 + torch.Size(shape).numel(), dtype=torch.float32,
                            device=device).reshape(shape)

    out = myconv.conv2d(arange_nhwc(1, 4, 4, 1), arange_nhwc(2, 2, 1, 1), [1, 3, 3, 1], "SAME")
    assert out.flatten().tolist() == [44, 28, 41, 16]
    out = myconv.conv2d(arange_nhwc(1, 2, 3, 3), arange_nhwc(2, 2, 3, 3), 2, "SAME")
    assert out.flatten().tolist() == [2271, 2367, 2463, 1230, 1305, 1380]
    out = myconv.conv2d(arange_nhwc(1, 3, 3, 1), arange_nhwc(1, 1, 1, 1), 2, "SAME")
    assert out.flatten().tolist() == [1, 3, 7, 9]


@pytest.mark.parametrize("k", [1, 2, 3, 5, 7])
def test_single_window_is_a_dot_product(k, device):
    batch, c, o = 4, 3, 5
    x = torch.randn(batch, k, k, c, device=device, dtype=torch.float64)
    w = torch.randn(k, k, c, o, device=device, dtype=torch.float64)
    out = myconv.conv2d(x, w, 1, "VALID").reshape(batch, o)
    windows = x.reshape(batch, -1)                   # [b, z], z = (kh, kw, c)
    filters = w.reshape(-1, o).t()                   # [o, z]
    via_einsum = torch.einsum("bz,oz->bo", windows, filters)
    via_matmul = windows @ filters.t()
    via_loop = torch.tensor([[sum(windows[i, z].item() * filters[j, z].item()
                                  for z in range(windows.shape[1]))
                              for j in range(o)] for i in range(batch)], dtype=torch.float64)
    for expected in (via_einsum, via_matmul, via_loop.to(device)):
        assert torch.allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_empty_batch(device):
    x = torch.randn(0, 9, 8, 4, device=device)
    out = myconv.conv2d(x, torch.randn(3, 3, 4, 5, device=device), 2, "SAME")
    assert out.shape == (0, 5, 4, 5)


def test_non_contiguous_inputs(device):
    base = torch.randn(2, 11, 13, 10, device=device)
    x = base[:, 1:10:2, ::2, 1:7]                          # strided view
    w = torch.randn(6, 3, 3, 4, device=device).permute(1, 2, 0, 3)  # HWIO view of OHWI storage
    assert not x.is_contiguous() and not w.is_contiguous()
    b = torch.randn(8, device=device)[::2]
    _run_and_compare(x, w, (1, 2), "SAME", (1, 1), b)


def test_channels_last_nchw_permuted_to_nhwc(device):
    nchw = torch.randn(2, 5, 8, 9, device=device).to(memory_format=torch.channels_last)
    x = nchw.permute(0, 2, 3, 1)
    assert x.is_contiguous()
    _run_and_compare(x, torch.randn(3, 3, 5, 4, device=device), (2, 2), "SAME", (1, 1), None)


def test_many_workspace_tiles(device):
    # More output pixels than one bounded im2row tile holds, so several tiles are stitched.
    x = torch.randn(3, 64, 64, 64, device=device)
    w = torch.randn(3, 3, 64, 8, device=device)
    _run_and_compare(x, w, (1, 1), "SAME", (1, 1), torch.randn(8, device=device),
                     references={"torch": conv_torch})


def test_wrapper_argument_forms_agree(device):
    x = torch.randn(1, 9, 10, 3, device=device)
    w = torch.randn(3, 3, 3, 4, device=device)
    base = torch.ops.myconv.conv2d.explicit(x, w, [2, 1], [1, 1, 0, 2], [1, 1], None)
    same = [myconv.conv2d(x, w, s, p, d) for s, p, d in itertools.product(
        ((2, 1), [1, 2, 1, 1]), (((1, 1), (0, 2)), [[0, 0], [1, 1], [0, 2], [0, 0]]), (1, [1, 1, 1, 1]))]
    for out in same:
        assert torch.equal(out, base)
    assert torch.equal(myconv.conv2d(x, w, 2, "SAME"),
                       torch.ops.myconv.conv2d(x, w, [2, 2], "SAME", [1, 1], None))
    assert torch.equal(myconv.conv2d(x, w), torch.ops.myconv.conv2d(x, w))


def test_output_shape_matches_conv2d():
    assert myconv.output_shape((8, 224, 224, 3), (7, 7, 3, 64), [1, 2, 2, 1]) == (8, 112, 112, 64)
    assert myconv.output_shape((1, 5, 6, 2), (3, 3, 2, 1), 1, "VALID") == (1, 3, 4, 1)
    assert myconv.output_shape((1, 5, 6, 2), (3, 3, 1, 4), 2, ((1, 0), (2, 2)), 2) == (1, 1, 3, 4)
    # A size no real tensor could hold: pure geometry (sizes near INT64_MAX: GoogleTest).
    big = 2**40
    assert myconv.output_shape((1, big, 3, 1), (3, 3, 1, 1), (2, 1)) == (1, big // 2, 3, 1)


def test_same_padding_op_is_tf_split():
    for size, k, s, d in itertools.product(range(0, 12), range(1, 6), range(1, 4), range(1, 3)):
        assert torch.ops.myconv.same_padding(size, k, s, d) == list(tf_padding(size, k, s, d, "SAME"))
    with pytest.raises(ValueError, match="stride and dilation must be >= 1"):
        torch.ops.myconv.same_padding(5, 3, 0, 1)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_module_matches_functional(device):
    layer = myconv.Conv2d(4, 6, kernel_size=(3, 2), strides=2, padding="SAME", dilation_rate=(1, 2)).to(device)
    x = torch.randn(2, 9, 8, 4, device=device)
    expected = myconv.conv2d(x, layer.weight, 2, "SAME", (1, 2), layer.bias)
    assert torch.equal(layer(x), expected)
    scripted = torch.jit.script(layer)
    assert torch.equal(scripted(x), expected)
    explicit = myconv.Conv2d(4, 6, kernel_size=3, padding=((1, 0), (2, 1))).to(device)
    expected = myconv.conv2d(x, explicit.weight, 1, ((1, 0), (2, 1)), 1, explicit.bias)
    assert torch.equal(explicit(x), expected)
    assert torch.equal(torch.jit.script(explicit)(x), expected)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(40))
def test_random_sweep(seed, device):
    g = torch.Generator().manual_seed(seed)

    def pick(*options):
        return options[torch.randint(len(options), (1,), generator=g).item()]

    groups = pick(1, 1, 2, 3)
    cg = pick(1, 2, 3)
    c, o = groups * cg, groups * pick(1, 2, 4)
    kh, kw = pick(1, 2, 3, 4, 5, 7), pick(1, 2, 3, 5, 7)
    stride, dilation = (pick(1, 2, 3), pick(1, 2, 3)), (pick(1, 2, 3), pick(1, 2))
    h = pick(1, 5, 8, 13) + (kh - 1) * dilation[0]
    w_ = pick(1, 4, 9, 16) + (kw - 1) * dilation[1]
    padding = pick("SAME", "VALID", [pick(0, 1, 2) for _ in range(4)])
    x = torch.randn(pick(1, 2, 3), h, w_, c, device=device)
    w = torch.randn(kh, kw, cg, o, device=device)
    _run_and_compare(x, w, stride, padding, dilation, pick(None, torch.randn(o, device=device)))
