"""The small NHWC network the C++ examples run (TorchScript and AOTInductor), and how they receive
inputs and Python's outputs to compare with: a scripted module whose buffers hold the tensors."""

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
    """Named tensors for a C++ program: torch::jit::load(path).attr(name).toTensor()."""

    def __init__(self, tensors: dict) -> None:
        super().__init__()
        for name, tensor in tensors.items():
            self.register_buffer(name, tensor)


def save_data(path: Path, **tensors: torch.Tensor) -> None:
    torch.jit.script(Data(tensors)).save(str(path))


def make_model() -> TinyNHWCNet:
    torch.manual_seed(0)
    return TinyNHWCNet().eval()
