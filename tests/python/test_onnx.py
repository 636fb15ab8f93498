"""ONNX export through myconv.onnx.translation_table(), run with onnxruntime against eager."""

import pytest
import torch
from torch.export import Dim

import myconv
from references import relative_error

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
import myconv.onnx  # noqa: E402

# (input NHWC, filter HWIO, stride, padding, dilation, bias)
CASES = [
    ((2, 17, 19, 3), (3, 3, 3, 8), (2, 2), "SAME", (1, 1), True),    # odd sizes, pad (0/1, 1)
    ((2, 16, 16, 4), (3, 3, 4, 6), (2, 2), "SAME", (1, 1), False),   # even sizes: extra pad after
    ((1, 12, 13, 4), (3, 2, 4, 5), (1, 2), "VALID", (1, 1), True),
    ((1, 9, 11, 4), (3, 3, 4, 4), (1, 1), [1, 0, 2, 1], (1, 1), True),  # explicit, asymmetric
    ((1, 15, 14, 3), (3, 3, 3, 4), (1, 1), "SAME", (2, 3), False),   # dilation
    ((1, 16, 17, 4), (3, 2, 4, 4), (2, 3), "same", (3, 2), True),    # stride and dilation
    ((2, 10, 9, 6), (3, 3, 2, 9), (1, 1), "SAME", (1, 1), True),     # 3 groups
    ((2, 10, 9, 6), (3, 3, 1, 12), (2, 1), "SAME", (1, 1), True),    # depthwise, multiplier 2
]


class OneConv(torch.nn.Module):
    def __init__(self, w, stride, padding, dilation, bias):
        super().__init__()
        self.weight = torch.nn.Parameter(w)
        self.bias = torch.nn.Parameter(bias) if bias is not None else None
        self.args = (stride, padding, dilation)

    def forward(self, x):
        stride, padding, dilation = self.args
        if isinstance(padding, str):
            return torch.ops.myconv.conv2d(x, self.weight, stride, padding, dilation, self.bias)
        return torch.ops.myconv.conv2d.explicit(x, self.weight, stride, padding, dilation, self.bias)


def _export(model, x, path, dynamic_batch=False, optimize=True):
    shapes = ({0: Dim("batch", max=64)},) if dynamic_batch else None
    program = torch.onnx.export(model, (x,), dynamic_shapes=shapes, dynamo=True, optimize=optimize,
                                custom_translation_table=myconv.onnx.translation_table(), verbose=False)
    program.save(str(path))
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(session, x):
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)).replace(" ", ""))
def test_exported_conv_matches_eager(case, tmp_path):
    xs, ws, stride, padding, dilation, with_bias = case
    model = OneConv(torch.randn(ws), list(stride), padding, list(dilation),
                    torch.randn(ws[3]) if with_bias else None).eval()
    x = torch.randn(xs)
    session = _export(model, x, tmp_path / "conv.onnx")
    with torch.no_grad():
        expected = model(x)
    got = _run(session, x)
    assert got.shape == expected.shape
    assert relative_error(got, expected) <= 1e-5


def test_dynamic_batch_network(tmp_path):
    model = torch.nn.Sequential(
        myconv.Conv2d(3, 8, 3, strides=2, padding="same", activation="relu"),
        myconv.Conv2d(8, 8, 3, padding=((1, 0), (2, 1)), groups=8, dilation_rate=2),
        myconv.Conv2d(8, 4, 1, use_bias=False),
    ).eval()
    session = _export(model, torch.randn(2, 17, 20, 3), tmp_path / "net.onnx", dynamic_batch=True)
    for batch in (1, 2, 7):
        x = torch.randn(batch, 17, 20, 3)
        with torch.no_grad():
            expected = model(x)
        assert relative_error(_run(session, x), expected) <= 1e-5


def test_graph_uses_standard_operators_only(tmp_path):
    model = OneConv(torch.randn(3, 3, 4, 4), [2, 2], "SAME", [1, 1], None)
    # Unoptimised, to see the translation itself (the optimiser may fold auto_pad into pads).
    _export(model, torch.randn(1, 9, 9, 4), tmp_path / "conv.onnx", optimize=False)
    import onnx

    graph = onnx.load(str(tmp_path / "conv.onnx")).graph
    ops = {node.op_type for node in graph.node}
    assert ops <= {"Transpose", "Conv"} and "Conv" in ops
    (conv,) = [node for node in graph.node if node.op_type == "Conv"]
    assert {a.name: onnx.helper.get_attribute_value(a) for a in conv.attribute}["auto_pad"] == b"SAME_UPPER"


# (input NHWC, filter [KH, KW, C_out, C_in], output_size, output_padding, stride, padding, dilation, bias)
TRANSPOSED = [
    ((2, 5, 7, 6), (3, 3, 4, 6), [10, 14], None, (2, 2), "SAME", (1, 1), True),
    ((1, 5, 7, 6), (3, 3, 4, 6), [9, 13], None, (2, 2), "SAME", (1, 1), False),   # the smaller SAME sizes
    ((1, 5, 7, 6), (4, 3, 4, 6), None, [1, 0], (2, 3), "VALID", (1, 1), True),    # Keras output_padding
    ((1, 4, 6, 3), (3, 3, 2, 3), None, None, (1, 1), "VALID", (2, 1), True),      # dilated
    ((1, 5, 6, 3), (3, 2, 2, 3), [10, 12], None, (2, 2), [1, 0, 0, 1], (1, 1), True),
]


class OneTransposedConv(torch.nn.Module):
    def __init__(self, w, output_size, output_padding, stride, padding, dilation, bias):
        super().__init__()
        self.weight = torch.nn.Parameter(w)
        self.bias = torch.nn.Parameter(bias) if bias is not None else None
        self.args = (output_size, output_padding, stride, padding, dilation)

    def forward(self, x):
        output_size, output_padding, stride, padding, dilation = self.args
        if isinstance(padding, str):
            return torch.ops.myconv.conv2d_transpose(x, self.weight, output_size, output_padding, stride, padding,
                                                     dilation, self.bias)
        return torch.ops.myconv.conv2d_transpose.explicit(x, self.weight, output_size, output_padding, stride,
                                                          padding, dilation, self.bias)


@pytest.mark.parametrize("case", TRANSPOSED, ids=lambda c: "-".join(map(str, c)).replace(" ", ""))
def test_exported_transposed_conv_matches_eager(case, tmp_path):
    xs, ws, output_size, output_padding, stride, padding, dilation, with_bias = case
    model = OneTransposedConv(torch.randn(ws), output_size, output_padding, list(stride), padding, list(dilation),
                              torch.randn(ws[2]) if with_bias else None).eval()
    x = torch.randn(xs)
    session = _export(model, x, tmp_path / "transposed.onnx", dynamic_batch=True)
    for batch in (xs[0], 3):
        x = torch.randn(batch, *xs[1:])
        with torch.no_grad():
            expected = model(x)
        got = _run(session, x)
        assert got.shape == expected.shape
        assert relative_error(got, expected) <= 1e-5
