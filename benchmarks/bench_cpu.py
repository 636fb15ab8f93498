"""CPU benchmark: myconv vs torch.conv2d on channels_last tensors (oneDNN) vs the user's
permute + F.pad + F.conv2d + permute path, N = 1 and 8, all measured in one run.

Usage: python benchmarks/bench_cpu.py [--repeats 7] [--quick] [--train] [--transpose] [--fused] [--dtype bfloat16|float16]
Writes benchmarks/results/cpu.md (forward, float32) or, with --train, cpu-train.md (forward +
backward: input and filter gradients), cpu-bfloat16.md / cpu-float16.md with --dtype, with a chart
beside it (cpu.png, ...), and prints the same table. --transpose times conv2d_transpose on decoder
shapes against oneDNN's conv_transpose2d (+ the crop TF's SAME implies) instead: cpu-transpose.md.
--fused times conv + bias + residual + ReLU fused against oneDNN's conv then add_ and relu_:
cpu-fused.md. The targets in the summary are the float32
ones. It measures the machine's FMA peak for the instruction set myconv uses (an FMA loop
on every thread) and reports each shape's share of it. A "## Steps" section already in the
results file (the history of speed steps) is kept.
"""

import argparse
import os
import platform
import time

import torch

import myconv
import contextlib
import sys
from pathlib import Path

from common import (LAYERS, RESULTS, Layer, allocated_bytes, check_agreement, contenders, geomean, gflop,
                    header, median_ms, reference_operands, training_contenders)

# Per-call overhead: a shape so small that the call itself is what gets timed (issue 8: within
# 1.2x of torch.conv2d).
TINY = Layer("tiny 3x3 C=4 8x8", (8, 8, 4), (3, 3, 4, 4), 1, "odd")
# --dtype: the type of every tensor, and how far from float64 each contender may be.
DTYPES = {"float32": (torch.float32, 1e-5), "bfloat16": (torch.bfloat16, 1e-2), "float16": (torch.float16, 1e-2)}


# AMD's CPU families by microarchitecture: a VM's model name ("AMD EPYC") does not say which, and
# Zen 4 (512-bit FMAs as two halves) and Zen 5 (full width) differ twofold in FMA peak.
AMD_FAMILIES = {23: "Zen/Zen 2", 25: "Zen 3/Zen 4", 26: "Zen 5"}


def cpu_name() -> str:
    """The CPU's model name, with its family and model numbers (and AMD's microarchitecture)."""
    fields = {}
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or "unknown CPU"
    if "cpu family" not in fields:
        return name
    family = int(fields["cpu family"])
    arch = AMD_FAMILIES.get(family, "") if fields.get("vendor_id") == "AuthenticAMD" else ""
    return f"{name} (family {family}, model {fields.get('model', '?')}{', ' + arch if arch else ''})"


def progress(done: int, total: int, label: str) -> None:
    """A one-line counter on stderr: rewritten in place on a terminal, one line each otherwise."""
    text = f"[{done}/{total}] {label}"
    if sys.stderr.isatty():
        print(f"\r{text:<60}", end="" if done < total else "\n", file=sys.stderr, flush=True)
    else:
        print(text, file=sys.stderr, flush=True)


def draw_chart(records: list[dict], peak: float, title: str, path: Path) -> None:
    """Time relative to oneDNN per shape (myconv and the user path), and share of the FMA peak."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['layer']} N={r['n']}" for r in records]
    x = range(len(records))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(16, 9), sharex=True)
    width = 0.4
    top.bar([i - width / 2 for i in x], [r["ms"]["myconv"] / r["ms"]["torch_cl"] for r in records],
            width, label="myconv / oneDNN")
    top.bar([i + width / 2 for i in x], [r["ms"]["user"] / r["ms"]["torch_cl"] for r in records],
            width, label="user path / oneDNN")
    top.axhline(1.0, color="black", linewidth=0.8)
    top.set_ylabel("time relative to oneDNN (lower is faster)")
    top.set_title(title)
    top.legend()
    bottom.bar([i - width / 2 for i in x], [100 * r["gflops"]["myconv"] / peak for r in records], width,
               label="myconv")
    bottom.bar([i + width / 2 for i in x], [100 * r["gflops"]["torch_cl"] / peak for r in records], width,
               label="oneDNN")
    bottom.set_ylabel(f"% of FMA peak ({peak:.0f} GFLOP/s)")
    bottom.set_xticks(list(x))
    bottom.set_xticklabels(labels, rotation=75, fontsize=7)
    bottom.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# glibc hands large freed blocks back to the OS, so a call's output (up to 26 MB here) is
# page-faulted in anew on some calls and not on others, for whichever contender happens to hit it:
# it measured up to 2x on one figure. The benchmark runs with glibc keeping freed memory (blocks
# up to 32 MB from the heap, no trimming), the same for every contender.
MALLOC_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(4 << 30)}


def stream_copy_gbps() -> float:
    """Bytes read + written per second by a 256 MiB copy on every thread: the machine's memory
    bandwidth, the yardstick of packing (a streaming copy too). Best of five."""
    src, dst = torch.randn(64 << 20), torch.empty(64 << 20)
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        dst.copy_(src)
        best = max(best, 2 * src.nbytes / (time.perf_counter() - start) / 1e9)
    return best


def packing_cost(layer: Layer, dtype: torch.dtype, repeats: int, min_time: float) -> tuple[float, float]:
    """(ms, GB/s) of myconv.prepack_filter on the layer's filter: bytes = filter read + packed written."""
    w = torch.randn(*layer.hwio).to(dtype)
    groups = layer.hwc[2] // layer.hwio[2]
    packed = myconv.prepack_filter(w, groups)
    ms = median_ms({"pack": lambda: myconv.prepack_filter(w, groups)}, lambda: None, repeats, min_time)["pack"]
    return ms, (w.nbytes + packed.nbytes) / (ms * 1e-3) / 1e9


# Decoder layers, N = 8: (name, input H, W, C_in, filter KH, KW, C_out, stride, padding).
DECODER_LAYERS = [
    ("U-Net up 3x3/2 SAME 28->56", (28, 28, 256), (3, 3, 128), 2, "SAME"),
    ("U-Net up 3x3/2 SAME 56->112", (56, 56, 128), (3, 3, 64), 2, "SAME"),
    ("U-Net up 4x4/2 SAME 28->56", (28, 28, 128), (4, 4, 64), 2, "SAME"),
    ("DCGAN 4x4/2 VALID 8->18", (8, 8, 256), (4, 4, 128), 2, "VALID"),
    ("DCGAN 4x4/2 VALID 16->34", (16, 16, 128), (4, 4, 64), 2, "VALID"),
    ("decoder 3x3/1 SAME 56", (56, 56, 64), (3, 3, 64), 1, "SAME"),
]


def transpose_benchmark(args, batch: int = 8) -> None:
    """myconv.conv2d_transpose (Keras's output size) against oneDNN: F.conv_transpose2d on
    channels_last NCHW views (full size), cropped to TF's window by a view, as a PyTorch user writes it."""
    import torch.nn.functional as F

    records = []
    for name, (h, w, c_in), (kh, kw, c_out), s, padding in DECODER_LAYERS:
        x = torch.randn(batch, h, w, c_in)
        f = torch.randn(kh, kw, c_out, c_in)
        expected = myconv.conv2d_transpose(x, f, None, s, padding)
        out_h, out_w = expected.shape[1:3]
        crops = []  # TF's crop of the full transposed output: the forward conv's top/left padding
        for size, k in ((out_h, kh), (out_w, kw)):
            crops.append(torch.ops.myconv.same_padding(size, k, s, 1)[0] if padding == "SAME" else 0)
        x_nchw = x.permute(0, 3, 1, 2)  # channels_last already
        w_torch = f.permute(3, 2, 0, 1).contiguous(memory_format=torch.channels_last)  # [C_in, C_out, KH, KW]

        def onednn():
            full = F.conv_transpose2d(x_nchw, w_torch, stride=s)
            return full[:, :, crops[0]:crops[0] + out_h, crops[1]:crops[1] + out_w]

        got = onednn().permute(0, 2, 3, 1)
        if got.shape != expected.shape or (got - expected).norm() / expected.norm() > 1e-5:
            raise SystemExit(f"{name}: myconv and conv_transpose2d + crop disagree")
        ms = median_ms({"myconv": lambda: myconv.conv2d_transpose(x, f, None, s, padding), "torch_cl": onednn},
                       lambda: None, 3 if args.quick else args.repeats, args.min_time)
        flops = 2 * batch * h * w * c_in * kh * kw * c_out
        records.append((name, ms, flops / ms["myconv"] / 1e6))
        progress(len(records), len(DECODER_LAYERS), name)
    ratios = [r[1]["myconv"] / r[1]["torch_cl"] for r in records]
    lines = header("myconv CPU benchmark: conv2d_transpose (float32, N = 8)", [
        f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs; torch threads: {torch.get_num_threads()}",
        f"myconv CPU instruction set: {torch.ops.myconv.cpu_isa()}; median of {args.repeats} samples, each >= "
        f"{args.min_time * 1e3:.0f} ms of calls, interleaved",
        "myconv: myconv.conv2d_transpose(x, w, None, strides, padding), Keras's output size",
        "torch_cl: F.conv_transpose2d on channels_last NCHW views (oneDNN), then TF's crop as a view",
        "command: python benchmarks/bench_cpu.py --transpose",
    ])
    lines += ["| layer | myconv ms | torch_cl ms | myconv GFLOP/s | myconv/torch_cl |", "|---|---|---|---|---|"]
    for (name, ms, gflops), ratio in zip(records, ratios):
        lines.append(f"| {name} | {ms['myconv']:.3f} | {ms['torch_cl']:.3f} | {gflops:.1f} | {ratio:.2f} |")
    summary = ["## Summary", "", f"- geomean time ratio myconv / torch_cl: **{geomean(ratios):.2f}** (issue 19's "
               "target <= 0.9)", f"- worst: {max(zip(ratios, records))[1][0]} at {max(ratios):.2f}", ""]
    write_keeping_steps(RESULTS / "cpu-transpose.md", "\n".join(lines + [""] + summary))
    print("\n".join(summary))


def fused_benchmark(args, batch: int = 8) -> None:
    """conv + bias + residual + ReLU on the ResNet-50 and MobileNet shapes: myconv.conv2d with
    activation and residual fused (and frozen: prepacked), against what a PyTorch user runs on
    oneDNN: channels_last F.conv2d with bias, then add_ and relu_ in place."""
    import torch.nn.functional as F

    records = []
    layers = [layer for layer in LAYERS if layer.family in ("resnet50", "mobilenetv2")]
    for layer in layers:
        x = torch.randn(batch, *layer.hwc)
        w = torch.randn(*layer.hwio) / (layer.hwio[0] * layer.hwio[1] * layer.hwio[2]) ** 0.5
        b = torch.randn(layer.hwio[3])
        groups = layer.hwc[2] // layer.hwio[2]
        residual = torch.randn(myconv.output_shape(x.shape, w.shape, layer.stride))
        ref_input, w_oihw, ref_padding = reference_operands(layer, x, w)
        residual_nchw = residual.permute(0, 3, 1, 2)  # channels_last, like oneDNN's output
        packed = myconv.prepack_filter(w, groups)

        def user():
            out = F.conv2d(ref_input, w_oihw, b, stride=layer.stride, padding=ref_padding, groups=groups)
            return out.add_(residual_nchw).relu_()

        fns = {
            "myconv": lambda: myconv.conv2d(x, w, layer.stride, "SAME", bias=b, activation="relu", residual=residual),
            "frozen": lambda: myconv.conv2d_prepacked(x, packed, w.shape, layer.stride, "SAME", bias=b,
                                                      activation="relu", residual=residual),
            "unfused": lambda: myconv.conv2d(x, w, layer.stride, "SAME", bias=b).add_(residual).relu_(),
            "user": user,
            # oneDNN's convolution alone: what the user's path would cost with a free epilogue
            "conv_alone": lambda: F.conv2d(ref_input, w_oihw, b, stride=layer.stride, padding=ref_padding,
                                           groups=groups),
        }
        with torch.inference_mode():
            expected = user().permute(0, 2, 3, 1)
            for name in ("myconv", "frozen", "unfused"):
                if (fns[name]() - expected).norm() / expected.norm() > 1e-5:
                    raise SystemExit(f"{layer.name}: {name} and the user's path disagree")
            ms = median_ms(fns, lambda: None, 3 if args.quick else args.repeats, args.min_time)
        records.append((layer.name, ms))
        progress(len(records), len(layers), layer.name)
    ratios = [ms["myconv"] / ms["user"] for _, ms in records]
    frozen = [ms["frozen"] / ms["user"] for _, ms in records]
    lines = header(f"myconv CPU benchmark: fused conv + bias + residual + ReLU (float32, N = {batch})", [
        f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs; torch threads: {torch.get_num_threads()}",
        f"myconv CPU instruction set: {torch.ops.myconv.cpu_isa()}; median of {args.repeats} samples, each >= "
        f"{args.min_time * 1e3:.0f} ms of calls, interleaved",
        "myconv: myconv.conv2d(x, w, strides, 'SAME', bias=b, activation='relu', residual=r): the epilogue in "
        "the kernel's store (the filter packed on every call)",
        "frozen: the same through myconv.conv2d_prepacked (the filter packed once, as Conv2d.freeze() does)",
        "user: F.conv2d(x, w, b) on channels_last NCHW views (oneDNN), then .add_(r).relu_() in place",
        "unfused: myconv.conv2d(x, w, bias=b), then .add_(r).relu_() (what the fusion saves)",
        "oneDNN conv alone: the user's F.conv2d without add_ and relu_: conv alone/user is the ratio a fused "
        "convolution exactly as fast as oneDNN's would reach (the epilogue free)",
        "command: python benchmarks/bench_cpu.py --fused",
    ])
    lines += ["| layer | myconv ms | frozen ms | unfused ms | user ms | oneDNN conv alone ms | myconv/user | frozen/user "
              "| myconv/unfused | conv alone/user |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for (name, ms), ratio, ratio_frozen in zip(records, ratios, frozen):
        lines.append(f"| {name} | {ms['myconv']:.3f} | {ms['frozen']:.3f} | {ms['unfused']:.3f} | {ms['user']:.3f} | "
                     f"{ms['conv_alone']:.3f} | {ratio:.2f} | {ratio_frozen:.2f} | {ms['myconv'] / ms['unfused']:.2f} | "
                     f"{ms['conv_alone'] / ms['user']:.2f} |")
    worst = max(zip(ratios, (name for name, _ in records)))
    summary = ["## Summary", "",
               f"- geomean time ratio myconv / user: **{geomean(ratios):.2f}** (issue 20's target <= 0.75, "
               f"no shape above 1.0); frozen: {geomean(frozen):.2f}; myconv fused / unfused: "
               f"{geomean([ms['myconv'] / ms['unfused'] for _, ms in records]):.2f}",
               f"- oneDNN's convolution alone / user: {geomean([ms['conv_alone'] / ms['user'] for _, ms in records]):.2f} "
               "(the geomean a fused convolution as fast as oneDNN's would reach)",
               f"- worst: {worst[1]} at {worst[0]:.2f}"]
    write_keeping_steps(RESULTS / "cpu-fused.md", "\n".join(lines + [""] + summary) + "\n")
    print("\n".join(summary))



def write_keeping_steps(path, text):
    """Writes a results file, keeping the "## Steps" section (the history of speed steps) of the
    one it replaces."""
    previous = Path(path).read_text() if Path(path).exists() else ""
    steps = previous[previous.index("## Steps"):] if "## Steps" in previous else ""
    Path(path).write_text(text + ("\n" + steps if steps else ""))

def main() -> None:
    if any(os.environ.get(name) != value for name, value in MALLOC_SETTINGS.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_SETTINGS})
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--min-time", type=float, default=0.05, help="seconds per sample")
    parser.add_argument("--quick", action="store_true", help="N = 1 only, 3 repeats (smoke run)")
    parser.add_argument("--train", action="store_true",
                        help="time forward + backward (input and filter gradients) instead of forward")
    parser.add_argument("--transpose", action="store_true",
                        help="time conv2d_transpose on decoder shapes against oneDNN's conv_transpose2d instead")
    parser.add_argument("--fused", action="store_true",
                        help="time conv + bias + residual + ReLU fused against oneDNN conv then add_ and relu_")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32",
                        help="input, filter and output type (half types accumulate in float32)")
    parser.add_argument("--output", default=None,
                        help="default: results/cpu.md, or cpu-train.md with --train; cpu-<dtype>.md for half types")
    args = parser.parse_args()
    if args.transpose:
        return transpose_benchmark(args)
    if args.fused:
        return fused_benchmark(args)
    dtype, tolerance = DTYPES[args.dtype]
    batches = (1,) if args.quick else (1, 8)
    repeats = 3 if args.quick else args.repeats
    suffix = ("-train" if args.train else "") + ("" if args.dtype == "float32" else f"-{args.dtype}")
    output = args.output or str(RESULTS / f"cpu{suffix}.md")
    make_contenders = training_contenders if args.train else contenders
    # GFLOP/s counts the forward's FLOPs once, or three times (forward, two gradients) with --train.
    passes = 3 if args.train else 1

    flags = "".join(f" --{name}" for name in ("quick", "train") if getattr(args, name))
    flags += "" if args.dtype == "float32" else f" --dtype {args.dtype}"
    peak_before = max(torch.ops.myconv.cpu_fma_peak_gflops() for _ in range(5))
    memory_column = not args.train
    ratios_ref, ratios_user, records = [], [], []
    bandwidth = stream_copy_gbps() if not args.train else 0.0
    total = len(LAYERS) * len(batches)
    for layer in LAYERS:
        for n in batches:
            progress(len(records), total, f"{layer.name} N={n}")
            fns, reference64 = make_contenders(layer, n, "cpu", dtype)
            with contextlib.nullcontext() if args.train else torch.inference_mode():
                check_agreement(fns, reference64, tolerance)
                ms = median_ms(fns, lambda: None, repeats, args.min_time)
            gflops = {name: passes * gflop(layer, n) / t * 1e3 for name, t in ms.items()}
            r_ref, r_user = ms["myconv"] / ms["torch_cl"], ms["myconv"] / ms["user"]
            ratios_ref.append(r_ref)
            ratios_user.append(r_user)
            records.append({"layer": layer.name, "n": n, "ms": ms, "gflops": gflops})
            records[-1]["memory"] = f" {allocated_bytes(fns['myconv']) / 2**20:.2f} |" if memory_column else ""
            if not args.train:
                records[-1]["pack"] = packing_cost(layer, dtype, repeats, args.min_time)
    progress(total, total, "done")
    # Best of several, before and after the shapes: a measurement that overlaps a busy spell of the
    # shared machine reads low (as low as half, once for all five in a row), which would inflate
    # every share of peak below.
    peak = max([peak_before] + [torch.ops.myconv.cpu_fma_peak_gflops() for _ in range(5)])
    isa = torch.ops.myconv.cpu_isa()
    bfloat16_kernel = ("vdpbf16ps (two products a float32 lane and instruction: shares of the float32 FMA peak "
                       "can reach 200%)" if torch.ops.myconv.cpu_bfloat16_tile_kernel()
                       else "none (the float32 kernels on widened inputs)")
    lines = header(f"myconv CPU benchmark ({args.dtype}{', forward + backward' if args.train else ''})", [
        f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs; torch threads: {torch.get_num_threads()}",
        f"myconv CPU instruction set: {isa}; FMA peak measured before and after the shapes on "
        f"{torch.get_num_threads()} threads: {peak:.0f} GFLOP/s",
        *([f"myconv bfloat16 tile kernel: {bfloat16_kernel}"] if args.dtype == "bfloat16" else []),
        f"median of {repeats} samples per figure, each sample >= {args.min_time * 1e3:.0f} ms of calls; "
        "the contenders' samples interleaved; glibc keeps freed memory ("
        + ", ".join(f"{name}={value}" for name, value in MALLOC_SETTINGS.items()) + ")",
        "torch_cl: F.conv2d on channels_last NCHW views (torch's own CPU convolution: oneDNN for float32); "
        "asymmetric SAME inputs pre-padded outside the timing",
        "user: permute + F.pad (TF SAME) + F.conv2d + permute + .contiguous()",
        *(["every contender computes the output, then the input and filter gradients for a fixed "
           "grad_output (torch.autograd.grad)"] if args.train else []),
        "myconv: myconv.conv2d, which packs its filter on every call (nothing derived from a filter is "
        "kept across calls)",
        *([] if args.train else [
            "frozen: myconv.conv2d_prepacked with the filter packed once by myconv.prepack_filter (what "
            "myconv.Conv2d.freeze() does for inference)",
            "pack: myconv.prepack_filter alone, and its bytes (filter read + panels written) per second; "
            f"a plain copy of 256 MiB (torch copy_, every thread) moves {bandwidth:.1f} GB/s on this machine",
            "myconv MiB: memory one call allocates besides its output (the packed filter and workspaces), from "
            "the profiler's CPU memory events"]),
        f"command: python benchmarks/bench_cpu.py{flags}",
    ])
    frozen_columns = not args.train
    lines += ["| layer | N | myconv ms | torch_cl ms | user ms | myconv GFLOP/s | % of FMA peak | "
              "myconv/torch_cl | myconv/user |" + (" myconv MiB |" if memory_column else "")
              + (" frozen ms | frozen/torch_cl | pack us | pack GB/s |" if frozen_columns else ""),
              "|---|---|---|---|---|---|---|---|---|" + ("---|" if memory_column else "")
              + ("---|---|---|---|" if frozen_columns else "")]
    for r in records:
        ms, gflops = r["ms"], r["gflops"]
        frozen = (f" {ms['myconv_frozen']:.3f} | {ms['myconv_frozen'] / ms['torch_cl']:.2f} | "
                  f"{r['pack'][0] * 1e3:.1f} | {r['pack'][1]:.1f} |") if frozen_columns else ""
        lines.append(f"| {r['layer']} | {r['n']} | {ms['myconv']:.3f} | {ms['torch_cl']:.3f} | {ms['user']:.3f} | "
                     f"{gflops['myconv']:.1f} | {100 * gflops['myconv'] / peak:.0f}% | "
                     f"{ms['myconv'] / ms['torch_cl']:.2f} | {ms['myconv'] / ms['user']:.2f} |" + r["memory"] + frozen)
    RESULTS.mkdir(exist_ok=True)
    chart = Path(output).with_suffix(".png")
    draw_chart(records, peak, lines[0].lstrip("# "), chart)
    faster = sum(r < 1 for r in ratios_user)
    # Targets: issue 8 for the forward, issue 7 for training.
    geomean_target = 1.5 if args.train else 1.0
    target = "target" if args.dtype == "float32" else "the float32 target"
    summary = ["## Summary", "",
               f"- geomean time ratio myconv / torch_cl: **{geomean(ratios_ref):.2f}** ({target} <= {geomean_target})",
               f"- geomean time ratio myconv / user path: **{geomean(ratios_user):.2f}**",
               f"- faster than the user path on **{faster} of {len(ratios_user)}** shapes"
               f" ({target}: {'at least half' if args.train else 'every shape'})"]
    if not args.train:
        worst = max(zip(ratios_ref, records), key=lambda pair: pair[0])
        summary.append(f"- shapes above 1.25x torch_cl: **{sum(r > 1.25 for r in ratios_ref)}** ({target}: none); "
                       f"worst {worst[1]['layer']} N={worst[1]['n']} at {worst[0]:.2f}")
    if not args.train:
        with torch.inference_mode():
            tiny = median_ms(contenders(TINY, 1, "cpu", dtype)[0], lambda: None, repeats, args.min_time)
        summary.append(f"- per call, {TINY.name} N=1: myconv {tiny['myconv'] * 1e3:.1f} us, torch_cl "
                       f"{tiny['torch_cl'] * 1e3:.1f} us, ratio **{tiny['myconv'] / tiny['torch_cl']:.2f}** "
                       f"({target} <= 1.2)")
        frozen_ratios = [r["ms"]["myconv_frozen"] / r["ms"]["torch_cl"] for r in records]
        summary.append("- frozen (prepacked filter): geomean time ratio frozen / torch_cl "
                       f"**{geomean(frozen_ratios):.2f}**"
                       f"; packing is {100 * (1 - geomean(frozen_ratios) / geomean(ratios_ref)):.0f}% of the default "
                       "path's time (geomean)")
        for n in batches:
            rows = [r for r in records if r["n"] == n]
            summary.append(f"  - N={n}: myconv / torch_cl "
                           f"{geomean([r['ms']['myconv'] / r['ms']['torch_cl'] for r in rows]):.2f}, frozen / torch_cl "
                           f"{geomean([r['ms']['myconv_frozen'] / r['ms']['torch_cl'] for r in rows]):.2f}")
        speeds = [r["pack"][1] for r in records]
        summary.append(f"- packing speed: {min(speeds):.1f} to {max(speeds):.1f} GB/s (median "
                       f"{sorted(speeds)[len(speeds) // 2]:.1f}); a plain copy: {bandwidth:.1f} GB/s")
    summary.append("")
    lines += ["", f"![time ratios and share of FMA peak per shape]({chart.name})", "", *summary]
    write_keeping_steps(output, "\n".join(lines))
    print("\n".join(summary))


if __name__ == "__main__":
    main()
