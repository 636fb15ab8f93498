"""Saves a small scripted NHWC network built on torch.ops.myconv.conv2d (model.pt) and a fixed
input with the output Python computes for it (data.pt), for the C++ example to reproduce."""

import sys
from pathlib import Path

import torch

import myconv


class TinyNHWCNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = myconv.Conv2d(3, 16, kernel_size=3, strides=2, padding="SAME")
        self.depthwise = myconv.Conv2d(16, 16, kernel_size=3, padding="SAME", groups=16)
        self.head = myconv.Conv2d(16, 8, kernel_size=1, padding=((0, 1), (1, 0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = torch.relu(self.depthwise(x))
        return self.head(x)


class Data(torch.nn.Module):
    def __init__(self, input: torch.Tensor, expected: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("input", input)
        self.register_buffer("expected", expected)


def main(out_dir: Path) -> None:
    torch.manual_seed(0)
    model = torch.jit.script(TinyNHWCNet().eval())
    x = torch.randn(2, 17, 20, 3)
    with torch.no_grad():
        expected = model(x)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(str(out_dir / "model.pt"))
    torch.jit.script(Data(x, expected)).save(str(out_dir / "data.pt"))
    print(f"saved {out_dir / 'model.pt'} and {out_dir / 'data.pt'}: output {tuple(expected.shape)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
