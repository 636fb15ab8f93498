"""conv2d_transpose (TF's tf.nn.conv2d_transpose) and the Keras-style Conv2DTranspose layer:
against the definition (the input gradient of conv2d, in float64 through torch's autograd), TF's
output_shape rule, Keras's output-size rule, gradients, opcheck, TorchScript and torch.export."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import myconv
from references import conv_torch, relative_error

TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 1e-2}


def transpose_reference(x, w, out_hw, stride, padding, dilation, bias=None):
    """The definition: the gradient of conv2d (TF padding, float64) with respect to an input of
    size out_hw, for grad_output x."""
    u = torch.zeros(x.shape[0], *out_hw, w.shape[2], dtype=torch.float64, requires_grad=True)
    y = conv_torch(u, w.double(), stride, padding, dilation)
    assert y.shape[1:3] == x.shape[1:3]
    (g,) = torch.autograd.grad(y, u, x.double())
    return g if bias is None else g + bias.double()


def _valid_sizes(size, k, s, d, padding, axis):
    """The conv2d input sizes whose output is `size` along one axis (TF's output_shape rule)."""
    eff = (k - 1) * d + 1
    if isinstance(padding, str) and padding.upper() == "SAME":
        return list(range((size - 1) * s + 1, size * s + 1))
    before, after = (0, 0) if isinstance(padding, str) else padding[2 * axis:2 * axis + 2]
    first = (size - 1) * s + eff - before - after
    return [v for v in range(max(first, 0), first + s) if v + before + after >= eff]


@st.composite
def transposed_calls(draw):
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.one_of(st.sampled_from(["SAME", "VALID"]), st.lists(st.integers(0, 2), min_size=4, max_size=4)))
    heights = _valid_sizes(h, kh, stride[0], dilation[0], padding, 0)
    widths = _valid_sizes(w, kw, stride[1], dilation[1], padding, 1)
    if not heights or not widths:
        return None
    out = (draw(st.sampled_from(heights)), draw(st.sampled_from(widths)))
    dtype = draw(st.sampled_from([torch.float64, torch.float32, torch.float32, torch.bfloat16]))
    return dict(x=(draw(st.integers(1, 2)), h, w, draw(st.integers(1, 5))), k=(kh, kw), c_out=draw(st.integers(1, 5)),
                out=out, stride=stride, dilation=dilation, padding=padding, dtype=dtype, bias=draw(st.booleans()))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(transposed_calls())
def test_cpu_conv2d_transpose_is_the_input_gradient_of_conv2d(call):
    if call is None:
        return
    dtype = call["dtype"]
    x = torch.randn(call["x"]).to(dtype)
    w = torch.randn(*call["k"], call["c_out"], call["x"][3]).to(dtype)
    b = torch.randn(call["c_out"]).to(dtype) if call["bias"] else None
    padding = call["padding"]
    tf_padding = padding if isinstance(padding, str) else [[0, 0], padding[0:2], padding[2:4], [0, 0]]
    out = myconv.conv2d_transpose(x, w, call["out"], call["stride"], tf_padding, call["dilation"], bias=b)
    ref = transpose_reference(x, w, call["out"], call["stride"], padding, call["dilation"], b)
    assert out.shape == ref.shape and out.dtype == dtype
    assert relative_error(out, ref) <= TOLERANCE[dtype] or ref.norm() == 0


@pytest.mark.parametrize("padding, output_padding, expected", [
    ("same", None, (10, 14)),     # H * s
    ("valid", None, (11, 15)),    # H * s + max(k - s, 0)
    ("same", 1, (10, 14)),        # (H - 1) * s + k - 2 * (k // 2) + 1
    ("valid", 0, (11, 15)),       # (H - 1) * s + k + 0
    ("valid", 1, (12, 16)),
])
def test_keras_output_size_rule(padding, output_padding, expected):
    layer = myconv.Conv2DTranspose(6, 4, 3, strides=2, padding=padding, output_padding=output_padding)
    x = torch.randn(2, 5, 7, 6)
    y = layer(x)
    assert y.shape == (2, *expected, 4)
    ref = transpose_reference(x, layer.weight.detach(), expected, (2, 2), padding.upper(), (1, 1), layer.bias.detach())
    assert relative_error(y, ref) <= 1e-5


def test_keras_rule_for_large_strides_and_dilations():
    # VALID with a stride above the dilated kernel: H * s, the rows past the last window are bias.
    x, w = torch.randn(1, 3, 2, 2), torch.randn(2, 1, 3, 2)
    y = myconv.conv2d_transpose(x, w, None, (4, 5), "VALID")
    assert y.shape == (1, 12, 10, 3)
    assert relative_error(y, transpose_reference(x, w, (12, 10), (4, 5), "VALID", (1, 1))) <= 1e-5
    y = myconv.conv2d_transpose(x, w, None, 1, "VALID", (3, 1))  # dilated: H + (k - 1) * d
    assert y.shape == (1, 6, 2, 3)


def test_output_shape_forms_and_refusals():
    x, w = torch.randn(2, 5, 7, 6), torch.randn(3, 3, 4, 6)
    full = myconv.conv2d_transpose(x, w, [2, 10, 14, 4], 2)
    assert torch.equal(full, myconv.conv2d_transpose(x, w, (10, 14), 2))
    with pytest.raises(ValueError, match=r"an output height of 12 is not one the input's height 5 transposes to "
                                         r"\(conv2d maps it to 6\); 9 to 10 would"):
        myconv.conv2d_transpose(x, w, (12, 14), 2, "SAME")
    with pytest.raises(ValueError, match=r"output width of 13 .*; 15 to 16 would"):
        myconv.conv2d_transpose(x, w, (11, 13), 2, "VALID")
    with pytest.raises(ValueError, match=r"must have the input's batch and the filter's C_out .*\[2, OH, OW, 4\]"):
        myconv.conv2d_transpose(x, w, [2, 10, 14, 6], 2)
    with pytest.raises(ValueError, match=r"C_in = the input's channels \(6\), got filter shape \[3, 3, 6, 4\]"):
        myconv.conv2d_transpose(x, torch.randn(3, 3, 6, 4), None, 2)
    with pytest.raises(ValueError, match=r"output_padding entries must be >= 0 and smaller than the stride"):
        torch.ops.myconv.conv2d_transpose(x, w, None, [2, 0], [2, 2], "SAME")
    with pytest.raises(ValueError, match="not both"):
        torch.ops.myconv.conv2d_transpose(x, w, [10, 14], [1, 1], [2, 2], "SAME")
    with pytest.raises(ValueError, match=r"bias must have shape \[4\]"):
        myconv.conv2d_transpose(x, w, None, 2, bias=torch.randn(6))
    with pytest.raises(ValueError, match="output_padding must be >= 0 and smaller than strides"):
        myconv.Conv2DTranspose(6, 4, 3, strides=2, output_padding=2)
    with pytest.raises(ValueError, match=r"input must be NHWC \[N, H, W, 6\]"):
        myconv.Conv2DTranspose(6, 4, 3)(torch.randn(1, 6, 5, 5))


def test_gradients_and_double_backward():
    x = torch.randn(2, 3, 4, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    for padding in ("SAME", [[0, 0], [1, 0], [0, 1], [0, 0]]):
        def f(x, w, b):
            return myconv.conv2d_transpose(x, w, None, (2, 1), padding, (1, 2), bias=b)

        assert torch.autograd.gradcheck(f, (x, w, b))
        assert torch.autograd.gradgradcheck(f, (x, w, b))


def test_opcheck_every_overload():
    x, w, b = torch.randn(2, 5, 7, 6), torch.randn(3, 3, 4, 6), torch.randn(4)
    torch.library.opcheck(torch.ops.myconv.conv2d_transpose.default, (x, w, [10, 14], None, [2, 2], "SAME", [1, 1], b))
    torch.library.opcheck(torch.ops.myconv.conv2d_transpose.default, (x, w, None, [1, 0], [2, 2], "VALID", [1, 1], None))
    torch.library.opcheck(torch.ops.myconv.conv2d_transpose.explicit, (x, w, None, None, [2, 1], [1, 0, 0, 2], [1, 1], b))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_layer_scripts_and_exports_with_a_dynamic_batch():
    layer = myconv.Conv2DTranspose(6, 4, 3, strides=2, padding="same", output_padding=1, activation="relu")
    x = torch.randn(2, 5, 7, 6)
    expected = layer(x)
    torch.testing.assert_close(torch.jit.script(layer)(x), expected)
    program = torch.export.export(layer, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.testing.assert_close(program.module()(torch.cat([x, x, x])), torch.cat([expected] * 3))
    torch.testing.assert_close(torch.compile(layer, fullgraph=True)(x), expected)


def test_from_keras_ports_conv2d_transpose():
    kernel, bias = torch.randn(3, 3, 4, 6).numpy(), torch.randn(4).numpy()
    config = {"filters": 4, "kernel_size": [3, 3], "strides": [2, 2], "padding": "same", "output_padding": [1, 1],
              "data_format": "channels_last", "dilation_rate": [1, 1], "activation": "linear", "use_bias": True}
    layer = myconv.from_keras({"class_name": "Conv2DTranspose", "config": config}, [kernel, bias])
    assert isinstance(layer, myconv.Conv2DTranspose) and layer.output_padding == [1, 1]
    x = torch.randn(1, 5, 7, 6)
    ref = transpose_reference(x, torch.from_numpy(kernel), (10, 14), (2, 2), "SAME", (1, 1), torch.from_numpy(bias))
    assert relative_error(layer(x), ref) <= 1e-5
    with pytest.raises(ValueError, match="filters 8 does not match"):
        myconv.from_keras({"class_name": "Conv2DTranspose", "config": {**config, "filters": 8}}, [kernel, bias])


def test_one_output_strided_pointwise_is_not_taken_for_stride_1():
    # make_plan gives a one-output axis stride 1; a 1x1 filter there is still no unpadded pointwise.
    x, w = torch.ones(2, 1, 1, 1), torch.ones(1, 1, 1, 1)
    for dtype in (torch.float64, torch.float32):
        y = myconv.conv2d_transpose(x.to(dtype), w.to(dtype), (2, 1), (2, 1), "VALID")
        assert y.flatten().tolist() == [1.0, 0.0, 1.0, 0.0]


def test_keras_rule_refuses_sizes_no_tensor_has():
    with pytest.raises(ValueError, match=r"Keras's output-size rule gives an output height of .*no output size fits"):
        torch.ops.myconv.conv2d_transpose(torch.randn(1, 8, 1, 2), torch.randn(4, 4, 3, 2), None, None,
                                          [2**60, 1], "SAME")
    with pytest.raises(ValueError, match=r"gives an output height of -3 .*no output size fits"):
        torch.ops.myconv.conv2d_transpose.explicit(torch.randn(1, 1, 1, 2), torch.randn(3, 3, 3, 2), None, None,
                                                   [1, 1], [3, 3, 3, 3], [1, 1])
    with pytest.raises(ValueError, match=r"output height of 5 is not one the input's height 8 transposes to"):
        torch.ops.myconv.conv2d_transpose(torch.randn(1, 8, 1, 2), torch.randn(4, 4, 3, 2), [5, 4], None,
                                          [2**60, 1], "SAME")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conv2d_transpose_on_every_device(device, dtype):
    x, w, b = torch.randn(2, 5, 7, 6), torch.randn(3, 3, 4, 6), torch.randn(4)
    for output_size, stride, padding in (((10, 14), 2, "SAME"), ((11, 15), 2, "VALID"), ((5, 7), 1, "SAME")):
        y = myconv.conv2d_transpose(x.to(device, dtype), w.to(device, dtype), output_size, stride, padding,
                                    bias=b.to(device, dtype))
        ref = transpose_reference(x, w, output_size, (stride, stride), padding, (1, 1), b)
        assert y.device.type == device and relative_error(y, ref) <= TOLERANCE[dtype]
