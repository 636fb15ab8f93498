"""``myconv.Conv2d``: Keras's ``Conv2D`` as an ``nn.Module`` holding HWIO weights, for models
ported from TF/Keras.

No ``from __future__ import annotations`` here: TorchScript must read the annotations.
"""

import math
from typing import List, Optional, Union

import torch

from myconv.ops import (IntOrSeq, Padding, _check_residual_batch_dims, _explicit_padding, _merge_batch_dims,
                        _spatial_pair, _split_batch_dims)

# Keras 3's activation names (the C++ table: one list for the op, the layers and from_keras).
ACTIVATIONS = tuple(torch.ops.myconv.activations())


def _as_tensor(value, name: str, where: str = "load_keras_weights") -> torch.Tensor:
    """A numpy array (Keras's get_weights()) or a tensor, as a tensor."""
    if isinstance(value, torch.Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except (TypeError, RuntimeError, ValueError):
        raise TypeError(
            f"myconv: {where}: {name} must be a numpy array or a tensor, got {type(value).__name__}"
        ) from None


def _apply_activation(y: torch.Tensor, activation: str) -> torch.Tensor:
    """The transposed layer's activation by its name, unfused (conv2d_transpose has no epilogue)."""
    if activation == "linear":
        return y
    return torch.ops.myconv.activation(y, activation)


def _check_nhwc_input(x: torch.Tensor, in_channels: int, layer: str) -> None:
    """Keras's input spec: [N, H, W, in_channels] (or TF's batch_shape + [H, W, in_channels]), with a
    hint for an NCHW tensor."""
    if x.dim() >= 4 and x.shape[-1] == in_channels:
        return
    hint = ""
    if x.dim() == 4 and x.shape[1] == in_channels:
        hint = " (it looks like NCHW: myconv takes NHWC, e.g. x.permute(0, 2, 3, 1))"
    raise ValueError(
        "myconv." + layer + ": input must be NHWC [N, H, W, " + str(in_channels) + "] (in_channels = "
        + str(in_channels) + "), got shape " + str(list(x.shape)) + hint
    )


def _activation_name(activation: Optional[str], layer: str) -> str:
    name = "linear" if activation is None else activation
    if name not in ACTIVATIONS:
        raise ValueError(f"myconv.{layer}: activation must be None or one of {ACTIVATIONS}, got {activation!r}")
    return {"swish": "silu", "hard_swish": "hard_silu"}.get(name, name)


def _padding_mode(padding: Padding, layer: str) -> "tuple[str, List[int]]":
    """("SAME" | "VALID" | "EXPLICIT", [top, bottom, left, right] for explicit)."""
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise ValueError(f'myconv.{layer}: padding must be "same" or "valid", got "{padding}"')
        return padding.upper(), []
    return "EXPLICIT", _explicit_padding(padding)


def _load_keras_weights(layer: torch.nn.Module, kernel, bias, layout: str) -> None:
    """Copies a Keras kernel (in the layer's own layout) and bias after checking both shapes."""
    name = type(layer).__name__
    kernel = _as_tensor(kernel, "kernel")
    if tuple(kernel.shape) != tuple(layer.weight.shape):
        raise ValueError(
            f"myconv.{name}.load_keras_weights: kernel must have shape {tuple(layer.weight.shape)} ({layout}), "
            f"got {tuple(kernel.shape)}"
        )
    if (bias is None) != (layer.bias is None):
        raise ValueError(
            f"myconv.{name}.load_keras_weights: "
            + ("this layer has a bias (use_bias=True): pass bias" if bias is None
               else "this layer has no bias (use_bias=False), got a bias")
        )
    if layer.bias is not None:  # checked before anything is copied: no half-loaded layer
        bias = _as_tensor(bias, "bias")
        if tuple(bias.shape) != tuple(layer.bias.shape):
            raise ValueError(
                f"myconv.{name}.load_keras_weights: bias must have shape {tuple(layer.bias.shape)}, "
                f"got {tuple(bias.shape)}"
            )
    with torch.no_grad():
        layer.weight.copy_(kernel)
        if layer.bias is not None:
            layer.bias.copy_(bias)


def _glorot_uniform_(weight: torch.Tensor) -> None:
    """Keras's default kernel initializer: fans of a 4-D kernel are KH * KW * each of its last two sizes."""
    kh, kw, a, b = weight.shape
    limit = math.sqrt(6.0 / (kh * kw * (a + b)))
    torch.nn.init.uniform_(weight, -limit, limit)


class Conv2d(torch.nn.Module):
    """Keras-style ``Conv2D`` on NHWC tensors with an HWIO ``weight`` ``[KH, KW, C/groups, O]``.

    Argument names and defaults follow ``keras.layers.Conv2D``, with the input channel count given
    up front as PyTorch layers do. Scriptable with ``torch.jit.script``; ``torch.compile`` and
    ``torch.export`` trace it.

    Args:
        in_channels: C of the NHWC input; a call with another channel count is refused.
        out_channels: O, Keras's ``filters``.
        kernel_size: int or ``(kh, kw)``.
        strides: int, ``(sh, sw)`` or TF's ``[1, sh, sw, 1]``.
        padding: ``"valid"`` (default) or ``"same"`` (TF's split), or explicit
            ``((top, bottom), (left, right))``.
        dilation_rate: int or ``(dh, dw)``.
        groups: in_channels / groups input channels per filter (depthwise: groups = in_channels).
        activation: None or one of ``ACTIVATIONS``: ``"linear"``, ``"relu"``, ``"relu6"``,
            ``"sigmoid"``, ``"tanh"``, ``"softplus"``, ``"elu"``, ``"gelu"``, ``"silu"``/``"swish"``.
        use_bias: whether the layer adds a bias ``[O]`` (zeros at first).
        device, dtype: of the weight and bias (Glorot-uniform weight, as Keras initialises it).

    Attributes:
        weight: ``[KH, KW, in_channels / groups, out_channels]`` (HWIO), bias: ``[out_channels]`` or None.
        in_channels, out_channels, kernel_size, stride, dilation, groups: as ``torch.nn.Conv2d`` names them.
        padding: ``"SAME"``, ``"VALID"`` or ``"EXPLICIT"`` (then ``explicit_padding`` is
            ``[top, bottom, left, right]``); padding_mode: ``"zeros"``, as torch's.

    Raises:
        ValueError: channel counts not divisible by groups, an unknown padding or activation,
            and, when called, an input that is not ``[N, H, W, in_channels]``.

    Example:
        >>> layer = myconv.Conv2d(3, 64, kernel_size=7, strides=2, padding="same")
        >>> layer(torch.randn(1, 224, 224, 3)).shape
        torch.Size([1, 112, 112, 64])
    """

    in_channels: int
    out_channels: int
    kernel_size: List[int]
    stride: List[int]
    dilation: List[int]
    padding: str
    padding_mode: str
    explicit_padding: List[int]
    activation: str
    groups: int
    packed_weight: Optional[torch.Tensor]
    _frozen: bool
    _frozen_version: int
    _frozen_data_ptr: int
    _frozen_requires_grad: bool

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrSeq,
        strides: IntOrSeq = 1,
        padding: Padding = "valid",
        dilation_rate: IntOrSeq = 1,
        groups: int = 1,
        activation: Optional[str] = None,
        use_bias: bool = True,
        device: Optional[Union[torch.device, str]] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        if min(in_channels, out_channels, groups) < 1:
            raise ValueError(f"myconv.Conv2d: in_channels, out_channels and groups must be >= 1, got "
                             f"{in_channels}, {out_channels} and {groups}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"myconv.Conv2d: in_channels ({in_channels}) and out_channels ({out_channels}) "
                f"must be divisible by groups ({groups})"
            )
        kh, kw = _spatial_pair(kernel_size, "kernel_size")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, [kh, kw]
        self.padding_mode = "zeros"
        self.stride = _spatial_pair(strides, "strides")
        self.dilation = _spatial_pair(dilation_rate, "dilation_rate")
        self.groups = groups
        self.padding, self.explicit_padding = _padding_mode(padding, "Conv2d")
        self.activation = _activation_name(activation, "Conv2d")
        factory = {"device": device, "dtype": dtype}
        self.weight = torch.nn.Parameter(torch.empty(kh, kw, in_channels // groups, out_channels, **factory))
        self.bias: Optional[torch.nn.Parameter] = (
            torch.nn.Parameter(torch.empty(out_channels, **factory)) if use_bias else None
        )
        self.reset_parameters()
        self._frozen = False
        self._frozen_version = 0
        self._frozen_data_ptr = 0
        self._frozen_requires_grad = True
        # The packed weight of a frozen layer (CPU), not saved in state_dict: freeze() remakes it.
        self.register_buffer("packed_weight", None, persistent=False)

    def reset_parameters(self) -> None:
        """Keras's defaults: Glorot-uniform kernel (fans of the HWIO shape) and zero bias."""
        _glorot_uniform_(self.weight)
        if self.bias is not None:
            torch.nn.init.zeros_(self.bias)

    @torch.jit.unused
    def load_keras_weights(self, kernel, bias=None) -> "Conv2d":
        """Copies a Keras ``Conv2D`` kernel (HWIO, as ``get_weights()`` returns it) and bias.

        Accepts numpy arrays or tensors; shapes must match this layer's exactly. Returns self.
        """
        _load_keras_weights(self, kernel, bias, "HWIO")
        return self

    @torch.jit.unused
    def freeze(self) -> "Conv2d":
        """Packs the weight once for inference, stops its gradient and sets eval mode; returns self.

        Every unfrozen call packs the weight anew (myconv never trusts a packed form it did not
        just make). A frozen layer computes with the form packed here until :meth:`unfreeze` or
        ``train()`` (which restore the weight's ``requires_grad``). In eager mode, if the weight is
        changed in a way the layer can see (an in-place update such as ``load_state_dict`` or an
        optimizer step, a new tensor, ``requires_grad`` set again), its next call raises instead of
        using the stale form. Writes it cannot see (``weight.data``, a numpy view) are the caller's
        to follow with ``freeze()`` again. A frozen layer that is scripted, compiled or exported
        computes with the form packed at ``freeze()`` and checks nothing: freeze final weights. A
        copy (``copy.deepcopy``, pickling) packs its own weight again. On CUDA, whose kernels read
        the weight as it is, freezing keeps the weight and the same check.
        """
        self.train(False)
        if not self._frozen:
            self._frozen_requires_grad = self.weight.requires_grad
        self.weight.requires_grad_(False)
        self._pack()
        return self

    @torch.jit.unused
    def _pack(self) -> None:
        weight = self.weight.detach()
        self.packed_weight = (
            torch.ops.myconv.prepack_filter(weight, self.groups, self.dilation) if weight.device.type == "cpu" else None
        )
        self._frozen = True
        self._frozen_version = self.weight._version
        self._frozen_data_ptr = self.weight.data_ptr()

    @torch.jit.unused
    def fold_batch_norm(self, gamma, beta, moving_mean, moving_variance, epsilon: float = 1e-3,
                        activation: Optional[str] = None) -> "Conv2d":
        """Folds a Keras ``BatchNormalization`` that follows this layer (inference: its moving
        statistics) into the kernel and bias, so that one fused call computes both:
        ``s = gamma / sqrt(moving_variance + epsilon)``, ``kernel *= s`` per output channel,
        ``bias = (bias - moving_mean) * s + beta`` (a bias is created when the layer has none).

        Args:
            gamma, beta: ``[out_channels]`` numpy arrays or tensors; None where the
                BatchNormalization has ``scale=False`` / ``center=False``.
            moving_mean, moving_variance: ``[out_channels]``.
            epsilon: the BatchNormalization's (Keras's default 1e-3).
            activation: the activation after the BatchNormalization (a Keras ``Activation``
                layer), run fused from now on; None keeps ``"linear"``.

        Returns:
            self, folded in float64 and stored in the weight's dtype; a frozen layer packs the
            folded weight again.

        Raises:
            ValueError: the layer already has an activation (it runs before the
                BatchNormalization: nothing to fold into), a statistic that is not
                ``[out_channels]``, a variance + epsilon that is not > 0, an unknown activation.
                Nothing is changed then.
        """
        if self.activation != "linear":
            raise ValueError(f"myconv.Conv2d.fold_batch_norm: the layer's activation {self.activation!r} runs before "
                             "the BatchNormalization, which cannot be folded through it (fold into a layer with "
                             "activation None)")
        new_activation = _activation_name(activation, "Conv2d.fold_batch_norm")
        statistics = {}
        for name, value, default in (("gamma", gamma, 1.0), ("beta", beta, 0.0), ("moving_mean", moving_mean, None),
                                     ("moving_variance", moving_variance, None)):
            if value is None and default is None:
                raise ValueError(f"myconv.Conv2d.fold_batch_norm: {name} is required")
            tensor = (torch.full((self.out_channels,), default, dtype=torch.float64) if value is None
                      else _as_tensor(value, name, "Conv2d.fold_batch_norm").detach().to("cpu", torch.float64))
            if tuple(tensor.shape) != (self.out_channels,):
                raise ValueError(f"myconv.Conv2d.fold_batch_norm: {name} must have shape [{self.out_channels}] "
                                 f"(out_channels), got {list(tensor.shape)}")
            statistics[name] = tensor
        denominator = statistics["moving_variance"] + float(epsilon)
        if not bool((denominator > 0).all()):
            raise ValueError("myconv.Conv2d.fold_batch_norm: moving_variance + epsilon must be > 0, got "
                             f"{denominator.min().item()} (epsilon = {epsilon})")
        scale = statistics["gamma"] / denominator.sqrt()
        with torch.no_grad():
            bias = torch.zeros(self.out_channels, dtype=torch.float64) if self.bias is None else self.bias.double().cpu()
            folded_bias = (bias - statistics["moving_mean"]) * scale + statistics["beta"]
            self.weight.copy_((self.weight.double() * scale.to(self.weight.device)).to(self.weight.dtype))
            if self.bias is None:
                self.bias = torch.nn.Parameter(self.weight.new_empty(self.out_channels))
            self.bias.copy_(folded_bias.to(self.bias.dtype))
        self.activation = new_activation
        if self._frozen:
            self._pack()
        return self

    @torch.jit.unused
    def unfreeze(self) -> "Conv2d":
        """Drops the packed weight and restores its ``requires_grad``: every call packs the
        current weight again. Returns self."""
        if self._frozen:
            self.weight.requires_grad_(self._frozen_requires_grad)
        self.packed_weight = None
        self._frozen = False
        return self

    @torch.jit.unused
    def train(self, mode: bool = True) -> "Conv2d":
        """``nn.Module.train``; training mode also unfreezes (the weights are about to change)."""
        if mode:
            self.unfreeze()
        return super().train(mode)

    @torch.jit.unused
    def __setstate__(self, state) -> None:
        # A copy's weight is another tensor (and maybe another CPU's): it packs its own.
        super().__setstate__(state)
        if self.__dict__.get("_frozen", False):
            self._pack()

    @torch.jit.unused
    def _check_frozen_weight(self) -> None:
        if (self.weight._version != self._frozen_version or self.weight.data_ptr() != self._frozen_data_ptr
                or self.weight.requires_grad):
            raise RuntimeError(
                "myconv.Conv2d: the weight changed after freeze() (an in-place update, a new tensor, or "
                "requires_grad set again); call freeze() again to pack the new weight, or unfreeze() to "
                "compute with it unpacked"
            )

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``activation(conv2d(x, weight) + bias + residual)`` for NHWC ``x`` ``[N, H, W,
        in_channels]``, in one pass over the output (the kernel's store): ``residual`` an optional
        tensor of the output's shape, e.g. a ResNet block's shortcut (Keras's ``Add`` then the
        activation)."""
        _check_nhwc_input(x, self.in_channels, "Conv2d")
        _check_residual_batch_dims("Conv2d", x, residual)  # TF's batch_shape + [H, W, C]: merged into N
        merged_residual = residual if residual is None or x.dim() <= 4 else _merge_batch_dims(residual)
        y = self._conv(_merge_batch_dims(x), merged_residual)
        return _split_batch_dims(y, x)

    def _conv(self, x: torch.Tensor, residual: Optional[torch.Tensor]) -> torch.Tensor:
        if self._frozen and not torch.jit.is_scripting() and not torch.compiler.is_compiling():
            self._check_frozen_weight()
        packed = self.packed_weight
        # The overload (str or int[4] padding) is picked from the argument's type.
        if packed is not None:
            shape = [int(v) for v in self.weight.shape]
            if self.padding == "EXPLICIT":
                return torch.ops.myconv.conv2d_prepacked(
                    x, packed, shape, self.stride, self.explicit_padding, self.dilation, self.bias, residual,
                    self.activation,
                )
            return torch.ops.myconv.conv2d_prepacked(
                x, packed, shape, self.stride, self.padding, self.dilation, self.bias, residual, self.activation
            )
        if residual is None and self.activation == "linear":  # the plain op (ONNX, older graphs)
            if self.padding == "EXPLICIT":
                return torch.ops.myconv.conv2d(x, self.weight, self.stride, self.explicit_padding, self.dilation,
                                               self.bias)
            return torch.ops.myconv.conv2d(x, self.weight, self.stride, self.padding, self.dilation, self.bias)
        if self.padding == "EXPLICIT":
            return torch.ops.myconv.conv2d_fused(
                x, self.weight, self.stride, self.explicit_padding, self.dilation, self.bias, residual, self.activation
            )
        return torch.ops.myconv.conv2d_fused(
            x, self.weight, self.stride, self.padding, self.dilation, self.bias, residual, self.activation
        )

    def extra_repr(self) -> str:
        kh, kw, cg, o = self.weight.shape
        if self.padding == "EXPLICIT":
            t, b, l, r = self.explicit_padding
            padding = ((t, b), (l, r))
        else:
            padding = self.padding.lower()
        text = (
            f"{cg * self.groups}, {o}, kernel_size=({kh}, {kw}), strides={tuple(self.stride)}, "
            f"padding={padding!r}, dilation_rate={tuple(self.dilation)}, groups={self.groups}, "
            f"use_bias={self.bias is not None}"
        )
        return text if self.activation == "linear" else f"{text}, activation={self.activation!r}"


class Conv2DTranspose(torch.nn.Module):
    """Keras's ``Conv2DTranspose`` on NHWC tensors, with Keras's kernel layout
    ``weight`` ``[KH, KW, filters, in_channels]`` (TF's ``conv2d_transpose`` filter), as is.

    The output size follows Keras: without ``output_padding``, ``H * s`` for ``"same"`` and
    ``H * s + max(dilated kernel - s, 0)`` for ``"valid"``; with it, exactly
    ``(H - 1) * s + dilated kernel - 2 * pad + output_padding`` (pad: dilated kernel // 2 for same,
    0 for valid). The computation is TF's ``conv2d_transpose`` with that output size
    (:func:`myconv.conv2d_transpose`). Scriptable with ``torch.jit.script``.

    Args:
        in_channels: C of the NHWC input; a call with another channel count is refused.
        filters: output channels.
        kernel_size, strides, dilation_rate: int or 2 ints.
        padding: ``"valid"`` (default) or ``"same"``.
        output_padding: None, an int or 2 ints, each smaller than its stride.
        activation: None or one of ``ACTIVATIONS``; use_bias: add a bias ``[filters]``.
        device, dtype: of the weight and bias (Glorot-uniform weight, zero bias, as Keras).

    Raises:
        ValueError: an unknown padding or activation, an output_padding not below the stride,
            and, when called, an input that is not ``[N, H, W, in_channels]``.

    Example:
        >>> up = myconv.Conv2DTranspose(16, 8, 3, strides=2, padding="same")
        >>> up(torch.randn(1, 10, 12, 16)).shape
        torch.Size([1, 20, 24, 8])
    """

    in_channels: int
    out_channels: int
    kernel_size: List[int]
    stride: List[int]
    dilation: List[int]
    padding: str
    output_padding: List[int]
    activation: str

    def __init__(
        self,
        in_channels: int,
        filters: int,
        kernel_size: IntOrSeq,
        strides: IntOrSeq = 1,
        padding: str = "valid",
        output_padding: Optional[IntOrSeq] = None,
        dilation_rate: IntOrSeq = 1,
        activation: Optional[str] = None,
        use_bias: bool = True,
        device: Optional[Union[torch.device, str]] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        if min(in_channels, filters) < 1:
            raise ValueError(f"myconv.Conv2DTranspose: in_channels and filters must be >= 1, got {in_channels} and "
                             f"{filters}")
        kh, kw = _spatial_pair(kernel_size, "kernel_size")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, filters, [kh, kw]
        self.stride = _spatial_pair(strides, "strides")
        self.dilation = _spatial_pair(dilation_rate, "dilation_rate")
        if not isinstance(padding, str):
            raise ValueError(f'myconv.Conv2DTranspose: padding must be "same" or "valid", got {padding!r}')
        self.padding, _ = _padding_mode(padding, "Conv2DTranspose")
        self.output_padding = [] if output_padding is None else _spatial_pair(output_padding, "output_padding")
        if any(not 0 <= p < s for p, s in zip(self.output_padding, self.stride)):
            raise ValueError(f"myconv.Conv2DTranspose: output_padding must be >= 0 and smaller than strides "
                             f"{tuple(self.stride)}, got {output_padding!r}")
        self.activation = _activation_name(activation, "Conv2DTranspose")
        factory = {"device": device, "dtype": dtype}
        self.weight = torch.nn.Parameter(torch.empty(kh, kw, filters, in_channels, **factory))
        self.bias: Optional[torch.nn.Parameter] = (
            torch.nn.Parameter(torch.zeros(filters, **factory)) if use_bias else None
        )
        _glorot_uniform_(self.weight)

    @torch.jit.unused
    def load_keras_weights(self, kernel, bias=None) -> "Conv2DTranspose":
        """Copies a Keras ``Conv2DTranspose`` kernel ``[KH, KW, filters, in_channels]`` and bias
        (numpy arrays or tensors; shapes must match exactly). Returns self."""
        _load_keras_weights(self, kernel, bias, "[KH, KW, filters, in_channels]")
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``activation(conv2d_transpose(x, weight) + bias)`` for NHWC ``x`` ``[N, H, W, in_channels]``."""
        _check_nhwc_input(x, self.in_channels, "Conv2DTranspose")
        output_padding: Optional[List[int]] = None
        if len(self.output_padding) == 2:
            output_padding = self.output_padding
        y = torch.ops.myconv.conv2d_transpose(  # TF's batch_shape + [H, W, C]: merged into N
            _merge_batch_dims(x), self.weight, None, output_padding, self.stride, self.padding, self.dilation, self.bias
        )
        return _split_batch_dims(_apply_activation(y, self.activation), x)

    def extra_repr(self) -> str:
        kh, kw = self.kernel_size
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size=({kh}, {kw}), strides={tuple(self.stride)}, "
            f"padding={self.padding.lower()!r}, output_padding={tuple(self.output_padding) or None}, "
            f"dilation_rate={tuple(self.dilation)}, use_bias={self.bias is not None}"
        )
        return text if self.activation == "linear" else f"{text}, activation={self.activation!r}"


class SeparableConv2D(torch.nn.Module):
    """Keras's ``SeparableConv2D`` on NHWC tensors: a depthwise convolution (``depth_multiplier``
    output channels per input channel, no bias) then a pointwise 1x1 convolution with the bias and
    the activation, run fused (its ``forward`` takes a residual too). Scriptable.

    Args:
        in_channels: C of the NHWC input.
        filters: output channels of the pointwise convolution.
        kernel_size, strides, dilation_rate, padding: of the depthwise convolution, as Keras's.
        depth_multiplier: depthwise output channels per input channel.
        activation, use_bias: of the pointwise convolution (the layer's output), as Keras's.
        device, dtype: of the weights.

    Attributes:
        depthwise: ``myconv.Conv2d`` with ``groups=in_channels``, weight
            ``[KH, KW, 1, in_channels * depth_multiplier]``.
        pointwise: ``myconv.Conv2d`` 1x1, weight ``[1, 1, in_channels * depth_multiplier, filters]``.

    Example:
        >>> layer = myconv.SeparableConv2D(16, 32, 3, padding="same", activation="relu")
        >>> layer(torch.randn(1, 28, 28, 16)).shape
        torch.Size([1, 28, 28, 32])
    """

    def __init__(
        self,
        in_channels: int,
        filters: int,
        kernel_size: IntOrSeq,
        strides: IntOrSeq = 1,
        padding: Padding = "valid",
        depth_multiplier: int = 1,
        dilation_rate: IntOrSeq = 1,
        activation: Optional[str] = None,
        use_bias: bool = True,
        device: Optional[Union[torch.device, str]] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        if depth_multiplier < 1:
            raise ValueError(f"myconv.SeparableConv2D: depth_multiplier must be >= 1, got {depth_multiplier}")
        factory = {"device": device, "dtype": dtype}
        self.depthwise = Conv2d(in_channels, in_channels * depth_multiplier, kernel_size, strides, padding,
                                dilation_rate, groups=in_channels, use_bias=False, **factory)
        self.pointwise = Conv2d(in_channels * depth_multiplier, filters, 1, activation=activation,
                                use_bias=use_bias, **factory)

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``activation(pointwise(depthwise(x)) + bias + residual)``."""
        return self.pointwise(self.depthwise(x), residual)

    @torch.jit.unused
    def load_keras_weights(self, depthwise_kernel, pointwise_kernel, bias=None) -> "SeparableConv2D":
        """Copies Keras's ``[depthwise_kernel [KH, KW, C, depth_multiplier], pointwise_kernel
        [1, 1, C * depth_multiplier, filters], bias]`` (numpy arrays or tensors). Returns self."""
        depthwise_kernel = _as_tensor(depthwise_kernel, "depthwise_kernel")
        expected = tuple(self.depthwise.weight.shape[:2]) + (self.depthwise.groups,
                                                              self.depthwise.out_channels // self.depthwise.groups)
        if tuple(depthwise_kernel.shape) != expected:
            raise ValueError(f"myconv.SeparableConv2D.load_keras_weights: depthwise_kernel must have shape {expected} "
                             f"([KH, KW, C, depth_multiplier]), got {tuple(depthwise_kernel.shape)}")
        # Checked whole before either part is copied: no half-loaded layer.
        _load_keras_weights(self.pointwise, pointwise_kernel, bias, "HWIO")
        self.depthwise.load_keras_weights(depthwise_kernel.reshape(self.depthwise.weight.shape), None)
        return self

    @torch.jit.unused
    def fold_batch_norm(self, gamma, beta, moving_mean, moving_variance, epsilon: float = 1e-3,
                        activation: Optional[str] = None) -> "SeparableConv2D":
        """:meth:`Conv2d.fold_batch_norm` into the pointwise convolution. Returns self."""
        self.pointwise.fold_batch_norm(gamma, beta, moving_mean, moving_variance, epsilon, activation)
        return self

    @torch.jit.unused
    def freeze(self) -> "SeparableConv2D":
        """:meth:`Conv2d.freeze` of both convolutions. Returns self."""
        self.depthwise.freeze()
        self.pointwise.freeze()
        return self.train(False)

    @torch.jit.unused
    def unfreeze(self) -> "SeparableConv2D":
        """:meth:`Conv2d.unfreeze` of both convolutions. Returns self."""
        self.depthwise.unfreeze()
        self.pointwise.unfreeze()
        return self
