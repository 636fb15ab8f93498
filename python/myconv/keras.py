"""Keras weight import: a ``myconv.Conv2d`` from a Keras ``Conv2D`` or ``DepthwiseConv2D`` layer's
``get_config()`` and ``get_weights()``, with no TensorFlow needed (numpy arrays or tensors)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from myconv.nn import Conv2d


def from_keras(layer_config: Mapping, weights: Sequence, *, dtype: torch.dtype | None = None,
               device: torch.device | str | None = None) -> Conv2d:
    """Builds a ``myconv.Conv2d`` equal to a Keras convolution layer.

    Args:
        layer_config: the layer's ``get_config()`` dict (``kernel_size``, ``strides``,
            ``padding``, ``dilation_rate``, ``groups``, ``use_bias``, ``activation``,
            ``data_format``; ``depth_multiplier`` marks a ``DepthwiseConv2D``).
        weights: the layer's ``get_weights()``: ``[kernel]`` or ``[kernel, bias]``. A ``Conv2D``
            kernel is HWIO ``[KH, KW, C/groups, O]``; a ``DepthwiseConv2D`` kernel
            ``[KH, KW, C, multiplier]`` becomes ``[KH, KW, 1, C * multiplier]`` (output channel
            ``c * multiplier + j``, Keras's order).
        dtype, device: of the new layer; by default the kernel's dtype and the CPU.

    Example:
        >>> layer = myconv.from_keras(keras_layer.get_config(), keras_layer.get_weights())
    """
    if not isinstance(layer_config, Mapping):
        raise TypeError(f"myconv.from_keras: layer_config must be a dict (get_config()), got {type(layer_config).__name__}")
    data_format = layer_config.get("data_format") or "channels_last"
    if data_format != "channels_last":
        raise ValueError(f'myconv.from_keras: data_format must be "channels_last" (NHWC), got "{data_format}"')
    use_bias = bool(layer_config.get("use_bias", True))
    if len(weights) != 1 + use_bias:
        raise ValueError(
            f"myconv.from_keras: weights must be [kernel{', bias' if use_bias else ''}] for "
            f"use_bias={use_bias}, got {len(weights)} arrays"
        )
    kernel = torch.as_tensor(weights[0])
    if kernel.dim() != 4:
        raise ValueError(f"myconv.from_keras: kernel must be 4-D, got shape {tuple(kernel.shape)}")
    depthwise = "depth_multiplier" in layer_config
    if depthwise:
        kh, kw, channels, multiplier = kernel.shape
        kernel = kernel.reshape(kh, kw, 1, channels * multiplier)
        groups = channels
    else:
        groups = int(layer_config.get("groups", 1))
    kh, kw, cg, out_channels = kernel.shape
    if tuple(layer_config.get("kernel_size", (kh, kw))) != (kh, kw):
        raise ValueError(
            f"myconv.from_keras: kernel_size {tuple(layer_config['kernel_size'])} does not match "
            f"the kernel's shape {tuple(weights[0].shape)}"
        )
    layer = Conv2d(
        cg * groups, out_channels, (kh, kw),
        strides=tuple(layer_config.get("strides", (1, 1))),
        padding=layer_config.get("padding", "valid"),
        dilation_rate=tuple(layer_config.get("dilation_rate", (1, 1))),
        groups=groups,
        activation=layer_config.get("activation"),
        use_bias=use_bias,
        dtype=dtype or (kernel.dtype if kernel.is_floating_point() else None),
        device=device,
    )
    return layer.load_keras_weights(kernel, weights[1] if use_bias else None)
