"""The CPU microkernel family: every compiled instruction-set path runs the CPU parity and gradient
suites, the packed-filter and fused-epilogue tests (in a subprocess, since MYCONV_CPU_ISA is read once per process)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import myconv  # noqa: F401  (registers the ops)

ROOT = Path(__file__).resolve().parents[2]


def _cpu_flags() -> set[str]:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return set()
    return next((set(line.split(":", 1)[1].split()) for line in lines if line.startswith("flags")), set())


# What each compiled path needs from the CPU, worst to best (driver.cpp's cpu_has; NEON is part of
# AArch64's base architecture).
_ISA_FLAGS = {"scalar": set(), "avx2": {"avx2", "fma", "f16c"}, "avx512": {"avx2", "fma", "f16c", "avx512f"},
              "neon": set()}


# The instruction sets this build has kernels for (x86-64 builds: scalar, AVX2, AVX-512; AArch64
# builds: scalar, NEON; others: scalar).
_COMPILED = set(torch.ops.myconv.cpu_compiled_isas())


def test_selected_isa_is_the_best_compiled_one():
    runnable = [isa for isa, needs in _ISA_FLAGS.items() if needs <= _cpu_flags() and isa in _COMPILED]
    assert torch.ops.myconv.cpu_isa() == runnable[-1]


@pytest.mark.parametrize("isa", list(_ISA_FLAGS))
def test_every_compiled_path_passes_the_cpu_suites(isa):
    if isa not in _COMPILED:
        pytest.skip(f"this build has no {isa} kernels (another architecture, or its kernels switched off)")
    missing = _ISA_FLAGS[isa] - _cpu_flags()
    if missing:
        pytest.skip(f"this CPU lacks {', '.join(sorted(missing))}: the {isa} kernels cannot run here")
    env = dict(os.environ, MYCONV_CPU_ISA=isa)
    check = "import torch, myconv; print(torch.ops.myconv.cpu_isa())"
    assert subprocess.run([sys.executable, "-c", check], env=env, capture_output=True,
                          text=True, check=True).stdout.strip() == isa
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cpu or tile_kernels or summing",
         "tests/python/test_parity.py", "tests/python/test_gradients.py", "tests/python/test_packed_filters.py",
         "tests/python/test_fused.py"],
        env=env, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(f"MYCONV_CPU_ISA={isa}: {result.stdout.strip().splitlines()[-1]}")


def test_input_gradients_forced_through_the_phases():
    # Small strided input gradients run im2row + GEMM (a call's fixed cost per phase); forced, the
    # suites' small shapes check the phases too. glibc poisons every allocation (MALLOC_PERTURB_,
    # none served by mmap, which zeroes): a phase that leaves its rows or columns of the input
    # gradient unwritten leaves garbage there (0x5454... bytes: float32 3.6e12, float16 69.25).
    env = dict(os.environ, MYCONV_CPU_DGRAD="phases", MALLOC_PERTURB_="171", MALLOC_MMAP_THRESHOLD_=str(1 << 30))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cpu",
         "tests/python/test_gradients.py", "tests/python/test_transpose.py", "tests/python/test_tf_fixtures.py"],
        env=env, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    bad = subprocess.run([sys.executable, "-c", "import torch, myconv; x = torch.randn(1, 4, 4, 2, requires_grad=True); "
                          "myconv.conv2d(x, torch.randn(3, 3, 2, 2), 2).sum().backward()"],
                         env=dict(os.environ, MYCONV_CPU_DGRAD="fast"), capture_output=True, text=True)
    assert bad.returncode != 0 and 'MYCONV_CPU_DGRAD must be auto or phases (or unset), got "fast"' in bad.stderr


def test_filter_gradients_forced_through_the_gemm():
    # Float32 and half-type filter gradients run on the tile kernels (tests/cpp/test_cpu_engine.cpp),
    # float64 ones through im2row + GEMM; forced, the suites check the GEMM's float32 and half-type
    # paths too (chunks of pixels, workspace tiles), every allocation poisoned as above.
    env = dict(os.environ, MYCONV_CPU_WGRAD="gemm", MALLOC_PERTURB_="171", MALLOC_MMAP_THRESHOLD_=str(1 << 30))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cpu or chunks or filter_gradients",
         "tests/python/test_gradients.py", "tests/python/test_transpose.py"],
        env=env, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(f"MYCONV_CPU_WGRAD=gemm: {result.stdout.strip().splitlines()[-1]}")


def test_unknown_filter_gradient_engine_is_a_clear_error():
    code = ("import torch, myconv; x = torch.randn(1, 4, 4, 2); w = torch.randn(3, 3, 2, 2, requires_grad=True); "
            "myconv.conv2d(x, w).sum().backward()")
    bad = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, MYCONV_CPU_WGRAD="tiles"),
                         capture_output=True, text=True)
    assert bad.returncode != 0
    assert 'MYCONV_CPU_WGRAD must be auto or gemm (or unset), got "tiles"' in bad.stderr


def test_unknown_isa_is_a_clear_error():
    env = dict(os.environ, MYCONV_CPU_ISA="avx9000")
    code = "import torch, myconv; myconv.conv2d(torch.randn(1, 4, 4, 2), torch.randn(3, 3, 2, 2))"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert 'MYCONV_CPU_ISA must be one of scalar, avx2, avx512, neon (or unset), got "avx9000"' in result.stderr


def _bfloat16_kernel_sums(x, w, b, dilation):
    """What the bfloat16 tile kernel computes (stride 1, SAME): float32 sums from the bias on, over
    the reduction's segments in order (a filter row's KW x C values with one group and no width
    dilation, else a tap's Cg values), each segment in pairs of values, the pair's second product
    added before its first (vdpbf16ps); every product of two bfloat16 values is exact in float32,
    every addition rounded. Then rounded to bfloat16 once."""
    n, h, width, c = x.shape
    kh, kw, cg, o = w.shape
    groups, og = c // cg, o // (c // cg)
    pad_h, pad_w = (kh - 1) * dilation, (kw - 1) * dilation
    padded = torch.nn.functional.pad(x.float(), (0, 0, pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
    windows = torch.stack([torch.stack([padded[:, i * dilation:i * dilation + h, j * dilation:j * dilation + width]
                                        for j in range(kw)], 3) for i in range(kh)], 3)  # [n, h, w, kh, kw, c]
    whole_rows = groups == 1 and dilation == 1
    segment_shape = (kh, kw * cg) if whole_rows else (kh * kw, cg)
    sums = b.float().expand(n, h, width, o).clone()
    for g in range(groups):
        values = windows[..., g * cg:(g + 1) * cg].reshape(n, h, width, *segment_shape)
        filters = w.float()[..., g * og:(g + 1) * og].reshape(*segment_shape, og)
        acc = sums[..., g * og:(g + 1) * og]
        for s in range(segment_shape[0]):
            for k in range(0, segment_shape[1], 2):
                for value in (k + 1, k) if k + 1 < segment_shape[1] else (k,):
                    acc = acc + values[..., s, value, None] * filters[s, value]
        sums[..., g * og:(g + 1) * og] = acc
    return sums.to(torch.bfloat16)


def test_bfloat16_tile_kernel_where_the_cpu_has_it():
    needs = {"avx512f", "avx512bw", "avx512vl", "avx512_bf16"}
    expected = needs <= _cpu_flags() and torch.ops.myconv.cpu_isa() == "avx512"  # (avx512 only where compiled)
    assert torch.ops.myconv.cpu_bfloat16_tile_kernel() == expected
    print(f"bfloat16 tile kernel: {'vdpbf16ps' if expected else 'float32 kernel on widened inputs'}")


# The microkernels' half-type path widens the inputs, runs the float32 kernel and narrows the
# output: the result must be the float32 result on the widened inputs, rounded once (to nearest
# even, as torch's own conversion), whatever the instruction set. The depthwise kernels convert
# in registers: C = 20 leaves a tail of 4 channels (AVX2 and AVX-512), a dilated filter runs the
# generic pixel blocks instead of the strips. Where bfloat16 runs its own tile kernel, its dense
# and grouped results must be its pairwise float32 sums rounded once (_bfloat16_kernel_sums), also
# for segments of odd length (a 3x3 filter row of 3 channels, a dilated tap of 5).
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape, dilation", [(((2, 9, 11, 24), (3, 3, 24, 144)), 1),
                                             (((1, 9, 10, 3), (3, 3, 3, 20)), 1),
                                             (((1, 8, 9, 5), (3, 3, 5, 18)), 2),
                                             (((1, 7, 30, 16), (1, 1, 16, 40)), 1),
                                             (((2, 13, 17, 48), (3, 3, 1, 48)), 1),
                                             (((3, 15, 29, 20), (7, 7, 1, 20)), 1),
                                             (((2, 13, 17, 20), (3, 3, 1, 20)), 2),
                                             (((1, 8, 9, 6), (5, 5, 2, 9)), 1)],
                         ids=["dense", "dense odd rows", "dense dilated odd taps", "pointwise", "depthwise",
                              "depthwise 7x7 tail", "depthwise dilated tail", "grouped"])
def test_cpu_half_types_are_the_float32_result_rounded(shape, dilation, dtype):
    x = (torch.randn(shape[0]) * 4).to(dtype)
    w = torch.randn(shape[1]).to(dtype)
    b = torch.randn(shape[1][-1]).to(dtype)
    x[0, 2, 3, 1] = float("nan")
    x[-1, 1, -1, 0] = float("inf")
    # inf - inf in every window over both pixels: x86's default NaN, whose sign bit is set
    x[0, 4, 4, 0], x[0, 4, 5, 0] = float("inf"), float("-inf")
    w[:, :, 0] = w[:, :, 0].abs()
    out = myconv.conv2d(x, w, 1, "SAME", dilation, bias=b)
    depthwise = shape[1][2] == 1 and shape[1][3] == shape[0][3]
    if dtype == torch.bfloat16 and torch.ops.myconv.cpu_bfloat16_tile_kernel() and not depthwise:
        expected = _bfloat16_kernel_sums(x, w, b, dilation)
    else:
        expected = myconv.conv2d(x.float(), w.float(), 1, "SAME", dilation, bias=b.float()).to(dtype)
    assert torch.equal(out.isnan(), expected.isnan()) and out.isnan().any()
    finite = ~expected.isnan()
    assert torch.equal(out[finite].view(torch.int16), expected[finite].view(torch.int16))
    if dtype == torch.bfloat16:  # c10 rounds every NaN to the quiet NaN 0x7FC0
        assert (out[~finite].view(torch.int16) == 0x7FC0).all()


def test_an_instruction_set_the_build_lacks_is_a_clear_error():
    missing = [isa for isa in _ISA_FLAGS if isa not in _COMPILED]
    if not missing:
        pytest.skip("this build has every instruction set's kernels (the portable build checks this)")
    result = subprocess.run([sys.executable, "-c", "import torch, myconv; print(torch.ops.myconv.cpu_isa())"],
                            env=dict(os.environ, MYCONV_CPU_ISA=missing[0]), capture_output=True, text=True)
    assert result.returncode != 0 and f"this build has no {missing[0]} kernels" in result.stderr
