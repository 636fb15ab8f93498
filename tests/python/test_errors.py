"""Bad input: a ValueError/TypeError that names the argument, the expectation and what came."""

import pytest
import torch

import myconv


def _x(device, *shape, dtype=torch.float32):
    return torch.randn(*(shape or (1, 6, 6, 4)), device=device).to(dtype)


def _w(device, *shape, dtype=torch.float32):
    return torch.randn(*(shape or (3, 3, 4, 2)), device=device).to(dtype)


BAD_CALLS = [
    # (id, kwargs builder, exception, message fragment)
    ("input-rank", lambda d: dict(input=_x(d, 6, 6, 4)), ValueError, r"input must be 4-D NHWC .*\[6, 6, 4\]"),
    ("filter-rank", lambda d: dict(filters=_w(d, 3, 3, 4)), ValueError, r"filter must be 4-D HWIO .*\[3, 3, 4\]"),
    ("channels-not-divisible", lambda d: dict(filters=_w(d, 3, 3, 3, 2)), ValueError,
     r"NHWC input \[N, H, W, C\] has C = 4 channels, which the HWIO filter \[KH, KW, C/groups, O\]'s in-channels "
     r"\(3\) must divide; input shape \[1, 6, 6, 4\], filter shape \[3, 3, 3, 2\]"),
    ("out-not-divisible-by-groups", lambda d: dict(filters=_w(d, 3, 3, 2, 3)), ValueError,
     r"out-channels \(3\) must be divisible by groups \(2"),
    ("empty-filter", lambda d: dict(filters=_w(d, 0, 3, 4, 2)), ValueError, r"filter must be non-empty.*\[0, 3, 4, 2\]"),
    ("zero-channels", lambda d: dict(input=_x(d, 1, 6, 6, 0)), ValueError, r"at least 1 channel"),
    ("padding-unknown", lambda d: dict(padding="FULL"), ValueError, r"padding must be \"SAME\" or \"VALID\".*got \"FULL\""),
    ("padding-explicit-string", lambda d: dict(padding="EXPLICIT"), ValueError, r"got \"EXPLICIT\"; pass explicit padding"),
    ("padding-negative", lambda d: dict(padding=((1, -1), (0, 0))), ValueError, r"explicit padding entries must be >= 0, got \[1, -1, 0, 0\]"),
    ("bias-list-converted-then-checked", lambda d: dict(bias=[0.0, 0.0, 0.0]), ValueError,
     r"bias must have shape \[2\].*got \[3\]"),
    ("bias-not-numbers", lambda d: dict(bias=["a", "b"]), ValueError, r"bias must be a tensor or a 1-D list"),
    ("padding-wrong-shape", lambda d: dict(padding=((1, 1, 1), (0, 0))), ValueError, r"explicit padding must be"),
    ("padding-pads-batch", lambda d: dict(padding=[[1, 0], [1, 1], [1, 1], [0, 0]]), ValueError, r"must not pad the batch or channel"),
    ("padding-type", lambda d: dict(padding=3), TypeError, r"explicit padding must be pairs of ints"),
    ("stride-zero", lambda d: dict(strides=0), ValueError, r"stride entries must be >= 1, got \[0, 0\]"),
    ("stride-negative", lambda d: dict(strides=(1, -2)), ValueError, r"stride entries must be >= 1"),
    ("stride-length", lambda d: dict(strides=(1, 2, 3)), ValueError, r"strides must be an int, \(h, w\) or \[1, h, w, 1\], got 3 entries"),
    ("stride-tf-batch", lambda d: dict(strides=[2, 1, 1, 1]), ValueError, r"strides in TF's 4-entry form"),
    ("stride-type", lambda d: dict(strides=1.5), TypeError, r"strides must be an int"),
    ("stride-bool", lambda d: dict(strides=True), TypeError, r"strides must be an int"),
    ("dilation-zero", lambda d: dict(dilations=(0, 1)), ValueError, r"dilation entries must be >= 1, got \[0, 1\]"),
    ("dilation-length", lambda d: dict(dilations=[1]), ValueError, r"dilations must be .* got 1 entries"),
    ("bias-shape", lambda d: dict(bias=torch.randn(3, device=d)), ValueError, r"bias must have shape \[2\] .*got \[3\]"),
    ("bias-rank", lambda d: dict(bias=torch.randn(1, 2, device=d)), ValueError, r"bias must have shape \[2\]"),
    ("filter-dtype", lambda d: dict(filters=_w(d, dtype=torch.float64)), TypeError, r"filter dtype must match input dtype Float, got Double"),
    ("bias-dtype", lambda d: dict(bias=torch.randn(2, device=d, dtype=torch.float16)), TypeError, r"bias dtype must match input dtype Float, got Half"),
    ("int-dtype", lambda d: dict(input=_x(d, dtype=torch.int32), filters=_w(d, dtype=torch.int32)), TypeError,
     r"input dtype must be float32, float64, float16 or bfloat16, got Int"),
    ("bool-dtype", lambda d: dict(input=_x(d, dtype=torch.bool), filters=_w(d, dtype=torch.bool)), TypeError, r"got Bool"),
    ("valid-too-small", lambda d: dict(input=_x(d, 1, 2, 6, 4), padding="VALID"), ValueError,
     r"padded input height \(2 \+ 0 \+ 0 = 2\) is smaller than the dilated filter height \(3 taps, dilation 1: 3\)"),
    ("valid-too-small-dilated", lambda d: dict(padding="VALID", dilations=(1, 3)), ValueError,
     r"padded input width \(6 \+ 0 \+ 0 = 6\) is smaller than the dilated filter width \(3 taps, dilation 3: 7\)"),
    ("explicit-too-small", lambda d: dict(input=_x(d, 1, 1, 6, 4), padding=((0, 1), (0, 0))), ValueError,
     r"padded input height \(1 \+ 0 \+ 1 = 2\)"),
    ("input-not-tensor", lambda d: dict(input=[[1.0]]), TypeError, r"input and filters must be torch.Tensor, got list"),
]


@pytest.mark.parametrize("builder,error,message", [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_bad_input_raises_a_clear_error(builder, error, message, device):
    kwargs = dict(input=_x(device), filters=_w(device))
    kwargs.update(builder(device))
    with pytest.raises(error, match=message):
        myconv.conv2d(**kwargs)


def test_raw_op_rejects_bad_lengths_and_strings():
    x, w = torch.randn(1, 6, 6, 4), torch.randn(3, 3, 4, 2)
    with pytest.raises(ValueError, match=r"stride must have 2 entries \(height, width\), got 3"):
        torch.ops.myconv.conv2d(x, w, [1, 1, 1])
    with pytest.raises(ValueError, match=r"explicit padding must have 4 entries .*got 2"):
        torch.ops.myconv.conv2d.explicit(x, w, [1, 1], [1, 1])
    with pytest.raises(ValueError, match=r"got \"explicit\"; pass explicit padding"):
        torch.ops.myconv.conv2d(x, w, [1, 1], "explicit")


def test_int64_overflow_is_an_error_not_garbage():
    x = torch.empty(1, 4, 4, 1, device="meta")
    w = torch.empty(3, 3, 1, 1, device="meta")
    # Beyond 2^60 (geometry.h: the bound that keeps the index math exact), and overflows.
    with pytest.raises(ValueError, match=r"dilation entries must be <= 2\^60 .*got \[4611686018427387904, 1\]"):
        torch.ops.myconv.conv2d(x, w, [1, 1], "SAME", [2**62, 1])
    with pytest.raises(ValueError, match=r"explicit padding entries must be <= 2\^60"):
        torch.ops.myconv.conv2d.explicit(x, w, [1, 1], [2**62, 2**62, 0, 0], [1, 1])
    with pytest.raises(ValueError, match=r"stride entries must be <= 2\^60"):
        torch.ops.myconv.conv2d(x, w, [1, 2**63 - 1])
    long_filter = torch.empty(2**40, 1, 1, 1, device="meta")
    with pytest.raises(ValueError, match="overflows int64"):
        torch.ops.myconv.conv2d(x, long_filter, [1, 1], "SAME", [2**30, 1])
    with pytest.raises(ValueError, match=r"dilated filter height .* must be <= 2\^60"):
        torch.ops.myconv.conv2d(x, long_filter, [1, 1], "SAME", [2**21, 1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_device_mismatch():
    x, w = torch.randn(1, 6, 6, 4), torch.randn(3, 3, 4, 2)
    with pytest.raises(ValueError, match=r"filter must be on the input's device cpu, got cuda:0"):
        myconv.conv2d(x, w.cuda())
    with pytest.raises(ValueError, match=r"bias must be on the input's device cuda:0, got cpu"):
        myconv.conv2d(x.cuda(), w.cuda(), bias=torch.randn(2))


def test_bias_as_a_list_or_array_is_converted():
    import numpy as np

    x, w = torch.randn(1, 6, 6, 4), torch.randn(3, 3, 4, 2)
    expected = myconv.conv2d(x, w, bias=torch.tensor([0.5, -1.0]))
    assert torch.equal(myconv.conv2d(x, w, bias=[0.5, -1.0]), expected)
    assert torch.equal(myconv.conv2d(x, w, bias=np.array([0.5, -1.0])), expected)


def test_layer_refuses_an_input_it_was_not_built_for():
    layer = myconv.Conv2d(4, 4, 3)
    # torch.nn.Conv2d's attribute names beside Keras's arguments
    assert (layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.dilation, layer.groups,
            layer.padding, layer.padding_mode) == (4, 4, [3, 3], [1, 1], [1, 1], 1, "VALID", "zeros")
    with pytest.raises(ValueError, match=r"input must be NHWC \[N, H, W, 4\] .*got shape \[1, 8, 8, 8\]$"):
        layer(torch.randn(1, 8, 8, 8))  # would be taken as 2 groups by the functional op
    with pytest.raises(ValueError, match=r"got shape \[2, 4, 9, 9\] \(it looks like NCHW"):
        layer(torch.randn(2, 4, 9, 9))
    with pytest.raises(ValueError, match=r"got shape \[8, 8, 4\]"):
        layer(torch.randn(8, 8, 4))


def test_numpy_integers_are_taken_and_floats_refused():
    import numpy as np

    x, w = torch.randn(1, 8, 8, 4), torch.randn(3, 3, 4, 2)
    expected = myconv.conv2d(x, w, [2, 1], [[0, 0], [1, 0], [0, 1], [0, 0]], [1, 2])
    got = myconv.conv2d(x, w, np.array([2, 1]), [[0, 0], [np.int64(1), 0], [0, np.int32(1)], [0, 0]],
                        (np.int64(1), np.int64(2)))
    assert torch.equal(got, expected)
    with pytest.raises(TypeError, match=r"strides entries must be ints"):
        myconv.conv2d(x, w, [2.0, 1])
    with pytest.raises(TypeError, match=r"output_shape entries must be ints"):
        myconv.conv2d_transpose(torch.randn(1, 5, 5, 2), torch.randn(3, 3, 4, 2), (10.7, 10.2), 2)
