"""Builds libmyconv with the project's CMakeLists.txt (the one build of csrc/) and installs the
CMake package into the Python package: myconv/lib/libmyconv.so (loaded by `import myconv`, and
linked by C++ programs), myconv/include/myconv/*.h and myconv/lib/cmake/myconv/ (so C++ users of
a pip-installed myconv get find_package(myconv) from `myconv.cmake_prefix_path`).

Use `pip install --no-build-isolation -e .` (or `pip wheel --no-build-isolation --no-deps .`): the
library must compile against the torch that is already installed, not one that build isolation
would download. MYCONV_CUDA=0/1 forces the CUDA kernels off/on (default: built when nvcc and a
CUDA-enabled torch are present).
"""

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
LIBRARY = "libmyconv.so"


class CMakeBuild(build_ext):
    """Configures and builds the `myconv` CMake target, then installs the package (library,
    headers, CMake config) into the Python package directory."""

    def get_ext_filename(self, ext_name):
        return os.path.join(*ext_name.split(".")[:-1], LIBRARY)

    def _staging(self) -> Path:
        """The package directory under build_lib that the CMake install fills."""
        return Path(self.build_lib) / "myconv"

    def build_extension(self, ext):
        import torch

        build_dir = Path(os.environ.get("MYCONV_CMAKE_BUILD_DIR", ROOT / "build" / "cmake"))
        configure = [
            "cmake", "-S", str(ROOT), "-B", str(build_dir),
            f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
            "-DMYCONV_PYTHON_PACKAGE=ON",
            # The package is the library alone: installing it must not need GoogleTest
            # (`make test-cpp` configures the same tree with the tests on).
            "-DMYCONV_BUILD_TESTS=OFF",
            # An editable install's library stays in the source tree: it must find torch itself.
            f"-DMYCONV_EDITABLE={'ON' if self.inplace or getattr(self, 'editable_mode', False) else 'OFF'}",
        ]
        cutlass = cutlass_source_dir()
        if cutlass:
            configure.append(f"-DMYCONV_CUTLASS_DIR={cutlass}")
        if shutil.which("ninja") and not (build_dir / "CMakeCache.txt").exists():
            configure += ["-G", "Ninja"]
        # Always passed, so a cached choice from an earlier build never sticks silently.
        cuda = os.environ.get("MYCONV_CUDA", "AUTO").strip().upper()
        configure.append(f"-DMYCONV_CUDA={ {'1': 'ON', '0': 'OFF'}.get(cuda, cuda) }")
        jobs = os.environ.get("MAX_JOBS", str(os.cpu_count() or 1))
        subprocess.run(configure, check=True)
        subprocess.run(["cmake", "--build", str(build_dir), "--target", "myconv", "-j", jobs],
                       check=True)
        staging = self._staging()
        shutil.rmtree(staging / "lib", ignore_errors=True)
        shutil.rmtree(staging / "include", ignore_errors=True)
        subprocess.run(["cmake", "--install", str(build_dir), "--prefix", str(staging)], check=True)

    def _package_dir(self) -> Path:
        return Path(self.get_finalized_command("build_py").get_package_dir("myconv"))

    def copy_extensions_to_source(self):
        # In-place and editable builds: the whole installed package (headers and CMake config
        # besides the library) goes into the source tree's package; the copy makes no folders.
        for path in self._staging().rglob("*"):
            if path.is_file() and not path.name.endswith(".py"):
                target = self._package_dir() / path.relative_to(self._staging())
                target.parent.mkdir(parents=True, exist_ok=True)
                self.copy_file(str(path), str(target), level=self.verbose)


def cutlass_source_dir() -> str:
    """CUTLASS's headers from the pinned nvidia-cutlass package (requirements-cutlass.txt), if installed."""
    # Located, not imported: its Python modules need dependencies that are not installed.
    spec = importlib.util.find_spec("cutlass_library")
    return str(Path(spec.origin).resolve().parent / "source") if spec and spec.origin else ""


def torch_requirement() -> str:
    """The torch this build is for: the library loads only under the major.minor it compiled against."""
    import torch

    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    return f"torch=={major}.{minor}.*"


setup(
    version=(ROOT / "VERSION").read_text().strip(),
    install_requires=[torch_requirement()],
    package_data={"myconv": ["py.typed"]},
    package_dir={"": "python"},
    packages=["myconv"],
    ext_modules=[Extension("myconv.lib.libmyconv", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
)
