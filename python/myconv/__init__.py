"""myconv: TensorFlow-style 2-D convolution for PyTorch (NHWC input, HWIO filter, TF padding).

Importing the package registers ``torch.ops.myconv.conv2d`` (CPU, Meta and, when built, CUDA).
"""

from importlib.metadata import PackageNotFoundError, version as _package_version
from pathlib import Path

import torch


def _load_library() -> None:
    # A host process that already linked libmyconv (a C++ program embedding Python) has the op;
    # loading a second copy would fail on the duplicate TORCH_LIBRARY registration.
    if hasattr(torch.ops.myconv, "conv2d"):
        return
    library = Path(__file__).with_name("libmyconv.so")
    if not library.exists():
        raise ImportError(
            f"myconv: compiled library {library} is missing; build it with "
            "`pip install --no-build-isolation -e .` from the repository root"
        )
    torch.ops.load_library(str(library))


_load_library()

from myconv.ops import conv2d, cuda_compiled, output_shape  # noqa: E402
from myconv.nn import Conv2d  # noqa: E402
from myconv.keras import from_keras  # noqa: E402

try:
    __version__ = _package_version("myconv")
except PackageNotFoundError:  # imported from a source tree that was never pip-installed
    __version__ = "unknown"

__all__ = ["Conv2d", "conv2d", "cuda_compiled", "from_keras", "output_shape", "__version__"]
