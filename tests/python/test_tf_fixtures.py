"""myconv against TensorFlow's and Keras's own outputs, stored by fixtures/make_tf_fixtures.py (TF and
Keras versions inside the file): tf.nn.conv2d_transpose on 39 random calls, and a Keras 3 decoder
of Conv2DTranspose layers (output_padding, dilation, activation) ported with myconv.from_keras."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import myconv
from references import relative_error

FIXTURE = np.load(Path(__file__).with_name("fixtures") / "tf_transpose.npz")
META = json.loads(str(FIXTURE["meta"]))


@pytest.mark.parametrize("case", META["cases"], ids=[c["name"] for c in META["cases"]])
def test_conv2d_transpose_equals_tensorflow(case):
    name = case["name"]
    x, f, expected = (torch.from_numpy(FIXTURE[f"{name}/{key}"]) for key in ("x", "filter", "y"))
    y = myconv.conv2d_transpose(x, f, case["output_shape"], case["strides"], case["padding"])
    assert y.shape == expected.shape and y.dtype == expected.dtype
    if expected.numel() > 0:  # (TF also gives an empty output where the input's sizes allow one)
        assert relative_error(y, expected) <= (1e-10 if x.dtype == torch.float64 else 1e-5), META["tensorflow"]


def test_keras_conv2d_transpose_decoder_equals_keras():
    layers = []
    for i, serialized in enumerate(META["keras_layers"]):
        weights = [FIXTURE[f"keras/{i}/{j}"] for j in range(2 if serialized["config"]["use_bias"] else 1)]
        layers.append(myconv.from_keras(serialized, weights))
    model = torch.nn.Sequential(*layers)
    with torch.no_grad():
        y = model(torch.from_numpy(FIXTURE["keras/x"]))
    expected = torch.from_numpy(FIXTURE["keras/y"])
    assert y.shape == expected.shape
    assert relative_error(y, expected) <= 1e-5, META["keras"]
