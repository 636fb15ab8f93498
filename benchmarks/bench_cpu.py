"""CPU benchmark: myconv vs torch.conv2d on channels_last tensors (oneDNN) vs the user's
permute + F.pad + F.conv2d + permute path, fp32, N = 1 and 8, all measured in one run.

Usage: python benchmarks/bench_cpu.py [--repeats 7] [--quick] [--train]
Writes benchmarks/results/cpu.md (forward) or, with --train, cpu-train.md (forward + backward:
input and filter gradients) and prints the same table.
"""

import argparse
import os
import platform

import torch

import contextlib

from common import (LAYERS, RESULTS, check_agreement, contenders, geomean, gflop, header, median_ms,
                    training_contenders)


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--min-time", type=float, default=0.05, help="seconds per sample")
    parser.add_argument("--quick", action="store_true", help="N = 1 only, 3 repeats (smoke run)")
    parser.add_argument("--train", action="store_true",
                        help="time forward + backward (input and filter gradients) instead of forward")
    parser.add_argument("--output", default=None, help="default: results/cpu.md, or cpu-train.md with --train")
    args = parser.parse_args()
    batches = (1,) if args.quick else (1, 8)
    repeats = 3 if args.quick else args.repeats
    output = args.output or str(RESULTS / ("cpu-train.md" if args.train else "cpu.md"))
    make_contenders = training_contenders if args.train else contenders
    # GFLOP/s counts the forward's FLOPs once, or three times (forward, two gradients) with --train.
    passes = 3 if args.train else 1

    flags = "".join(f" --{name}" for name in ("quick", "train") if getattr(args, name))
    lines = header(f"myconv CPU benchmark (fp32{', forward + backward' if args.train else ''})", [
        f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs; torch threads: {torch.get_num_threads()}",
        f"median of {repeats} samples per figure, each sample >= {args.min_time * 1e3:.0f} ms of calls",
        "torch_cl: F.conv2d on channels_last NCHW views (oneDNN); asymmetric SAME inputs pre-padded outside the timing",
        "user: permute + F.pad (TF SAME) + F.conv2d + permute + .contiguous()",
        *(["every contender computes the output, then the input and filter gradients for a fixed "
           "grad_output (torch.autograd.grad)"] if args.train else []),
        f"command: python benchmarks/bench_cpu.py{flags}",
    ])
    lines += ["| layer | N | myconv ms | torch_cl ms | user ms | myconv GFLOP/s | myconv/torch_cl | myconv/user |",
              "|---|---|---|---|---|---|---|---|"]
    ratios_ref, ratios_user = [], []
    with contextlib.nullcontext() if args.train else torch.inference_mode():
        for layer in LAYERS:
            for n in batches:
                fns = make_contenders(layer, n, "cpu", torch.float32)
                check_agreement(fns, 1e-5)
                ms = {name: median_ms(fn, lambda: None, repeats, args.min_time) for name, fn in fns.items()}
                r_ref, r_user = ms["myconv"] / ms["torch_cl"], ms["myconv"] / ms["user"]
                ratios_ref.append(r_ref)
                ratios_user.append(r_user)
                row = (f"| {layer.name} | {n} | {ms['myconv']:.3f} | {ms['torch_cl']:.3f} | {ms['user']:.3f} | "
                       f"{passes * gflop(layer, n) / ms['myconv'] * 1e3:.1f} | {r_ref:.2f} | {r_user:.2f} |")
                lines.append(row)
                print(row, flush=True)
    faster = sum(r < 1 for r in ratios_user)
    lines += ["", "## Summary", "",
              f"- geomean time ratio myconv / torch_cl: **{geomean(ratios_ref):.2f}** (target <= 1.5)",
              f"- geomean time ratio myconv / user path: **{geomean(ratios_user):.2f}**",
              f"- faster than the user path on **{faster} of {len(ratios_user)}** shapes (target: at least half)", ""]
    text = "\n".join(lines)
    RESULTS.mkdir(exist_ok=True)
    with open(output, "w") as f:
        f.write(text)
    print("\n".join(lines[-5:]))


if __name__ == "__main__":
    main()
