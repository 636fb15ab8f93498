"""Exports the small NHWC network with a dynamic batch (torch.export), compiles it ahead of time
with AOTInductor into model.pt2, and saves inputs of two batch sizes with Python's outputs for
them (data.pt), for the C++ example to reproduce."""

import sys
from pathlib import Path

import torch
from torch.export import Dim

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_net import make_model, save_data  # noqa: E402


def main(out_dir: Path) -> None:
    model = make_model()
    small, large = torch.randn(2, 17, 20, 3), torch.randn(5, 17, 20, 3)
    program = torch.export.export(model, (small,), dynamic_shapes={"x": {0: Dim("batch", max=1024)}})
    out_dir.mkdir(parents=True, exist_ok=True)
    package = torch._inductor.aoti_compile_and_package(program, package_path=str(out_dir / "model.pt2"))
    with torch.no_grad():
        save_data(out_dir / "data.pt", small=small, small_expected=model(small),
                  large=large, large_expected=model(large))
    print(f"saved {package} and {out_dir / 'data.pt'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
