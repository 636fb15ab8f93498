"""Shapes, contenders, timing and the results table shared by the CPU and GPU benchmarks."""

from __future__ import annotations

import datetime
import math
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

import myconv

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Layer:
    name: str
    hwc: tuple[int, int, int]      # input H, W, C
    hwio: tuple[int, int, int, int]  # filter KH, KW, C/groups, O
    stride: int
    family: str                    # resnet50 | mobilenetv2 | convnext | odd


LAYERS = [
    Layer("stem 7x7/2 C=3", (224, 224, 3), (7, 7, 3, 64), 2, "resnet50"),
    Layer("res2 3x3", (56, 56, 64), (3, 3, 64, 64), 1, "resnet50"),
    Layer("res2 1x1 64->256", (56, 56, 64), (1, 1, 64, 256), 1, "resnet50"),
    Layer("res2 1x1 256->64", (56, 56, 256), (1, 1, 256, 64), 1, "resnet50"),
    Layer("res3 3x3/2", (56, 56, 128), (3, 3, 128, 128), 2, "resnet50"),
    Layer("res3 proj 1x1/2", (56, 56, 256), (1, 1, 256, 512), 2, "resnet50"),
    Layer("res3 3x3", (28, 28, 128), (3, 3, 128, 128), 1, "resnet50"),
    Layer("res3 1x1 512->128", (28, 28, 512), (1, 1, 512, 128), 1, "resnet50"),
    Layer("res4 3x3", (14, 14, 256), (3, 3, 256, 256), 1, "resnet50"),
    Layer("res4 1x1 1024->256", (14, 14, 1024), (1, 1, 1024, 256), 1, "resnet50"),
    Layer("res5 3x3", (7, 7, 512), (3, 3, 512, 512), 1, "resnet50"),
    Layer("res5 1x1 2048->512", (7, 7, 2048), (1, 1, 2048, 512), 1, "resnet50"),
    Layer("dw 3x3/2 C=96", (112, 112, 96), (3, 3, 1, 96), 2, "mobilenetv2"),
    Layer("dw 3x3 C=144", (56, 56, 144), (3, 3, 1, 144), 1, "mobilenetv2"),
    Layer("dw 3x3 C=192", (28, 28, 192), (3, 3, 1, 192), 1, "mobilenetv2"),
    Layer("dw 3x3 C=576", (14, 14, 576), (3, 3, 1, 576), 1, "mobilenetv2"),
    Layer("dw 3x3 C=960", (7, 7, 960), (3, 3, 1, 960), 1, "mobilenetv2"),
    Layer("dw 7x7 C=96", (56, 56, 96), (7, 7, 1, 96), 1, "convnext"),
    Layer("pw 1x1 24->144", (56, 56, 24), (1, 1, 24, 144), 1, "mobilenetv2"),
    Layer("pw 1x1 192->32", (28, 28, 192), (1, 1, 192, 32), 1, "mobilenetv2"),
    Layer("pw 1x1 576->96", (14, 14, 576), (1, 1, 576, 96), 1, "mobilenetv2"),
    Layer("odd 3x3/2 33x47", (33, 47, 32), (3, 3, 32, 64), 2, "odd"),
    Layer("odd 5x5/2 74x75", (74, 75, 64), (5, 5, 64, 32), 2, "odd"),
    Layer("odd 2x2/2 17x31", (17, 31, 48), (2, 2, 48, 48), 2, "odd"),
]


def tf_same_pads(layer: Layer) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of TF SAME, from TF's formula."""
    pads = []
    for size, k in ((layer.hwc[0], layer.hwio[0]), (layer.hwc[1], layer.hwio[1])):
        out = -(-size // layer.stride)
        total = max((out - 1) * layer.stride + k - size, 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)


def user_forward(layer: Layer, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """What users write today: permute to NCHW, F.pad the TF SAME split, F.conv2d, permute back."""
    top, bottom, left, right = tf_same_pads(layer)
    xp = F.pad(x.permute(0, 3, 1, 2), (left, right, top, bottom))
    out = F.conv2d(xp, w.permute(3, 2, 0, 1), stride=layer.stride, groups=layer.hwc[2] // layer.hwio[2])
    return out.permute(0, 2, 3, 1).contiguous()


def reference_operands(layer: Layer, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """torch.conv2d's operands on channels_last tensors: the input (asymmetric SAME padded once,
    outside the timed region, in the reference's favour), the OIHW filter and the padding."""
    top, bottom, left, right = tf_same_pads(layer)
    x_nchw = x.detach().permute(0, 3, 1, 2)  # an NHWC tensor viewed as NCHW is channels_last already
    w_oihw = w.detach().permute(3, 2, 0, 1).contiguous(memory_format=torch.channels_last)
    if (top, left) == (bottom, right):
        return x_nchw, w_oihw, (top, left)
    return F.pad(x_nchw, (left, right, top, bottom)).contiguous(memory_format=torch.channels_last), w_oihw, (0, 0)


Contenders = tuple[dict[str, Callable[[], object]], Callable[[], object]]


def contenders(layer: Layer, n: int, device: str, dtype: torch.dtype) -> Contenders:
    """myconv, torch.conv2d on channels_last tensors and the user path, to time; and the user path
    in float64 on the same (rounded) inputs, the yardstick of the accuracy check."""
    x = torch.randn(n, *layer.hwc, device=device, dtype=dtype)
    w = torch.randn(*layer.hwio, device=device, dtype=dtype)
    groups = layer.hwc[2] // layer.hwio[2]
    ref_input, w_oihw, ref_padding = reference_operands(layer, x, w)
    fns = {
        "myconv": lambda: myconv.conv2d(x, w, layer.stride, "SAME"),
        "torch_cl": lambda: F.conv2d(ref_input, w_oihw, stride=layer.stride, padding=ref_padding, groups=groups),
        "user": lambda: user_forward(layer, x, w),
    }
    if device == "cpu":  # the filter packed once, as a frozen layer keeps it (inference)
        packed = myconv.prepack_filter(w, groups)
        fns["myconv_frozen"] = lambda: myconv.conv2d_prepacked(x, packed, w.shape, layer.stride, "SAME")
    return fns, lambda: user_forward(layer, x.double(), w.double())


def training_contenders(layer: Layer, n: int, device: str, dtype: torch.dtype) -> Contenders:
    """Forward + backward (input and filter gradients) of the same three contenders, each
    returning (grad_input, grad_filter) in NHWC / HWIO; and the user path's in float64."""
    x = torch.randn(n, *layer.hwc, device=device, dtype=dtype, requires_grad=True)
    w = torch.randn(*layer.hwio, device=device, dtype=dtype, requires_grad=True)
    groups = layer.hwc[2] // layer.hwio[2]
    grad_out = torch.randn(myconv.output_shape(x.shape, w.shape, layer.stride), device=device, dtype=dtype)
    grad_out_nchw = grad_out.permute(0, 3, 1, 2)  # channels_last, as oneDNN's output is
    ref_input, w_oihw, ref_padding = reference_operands(layer, x, w)
    ref_input.requires_grad_()
    w_oihw.requires_grad_()

    def reference():
        out = F.conv2d(ref_input, w_oihw, stride=layer.stride, padding=ref_padding, groups=groups)
        return torch.autograd.grad(out, (ref_input, w_oihw), grad_out_nchw)

    def float64_user_path():
        x64, w64 = (t.detach().double().requires_grad_() for t in (x, w))
        return torch.autograd.grad(user_forward(layer, x64, w64), (x64, w64), grad_out.double())

    fns = {
        "myconv": lambda: torch.autograd.grad(myconv.conv2d(x, w, layer.stride, "SAME"), (x, w), grad_out),
        "torch_cl": reference,
        "user": lambda: torch.autograd.grad(user_forward(layer, x, w), (x, w), grad_out),
    }
    return fns, float64_user_path


def gflop(layer: Layer, n: int) -> float:
    oh, ow = -(-layer.hwc[0] // layer.stride), -(-layer.hwc[1] // layer.stride)
    kh, kw, cg, o = layer.hwio
    return 2.0 * n * oh * ow * o * kh * kw * cg / 1e9


def median_ms(fns: dict[str, Callable[[], object]], sync: Callable[[], None], repeats: int,
              min_time_s: float) -> dict[str, float]:
    """Median ms per call of each contender over `repeats` samples after warm-up; each sample runs
    enough calls to last min_time_s. The samples are interleaved (round r times every contender
    once, starting from a different one each round), so that a slow spell of a shared machine
    hits every contender alike instead of one contender's whole run."""
    calls = {}
    for name, fn in fns.items():
        fn(); fn(); sync()
        start = time.perf_counter()
        fn(); sync()
        calls[name] = max(1, math.ceil(min_time_s / max(time.perf_counter() - start, 1e-9)))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            for _ in range(calls[name]):
                fns[name]()
            sync()
            samples[name].append((time.perf_counter() - start) * 1e3 / calls[name])
    return {name: statistics.median(values) for name, values in samples.items()}


def geomean(values: list[float]) -> float:
    if not values:
        return float("nan")
    return math.exp(sum(math.log(v) for v in values) / len(values))


def allocated_bytes(fn: Callable[[], torch.Tensor]) -> int:
    """Bytes one call allocates through ATen's CPU allocator besides its output: myconv's extra
    memory (packed filter, workspaces), each allocated once per call, so this is also its peak.
    The profiler sees the calling thread's allocations; myconv allocates nothing in worker threads."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    allocated = sum(max(e.self_cpu_memory_usage, 0) for e in prof.events())
    return allocated - out.numel() * out.element_size()


def float64_errors(fns: dict[str, Callable[[], object]], reference64: Callable[[], object]) -> dict[str, float]:
    """Relative error against float64 of myconv and of the user path (cuDNN / oneDNN at the same
    precision): the output, or the worst of a training step's gradients."""
    expected = reference64()
    expected = (expected,) if isinstance(expected, torch.Tensor) else expected
    errors = {}
    for name in ("myconv", "user"):
        got = fns[name]()
        got = (got,) if isinstance(got, torch.Tensor) else got
        errors[name] = max(((a.double() - b).norm() / b.norm()).item() for a, b in zip(got, expected))
    return errors


def accurate_enough(errors: dict[str, float], tolerance: float) -> bool:
    """myconv is within the tolerance of float64, or no further from it than the reference library
    at the same precision (long fp32 reductions, e.g. a filter gradient over N*H*W pixels, can be
    above 1e-5 in both)."""
    return errors["myconv"] <= max(tolerance, errors["user"])


def check_agreement(fns: dict[str, Callable[[], object]], reference64: Callable[[], object], tolerance: float) -> None:
    """Refuse to time a wrong answer: a benchmark of it is worthless."""
    errors = float64_errors(fns, reference64)
    if not accurate_enough(errors, tolerance):
        raise SystemExit(f"myconv is off float64 by {errors['myconv']:.3g} (tolerance {tolerance:g}; "
                         f"torch.conv2d at the same precision: {errors['user']:.3g})")
    if "myconv_frozen" in fns and not torch.equal(fns["myconv_frozen"](), fns["myconv"]()):
        raise SystemExit("myconv with a prepacked filter differs from myconv.conv2d")


def header(title: str, extra: list[str]) -> list[str]:
    return [
        f"# {title}",
        "",
        f"- date: {datetime.date.today().isoformat()}",
        f"- torch: {torch.__version__}; myconv {myconv.__version__}",
        f"- python: {platform.python_version()}; host: {platform.machine()} {platform.processor() or ''}".rstrip(),
        *[f"- {line}" for line in extra],
        "- ratios are time(myconv) / time(other): below 1 means myconv is faster",
        "",
    ]
