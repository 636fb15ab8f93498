"""GPU benchmark: myconv vs torch.conv2d on channels_last tensors (cuDNN) vs the user's
permute + F.pad + F.conv2d + permute path, for fp32 (strict), TF32, fp16 and bf16, N = 32.

Usage: python benchmarks/bench_gpu.py [--batch 32] [--repeats 20] [--train] [--engine implicit_gemm]
Writes benchmarks/results/gpu-<card>.md (forward) or, with --train, gpu-<card>-train.md
(forward + input and filter gradients), and prints the same table. --engine sets
MYCONV_CUDA_ENGINE (its results file gets the engine's name) and each row says which kernel ran.
"""

import argparse
import contextlib
import os
import re
import subprocess

import torch

from common import (LAYERS, RESULTS, accurate_enough, contenders, float64_errors, geomean, gflop, header,
                    median_ms, training_contenders)

MODES = {  # name: (dtype, allow_tf32, tolerance against float64)
    "fp32": (torch.float32, False, 1e-5),
    "tf32": (torch.float32, True, 1e-2),
    "fp16": (torch.float16, False, 1e-2),
    "bf16": (torch.bfloat16, False, 1e-2),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--min-time", type=float, default=0.02, help="seconds per sample")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES),
                        help="precisions to run (a subset writes its own results file)")
    parser.add_argument("--train", action="store_true",
                        help="time forward + backward (input and filter gradients) instead of forward")
    parser.add_argument("--engine", choices=["auto", "im2row", "implicit_gemm"], default="auto",
                        help="myconv's CUDA engine (MYCONV_CUDA_ENGINE)")
    args = parser.parse_args()
    os.environ["MYCONV_CUDA_ENGINE"] = args.engine
    make_contenders = training_contenders if args.train else contenders
    passes = 3 if args.train else 1  # FLOPs of forward, input gradient and filter gradient
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu.py needs a CUDA device")
    subset = "" if args.modes == list(MODES) else "-" + "-".join(args.modes)
    card = torch.cuda.get_device_name(0)
    props = torch.cuda.get_device_properties(0)
    lines = header(f"myconv GPU benchmark on {card}{' (forward + backward)' if args.train else ''}", [
        f"card: {card}, {props.total_memory / 2**30:.0f} GiB, sm_{props.major}{props.minor}; driver {driver_version()}; "
        f"CUDA {torch.version.cuda}; cuDNN {torch.backends.cudnn.version()}",
        f"N = {args.batch}; median of {args.repeats} samples, each >= {args.min_time * 1e3:.0f} ms of calls, "
        "the contenders' samples interleaved",
        "torch_cl: F.conv2d on channels_last tensors (cuDNN, benchmark mode on); "
        "user: permute + F.pad + F.conv2d + permute + .contiguous()",
        f"command: python benchmarks/bench_gpu.py --batch {args.batch} --repeats {args.repeats} "
        f"--min-time {args.min_time}{' --train' if args.train else ''}{' --modes ' + ' '.join(args.modes) if subset else ''}"
        f"{' --engine ' + args.engine if args.engine != 'auto' else ''}",
        f"engine: MYCONV_CUDA_ENGINE={args.engine} (the forward's kernel per row; gradients run im2row)",
    ])
    slug = re.sub(r"[^A-Za-z0-9]+", "-", card).strip("-")
    RESULTS.mkdir(exist_ok=True)
    engine = "" if args.engine == "auto" else "-" + args.engine
    path = RESULTS / f"gpu-{slug}{engine}{'-train' if args.train else ''}{subset}.md"
    torch.backends.cudnn.benchmark = True
    summary, inaccurate = [], 0
    with contextlib.nullcontext() if args.train else torch.inference_mode():
        for mode in args.modes:
            dtype, tf32, tolerance = MODES[mode]
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
            lines += ["", f"## {mode}", "",
                      "| layer | kernel | myconv ms | torch_cl ms | user ms | myconv TFLOP/s | myconv/torch_cl | myconv/user |",
                      "|---|---|---|---|---|---|---|---|"]
            ratios = {"resnet50": [], "all": [], "user": []}
            for layer in LAYERS:
                kernel = forward_kernel(layer, args.batch, dtype, tf32, props.major * 10 + props.minor)
                fns, reference64 = make_contenders(layer, args.batch, "cuda", dtype)
                # A wrong answer is not timed, but the run goes on: GPU time is scarce, and the
                # other rows are still true.
                errors = float64_errors(fns, reference64)
                if not accurate_enough(errors, tolerance):
                    inaccurate += 1
                    row = (f"| {layer.name} | {kernel} | NOT TIMED: off float64 by {errors['myconv']:.3g} (tolerance {tolerance:g}; "
                           f"cuDNN at this precision: {errors['user']:.3g}) | | | | | |")
                else:
                    ms = median_ms(fns, torch.cuda.synchronize, args.repeats, args.min_time)
                    r_ref, r_user = ms["myconv"] / ms["torch_cl"], ms["myconv"] / ms["user"]
                    ratios["all"].append(r_ref)
                    ratios["user"].append(r_user)
                    if layer.family == "resnet50":
                        ratios["resnet50"].append(r_ref)
                    row = (f"| {layer.name} | {kernel} | {ms['myconv']:.3f} | {ms['torch_cl']:.3f} | {ms['user']:.3f} | "
                           f"{passes * gflop(layer, args.batch) / ms['myconv']:.1f} | {r_ref:.2f} | {r_user:.2f} |")
                lines.append(row)
                print(mode, row, flush=True)
                del fns
            summary.append(f"| {mode} | {geomean(ratios['resnet50']):.2f} | {geomean(ratios['all']):.2f} | "
                           f"{geomean(ratios['user']):.2f} |")
            path.write_text("\n".join(lines + ["", f"(written after {mode}; the run goes on)", ""]))
    lines += ["", "## Summary (geomean time ratios over the timed rows; target for fp16/bf16 on ResNet-50: <= 1.5)",
              "", "| mode | myconv/cuDNN ResNet-50 | myconv/cuDNN all | myconv/user all |", "|---|---|---|---|",
              *summary, "", f"Rows off float64 (not timed): {inaccurate}", ""]
    path.write_text("\n".join(lines))
    print("\n".join(lines[-(len(summary) + 6):]))
    if inaccurate:
        raise SystemExit(f"{inaccurate} rows are off float64 beyond the tolerance")


def forward_kernel(layer, batch: int, dtype: torch.dtype, tf32: bool, arch: int) -> str:
    """The kernel myconv's engine choice gives this layer's forward."""
    if layer.hwio[2] == 1:
        return "direct depthwise"
    engine, kernel, _ = torch.ops.myconv.cuda_engine([batch, *layer.hwc], list(layer.hwio), dtype,
                                                     [layer.stride] * 2, "SAME", [1, 1], arch, tf32)
    return kernel if engine == "implicit_gemm" else "im2row"


def driver_version() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (nvidia-smi failed)"

if __name__ == "__main__":
    main()
