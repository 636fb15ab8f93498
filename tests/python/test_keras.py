"""Keras-style layer and Keras weight import, without TensorFlow: a fixture writes the arrays and
configs a Keras model's get_weights()/get_config() would give, as a .npz file."""

import json

import numpy as np
import pytest
import torch

import myconv
from references import conv_torch, relative_error

# A small Keras-style stack: Conv2D(same, stride 2, relu) -> DepthwiseConv2D(multiplier 2)
# -> Conv2D(valid, dilated, grouped, no bias).
CONFIGS = [
    {"name": "stem", "filters": 8, "kernel_size": [3, 3], "strides": [2, 2], "padding": "same",
     "data_format": "channels_last", "dilation_rate": [1, 1], "groups": 1, "activation": "relu",
     "use_bias": True},
    {"name": "dw", "kernel_size": [3, 3], "strides": [1, 1], "padding": "same", "depth_multiplier": 2,
     "data_format": "channels_last", "dilation_rate": [1, 1], "activation": "linear", "use_bias": True},
    {"name": "head", "filters": 6, "kernel_size": [3, 2], "strides": [1, 1], "padding": "valid",
     "data_format": "channels_last", "dilation_rate": [2, 1], "groups": 2, "activation": "linear",
     "use_bias": False},
]
SHAPES = {"stem": [(3, 3, 3, 8), (8,)], "dw": [(3, 3, 8, 2), (16,)], "head": [(3, 2, 8, 6)]}


@pytest.fixture
def keras_export(tmp_path):
    """Writes weights.npz and config.json as a script run beside a Keras model would."""
    rng = np.random.default_rng(0)
    arrays = {f"{name}/{i}": rng.standard_normal(shape).astype(np.float32) * 0.3
              for name, shapes in SHAPES.items() for i, shape in enumerate(shapes)}
    np.savez(tmp_path / "weights.npz", **arrays)
    (tmp_path / "config.json").write_text(json.dumps(CONFIGS))
    return tmp_path


def _load(path):
    configs = json.loads((path / "config.json").read_text())
    arrays = np.load(path / "weights.npz")
    weights = {c["name"]: [arrays[f"{c['name']}/{i}"] for i in range(len(SHAPES[c["name"]]))]
               for c in configs}
    return configs, weights


def _reference(x, weights):
    """The same stack in float64 from TF's definitions (torch.conv2d + TF padding)."""
    k, b = (torch.from_numpy(a).double() for a in weights["stem"])
    y = torch.relu(conv_torch(x, k, (2, 2), "SAME", (1, 1), b))
    k, b = (torch.from_numpy(a).double() for a in weights["dw"])
    y = conv_torch(y, k.reshape(3, 3, 1, 16), (1, 1), "SAME", (1, 1), b)
    k = torch.from_numpy(weights["head"][0]).double()
    return conv_torch(y, k, (1, 1), "VALID", (2, 1))


def test_ported_keras_stack_matches_reference_and_fine_tunes(keras_export):
    configs, weights = _load(keras_export)
    # As keras.saving.serialize_keras_object gives them: the class beside the config.
    layers = [{"class_name": "DepthwiseConv2D" if "depth_multiplier" in c else "Conv2D", "config": c} for c in configs]
    model = torch.nn.Sequential(*[myconv.from_keras(layer, weights[layer["config"]["name"]]) for layer in layers])
    x = torch.randn(4, 15, 14, 3)
    with torch.no_grad():
        out = model(x)
    ref = _reference(x.double(), weights)
    assert out.shape == ref.shape == (4, 4, 6, 6)
    assert relative_error(out, ref) <= 1e-5

    target = torch.randn_like(out)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(10):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_keras_defaults_and_repr():
    layer = myconv.Conv2d(4, 6, 3)
    assert layer.padding == "VALID" and layer.padding_mode == "zeros" and layer.bias is not None
    assert torch.equal(layer.bias, torch.zeros(6))
    limit = (6 / (3 * 3 * (4 + 6))) ** 0.5  # Glorot uniform over the HWIO fans
    assert layer.weight.abs().max() <= limit and layer.weight.std() > limit / 3
    text = repr(myconv.Conv2d(4, 6, (3, 1), strides=2, padding="same", dilation_rate=(1, 2),
                              groups=2, activation="relu", use_bias=False))
    assert text == ("Conv2d(4, 6, kernel_size=(3, 1), strides=(2, 2), padding='same', "
                    "dilation_rate=(1, 2), groups=2, use_bias=False, activation='relu')")


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
@pytest.mark.parametrize("activation", [None, "relu", "relu6", "sigmoid", "tanh", "softplus", "elu", "gelu", "swish"])
def test_activations(activation):
    layer = myconv.Conv2d(3, 4, 3, padding="same", activation=activation)
    x = torch.randn(2, 5, 5, 3)
    linear = myconv.conv2d(x, layer.weight, 1, "SAME", 1, layer.bias)
    functions = {None: lambda y: y, "relu": torch.relu, "relu6": torch.nn.functional.relu6,
                 "sigmoid": torch.sigmoid, "tanh": torch.tanh, "softplus": torch.nn.functional.softplus,
                 "elu": torch.nn.functional.elu, "gelu": torch.nn.functional.gelu,
                 "swish": torch.nn.functional.silu}
    expected = functions[activation](linear)
    assert torch.equal(layer(x), expected)
    assert torch.equal(torch.jit.script(layer)(x), expected)


def test_load_keras_weights_checks_shapes():
    layer = myconv.Conv2d(4, 6, 3)
    kernel = np.ones((3, 3, 4, 6), np.float32)
    assert layer.load_keras_weights(kernel, np.arange(6, dtype=np.float32)) is layer
    assert torch.equal(layer.weight, torch.ones(3, 3, 4, 6)) and layer.bias[5] == 5
    with pytest.raises(ValueError, match=r"kernel must have shape \(3, 3, 4, 6\) \(HWIO\), got \(3, 3, 6, 4\)"):
        layer.load_keras_weights(np.ones((3, 3, 6, 4)), np.zeros(6))
    with pytest.raises(ValueError, match=r"bias must have shape \(6,\), got \(5,\)"):
        layer.load_keras_weights(2 * kernel, np.zeros(5))
    assert torch.equal(layer.weight, torch.ones(3, 3, 4, 6)), "a rejected load must change nothing"
    with pytest.raises(ValueError, match="this layer has a bias"):
        layer.load_keras_weights(kernel)
    with pytest.raises(ValueError, match="this layer has no bias"):
        myconv.Conv2d(4, 6, 3, use_bias=False).load_keras_weights(kernel, np.zeros(6))
    with pytest.raises(TypeError, match="kernel must be a numpy array or a tensor"):
        layer.load_keras_weights("weights.h5")


def test_from_keras_rejects_what_it_cannot_port():
    config = dict(CONFIGS[0])
    weights = [np.zeros((3, 3, 3, 8), np.float32), np.zeros(8, np.float32)]

    def port(changes=None, arrays=weights, class_name="Conv2D"):
        return myconv.from_keras({**config, **(changes or {})}, arrays, class_name=class_name)

    assert port().out_channels == 8
    with pytest.raises(ValueError, match="the layer's class is needed .*class_name='Conv2D'"):
        myconv.from_keras(config, weights)
    for unsupported in ("Conv3D", "Conv1D", "Dense"):
        with pytest.raises(ValueError, match=f"Keras layer class '{unsupported}' is not supported"):
            myconv.from_keras({"class_name": unsupported, "config": config}, weights)
    with pytest.raises(ValueError, match='data_format must be "channels_last"'):
        port({"data_format": "channels_first"})
    with pytest.raises(ValueError, match=r"weights must be \[kernel, bias\]"):
        port(arrays=weights[:1])
    with pytest.raises(ValueError, match=r"weights must be \[kernel\] for use_bias=False"):
        port({"use_bias": False})
    with pytest.raises(ValueError, match="activation must be None or one of"):
        port({"activation": "softmax"})
    with pytest.raises(ValueError, match="kernel_size \\(5, 5\\) does not match"):
        port({"kernel_size": [5, 5]})
    with pytest.raises(ValueError, match="filters 16 does not match"):
        port({"filters": 16})
    with pytest.raises(ValueError, match="groups must be a positive int dividing filters"):
        port({"groups": 3})
    with pytest.raises(ValueError, match="depth_multiplier 3 does not match"):
        port({"depth_multiplier": 3}, class_name="DepthwiseConv2D")
    with pytest.raises(ValueError, match="contradicts the serialized layer's class"):
        myconv.from_keras({"class_name": "Conv2D", "config": config}, weights, class_name="DepthwiseConv2D")
    with pytest.raises(ValueError, match='padding must be "same" or "valid"'):
        myconv.Conv2d(3, 8, 3, padding="full")
