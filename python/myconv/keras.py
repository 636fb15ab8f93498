"""Keras weight import: a ``myconv.Conv2d`` from a Keras ``Conv2D`` or ``DepthwiseConv2D`` layer, or a
``myconv.Conv2DTranspose`` from a ``Conv2DTranspose``, given its config and ``get_weights()``, with no
TensorFlow needed (numpy arrays or tensors)."""

from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import torch

from myconv.nn import ACTIVATIONS, Conv2d, Conv2DTranspose

#: The Keras layer classes from_keras ports.
SUPPORTED_CLASSES = ("Conv2D", "DepthwiseConv2D", "Conv2DTranspose")


def _pair(value: Any, name: str, class_name: str) -> tuple:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    try:
        pair = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2:
        raise ValueError(f"myconv.from_keras: {class_name} {name} must be an int or 2 ints, got {value!r}")
    return pair


def _class_and_config(layer: Mapping, class_name: Optional[str]) -> tuple:
    """(class name, config) from serialize_keras_object's dict or from get_config() plus the class."""
    if "class_name" in layer and isinstance(layer.get("config"), Mapping):
        if class_name is not None and class_name != layer["class_name"]:
            raise ValueError(f"myconv.from_keras: class_name {class_name!r} contradicts the serialized layer's "
                             f"class {layer['class_name']!r}")
        return layer["class_name"], layer["config"]
    if class_name is None:
        raise ValueError("myconv.from_keras: the layer's class is needed (get_config() does not carry it): pass "
                         "class_name='Conv2D', 'DepthwiseConv2D' or 'Conv2DTranspose', or the dict "
                         "keras.saving.serialize_keras_object"
                         "(layer) returns")
    return class_name, layer


def from_keras(layer: Mapping, weights: Sequence, *, class_name: Optional[str] = None,
               dtype: Optional[torch.dtype] = None,
               device: Optional[Union[torch.device, str]] = None) -> Union[Conv2d, Conv2DTranspose]:
    """Builds a ``myconv.Conv2d`` equal to a Keras ``Conv2D`` or ``DepthwiseConv2D`` layer, or a
    ``myconv.Conv2DTranspose`` equal to a Keras ``Conv2DTranspose``.

    Args:
        layer: ``keras.saving.serialize_keras_object(layer)`` (a dict with ``class_name`` and
            ``config``), or ``layer.get_config()`` together with ``class_name``.
        weights: the layer's ``get_weights()``: ``[kernel]`` or ``[kernel, bias]``. A ``Conv2D``
            kernel is HWIO ``[KH, KW, C/groups, filters]``; a ``DepthwiseConv2D`` kernel
            ``[KH, KW, C, depth_multiplier]`` becomes ``[KH, KW, 1, C * depth_multiplier]`` (output
            channel ``c * depth_multiplier + j``, Keras's order); a ``Conv2DTranspose`` kernel
            ``[KH, KW, filters, C]`` is used as it is.
        class_name: ``"Conv2D"``, ``"DepthwiseConv2D"`` or ``"Conv2DTranspose"`` when ``layer`` is a
            bare config.
        dtype, device: of the new layer; by default the kernel's dtype and the CPU.

    Returns:
        The layer, weights loaded, in training mode like any new module.

    Raises:
        ValueError: a class other than these three (named), ``channels_first``, an activation the
            layer does not have, or a config field that contradicts the weights (``filters``,
            ``kernel_size``, ``depth_multiplier``, ``groups``, ``use_bias``, ``output_padding``).
        TypeError: ``layer`` is not a dict.

    Example:
        >>> config = {"filters": 8, "kernel_size": [3, 3], "strides": [2, 2], "padding": "same",
        ...           "activation": "relu", "use_bias": True}
        >>> kernel, bias = torch.zeros(3, 3, 3, 8), torch.zeros(8)
        >>> myconv.from_keras(config, [kernel, bias], class_name="Conv2D")(torch.randn(1, 9, 9, 3)).shape
        torch.Size([1, 5, 5, 8])
    """
    if not isinstance(layer, Mapping):
        raise TypeError(f"myconv.from_keras: layer must be a dict (serialize_keras_object() or get_config()), "
                        f"got {type(layer).__name__}")
    class_name, config = _class_and_config(layer, class_name)
    if class_name not in SUPPORTED_CLASSES:
        raise ValueError(f"myconv.from_keras: Keras layer class {class_name!r} is not supported (supported: "
                         f"{', '.join(SUPPORTED_CLASSES)})")
    data_format = config.get("data_format") or "channels_last"
    if data_format != "channels_last":
        raise ValueError(f'myconv.from_keras: data_format must be "channels_last" (NHWC), got "{data_format}"')
    use_bias = config.get("use_bias", True)
    if not isinstance(use_bias, bool):
        raise ValueError(f"myconv.from_keras: use_bias must be True or False, got {use_bias!r}")
    if isinstance(weights, Mapping) or len(weights) != 1 + use_bias:
        got = "a dict" if isinstance(weights, Mapping) else f"{len(weights)} arrays"
        raise ValueError(
            f"myconv.from_keras: {class_name} weights must be [kernel{', bias' if use_bias else ''}] for "
            f"use_bias={use_bias} (get_weights()), got {got}"
        )
    activation = config.get("activation")
    if activation is not None and activation not in ACTIVATIONS:
        raise ValueError(f"myconv.from_keras: activation must be None or one of {ACTIVATIONS}, got {activation!r}")
    kernel = torch.as_tensor(weights[0])
    if kernel.dim() != 4:
        raise ValueError(f"myconv.from_keras: {class_name} kernel must be 4-D, got shape {tuple(kernel.shape)}")
    kh, kw, in_per_group, last = kernel.shape
    if "kernel_size" in config and _pair(config["kernel_size"], "kernel_size", class_name) != (kh, kw):
        raise ValueError(f"myconv.from_keras: kernel_size {_pair(config['kernel_size'], 'kernel_size', class_name)} "
                         f"does not match the kernel's shape {tuple(kernel.shape)}")
    padding = config.get("padding", "valid")
    if not isinstance(padding, str) or padding.lower() not in ("same", "valid"):
        raise ValueError(f'myconv.from_keras: {class_name} padding must be "same" or "valid", got {padding!r}')
    common = dict(strides=_pair(config.get("strides", 1), "strides", class_name), padding=padding,
                  dilation_rate=_pair(config.get("dilation_rate", 1), "dilation_rate", class_name),
                  activation=activation, use_bias=use_bias,
                  dtype=dtype or (kernel.dtype if kernel.is_floating_point() else None), device=device)
    if class_name == "Conv2DTranspose":
        if config.get("filters", in_per_group) != in_per_group:
            raise ValueError(f"myconv.from_keras: filters {config['filters']!r} does not match the kernel's shape "
                             f"{tuple(kernel.shape)} ([KH, KW, filters, C])")
        if config.get("groups", 1) != 1:
            raise ValueError(f"myconv.from_keras: Conv2DTranspose groups must be 1, got {config['groups']!r}")
        output_padding = config.get("output_padding")
        layer_module = Conv2DTranspose(
            last, in_per_group, (kh, kw),
            output_padding=None if output_padding is None else _pair(output_padding, "output_padding", class_name),
            **common,
        )
    else:
        if class_name == "DepthwiseConv2D":
            multiplier = config.get("depth_multiplier", 1)
            if multiplier != last:
                raise ValueError(f"myconv.from_keras: depth_multiplier {multiplier!r} does not match the kernel's "
                                 f"shape {tuple(kernel.shape)} ([KH, KW, C, depth_multiplier])")
            groups = in_per_group
            kernel = kernel.reshape(kh, kw, 1, in_per_group * last)
        else:
            groups = config.get("groups", 1)
            if config.get("filters", last) != last:
                raise ValueError(f"myconv.from_keras: filters {config['filters']!r} does not match the kernel's "
                                 f"shape {tuple(kernel.shape)} ([KH, KW, C/groups, filters])")
            if not isinstance(groups, int) or groups < 1 or last % groups:
                raise ValueError(f"myconv.from_keras: groups must be a positive int dividing filters ({last}), "
                                 f"got {groups!r}")
        layer_module = Conv2d(kernel.shape[2] * groups, kernel.shape[3], (kh, kw), groups=groups, **common)
    return layer_module.load_keras_weights(kernel, weights[1] if use_bias else None)
    if class_name == "DepthwiseConv2D":
        multiplier = config.get("depth_multiplier", 1)
        if multiplier != last:
            raise ValueError(f"myconv.from_keras: depth_multiplier {multiplier!r} does not match the kernel's "
                             f"shape {tuple(kernel.shape)} ([KH, KW, C, depth_multiplier])")
        groups = in_per_group
        kernel = kernel.reshape(kh, kw, 1, in_per_group * last)
    else:
        groups = config.get("groups", 1)
        if config.get("filters", last) != last:
            raise ValueError(f"myconv.from_keras: filters {config['filters']!r} does not match the kernel's shape "
                             f"{tuple(kernel.shape)} ([KH, KW, C/groups, filters])")
        if not isinstance(groups, int) or groups < 1 or last % groups:
            raise ValueError(f"myconv.from_keras: groups must be a positive int dividing filters ({last}), "
                             f"got {groups!r}")
    padding = config.get("padding", "valid")
    if not isinstance(padding, str) or padding.lower() not in ("same", "valid"):
        raise ValueError(f'myconv.from_keras: {class_name} padding must be "same" or "valid", got {padding!r}')
    layer_module = Conv2d(
        kernel.shape[2] * groups, kernel.shape[3], (kh, kw),
        strides=_pair(config.get("strides", 1), "strides", class_name),
        padding=padding,
        dilation_rate=_pair(config.get("dilation_rate", 1), "dilation_rate", class_name),
        groups=groups,
        activation=activation,
        use_bias=use_bias,
        dtype=dtype or (kernel.dtype if kernel.is_floating_point() else None),
        device=device,
    )
    return layer_module.load_keras_weights(kernel, weights[1] if use_bias else None)
