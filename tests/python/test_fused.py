"""conv2d_fused: activation(conv2d + bias + residual) in the kernels' store. Keras 3's own outputs
(fixtures/keras_fused.npz) and float64 definitions (references.keras_activation) for every
activation, every kernel (microkernel, depthwise, float64 GEMM, half types; every instruction set
through test_microkernel.py), prepacked filters, gradients, errors, the layer and ONNX."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import myconv
from references import TOLERANCE, conv_torch, keras_activation, relative_error

FIXTURES = np.load(Path(__file__).parent / "fixtures" / "keras_fused.npz")
ACTIVATIONS = json.loads(str(FIXTURES["meta"]))["cases"]


def test_the_op_takes_every_keras_activation_the_fixture_has():
    assert set(ACTIVATIONS) == set(torch.ops.myconv.activations()) == set(myconv.ACTIVATIONS)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_matches_keras_conv2d_and_add_then_activation(activation, device):
    x, w, b, r = (torch.from_numpy(FIXTURES[k]).to(device) for k in ("x", "kernel", "bias", "residual"))
    got = myconv.conv2d(x, w, 2, "SAME", bias=b, activation=activation)
    expected = torch.from_numpy(FIXTURES[f"{activation}/conv"])
    assert relative_error(got, expected) <= TOLERANCE[torch.float32], "Conv2D(activation=...)"
    got = myconv.conv2d(x, w, 2, "SAME", bias=b, activation=activation, residual=r)
    expected = torch.from_numpy(FIXTURES[f"{activation}/residual"])
    assert relative_error(got, expected) <= TOLERANCE[torch.float32], "Activation(Add([Conv2D, residual]))"


# Measured ulp error of the float32 activations (activation.h's approximations: exp by Cody-Waite
# reduction and Cephes's polynomial, erf rational, log1p by atanh's series) against float64, on
# every 3e-5 of [-30, 30] and every 1e-8 of [-1e-3, 1e-3], where the result is a normal float32:
# results below 2^-126 are flushed to zero, and gelu below 0 inherits the cancellation of
# 1 + erf(x / sqrt(2)) in float32 (TF's and torch's float32 gelu alike), bounded absolutely there.
ULP_BOUNDS = {"leaky_relu": 1, "elu": 1.5, "selu": 2.5, "gelu": 3.5, "silu": 3, "swish": 3, "sigmoid": 2.5,
              "hard_sigmoid": 1, "hard_silu": 2, "hard_swish": 2, "tanh": 3, "softplus": 3.5, "softsign": 1.5,
              "mish": 4.5, "exponential": 1}


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_float32_activations_within_a_few_ulp_of_float64_on_cpu(activation):
    x = torch.cat([torch.linspace(-30, 30, 2_000_001), torch.linspace(-1e-3, 1e-3, 200_001)])
    # a 1x1 filter of 1: the fused op's epilogue sees x itself
    got = myconv.conv2d(x.view(1, 1, -1, 1), torch.ones(1, 1, 1, 1), activation=activation).flatten().double()
    ref = keras_activation(activation, x.double())
    ulp = torch.nextafter(ref.float().abs(), torch.tensor(float("inf"))).double() - ref.float().abs().double()
    normal = (ref.abs() >= 2.0 ** -126) & ((x >= 0) if activation == "gelu" else True)
    error = (got - ref).abs()
    assert (error[normal] / ulp[normal]).max().item() <= ULP_BOUNDS.get(activation, 0), activation
    assert error[~normal].max().item() <= 1e-6 if (~normal).any() else True


@pytest.mark.parametrize("activation, alpha", [("leaky_relu", 0.05), ("elu", 0.5)])
def test_matches_keras_layers_with_their_parameter(activation, alpha, device):
    x, w, b, r = (torch.from_numpy(FIXTURES[k]).to(device) for k in ("x", "kernel", "bias", "residual"))
    got = myconv.conv2d(x, w, 2, "SAME", bias=b, activation=activation, residual=r, alpha=alpha)
    assert relative_error(got, torch.from_numpy(FIXTURES[f"{activation}_{alpha}/residual"])) <= 1e-5


# (input NHWC, filter HWIO, stride, padding): the microkernel (dense, grouped, 1x1), the depthwise
# microkernel, and the generic depthwise loops (channel multiplier 2).
GEOMETRIES = [
    ((2, 9, 11, 8), (3, 3, 8, 40), (1, 1), "SAME"),
    ((1, 10, 7, 6), (3, 2, 3, 12), (2, 1), "VALID"),
    ((2, 6, 6, 16), (1, 1, 16, 24), (1, 1), "SAME"),
    ((1, 9, 9, 24), (3, 3, 1, 24), (2, 2), "SAME"),
    ((1, 7, 8, 5), (3, 3, 1, 10), (1, 1), [1, 0, 2, 1]),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: "x".join(map(str, g[1])))
def test_every_activation_on_every_kernel_against_float64(geometry, dtype, device):
    x_shape, w_shape, stride, padding = geometry
    rng = random.Random(hash((x_shape, w_shape)) % 1000)
    x = torch.randn(x_shape, device=device) * 2
    w = torch.randn(w_shape, device=device) / w_shape[0]
    out_shape = conv_torch(x.cpu(), w.cpu(), stride, padding, (1, 1)).shape
    b = torch.randn(w_shape[3], device=device)
    residual = torch.randn(*out_shape, 2, device=device)[..., 0]  # strided: any strides are accepted
    pads = padding if isinstance(padding, str) else ((padding[0], padding[1]), (padding[2], padding[3]))
    for activation in ACTIVATIONS:
        use_residual, use_bias = rng.random() < 0.7, rng.random() < 0.7
        # exp turns the absolute error of a half type's sum into a relative one (and overflows
        # float16 above 11): smaller sums for it.
        scale = 0.25 if activation == "exponential" and dtype in (torch.float16, torch.bfloat16) else 1.0
        args = [(x * scale).to(dtype), w.to(dtype)]
        bias = (b * scale).to(dtype) if use_bias else None
        got = myconv.conv2d(*args, stride, pads, bias=bias, activation=activation,
                            residual=(residual * scale).to(dtype) if use_residual else None)
        z = conv_torch(args[0].cpu(), args[1].cpu(), stride, padding, (1, 1), None if bias is None else bias.cpu())
        if use_residual:
            z = z + (residual * scale).to(dtype).cpu().double()
        expected = keras_activation(activation, z)
        assert got.dtype == dtype and torch.isfinite(got).all(), activation
        assert relative_error(got, expected) <= TOLERANCE[dtype], activation


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("w_shape,stride,dilation", [((3, 3, 1, 24), 1, 1), ((3, 3, 1, 24), 2, 1),
                                                     ((3, 3, 1, 24), 1, 3), ((3, 3, 1, 48), 1, 1),
                                                     ((3, 3, 8, 24), 1, 1)],
                         ids=["depthwise-strips", "depthwise-strided", "depthwise-dilated", "multiplier-2", "dense"])
def test_half_types_round_once_after_the_epilogue_on_cpu(w_shape, stride, dilation, dtype):
    """The kernels widen half types and sum in float32 as the float32 path does: fused, the
    activation runs on those sums and the result is rounded once, so it equals the float32 op on
    the widened operands, rounded (a rounding before the epilogue would differ in some elements)."""
    if w_shape[2] > 1 and dtype == torch.bfloat16 and torch.ops.myconv.cpu_bfloat16_tile_kernel():
        pytest.skip("the bfloat16 tile kernel sums bfloat16 pairs (vdpbf16ps), not the float32 path's order")
    torch.manual_seed(0)
    x = torch.randn(2, 13, 21, 24 if w_shape[2] == 1 else w_shape[2]).to(dtype)
    w, b = torch.randn(w_shape).to(dtype), torch.randn(w_shape[3]).to(dtype)
    y = myconv.conv2d(x, w, stride, dilations=dilation, bias=b)
    r = torch.randn(y.shape).to(dtype)
    for activation in ["relu", "gelu", "silu", "elu", "sigmoid"]:
        got = myconv.conv2d(x, w, stride, dilations=dilation, bias=b, activation=activation, residual=r)
        expected = myconv.conv2d(x.float(), w.float(), stride, dilations=dilation, bias=b.float(),
                                 activation=activation, residual=r.float()).to(dtype)
        assert torch.equal(got, expected), activation


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_prepacked_filters_run_the_same_epilogue_on_cpu(activation):
    x, w, b = torch.randn(2, 8, 9, 16), torch.randn(3, 3, 16, 24), torch.randn(24)
    r = torch.randn(2, 8, 9, 24)
    packed = myconv.prepack_filter(w)
    got = myconv.conv2d_prepacked(x, packed, w.shape, bias=b, activation=activation, residual=r)
    assert torch.equal(got, myconv.conv2d(x, w, bias=b, activation=activation, residual=r))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradients_of_every_activation(activation, device):
    torch.manual_seed(0)
    x = torch.randn(1, 5, 6, 3, dtype=torch.float64, device=device, requires_grad=True)
    w = torch.randn(3, 3, 3, 4, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, device=device, requires_grad=True)
    r = torch.randn(1, 3, 3, 4, dtype=torch.float64, device=device, requires_grad=True)
    alpha = 0.3 if activation in ("leaky_relu", "elu") else None

    def fused(x, w, b, r):
        return myconv.conv2d(x, w, 2, "SAME", bias=b, activation=activation, residual=r, alpha=alpha)

    assert torch.autograd.gradcheck(fused, (x, w, b, r))
    with torch.no_grad():  # the fused kernel itself equals the differentiable form
        assert relative_error(fused(x, w, b, r), fused(x, w, b, r.detach().requires_grad_())) <= 1e-12


def test_gradgradcheck_through_an_activation():
    x = torch.randn(1, 5, 5, 2, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x, w: myconv.conv2d(x, w, activation="gelu"), (x, w))


def test_errors_name_the_argument():
    x, w = torch.randn(1, 6, 6, 4), torch.randn(3, 3, 4, 8)
    with pytest.raises(ValueError, match=r"activation must be one of linear, relu.*got \"leakyrelu\""):
        myconv.conv2d(x, w, activation="leakyrelu")
    with pytest.raises(ValueError, match="alpha is a parameter of leaky_relu and elu only, got 0.1"):
        myconv.conv2d(x, w, activation="relu", alpha=0.1)
    with pytest.raises(ValueError, match=r"residual must have the output's shape \[1, 6, 6, 8\], got \[1, 6, 6, 4\]"):
        myconv.conv2d(x, w, activation="relu", residual=torch.randn(1, 6, 6, 4))
    with pytest.raises(ValueError, match=r"residual must have the output's shape"):  # no silent broadcast
        myconv.conv2d(x.requires_grad_(), w, residual=torch.randn(8))
    with pytest.raises(TypeError, match="residual dtype must match input dtype"):
        myconv.conv2d(x, w, residual=torch.randn(1, 6, 6, 8, dtype=torch.float64))
    with pytest.raises(TypeError, match="activation must be None or a str, got int"):
        myconv.conv2d(x, w, activation=3)
    with pytest.raises(ValueError, match="alpha must be finite"):
        myconv.conv2d(x, w, activation="elu", alpha=float("nan"))


def test_prepacked_gradients_in_bias_and_residual():
    x, w = torch.randn(1, 6, 6, 4), torch.randn(3, 3, 4, 8)
    b = torch.randn(8, requires_grad=True)
    r = torch.randn(1, 6, 6, 8, requires_grad=True)
    packed = myconv.prepack_filter(w)
    myconv.conv2d_prepacked(x, packed, w.shape, bias=b, residual=r).sum().backward()
    assert torch.equal(r.grad, torch.ones_like(r)) and torch.equal(b.grad, torch.full_like(b, 36))
    r.grad = None
    myconv.conv2d_prepacked(x, packed, w.shape, residual=r).sum().backward()  # no bias before it
    assert torch.equal(r.grad, torch.ones_like(r))
    with pytest.raises(RuntimeError, match="conv2d_prepacked has no input gradient"):
        myconv.conv2d_prepacked(x.requires_grad_(), packed, w.shape, bias=b).sum().backward()


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_prepacked_gradients_through_every_activation(activation):
    """Through an activation the bias and residual gradients are conv2d_fused's (and gradcheck's)."""
    # small sums: exponential's second derivative stays within gradgradcheck's absolute tolerance
    x, w = torch.randn(1, 5, 6, 3, dtype=torch.float64) / 2, torch.randn(3, 3, 3, 4, dtype=torch.float64) / 2
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    r = torch.randn(1, 5, 6, 4, dtype=torch.float64, requires_grad=True)
    packed = myconv.prepack_filter(w)
    prepacked = lambda b, r: myconv.conv2d_prepacked(x, packed, w.shape, bias=b, residual=r, activation=activation)
    assert torch.autograd.gradcheck(prepacked, (b, r))
    if activation != "hard_sigmoid":  # (torch has no second derivative of hardsigmoid; conv2d neither)
        assert torch.autograd.gradgradcheck(prepacked, (b, r))
    with torch.no_grad():  # requiring grad changes nothing in the forward: the fused kernel runs
        assert torch.equal(prepacked(b, r), prepacked(b.detach(), r.detach()))
    g = torch.randn(1, 5, 6, 4, dtype=torch.float64)
    got = torch.autograd.grad(prepacked(b, r), (b, r), g)
    expected = torch.autograd.grad(myconv.conv2d(x, w, bias=b, residual=r, activation=activation), (b, r), g)
    assert all(torch.allclose(u, v, rtol=1e-12, atol=1e-12) for u, v in zip(got, expected))


def test_a_frozen_layer_runs_fused_in_grad_mode_and_trains_its_bias():
    layer = myconv.Conv2d(8, 16, 3, padding="same", activation="gelu").to(torch.float16)
    x, r = torch.randn(2, 9, 9, 8).to(torch.float16), torch.randn(2, 9, 9, 16).to(torch.float16)
    reference = myconv.Conv2d(8, 16, 3, padding="same", activation="gelu")
    reference.load_state_dict({k: v.float() for k, v in layer.state_dict().items()})
    reference.weight.requires_grad_(False)
    layer.freeze()
    y = layer(x, r)  # grad mode on, the bias requiring grad: still the fused kernel, rounded once
    with torch.no_grad():
        assert torch.equal(y, layer(x, r))
        assert torch.equal(y, reference(x.float(), r.float()).to(torch.float16))
    g = torch.randn(y.shape)
    y.backward(g.to(torch.float16))
    reference(x.float(), r.float()).backward(g)
    assert relative_error(layer.bias.grad, reference.bias.grad) <= 1e-2


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_an_empty_input_with_padding_rounds_once_too(dtype):
    """H = 0 with explicit padding: outputs that read only padding (the bias), then the epilogue."""
    x, w = torch.randn(1, 0, 5, 4).to(dtype), torch.randn(3, 3, 4, 8).to(dtype)
    b = torch.randn(8).to(dtype)
    r = torch.randn(1, 2, 5, 8).to(dtype)
    got = myconv.conv2d(x, w, 1, [[2, 2], [1, 1]], bias=b, activation="gelu", residual=r)
    expected = myconv.conv2d(x.float(), w.float(), 1, [[2, 2], [1, 1]], bias=b.float(), activation="gelu",
                             residual=r.float()).to(dtype)
    assert torch.equal(got, expected)


def test_prepacked_residual_errors_name_the_op():
    x, w = torch.randn(1, 6, 6, 4), torch.randn(3, 3, 4, 8)
    packed = myconv.prepack_filter(w)
    with pytest.raises(TypeError, match="myconv.conv2d_prepacked: residual dtype must match input dtype"):
        myconv.conv2d_prepacked(x, packed, w.shape, residual=torch.randn(1, 6, 6, 8, dtype=torch.float64))


def test_opcheck_every_overload():
    x, w, b, r = torch.randn(2, 7, 7, 4), torch.randn(3, 3, 4, 8), torch.randn(8), torch.randn(2, 7, 7, 8)
    torch.library.opcheck(torch.ops.myconv.conv2d_fused.default, (x, w, [1, 1], "SAME", [1, 1], b, r, "gelu", None))
    torch.library.opcheck(torch.ops.myconv.conv2d_fused.explicit,
                          (x, w, [1, 1], [1, 1, 0, 2], [1, 1], None, None, "leaky_relu", 0.1))
    packed = myconv.prepack_filter(w)
    torch.library.opcheck(torch.ops.myconv.conv2d_prepacked.default,
                          (x, packed, [3, 3, 4, 8], [1, 1], "SAME", [1, 1], b, r, "relu", None),
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


def test_layer_runs_its_activation_and_residual_fused_frozen_or_not():
    layer = myconv.Conv2d(8, 16, 3, padding="same", activation="hard_swish")
    x, r = torch.randn(2, 9, 9, 8), torch.randn(2, 9, 9, 16)
    with torch.no_grad():
        expected = keras_activation("hard_silu", conv_torch(x, layer.weight, (1, 1), "SAME", (1, 1), layer.bias) + r)
        assert relative_error(layer(x, r), expected) <= 1e-5
        assert torch.equal(layer.freeze()(x, r), layer(x, r))
        scripted = torch.jit.script(layer.unfreeze())
        assert torch.equal(scripted(x, r), layer(x, r))


def test_compile_and_export_with_a_dynamic_batch():
    layer = myconv.Conv2d(4, 8, 3, padding="same", activation="silu").eval()
    x, r = torch.randn(3, 6, 6, 4), torch.randn(3, 6, 6, 8)
    batch = torch.export.Dim("batch")
    with torch.no_grad():
        program = torch.export.export(layer, (x, r), dynamic_shapes=({0: batch}, {0: batch}))
        x2, r2 = torch.randn(5, 6, 6, 4), torch.randn(5, 6, 6, 8)
        assert torch.equal(program.module()(x2, r2), layer(x2, r2))
        assert torch.equal(torch.compile(layer, fullgraph=True)(x2, r2), layer(x2, r2))


def test_onnx_translation_runs_in_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import myconv.onnx

    class Block(torch.nn.Module):
        def __init__(self, activation):
            super().__init__()
            self.conv = myconv.Conv2d(4, 8, 3, padding="same", activation=activation)

        def forward(self, x, r):
            return self.conv(x, r)

    for dtype, activations in ((torch.float32, ACTIVATIONS), (torch.float16, ["relu6", "gelu", "hard_sigmoid"])):
        _check_onnx(Block, ort, dtype, activations)


def _check_onnx(Block, ort, dtype, activations):
    x, r = torch.randn(2, 7, 7, 4, dtype=dtype), torch.randn(2, 7, 7, 8, dtype=dtype)
    for activation in activations:
        model = Block(activation).to(dtype).eval()
        program = torch.onnx.export(model, (x, r), dynamo=True, custom_translation_table=myconv.onnx.translation_table())
        session = ort.InferenceSession(program.model_proto.SerializeToString())
        (got,) = session.run(None, {i.name: t.numpy() for i, t in zip(session.get_inputs(), (x, r))})
        with torch.no_grad():
            assert relative_error(torch.from_numpy(got), model(x, r)) <= TOLERANCE[dtype], activation


NETWORK = np.load(Path(__file__).parent / "fixtures" / "keras_network.npz")


def _keras_layer(name):
    configs = json.loads(str(NETWORK["configs"]))
    weights = [NETWORK[key] for key in sorted((k for k in NETWORK.files if k.startswith(name + "/")),
                                              key=lambda k: int(k.split("/")[1]))]
    return configs[name], weights


@pytest.mark.parametrize("frozen", [False, True], ids=["eager", "frozen"])
def test_a_keras_network_imported_and_folded_equals_keras(frozen):
    """Conv2D + BN + ReLU, a residual block (BN, Add, ReLU), SeparableConv2D + BN + gelu, a 1x1
    Conv2D with each activation and a DepthwiseConv2D (fixtures/keras_network.npz, written by
    Keras): each convolution one fused call, every BatchNormalization folded into it."""
    stem = myconv.from_keras(*_keras_layer("stem"), batch_norm=_keras_layer("stem_bn"), activation="relu")
    block = myconv.from_keras(*_keras_layer("block"), batch_norm=_keras_layer("block_bn"), activation="relu")
    separable = myconv.from_keras(*_keras_layer("separable"), batch_norm=_keras_layer("separable_bn"),
                                  activation="gelu")
    chain = [myconv.from_keras(*_keras_layer(f"act_{name}")) for name in ACTIVATIONS]
    depthwise = myconv.from_keras(*_keras_layer("depthwise"))
    assert isinstance(separable, myconv.SeparableConv2D)
    layers = [stem, block, separable, *chain, depthwise]
    for layer in layers:
        layer.eval()
        if frozen:
            layer.freeze()
    with torch.no_grad():
        x = stem(torch.from_numpy(NETWORK["input"]))
        y = block(x, x)  # BatchNormalization folded, then Add(shortcut) and ReLU in the store
        for layer in [separable, *chain, depthwise]:
            y = layer(y)
    assert relative_error(y, torch.from_numpy(NETWORK["output"])) <= 1e-5


def test_fold_batch_norm_checks_before_changing_anything():
    layer = myconv.Conv2d(4, 6, 3, use_bias=False)
    weight = layer.weight.detach().clone()
    with pytest.raises(ValueError, match=r"moving_mean must have shape \[6\] \(out_channels\), got \[5\]"):
        layer.fold_batch_norm(None, None, np.zeros(5), np.ones(6))
    with pytest.raises(ValueError, match="moving_variance \\+ epsilon must be > 0"):
        layer.fold_batch_norm(None, None, np.zeros(6), -np.ones(6))
    with pytest.raises(ValueError, match="activation must be None or one of"):
        layer.fold_batch_norm(None, None, np.zeros(6), np.ones(6), activation="relu7")
    assert torch.equal(layer.weight, weight) and layer.bias is None
    relu = myconv.Conv2d(4, 6, 3, activation="relu")
    with pytest.raises(ValueError, match="runs before the BatchNormalization"):
        relu.fold_batch_norm(None, None, np.zeros(6), np.ones(6))


def test_fold_batch_norm_equals_the_batch_norm_after_the_layer():
    layer = myconv.Conv2d(4, 6, 3, padding="same", use_bias=False).eval()
    gamma, beta, mean, var = torch.rand(6) + 0.5, torch.randn(6), torch.randn(6), torch.rand(6) + 0.5
    x = torch.randn(2, 7, 7, 4)
    with torch.no_grad():
        expected = torch.relu((layer(x) - mean) / torch.sqrt(var + 1e-3) * gamma + beta)
        got = layer.fold_batch_norm(gamma, beta, mean, var, activation="relu")(x)
    assert layer.bias is not None and relative_error(got, expected) <= 1e-5


def test_from_keras_refuses_what_it_cannot_fold():
    config, weights = _keras_layer("stem")
    with pytest.raises(ValueError, match=r"batch_norm weights must be \[gamma, beta, moving_mean, moving_variance\]"):
        myconv.from_keras(config, weights, batch_norm=(_keras_layer("stem_bn")[0], _keras_layer("stem_bn")[1][:3]))
    with pytest.raises(ValueError, match="batch_norm must be a BatchNormalization, got 'Conv2D'"):
        myconv.from_keras(config, weights, batch_norm=_keras_layer("block"))
    with pytest.raises(ValueError, match="own activation 'tanh' runs before"):
        myconv.from_keras(*_keras_layer("depthwise"), batch_norm=_keras_layer("stem_bn"))


def test_tf_batch_dimensions_merge_into_n_as_a_view():
    """tf.nn.conv2d takes batch_shape + [H, W, C] (TF 2.21: [2, 3, 9, 9, 4] -> [2, 3, 9, 9, 5])."""
    x, w, r = torch.randn(2, 3, 9, 9, 4), torch.randn(3, 3, 4, 5), torch.randn(2, 3, 9, 9, 5)
    flat = myconv.conv2d(x.reshape(6, 9, 9, 4), w, activation="elu", residual=r.reshape(6, 9, 9, 5))
    got = myconv.conv2d(x, w, activation="elu", residual=r)
    assert got.shape == (2, 3, 9, 9, 5) and torch.equal(got, flat.reshape(2, 3, 9, 9, 5))
    assert myconv.ops._merge_batch_dims(x)._base is x  # a view, not a copy
    layer = myconv.Conv2d(4, 5, 3, padding="same", activation="relu")
    assert torch.equal(layer(x, r), torch.jit.script(layer)(x, r))
    assert torch.equal(layer.freeze()(x, r), layer(x.reshape(6, 9, 9, 4), r.reshape(6, 9, 9, 5)).reshape(r.shape))
    packed = myconv.prepack_filter(w)
    assert myconv.conv2d_prepacked(x, packed, w.shape).shape == (2, 3, 9, 9, 5)
    filters = torch.randn(3, 3, 5, 4)
    transposed = myconv.conv2d_transpose(x, filters, (2, 3, 18, 18, 5), strides=2)
    assert torch.equal(transposed, myconv.conv2d_transpose(x.reshape(6, 9, 9, 4), filters, None, 2).reshape(2, 3, 18, 18, 5))
    assert myconv.Conv2DTranspose(4, 5, 3, strides=2, padding="same")(x).shape == (2, 3, 18, 18, 5)
    with pytest.raises(ValueError, match=r"residual must have the input's batch dimensions \[2, 3\]"):
        myconv.conv2d(x, w, residual=r.reshape(3, 2, 9, 9, 5))
    with pytest.raises(ValueError, match=r"output_shape \[3, 2, 18, 18, 5\] must have the input's batch dimensions"):
        myconv.conv2d_transpose(x, filters, (3, 2, 18, 18, 5), strides=2)
    with pytest.raises(ValueError, match=r"input must be 4-D NHWC \[N, H, W, C\], got shape \[9, 9, 4\]"):
        myconv.conv2d(torch.randn(9, 9, 4), w)


def test_nan_propagates_through_every_activation_as_in_keras():
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0]).view(1, 1, 4, 1)
    for activation in ACTIVATIONS:
        got = myconv.conv2d(x, torch.ones(1, 1, 1, 1), activation=activation).flatten()
        assert torch.isnan(got[0]), activation
        expected = keras_activation(activation, x.flatten().double())
        assert torch.allclose(got[1:].double(), expected[1:], rtol=1e-6, atol=0, equal_nan=True), activation


def test_float32_gelu_keeps_its_sign():
    x = torch.linspace(-12, 0, 100_001).view(1, 1, -1, 1)
    assert (myconv.conv2d(x, torch.ones(1, 1, 1, 1), activation="gelu") <= 0).all()


def test_forward_mode_is_refused_not_dropped():
    x, w = torch.randn(1, 5, 5, 3, dtype=torch.float64), torch.randn(3, 3, 3, 4, dtype=torch.float64)
    import torch.autograd.forward_ad as fwAD
    with fwAD.dual_level(), pytest.raises(RuntimeError):
        y = myconv.conv2d(fwAD.make_dual(x, torch.randn_like(x)), w, activation="relu")
        assert fwAD.unpack_dual(y).tangent is not None  # (never reached: conv2d has no forward derivative)


def test_the_activation_op_never_aliases_its_input():
    x = torch.zeros(3)
    y = torch.ops.myconv.activation(x, "linear")
    y.add_(1)
    assert torch.equal(x, torch.zeros(3))
    with pytest.raises(ValueError, match="myconv.activation: alpha is a parameter of leaky_relu and elu only"):
        torch.ops.myconv.activation(x, "relu", 0.1)
    assert torch.equal(myconv.conv2d(torch.ones(1, 1, 1, 1), -torch.ones(1, 1, 1, 1), activation="leaky_relu",
                                     alpha=np.float32(0.5)), torch.full((1, 1, 1, 1), -0.5))


def test_a_residual_of_another_rank_is_refused_not_reshaped():
    x, w = torch.randn(6, 7, 8, 4), torch.randn(3, 3, 4, 6)
    residual = torch.randn(2, 3, 7, 8, 6)  # its leading sizes multiply to N: no silent merge
    with pytest.raises(ValueError, match=r"residual must have the output's shape \[6, 7, 8, 6\]"):
        myconv.conv2d(x, w, activation="relu", residual=residual)
    with pytest.raises(ValueError, match=r"residual must have the output's shape"):
        myconv.Conv2d(4, 6, 3, padding="same")(x, residual)
