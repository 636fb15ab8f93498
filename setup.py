"""Builds libmyconv with the project's CMakeLists.txt (the one build of csrc/) into the package.

Use `pip install --no-build-isolation -e .`: the library must compile against the torch that is
already installed, not one that build isolation would download. MYCONV_CUDA=0/1 forces the CUDA
kernels off/on (default: built when nvcc and a CUDA-enabled torch are present).
"""

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
LIBRARY = "libmyconv.so"


class CMakeBuild(build_ext):
    """Configures and builds the `myconv` CMake target, then places libmyconv.so in the package."""

    def get_ext_filename(self, ext_name):
        return os.path.join(*ext_name.split(".")[:-1], LIBRARY)

    def build_extension(self, ext):
        import torch

        build_dir = Path(os.environ.get("MYCONV_CMAKE_BUILD_DIR", ROOT / "build" / "cmake"))
        configure = [
            "cmake", "-S", str(ROOT), "-B", str(build_dir),
            f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
        ]
        if shutil.which("ninja") and not (build_dir / "CMakeCache.txt").exists():
            configure += ["-G", "Ninja"]
        # Always passed, so a cached choice from an earlier build never sticks silently.
        cuda = os.environ.get("MYCONV_CUDA", "AUTO").strip().upper()
        configure.append(f"-DMYCONV_CUDA={ {'1': 'ON', '0': 'OFF'}.get(cuda, cuda) }")
        jobs = os.environ.get("MAX_JOBS", str(os.cpu_count() or 1))
        subprocess.run(configure, check=True)
        subprocess.run(["cmake", "--build", str(build_dir), "--target", "myconv", "-j", jobs],
                       check=True)
        target = Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(build_dir / LIBRARY, target)
        subprocess.run(["cmake", f"-DLIBRARY={target}", "-P", str(ROOT / "cmake" / "remove_runpath.cmake")],
                       check=True)


setup(
    version=(ROOT / "VERSION").read_text().strip(),
    package_dir={"": "python"},
    packages=["myconv"],
    ext_modules=[Extension("myconv.libmyconv", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
)
