"""Saves a small scripted NHWC network built on torch.ops.myconv.conv2d (model.pt) and a fixed
input with the output Python computes for it (data.pt), for the C++ example to reproduce."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_net import make_model, save_data  # noqa: E402


def main(out_dir: Path) -> None:
    model = torch.jit.script(make_model())
    x = torch.randn(2, 17, 20, 3)
    with torch.no_grad():
        expected = model(x)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(str(out_dir / "model.pt"))
    save_data(out_dir / "data.pt", input=x, expected=expected)
    print(f"saved {out_dir / 'model.pt'} and {out_dir / 'data.pt'}: output {tuple(expected.shape)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
