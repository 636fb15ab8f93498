"""ONNX export: translations of ``myconv::conv2d`` into standard ONNX operators for the
torch.export-based exporter (onnxscript), so an exported model runs in any ONNX runtime.

    torch.onnx.export(model, (x,), "model.onnx", dynamo=True,
                      custom_translation_table=myconv.onnx.translation_table())

NHWC input and HWIO filter become NCHW and OIHW with ``Transpose``; TF's SAME is ONNX's
``auto_pad="SAME_UPPER"`` (the odd pixel after), explicit padding ``pads=[top, left, bottom,
right]``; ``group`` comes from the shapes; the output is transposed back to NHWC. Dilated SAME
convolutions get explicit pads computed by ``torch.ops.myconv.same_padding`` instead, since ONNX
Runtime's SAME_UPPER ignores dilation; they need a static height and width. Needs the ``onnx``
and ``onnxscript`` packages (imported only when the table is built).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

_TO_NCHW, _TO_NHWC, _HWIO_TO_OIHW = [0, 3, 1, 2], [0, 2, 3, 1], [3, 2, 0, 1]


def translation_table() -> dict[torch._ops.OpOverload, Callable]:
    """``custom_translation_table`` entries for both overloads of ``myconv::conv2d``."""
    from onnxscript import opset18 as op

    def convolve(input, filter, stride: Sequence[int], dilation: Sequence[int], bias, **padding):
        channels, group_channels = input.shape[3], filter.shape[2]
        if not isinstance(channels, int) or not isinstance(group_channels, int):
            raise ValueError(
                "myconv.onnx: the input's channel count and the filter's in-channels must be "
                f"static to derive ONNX Conv's group, got {channels} and {group_channels}"
            )
        inputs = [op.Transpose(input, perm=_TO_NCHW), op.Transpose(filter, perm=_HWIO_TO_OIHW)]
        if bias is not None:
            inputs.append(bias)
        out = op.Conv(*inputs, strides=list(stride), dilations=list(dilation),
                      group=channels // group_channels, **padding)
        return op.Transpose(out, perm=_TO_NHWC)

    def conv2d(input, filter, stride=(1, 1), padding="SAME", dilation=(1, 1), bias=None):
        mode = padding.upper()
        if mode not in ("SAME", "VALID"):
            raise ValueError(f'myconv.onnx: padding must be "SAME" or "VALID", got "{padding}"')
        if mode == "VALID":
            return convolve(input, filter, stride, dilation, bias, auto_pad="VALID")
        if list(dilation) == [1, 1]:
            return convolve(input, filter, stride, dilation, bias, auto_pad="SAME_UPPER")
        sizes = (input.shape[1], input.shape[2], filter.shape[0], filter.shape[1])
        if not all(isinstance(size, int) for size in sizes):
            raise ValueError(
                "myconv.onnx: a dilated SAME convolution needs a static input height and width "
                f"(ONNX Runtime's auto_pad ignores dilation), got input {input.shape}"
            )
        top, bottom = torch.ops.myconv.same_padding(sizes[0], sizes[2], stride[0], dilation[0])
        left, right = torch.ops.myconv.same_padding(sizes[1], sizes[3], stride[1], dilation[1])
        return convolve(input, filter, stride, dilation, bias, pads=[top, left, bottom, right])

    def conv2d_explicit(input, filter, stride, padding, dilation=(1, 1), bias=None):
        top, bottom, left, right = padding
        return convolve(input, filter, stride, dilation, bias, pads=[top, left, bottom, right])

    return {torch.ops.myconv.conv2d.default: conv2d, torch.ops.myconv.conv2d.explicit: conv2d_explicit}
