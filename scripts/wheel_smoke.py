"""Smoke test of an installed myconv wheel, run from outside the source tree:
python scripts/wheel_smoke.py SITE_DIR  (with SITE_DIR first on PYTHONPATH)."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

import myconv

site = Path(sys.argv[1]).resolve()
assert Path(myconv.__file__).resolve().is_relative_to(site), f"imported {myconv.__file__}, not the wheel's"
x = torch.randn(2, 10, 10, 4, dtype=torch.float64, requires_grad=True)
w = torch.randn(3, 3, 4, 5, dtype=torch.float64, requires_grad=True)
out = myconv.conv2d(x, w, 2, "SAME")  # TF SAME, 10 -> 5 with stride 2: pads (0, 1) on both axes
ref = F.conv2d(F.pad(x.permute(0, 3, 1, 2), (0, 1, 0, 1)), w.permute(3, 2, 0, 1), stride=2).permute(0, 2, 3, 1)
assert torch.allclose(out, ref), "forward"
grads = torch.autograd.grad(out.sum(), (x, w))
expected = torch.autograd.grad(ref.sum(), (x, w))
assert all(torch.allclose(a, b) for a, b in zip(grads, expected)), "gradients"
print(f"wheel OK: myconv {myconv.__version__} from {Path(myconv.__file__).parent}, "
      f"cmake_prefix_path {myconv.cmake_prefix_path}")
