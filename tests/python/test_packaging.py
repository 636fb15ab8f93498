"""What ships: the package's library searches no directory of the build machine and not the
current directory (the installed CMake package is checked by `make test-examples`), shares
torch's libstdc++, and refuses, with a clear ImportError, a torch other than the one it was built
against."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import myconv

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from check_library import needed, search_paths, shares_libstdcxx, unsafe_entries  # noqa: E402


@pytest.mark.skipif(shutil.which("readelf") is None, reason="needs binutils' readelf")
def test_package_library_has_a_safe_search_path():
    library = myconv.LIBRARY_PATH
    assert library.exists()
    # An editable install (the library in the source tree) also names its torch's lib dir.
    editable = library.is_relative_to(Path(__file__).resolve().parents[2])
    allowed = (str(Path(torch.__file__).resolve().parent / "lib"),) if editable else ()
    assert unsafe_entries(str(library), allowed) == [], search_paths(str(library))
    assert "$ORIGIN/../../torch/lib" in search_paths(str(library))


@pytest.mark.skipif(shutil.which("readelf") is None, reason="needs binutils' readelf")
def test_package_library_shares_torchs_libstdcxx():
    library = str(myconv.LIBRARY_PATH)
    assert shares_libstdcxx(library), needed(library)


@pytest.mark.skipif(shutil.which("readelf") is None or shutil.which("g++") is None,
                    reason="needs binutils' readelf and g++")
def test_library_check_catches_a_static_libstdcxx(tmp_path):
    source = tmp_path / "formats.cpp"
    source.write_text('#include <sstream>\nstd::string formats(long v) { std::ostringstream s; s << v; return s.str(); }\n')
    for name, flags in (("shared", []), ("static", ["-static-libstdc++"])):
        built = subprocess.run(["g++", "-shared", "-fPIC", *flags, str(source), "-o", str(tmp_path / f"lib{name}.so")],
                               capture_output=True, text=True)
        if built.returncode != 0:
            pytest.skip(f"g++ cannot build the {name} case here: {built.stderr.strip()[-200:]}")
    assert shares_libstdcxx(str(tmp_path / "libshared.so"))
    assert not shares_libstdcxx(str(tmp_path / "libstatic.so"))


def test_package_carries_the_cmake_package():
    prefix = Path(myconv.cmake_prefix_path)
    assert (prefix / "include" / "myconv" / "conv2d.h").exists()
    assert (prefix / "lib" / "cmake" / "myconv" / "myconvConfig.cmake").exists()
    assert (prefix / "lib" / "cmake" / "myconv" / "myconvTargets.cmake").exists()


def test_library_records_the_torch_it_was_built_against():
    library = myconv.LIBRARY_PATH
    version, cuda = myconv._build_info(library)
    assert version == myconv._major_minor(torch.__version__)
    assert cuda == myconv.cuda_compiled()


@pytest.mark.parametrize("built, running, cuda", [
    (("2.11", False), "2.10.1", None),          # another minor version
    (("2.11", True), "2.11.0+cpu", None),       # CUDA library, CPU-only torch
    (("2.9", True), "2.11.0+cu130", "13.0"),
])
def test_a_different_torch_is_an_import_error_naming_both(built, running, cuda):
    with pytest.raises(ImportError, match=rf"built against torch {built[0]} .* but torch "
                                          rf"{running[:4]} .* is imported; rebuild myconv"):
        myconv._check_torch_matches(built, running, cuda)


def test_a_matching_torch_passes():
    myconv._check_torch_matches(("2.11", False), "2.11.0+cu130", "13.0")  # CPU-only build, CUDA torch
    myconv._check_torch_matches(("2.11", True), "2.11.2", "13.0")


def test_import_under_another_torch_fails_cleanly(tmp_path):
    # A fresh interpreter whose torch claims another version: the import must stop before loading.
    code = "import torch; torch.__version__ = '2.3.1'; import myconv"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode != 0
    assert "ImportError: myconv was built against torch" in result.stderr
    assert "but torch 2.3" in result.stderr and "undefined symbol" not in result.stderr


def test_version_is_the_projects_also_from_a_source_tree():
    # Installed: the package metadata; imported from python/ of a checkout: the VERSION file.
    assert myconv.__version__ == (Path(__file__).resolve().parents[2] / "VERSION").read_text().strip()
