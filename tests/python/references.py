"""Independent references for TF-style conv2d, written from TF's definition, never from myconv."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def tf_padding(in_size: int, k: int, s: int, d: int, mode: str) -> tuple[int, int]:
    """(before, after) padding of one axis as tf.nn.conv2d defines it."""
    if mode == "VALID":
        return 0, 0
    eff = (k - 1) * d + 1
    out = -(-in_size // s)
    total = max((out - 1) * s + eff - in_size, 0)
    return total // 2, total - total // 2


def pads_tblr(x_shape, w_shape, stride, padding, dilation) -> list[int]:
    """[top, bottom, left, right] for a string or an explicit [t, b, l, r] padding."""
    if not isinstance(padding, str):
        return list(padding)
    mode = padding.upper()
    top, bottom = tf_padding(x_shape[1], w_shape[0], stride[0], dilation[0], mode)
    left, right = tf_padding(x_shape[2], w_shape[1], stride[1], dilation[1], mode)
    return [top, bottom, left, right]


def conv_torch(x, w, stride, padding, dilation, bias=None):
    """(a) torch.conv2d in float64 on NCHW views, TF padding applied with F.pad."""
    t, b, l, r = pads_tblr(x.shape, w.shape, stride, padding, dilation)
    groups = x.shape[3] // w.shape[2]
    xp = F.pad(x.double().permute(0, 3, 1, 2), (l, r, t, b))
    out = F.conv2d(xp, w.double().permute(3, 2, 0, 1), None if bias is None else bias.double(),
                   stride=stride, dilation=dilation, groups=groups)
    return out.permute(0, 2, 3, 1)


def _patches(x, w_shape, stride, padding, dilation):
    """[N, OH, OW, C, KH, KW] windows of the zero-padded input, in float64."""
    t, b, l, r = pads_tblr(x.shape, w_shape, stride, padding, dilation)
    kh, kw = w_shape[0], w_shape[1]
    eff_h, eff_w = (kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1
    xp = F.pad(x.double(), (0, 0, l, r, t, b))
    windows = xp.unfold(1, eff_h, stride[0]).unfold(2, eff_w, stride[1])
    return windows[..., :: dilation[0], :: dilation[1]]


def conv_einsum(x, w, stride, padding, dilation, bias=None):
    """(b) einsum of the extracted windows with the filter, per group."""
    patches = _patches(x, w.shape, stride, padding, dilation)
    n, oh, ow, c, kh, kw = patches.shape
    cg, o = w.shape[2], w.shape[3]
    g = c // cg
    patches = patches.reshape(n, oh, ow, g, cg, kh, kw)
    wg = w.double().reshape(kh, kw, cg, g, o // g)
    out = torch.einsum("nhwgcij,ijcgo->nhwgo", patches, wg).reshape(n, oh, ow, o)
    return out if bias is None else out + bias.double()


def conv_matmul(x, w, stride, padding, dilation, bias=None):
    """(c) im2col matrix [P, KH*KW*Cg] times the filter [KH*KW*Cg, Og], per group."""
    patches = _patches(x, w.shape, stride, padding, dilation)
    n, oh, ow, c, kh, kw = patches.shape
    cg, o = w.shape[2], w.shape[3]
    g = c // cg
    cols = patches.reshape(n * oh * ow, g, cg, kh, kw).permute(1, 0, 3, 4, 2)
    cols = cols.reshape(g, n * oh * ow, kh * kw * cg)
    wmat = w.double().reshape(kh * kw * cg, g, o // g).permute(1, 0, 2)
    out = torch.matmul(cols, wmat).permute(1, 0, 2).reshape(n, oh, ow, o)
    return out if bias is None else out + bias.double()


def conv_direct(x, w, stride, pads, dilation, bias=None):
    """(d) the definition itself, tap by tap in Python integers: no padded copy, so explicit pads,
    strides and dilations up to 2^63 work (the output must be small). pads = [t, b, l, r]."""
    n, h, width, c = x.shape
    kh, kw, cg, o = w.shape
    groups, og = c // cg, o // (c // cg)
    t, b, l, r = pads
    out_h = (h + t + b - (kh - 1) * dilation[0] - 1) // stride[0] + 1
    out_w = (width + l + r - (kw - 1) * dilation[1] - 1) // stride[1] + 1
    out = torch.zeros(n, out_h, out_w, o, dtype=torch.float64)
    xd, wd = x.double(), w.double()
    for oy in range(out_h):
        for ox in range(out_w):
            for i in range(kh):
                iy = oy * stride[0] - t + i * dilation[0]
                if not 0 <= iy < h:
                    continue
                for j in range(kw):
                    ix = ox * stride[1] - l + j * dilation[1]
                    if not 0 <= ix < width:
                        continue
                    for g in range(groups):
                        out[:, oy, ox, g * og:(g + 1) * og] += (xd[:, iy, ix, g * cg:(g + 1) * cg]
                                                                @ wd[i, j, :, g * og:(g + 1) * og])
    return out if bias is None else out + bias.double()


REFERENCES = {"torch": conv_torch, "einsum": conv_einsum, "matmul": conv_matmul}


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64; ||out|| where ref is all zero (windows of padding
    alone), so that only an exact zero passes."""
    diff, norm = (out.double().cpu() - ref.double().cpu()).norm(), ref.double().cpu().norm()
    return (diff / norm if norm > 0 else diff).item()


TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}


def keras_activation(name: str, z: torch.Tensor, alpha=None) -> torch.Tensor:
    """Keras 3's activations in float64, written from keras/src/activations/activations.py and
    keras/src/ops/nn.py (defaults included), never from myconv."""
    z = z.double()
    if name == "linear":
        return z
    if name == "relu":
        return z.clamp_min(0)
    if name == "relu6":
        return z.clamp(0, 6)
    if name == "leaky_relu":
        return torch.where(z >= 0, z, (0.2 if alpha is None else alpha) * z)
    if name == "elu":
        return torch.where(z > 0, z, (1.0 if alpha is None else alpha) * torch.expm1(z))
    if name == "selu":
        return 1.0507009873554804934193349852946 * torch.where(z > 0, z, 1.6732632423543772848170429916717 * torch.expm1(z))
    if name == "gelu":  # approximate=False
        return 0.5 * z * (1 + torch.erf(z / 2 ** 0.5))
    if name in ("silu", "swish"):
        return z / (1 + torch.exp(-z))
    if name == "sigmoid":
        return 1 / (1 + torch.exp(-z))
    if name == "hard_sigmoid":  # Keras 3: relu6(x + 3) / 6 (Keras 2's 0.2 x + 0.5 is gone)
        return (z + 3).clamp(0, 6) / 6
    if name in ("hard_silu", "hard_swish"):
        return z * (z + 3).clamp(0, 6) / 6
    if name == "tanh":
        return torch.tanh(z)
    if name == "softplus":
        return torch.logaddexp(z, torch.zeros_like(z))
    if name == "softsign":
        return z / (z.abs() + 1)
    if name == "mish":
        return z * torch.tanh(torch.logaddexp(z, torch.zeros_like(z)))
    if name == "exponential":
        return torch.exp(z)
    raise ValueError(name)
