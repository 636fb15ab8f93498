"""The CPU microkernel family: every compiled instruction-set path runs the CPU parity and gradient
suites (in a subprocess, since MYCONV_CPU_ISA is read once per process)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import myconv  # noqa: F401  (registers the ops)

ROOT = Path(__file__).resolve().parents[2]


def _cpu_has_avx2() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx2 " in flags.replace("\n", " ") and " fma " in flags.replace("\n", " ")


def test_selected_isa_is_the_best_compiled_one():
    assert torch.ops.myconv.cpu_isa() == ("avx2" if _cpu_has_avx2() else "scalar")


@pytest.mark.parametrize("isa", ["scalar", "avx2"])
def test_every_compiled_path_passes_the_cpu_suites(isa):
    if isa == "avx2" and not _cpu_has_avx2():
        pytest.skip("this CPU has no AVX2 + FMA: the avx2 tile kernel cannot run here")
    env = dict(os.environ, MYCONV_CPU_ISA=isa)
    check = "import torch, myconv; print(torch.ops.myconv.cpu_isa())"
    assert subprocess.run([sys.executable, "-c", check], env=env, capture_output=True,
                          text=True, check=True).stdout.strip() == isa
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cpu",
         "tests/python/test_parity.py", "tests/python/test_gradients.py"],
        env=env, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(f"MYCONV_CPU_ISA={isa}: {result.stdout.strip().splitlines()[-1]}")


def test_unknown_isa_is_a_clear_error():
    env = dict(os.environ, MYCONV_CPU_ISA="avx9000")
    code = "import torch, myconv; myconv.conv2d(torch.randn(1, 4, 4, 2), torch.randn(3, 3, 2, 2))"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert 'MYCONV_CPU_ISA must be one of scalar, avx2 (or unset), got "avx9000"' in result.stderr
