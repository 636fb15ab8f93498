"""ONNX export: translations of ``myconv::conv2d`` into standard ONNX operators for the
torch.export-based exporter (onnxscript), so an exported model runs in any ONNX runtime.

    torch.onnx.export(model, (x,), "model.onnx", dynamo=True,
                      custom_translation_table=myconv.onnx.translation_table())

NHWC input and HWIO filter become NCHW and OIHW with ``Transpose``; TF's SAME is ONNX's
``auto_pad="SAME_UPPER"`` (the odd pixel after), explicit padding ``pads=[top, left, bottom,
right]``; ``group`` comes from the shapes; the output is transposed back to NHWC. Dilated SAME
convolutions get explicit pads computed by ``torch.ops.myconv.same_padding`` instead, since ONNX
Runtime's SAME_UPPER ignores dilation; they need a static height and width. conv2d_transpose
becomes ``ConvTranspose`` with explicit pads (static height and width). Needs the ``onnx``
and ``onnxscript`` packages (imported only when the table is built).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

_TO_NCHW, _TO_NHWC, _HWIO_TO_OIHW = [0, 3, 1, 2], [0, 2, 3, 1], [3, 2, 0, 1]


def translation_table() -> dict[torch._ops.OpOverload, Callable]:
    """``custom_translation_table`` entries for both overloads of ``myconv::conv2d``, of
    ``myconv::conv2d_fused`` (Conv, then Add and the activation's ONNX operators) and of
    ``myconv::conv2d_transpose`` (ONNX ``ConvTranspose`` with the forward conv's pads in front,
    the rest of the crop at the end, ``output_padding`` where TF's size is larger)."""
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

    def activate(z, activation: str, alpha):
        """Keras's activation as ONNX operators (opset 18), its defaults as activation.h's."""
        name = {"swish": "silu", "hard_swish": "hard_silu"}.get(activation, activation)

        def constant(value: float):  # of z's type (float16 models too)
            return op.CastLike(op.Constant(value_float=value), z)

        if name == "linear":
            return z
        if name == "relu":
            return op.Relu(z)
        if name == "relu6":
            return op.Clip(z, constant(0.0), constant(6.0))
        if name == "leaky_relu":
            return op.LeakyRelu(z, alpha=0.2 if alpha is None else alpha)
        if name == "elu":
            return op.Elu(z, alpha=1.0 if alpha is None else alpha)
        if name == "selu":
            return op.Selu(z, alpha=1.6732632423543772, gamma=1.0507009873554805)
        if name == "gelu":
            return op.Mul(op.Mul(z, constant(0.5)), op.Add(constant(1.0), op.Erf(op.Mul(z, constant(0.7071067811865476)))))
        if name == "silu":
            return op.Mul(z, op.Sigmoid(z))
        if name == "hard_sigmoid":
            return op.HardSigmoid(z, alpha=1.0 / 6.0, beta=0.5)
        if name == "hard_silu":
            return op.HardSwish(z)
        unary = {"sigmoid": op.Sigmoid, "tanh": op.Tanh, "softplus": op.Softplus, "softsign": op.Softsign,
                 "mish": op.Mish, "exponential": op.Exp}
        if name not in unary:
            raise ValueError(f"myconv.onnx: no ONNX translation of activation {activation!r}")
        return unary[name](z)

    def epilogue(y, residual, activation, alpha):
        if residual is not None:
            y = op.Add(y, residual)
        return activate(y, activation, alpha)

    def conv2d_fused(input, filter, stride=(1, 1), padding="SAME", dilation=(1, 1), bias=None, residual=None,
                     activation="linear", alpha=None):
        return epilogue(conv2d(input, filter, stride, padding, dilation, bias), residual, activation, alpha)

    def conv2d_fused_explicit(input, filter, stride, padding, dilation=(1, 1), bias=None, residual=None,
                              activation="linear", alpha=None):
        return epilogue(conv2d_explicit(input, filter, stride, padding, dilation, bias), residual, activation, alpha)

    def transpose(input, filter, output_size, output_padding, stride, dilation, bias, padding):
        sizes = (input.shape[0], input.shape[1], input.shape[2], input.shape[3]) + tuple(filter.shape)
        if not all(isinstance(size, int) for size in sizes[1:]):
            raise ValueError("myconv.onnx: conv2d_transpose needs a static input height, width and channels and a "
                             f"static filter, got input {input.shape} and filter {filter.shape}")
        _, h, w, c_in, kh, kw, c_out, _ = sizes
        # The output size and the forward conv's padding from the op itself (Meta): one rule.
        out_h, out_w = torch.ops.myconv.conv2d_transpose(
            torch.empty(1, h, w, c_in, device="meta"), torch.empty(kh, kw, c_out, c_in, device="meta"),
            output_size, output_padding, stride, padding, dilation).shape[1:3]
        if isinstance(padding, str) and padding.upper() == "SAME":
            top, bottom = torch.ops.myconv.same_padding(out_h, kh, stride[0], dilation[0])
            left, right = torch.ops.myconv.same_padding(out_w, kw, stride[1], dilation[1])
        elif isinstance(padding, str):
            top = bottom = left = right = 0
        else:
            top, bottom, left, right = padding
        # ConvTranspose's size: (in - 1) * s + extent - begin - end + output_padding.
        ends, extra = [], []
        for size, out, k, s, d, begin in ((h, out_h, kh, stride[0], dilation[0], top),
                                          (w, out_w, kw, stride[1], dilation[1], left)):
            full = (size - 1) * s + (k - 1) * d + 1 - begin
            ends.append(max(full - out, 0))
            extra.append(max(out - full, 0))
        inputs = [op.Transpose(input, perm=_TO_NCHW), op.Transpose(filter, perm=_HWIO_TO_OIHW)]
        if bias is not None:
            inputs.append(bias)
        out = op.ConvTranspose(*inputs, strides=list(stride), dilations=list(dilation),
                               pads=[top, left, ends[0], ends[1]], output_padding=extra)
        return op.Transpose(out, perm=_TO_NHWC)

    def conv2d_transpose(input, filter, output_size=None, output_padding=None, stride=(1, 1), padding="SAME",
                         dilation=(1, 1), bias=None):
        return transpose(input, filter, output_size, output_padding, stride, dilation, bias, padding)

    def conv2d_transpose_explicit(input, filter, output_size, output_padding, stride, padding, dilation=(1, 1),
                                  bias=None):
        return transpose(input, filter, output_size, output_padding, stride, dilation, bias, list(padding))

    return {torch.ops.myconv.conv2d.default: conv2d, torch.ops.myconv.conv2d.explicit: conv2d_explicit,
            torch.ops.myconv.conv2d_fused.default: conv2d_fused,
            torch.ops.myconv.conv2d_fused.explicit: conv2d_fused_explicit,
            torch.ops.myconv.conv2d_transpose.default: conv2d_transpose,
            torch.ops.myconv.conv2d_transpose.explicit: conv2d_transpose_explicit}
