"""Keras weight import: a ``myconv.Conv2d`` from a Keras ``Conv2D`` or ``DepthwiseConv2D`` layer, a
``myconv.SeparableConv2D`` from a ``SeparableConv2D``, or a ``myconv.Conv2DTranspose`` from a
``Conv2DTranspose``, given its config and ``get_weights()``, optionally with a following
``BatchNormalization`` folded in, with no TensorFlow needed (numpy arrays or tensors)."""

from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import torch

from myconv.nn import ACTIVATIONS, Conv2d, Conv2DTranspose, SeparableConv2D, _activation_name

#: The Keras layer classes from_keras ports.
SUPPORTED_CLASSES = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose")


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


def _batch_norm_statistics(batch_norm: Any) -> tuple:
    """(gamma, beta, moving_mean, moving_variance, epsilon) of a BatchNormalization given as
    (serialize_keras_object() or get_config(), get_weights())."""
    if not isinstance(batch_norm, (tuple, list)) or len(batch_norm) != 2 or not isinstance(batch_norm[0], Mapping):
        raise ValueError("myconv.from_keras: batch_norm must be (config, weights) of a BatchNormalization: "
                         "(serialize_keras_object(layer) or get_config(), get_weights())")
    config, weights = batch_norm
    if "class_name" in config and isinstance(config.get("config"), Mapping):
        if config["class_name"] != "BatchNormalization":
            raise ValueError(f"myconv.from_keras: batch_norm must be a BatchNormalization, got {config['class_name']!r}")
        config = config["config"]
    axis = config.get("axis", -1)
    if not (axis in (-1, 3) or (isinstance(axis, (list, tuple)) and list(axis) in ([-1], [3]))):
        raise ValueError(f"myconv.from_keras: batch_norm axis must be -1 (channels, NHWC), got {axis!r}")
    scale, center = config.get("scale", True), config.get("center", True)
    expected = ["gamma"] * bool(scale) + ["beta"] * bool(center) + ["moving_mean", "moving_variance"]
    if isinstance(weights, Mapping) or len(weights) != len(expected):
        raise ValueError(f"myconv.from_keras: batch_norm weights must be [{', '.join(expected)}] for scale={scale}, "
                         f"center={center} (get_weights()), got "
                         f"{'a dict' if isinstance(weights, Mapping) else f'{len(weights)} arrays'}")
    named = dict(zip(expected, weights))
    return (named.get("gamma"), named.get("beta"), named["moving_mean"], named["moving_variance"],
            float(config.get("epsilon", 1e-3)))


def from_keras(layer: Mapping, weights: Sequence, *, class_name: Optional[str] = None,
               batch_norm: Optional[tuple] = None, activation: Optional[str] = None,
               dtype: Optional[torch.dtype] = None,
               device: Optional[Union[torch.device, str]] = None) -> Union[Conv2d, SeparableConv2D, Conv2DTranspose]:
    """Builds a ``myconv.Conv2d`` equal to a Keras ``Conv2D`` or ``DepthwiseConv2D`` layer, a
    ``myconv.SeparableConv2D`` equal to a ``SeparableConv2D``, or a ``myconv.Conv2DTranspose``
    equal to a Keras ``Conv2DTranspose``; with ``batch_norm``, the ``BatchNormalization`` that
    follows it folded into its kernel and bias (inference), and with ``activation``, a following
    Keras ``Activation`` layer run fused.

    Args:
        layer: ``keras.saving.serialize_keras_object(layer)`` (a dict with ``class_name`` and
            ``config``), or ``layer.get_config()`` together with ``class_name``.
        weights: the layer's ``get_weights()``: ``[kernel]`` or ``[kernel, bias]``. A ``Conv2D``
            kernel is HWIO ``[KH, KW, C/groups, filters]``; a ``DepthwiseConv2D`` kernel
            ``[KH, KW, C, depth_multiplier]`` becomes ``[KH, KW, 1, C * depth_multiplier]`` (output
            channel ``c * depth_multiplier + j``, Keras's order); a ``SeparableConv2D``'s are
            ``[depthwise_kernel, pointwise_kernel]`` (+ bias); a ``Conv2DTranspose`` kernel
            ``[KH, KW, filters, C]`` is used as it is.
        class_name: ``"Conv2D"``, ``"DepthwiseConv2D"``, ``"SeparableConv2D"`` or
            ``"Conv2DTranspose"`` when ``layer`` is a bare config.
        batch_norm: ``(config, weights)`` of a ``BatchNormalization`` right after the layer
            (its ``serialize_keras_object()`` or ``get_config()``, and ``get_weights()``: gamma,
            beta as ``scale``/``center`` say, moving mean and variance): folded in (not for
            ``Conv2DTranspose``; the layer's own activation must be linear).
        activation: the name of a Keras ``Activation`` layer after the layer (after the
            ``BatchNormalization`` when one is folded), run fused; the layer's own activation must
            then be linear.
        dtype, device: of the new layer; by default the kernel's dtype and the CPU.

    Returns:
        The layer, weights loaded, in training mode like any new module.

    Raises:
        ValueError: a class other than these four (named), ``channels_first``, an activation the
            layer does not have, a config field that contradicts the weights (``filters``,
            ``kernel_size``, ``depth_multiplier``, ``groups``, ``use_bias``, ``output_padding``),
            a ``batch_norm`` that is not one of ``[filters]`` statistics on the channels axis.
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
    kernels = ["depthwise_kernel", "pointwise_kernel"] if class_name == "SeparableConv2D" else ["kernel"]
    if isinstance(weights, Mapping) or len(weights) != len(kernels) + use_bias:
        got = "a dict" if isinstance(weights, Mapping) else f"{len(weights)} arrays"
        raise ValueError(
            f"myconv.from_keras: {class_name} weights must be [{', '.join(kernels)}{', bias' if use_bias else ''}] "
            f"for use_bias={use_bias} (get_weights()), got {got}"
        )
    own_activation = config.get("activation")
    for name, value in (("the layer's activation", own_activation), ("activation", activation)):
        if value is not None and value not in ACTIVATIONS:
            raise ValueError(f"myconv.from_keras: {name} must be None or one of {ACTIVATIONS}, got {value!r}")
    if (batch_norm is not None or activation is not None) and own_activation not in (None, "linear"):
        raise ValueError(f"myconv.from_keras: the layer's own activation {own_activation!r} runs before the "
                         "BatchNormalization or Activation that follows: it must be linear to fold or fuse them")
    if batch_norm is not None and class_name == "Conv2DTranspose":
        raise ValueError("myconv.from_keras: batch_norm folds into Conv2D, DepthwiseConv2D and SeparableConv2D, "
                         "not Conv2DTranspose")
    statistics = _batch_norm_statistics(batch_norm) if batch_norm is not None else None
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
                  activation=own_activation if statistics is None else None, use_bias=use_bias,
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
        layer_module.load_keras_weights(kernel, weights[1] if use_bias else None)
    elif class_name == "SeparableConv2D":
        multiplier = config.get("depth_multiplier", 1)
        pointwise = torch.as_tensor(weights[1])
        if multiplier != last or pointwise.dim() != 4 or tuple(pointwise.shape[:3]) != (1, 1, in_per_group * last):
            raise ValueError(f"myconv.from_keras: SeparableConv2D kernels {tuple(kernel.shape)} and "
                             f"{tuple(pointwise.shape)} do not match depth_multiplier {multiplier!r} ([KH, KW, C, "
                             "depth_multiplier] and [1, 1, C * depth_multiplier, filters])")
        if config.get("filters", pointwise.shape[3]) != pointwise.shape[3]:
            raise ValueError(f"myconv.from_keras: filters {config['filters']!r} does not match the pointwise kernel's "
                             f"shape {tuple(pointwise.shape)}")
        layer_module = SeparableConv2D(in_per_group, pointwise.shape[3], (kh, kw), depth_multiplier=last, **common)
        layer_module.load_keras_weights(kernel, pointwise, weights[2] if use_bias else None)
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
        layer_module.load_keras_weights(kernel, weights[1] if use_bias else None)
    if statistics is not None:
        return layer_module.fold_batch_norm(*statistics, activation=activation)
    if activation is not None:
        target = layer_module.pointwise if isinstance(layer_module, SeparableConv2D) else layer_module
        target.activation = _activation_name(activation, "from_keras")
    return layer_module
