"""myconv: TensorFlow-style 2-D convolution for PyTorch (NHWC input, HWIO filter, TF padding).

Importing the package registers ``torch.ops.myconv.conv2d`` (CPU, Meta and, when built, CUDA).
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version as _package_version
from pathlib import Path

import torch


#: The installed C++ package inside the Python package: pass it to CMake as CMAKE_PREFIX_PATH
#: (with torch.utils.cmake_prefix_path) and find_package(myconv) links this very library.
cmake_prefix_path = str(Path(__file__).resolve().parent)
LIBRARY_PATH = Path(cmake_prefix_path) / "lib" / "libmyconv.so"


def _major_minor(version: str) -> str:
    return ".".join(version.split("+")[0].split(".")[:2])


def _build_info(library: Path) -> tuple[str, bool]:
    """(torch major.minor, links CUDA) that the library recorded at build time (a string in the
    file, see csrc/myconv/conv2d.cpp), read without loading it."""
    match = re.search(rb"myconv-build-info:torch=(\d+\.\d+)[^;]*;cuda=([01])", library.read_bytes())
    if match is None:
        raise ImportError(f"myconv: {library} carries no build information; rebuild it")
    return match[1].decode(), match[2] == b"1"


def _check_torch_matches(built: tuple[str, bool], torch_version: str, torch_cuda: str | None) -> None:
    """ImportError unless torch is the major.minor version, and CUDA-enabled where the library
    uses CUDA, that the library was built against: another torch gives undefined symbols."""
    running = (_major_minor(torch_version), torch_cuda is not None)
    if built[0] != running[0] or (built[1] and not running[1]):
        def describe(version, cuda):
            return f"torch {version} ({'CUDA' if cuda else 'CPU-only'})"

        raise ImportError(
            f"myconv was built against {describe(*built)} but {describe(*running)} is imported; "
            "rebuild myconv against this torch: `pip install --no-build-isolation .` "
            "(or `-e .` in a source tree)"
        )


def _load_library() -> None:
    # A host process that already linked libmyconv (a C++ program embedding Python) has the op;
    # loading a second copy would fail on the duplicate TORCH_LIBRARY registration.
    if hasattr(torch.ops.myconv, "conv2d"):
        return
    library = LIBRARY_PATH
    if not library.exists():
        raise ImportError(
            f"myconv: compiled library {library} is missing; build it with "
            "`pip install --no-build-isolation -e .` from the repository root"
        )
    _check_torch_matches(_build_info(library), torch.__version__, torch.version.cuda)
    torch.ops.load_library(str(library))


_load_library()

from myconv.ops import (  # noqa: E402
    conv2d, conv2d_prepacked, conv2d_transpose, cuda_compiled, output_shape, prepack_filter,
)
from myconv.nn import ACTIVATIONS, Conv2d, Conv2DTranspose, SeparableConv2D  # noqa: E402
from myconv.keras import from_keras  # noqa: E402

try:
    __version__ = _package_version("myconv")
except PackageNotFoundError:  # imported from a source tree that was never pip-installed
    _source_version = Path(__file__).resolve().parents[2] / "VERSION"
    __version__ = _source_version.read_text().strip() if _source_version.exists() else "unknown"

__all__ = [
    "ACTIVATIONS", "Conv2d", "Conv2DTranspose", "cmake_prefix_path", "conv2d", "conv2d_prepacked", "conv2d_transpose",
    "cuda_compiled", "from_keras", "output_shape", "prepack_filter", "SeparableConv2D", "__version__",
]
