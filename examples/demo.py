"""myconv demo: a TF-style SAME conv on random NHWC data, checked against torch.conv2d, einsum
and matmul (im2col) references, and timed against torch.conv2d on channels_last tensors."""

import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import myconv

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
from references import REFERENCES, pads_tblr, relative_error  # noqa: E402


def median_ms(fn, repeats=15):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(8, 56, 57, 64)              # NHWC, odd width: asymmetric SAME padding
    w = torch.randn(3, 3, 64, 128)              # HWIO
    b = torch.randn(128)
    stride, dilation = (2, 2), (1, 1)
    out = myconv.conv2d(x, w, strides=stride, padding="SAME", bias=b)
    print(f"myconv {myconv.__version__} (CUDA kernels compiled: {myconv.cuda_compiled()}), torch {torch.__version__}")
    print(f"input {tuple(x.shape)} NHWC, filter {tuple(w.shape)} HWIO, stride {stride}, SAME "
          f"-> output {tuple(out.shape)}, TF padding [top, bottom, left, right] = "
          f"{pads_tblr(x.shape, w.shape, stride, 'SAME', dilation)}")
    worst = 0.0
    for name, reference in REFERENCES.items():
        err = relative_error(out, reference(x, w, stride, "SAME", dilation, b))
        worst = max(worst, err)
        print(f"  parity vs {name:<6}: relative error {err:.2e}")

    t, bt, l, r = pads_tblr(x.shape, w.shape, stride, "SAME", dilation)
    x_cl = F.pad(x.permute(0, 3, 1, 2), (l, r, t, bt)).contiguous(memory_format=torch.channels_last)
    w_cl = w.permute(3, 2, 0, 1).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        mine = median_ms(lambda: myconv.conv2d(x, w, stride, "SAME", bias=b))
        theirs = median_ms(lambda: F.conv2d(x_cl, w_cl, b, stride=stride))
    print(f"timing (median, {torch.get_num_threads()} threads): myconv {mine:.2f} ms, "
          f"torch.conv2d channels_last {theirs:.2f} ms, ratio {mine / theirs:.2f}")
    if worst > 1e-5:
        raise SystemExit(f"parity FAILED: relative error {worst:.2e} > 1e-5")
    print("parity OK (fp32 relative error <= 1e-5)")


if __name__ == "__main__":
    main()
