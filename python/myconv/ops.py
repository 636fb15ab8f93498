"""TF-friendly Python wrappers over ``torch.ops.myconv.conv2d``.

They only translate TensorFlow's argument spellings (``[1, s, s, 1]`` strides, nested explicit
padding, a bias given as a list); every check on tensors and geometry happens once, in the C++ op.
They are Python, not TorchScript (their arguments are unions): scripted code calls
``torch.ops.myconv.conv2d`` itself.
"""

import math
import numbers
from collections.abc import Sequence
from typing import Optional, Union

import torch

try:  # numpy's bool is no numbers.Integral, but refuse it explicitly all the same
    from numpy import bool_ as np_bool
except ImportError:  # numpy is optional
    np_bool = bool

IntOrSeq = Union[int, Sequence[int]]
Padding = Union[str, Sequence[Sequence[int]]]


def _is_int(value: object) -> bool:
    """A Python or numpy integer (numbers.Integral), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np_bool))


def _ints(values: Sequence, name: str) -> list[int]:
    """Integers as Python ints; anything else (a float, a bool) is refused naming the argument."""
    items = list(values)
    if not all(_is_int(v) for v in items):
        raise TypeError(f"myconv: {name} entries must be ints, got {values!r}")
    return [int(v) for v in items]


def _spatial_pair(value: IntOrSeq, name: str) -> list[int]:
    """int, (h, w) or TF's [1, h, w, 1] (Python or numpy integers) -> [h, w]."""
    if _is_int(value):
        return [int(value), int(value)]
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise TypeError(f"myconv.conv2d: {name} must be an int or a sequence of ints, got {value!r}")
    items = _ints(value, name)
    if len(items) == 4:
        if items[0] != 1 or items[3] != 1:
            raise ValueError(
                f"myconv.conv2d: {name} in TF's 4-entry form [1, h, w, 1] must have 1 for the "
                f"batch and channel entries, got {value!r}"
            )
        return items[1:3]
    if len(items) != 2:
        raise ValueError(
            f"myconv.conv2d: {name} must be an int, (h, w) or [1, h, w, 1], got {len(items)} entries: {value!r}"
        )
    return items


def _explicit_padding(padding: Sequence[Sequence[int]]) -> list[int]:
    """TF's [[0, 0], [t, b], [l, r], [0, 0]] or ((t, b), (l, r)) -> [t, b, l, r]."""
    try:
        pairs = [list(p) for p in padding]
    except TypeError:
        raise TypeError(
            f"myconv.conv2d: explicit padding must be pairs of ints, got {padding!r}"
        ) from None
    if len(pairs) == 4:
        if pairs[0] != [0, 0] or pairs[3] != [0, 0]:
            raise ValueError(
                "myconv.conv2d: explicit padding [[0, 0], [t, b], [l, r], [0, 0]] must not pad "
                f"the batch or channel axes, got {padding!r}"
            )
        pairs = pairs[1:3]
    if len(pairs) != 2 or any(len(p) != 2 for p in pairs):
        raise ValueError(
            "myconv.conv2d: explicit padding must be ((top, bottom), (left, right)) or "
            f"[[0, 0], [top, bottom], [left, right], [0, 0]], got {padding!r}"
        )
    flat = pairs[0] + pairs[1]
    if not all(_is_int(v) for v in flat):
        raise TypeError(f"myconv.conv2d: explicit padding entries must be ints, got {padding!r}")
    return [int(v) for v in flat]


def _bias_tensor(bias: object, input: torch.Tensor) -> Optional[torch.Tensor]:
    """None, a tensor, or numbers (list, tuple, numpy array) as a 1-D tensor like the input."""
    if bias is None or isinstance(bias, torch.Tensor):
        return bias
    try:
        values = torch.as_tensor(bias, dtype=input.dtype, device=input.device)
    except (TypeError, ValueError, RuntimeError):
        values = None
    if values is None or values.dim() != 1:
        raise ValueError(f"myconv.conv2d: bias must be a tensor or a 1-D list/array of numbers [O], got {bias!r}")
    return values


def _common_arguments(op: str, input: object, filters: object, strides: IntOrSeq, dilations: IntOrSeq,
                      bias: object) -> tuple:
    """(stride, dilation, bias) of conv2d and conv2d_transpose in the raw ops' forms, after checking
    that input and filters are tensors."""
    if not isinstance(input, torch.Tensor) or not isinstance(filters, torch.Tensor):
        raise TypeError(
            f"myconv.{op}: input and filters must be torch.Tensor, got "
            f"{type(input).__name__} and {type(filters).__name__}"
        )
    return _spatial_pair(strides, "strides"), _spatial_pair(dilations, "dilations"), _bias_tensor(bias, input)


# TF's inputs of rank > 4, batch_shape + [H, W, C] (e.g. video frames [B, T, H, W, C]): the
# leading dimensions merge into N by a reshape, a view wherever the strides allow (a copy only
# where the kernels would copy anyway: such an input is not contiguous). Scriptable: the layers
# call these too.
def _check_residual_batch_dims(op: str, input: torch.Tensor, residual: Optional[torch.Tensor]) -> None:
    if residual is not None and input.dim() > 4:
        if residual.dim() != input.dim() or residual.shape[:-3] != input.shape[:-3]:
            raise ValueError("myconv." + op + ": residual must have the input's batch dimensions "
                             + str(list(input.shape[:-3])) + " before [OH, OW, O], got shape " + str(list(residual.shape)))


def _merge_batch_dims(x: torch.Tensor) -> torch.Tensor:
    if x.dim() <= 4:
        return x
    n = 1
    for size in x.shape[:-3]:
        n *= size
    return x.reshape([n, x.shape[-3], x.shape[-2], x.shape[-1]])


def _split_batch_dims(output: torch.Tensor, input: torch.Tensor) -> torch.Tensor:
    if input.dim() <= 4:
        return output
    return output.reshape(input.shape[:-3] + output.shape[1:])


def _epilogue_arguments(op: str, activation: object, residual: object, alpha: object):
    """(activation name, residual, alpha) for the ops, their types checked (the values are checked
    by the op)."""
    if activation is not None and not isinstance(activation, str):
        raise TypeError(f"myconv.{op}: activation must be None or a str, got {type(activation).__name__}")
    if residual is not None and not isinstance(residual, torch.Tensor):
        raise TypeError(f"myconv.{op}: residual must be None or a tensor, got {type(residual).__name__}")
    if alpha is not None and (isinstance(alpha, (bool, np_bool)) or not isinstance(alpha, numbers.Real)):
        raise TypeError(f"myconv.{op}: alpha must be None or a float, got {type(alpha).__name__}")
    return ("linear" if activation is None else activation), residual, (None if alpha is None else float(alpha))


def conv2d(
    input: torch.Tensor,
    filters: torch.Tensor,
    strides: IntOrSeq = 1,
    padding: Padding = "SAME",
    dilations: IntOrSeq = 1,
    bias: Optional[Union[torch.Tensor, Sequence[float]]] = None,
    activation: Optional[str] = None,
    residual: Optional[torch.Tensor] = None,
    alpha: Optional[float] = None,
) -> torch.Tensor:
    """TensorFlow's ``tf.nn.conv2d`` on PyTorch tensors: NHWC input, HWIO filters, NHWC output;
    optionally fused with a residual add and a Keras activation, ``activation(conv + bias +
    residual)``, in the kernel's store (one pass over the output instead of three).

    Args:
        input: ``[N, H, W, C]`` float32/float64/float16/bfloat16 tensor, any strides.
        filters: ``[KH, KW, C / groups, O]``; groups = C / filters.shape[2] (depthwise when 1).
        strides: int, ``(sh, sw)`` or TF's ``[1, sh, sw, 1]``.
        padding: ``"SAME"`` or ``"VALID"`` (any case), or explicit ``((top, bottom), (left, right))``
            or TF's ``[[0, 0], [top, bottom], [left, right], [0, 0]]``.
        dilations: int, ``(dh, dw)`` or ``[1, dh, dw, 1]``.
        bias: optional ``[O]`` added to every output pixel: a tensor, or a list or numpy array
            (converted to the input's dtype and device).
        activation: None (``"linear"``) or a Keras 3 activation name, with Keras's definition
            and defaults (``myconv.ACTIVATIONS``; e.g. ``leaky_relu``'s slope is 0.2,
            ``hard_sigmoid`` is ``relu6(x + 3) / 6``, ``gelu`` uses erf).
        residual: optional ``[N, OH, OW, O]`` tensor (any strides) added before the activation.
        alpha: ``leaky_relu``'s ``negative_slope`` or ``elu``'s ``alpha`` (None: Keras's default).

    Returns:
        Contiguous ``[N, OH, OW, O]`` tensor of the input's dtype.

    Raises:
        TypeError: input or filters not tensors, non-integer strides/dilations/padding, dtypes
            that differ or that the kernels lack.
        ValueError: shapes, strides, dilations or padding that do not make a convolution, an
            unknown activation, an alpha the activation lacks, a residual of another shape (the
            message names the argument, the expected and the received value).

    Example:
        >>> x = torch.randn(1, 224, 224, 3)
        >>> w = torch.randn(7, 7, 3, 64)
        >>> myconv.conv2d(x, w, strides=2, padding="SAME").shape
        torch.Size([1, 112, 112, 64])
        >>> shortcut = torch.randn(1, 112, 112, 64)
        >>> myconv.conv2d(x, w, strides=2, activation="relu", residual=shortcut).min() >= 0
        tensor(True)
    """
    stride, dilation, bias = _common_arguments("conv2d", input, filters, strides, dilations, bias)
    name, residual, alpha = _epilogue_arguments("conv2d", activation, residual, alpha)
    _check_residual_batch_dims("conv2d", input, residual)
    original, input = input, _merge_batch_dims(input)
    residual = residual if residual is None or original.dim() <= 4 else _merge_batch_dims(residual)
    if name == "linear" and residual is None and alpha is None:
        if isinstance(padding, str):
            output = torch.ops.myconv.conv2d(input, filters, stride, padding, dilation, bias)
        else:
            output = torch.ops.myconv.conv2d.explicit(input, filters, stride, _explicit_padding(padding), dilation, bias)
    elif isinstance(padding, str):
        output = torch.ops.myconv.conv2d_fused(input, filters, stride, padding, dilation, bias, residual, name, alpha)
    else:
        output = torch.ops.myconv.conv2d_fused.explicit(
            input, filters, stride, _explicit_padding(padding), dilation, bias, residual, name, alpha
        )
    return _split_batch_dims(output, original)


def conv2d_transpose(
    input: torch.Tensor,
    filters: torch.Tensor,
    output_shape: Optional[Sequence[int]] = None,
    strides: IntOrSeq = 1,
    padding: Padding = "SAME",
    dilations: IntOrSeq = 1,
    bias: Optional[Union[torch.Tensor, Sequence[float]]] = None,
) -> torch.Tensor:
    """TensorFlow's ``tf.nn.conv2d_transpose`` on PyTorch tensors (NHWC): the gradient of
    :func:`conv2d` with respect to its input, computed forwards.

    Args:
        input: ``[N, H, W, C_in]``.
        filters: ``[KH, KW, C_out, C_in]``, TF's (and Keras ``Conv2DTranspose``'s) layout as is.
        output_shape: TF's ``[N, OH, OW, C_out]`` or just ``(OH, OW)``: a size that
            ``conv2d(<that shape>, filters, strides, padding, dilations)`` maps to H x W; None:
            Keras's default (``H * s`` for SAME, ``H * s + max(dilated kernel - s, 0)`` for VALID,
            ``(H - 1) * s + dilated kernel - top - bottom`` for explicit padding, VALID's rule when
            it is all zeros).
        strides, padding, dilations: the forward convolution's, in :func:`conv2d`'s forms.
        bias: optional ``[C_out]``.

    Returns:
        ``[N, OH, OW, C_out]`` of the input's dtype.

    Raises:
        ValueError: an output_shape the forward convolution does not map back to the input's size
            (the message names the sizes that would), a filter whose last size is not C_in, bad
            strides, dilations or padding.

    Example:
        >>> x, w = torch.randn(1, 8, 8, 16), torch.randn(3, 3, 4, 16)
        >>> myconv.conv2d_transpose(x, w, (1, 16, 16, 4), strides=2, padding="SAME").shape
        torch.Size([1, 16, 16, 4])
    """
    stride, dilation, bias = _common_arguments("conv2d_transpose", input, filters, strides, dilations, bias)
    size = None
    if output_shape is not None:
        shape = _ints(output_shape, "output_shape")
        if input.dim() > 4 and len(shape) == input.dim():  # batch_shape + [OH, OW, C_out]
            if shape[:-3] != list(input.shape[:-3]):
                raise ValueError(f"myconv.conv2d_transpose: output_shape {shape} must have the input's batch "
                                 f"dimensions {list(input.shape[:-3])}")
            shape = [math.prod(shape[:-3]), *shape[-3:]]
        if len(shape) == 4:
            expected = (math.prod(input.shape[:-3]) if input.dim() >= 4 else None,
                        filters.shape[2] if filters.dim() == 4 else None)
            if (shape[0], shape[3]) != expected:
                raise ValueError(
                    f"myconv.conv2d_transpose: output_shape {shape} must have the input's batch and the filter's "
                    f"C_out (filters.shape[2]): [{expected[0]}, OH, OW, {expected[1]}]"
                )
            shape = shape[1:3]
        if len(shape) != 2:
            raise ValueError(f"myconv.conv2d_transpose: output_shape must be [N, OH, OW, C_out] or (OH, OW), "
                             f"got {list(output_shape)}")
        size = shape
    original, input = input, _merge_batch_dims(input)
    if isinstance(padding, str):
        output = torch.ops.myconv.conv2d_transpose(input, filters, size, None, stride, padding, dilation, bias)
    else:
        output = torch.ops.myconv.conv2d_transpose.explicit(
            input, filters, size, None, stride, _explicit_padding(padding), dilation, bias
        )
    return _split_batch_dims(output, original)


def prepack_filter(filters: torch.Tensor, groups: int = 1, dilations: IntOrSeq = 1) -> torch.Tensor:
    """The filter packed once for inference: a 1-D uint8 tensor for :func:`conv2d_prepacked`.

    myconv never keeps a packed filter across calls by itself (a filter's contents can change
    unseen: ``.data``, numpy views, fused optimizers), so every :func:`conv2d` call packs its
    filter. Keeping the packed form is the caller's decision: the result records the filter's
    shape and dtype and this process's kernels (instruction set, panel width), so using it with
    another call or on another CPU is an error, never a wrong result. It does not follow later
    changes of ``filters``: pack again after changing them.

    Args:
        filters: ``[KH, KW, C / groups, O]`` (CPU; the CUDA kernels read the filter as it is).
        groups: the calls' group count, C / filters.shape[2] (depthwise: C).
        dilations: the calls' dilation (int, ``(dh, dw)`` or ``[1, dh, dw, 1]``).

    Returns:
        A 1-D uint8 tensor: a header (what was packed, for which kernels) and the panels.

    Raises:
        NotImplementedError: a CUDA filter. ValueError / TypeError: as :func:`conv2d` for the
            filter's shape, groups and dilations.

    Example:
        >>> w = torch.randn(3, 3, 16, 32)
        >>> packed = myconv.prepack_filter(w)
        >>> y = myconv.conv2d_prepacked(torch.randn(1, 8, 8, 16), packed, w.shape)
    """
    return torch.ops.myconv.prepack_filter(filters, groups, _spatial_pair(dilations, "dilations"))


def conv2d_prepacked(
    input: torch.Tensor,
    packed_filter: torch.Tensor,
    filter_shape: Sequence[int],
    strides: IntOrSeq = 1,
    padding: Padding = "SAME",
    dilations: IntOrSeq = 1,
    bias: Optional[torch.Tensor] = None,
    activation: Optional[str] = None,
    residual: Optional[torch.Tensor] = None,
    alpha: Optional[float] = None,
) -> torch.Tensor:
    """:func:`conv2d` with a filter from :func:`prepack_filter` (inference: gradients for the
    bias and the residual only, through any activation; none for the input or the filter).

    Args:
        input: ``[N, H, W, C]``, of the dtype the filter was packed from.
        packed_filter: the uint8 tensor :func:`prepack_filter` returned (CPU).
        filter_shape: the HWIO shape it was packed from.
        strides, padding, dilations, bias, activation, residual, alpha: as :func:`conv2d`'s
            (fused in the kernel's store).

    Returns:
        ``[N, OH, OW, O]``, equal to :func:`conv2d` with the filter as it was when packed.

    Raises:
        ValueError / TypeError: a packed filter made for another call (groups, dilation, dtype,
            filter shape) or another CPU's kernels, or not made by :func:`prepack_filter`.

    Example:
        >>> w = torch.randn(3, 3, 8, 16)
        >>> packed = myconv.prepack_filter(w)
        >>> x = torch.randn(2, 9, 9, 8)
        >>> y = myconv.conv2d_prepacked(x, packed, w.shape, padding="VALID")
        >>> torch.equal(y, myconv.conv2d(x, w, padding="VALID"))
        True
    """
    stride = _spatial_pair(strides, "strides")
    dilation = _spatial_pair(dilations, "dilations")
    shape = _ints(filter_shape, "filter_shape")
    name, residual, alpha = _epilogue_arguments("conv2d_prepacked", activation, residual, alpha)
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"myconv.conv2d_prepacked: input must be torch.Tensor, got {type(input).__name__}")
    _check_residual_batch_dims("conv2d_prepacked", input, residual)
    original, input = input, _merge_batch_dims(input)
    residual = residual if residual is None or original.dim() <= 4 else _merge_batch_dims(residual)
    if isinstance(padding, str):
        output = torch.ops.myconv.conv2d_prepacked(
            input, packed_filter, shape, stride, padding, dilation, bias, residual, name, alpha
        )
    else:
        output = torch.ops.myconv.conv2d_prepacked.explicit(
            input, packed_filter, shape, stride, _explicit_padding(padding), dilation, bias, residual, name, alpha
        )
    return _split_batch_dims(output, original)


def output_shape(
    input_shape: Sequence[int],
    filter_shape: Sequence[int],
    strides: IntOrSeq = 1,
    padding: Padding = "SAME",
    dilations: IntOrSeq = 1,
) -> tuple:
    """Shape ``(N, OH, OW, O)`` that :func:`conv2d` returns for these shapes, without computing it.

    It runs the op's Meta kernel, so it applies exactly the op's geometry and checks.

    Returns:
        The output shape as a tuple.

    Raises:
        ValueError / TypeError: as :func:`conv2d`, for these shapes and arguments.

    Example:
        >>> myconv.output_shape((8, 224, 224, 3), (7, 7, 3, 64), strides=2)
        (8, 112, 112, 64)
    """
    x = torch.empty(tuple(input_shape), device="meta")
    w = torch.empty(tuple(filter_shape), device="meta")
    return tuple(conv2d(x, w, strides, padding, dilations).shape)


def cuda_compiled() -> bool:
    """Whether the loaded library carries the CUDA kernels (it runs them on CUDA tensors).

    Example:
        >>> isinstance(myconv.cuda_compiled(), bool)
        True
    """
    return torch._C._dispatch_has_kernel_for_dispatch_key("myconv::conv2d", "CUDA")
