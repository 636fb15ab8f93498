"""How the op is registered: opcheck, torch.compile, and the CUDA kernel where it must exist."""

import os
import shutil

import pytest
import torch

import myconv

# The Meta kernel computes shapes from concrete sizes, so dynamic-shape tracing
# (opcheck's test_aot_dispatch_dynamic) is out of scope; static-shape compile is tested below.
OPCHECK_TESTS = ("test_schema", "test_autograd_registration", "test_faketensor")


def _samples(device):
    x = torch.randn(2, 9, 8, 6, device=device)
    yield torch.ops.myconv.conv2d.default, (x, torch.randn(3, 3, 6, 4, device=device), [2, 1], "SAME", [1, 2], torch.randn(4, device=device))
    yield torch.ops.myconv.conv2d.default, (x, torch.randn(3, 3, 1, 12, device=device), [1, 1], "VALID", [1, 1], None)
    yield torch.ops.myconv.conv2d.explicit, (x, torch.randn(2, 3, 3, 4, device=device), [1, 2], [1, 0, 2, 1], [1, 1], None)
    yield torch.ops.myconv.conv2d.default, (x.requires_grad_(), torch.randn(1, 1, 6, 4, device=device), [1, 1], "SAME", [1, 1], None)


@pytest.mark.parametrize("index", range(4))
def test_opcheck(index, device):
    op, args = list(_samples(device))[index]
    torch.library.opcheck(op, args, test_utils=OPCHECK_TESTS)


def test_torch_compile(device):
    layer = myconv.Conv2d(6, 4, kernel_size=3, strides=2).to(device)
    x = torch.randn(2, 9, 8, 6, device=device)
    with torch.no_grad():
        expected = layer(x)
        compiled = torch.compile(lambda t: torch.relu(layer(t)), fullgraph=True, dynamic=False)
        torch.testing.assert_close(compiled(x), torch.relu(expected))


def test_meta_kernel_gives_shape_without_data():
    out = torch.ops.myconv.conv2d(torch.empty(4, 33, 17, 8, device="meta"),
                                  torch.empty(5, 5, 8, 16, device="meta"), [2, 2], "SAME")
    assert out.device.type == "meta" and out.shape == (4, 17, 9, 16)


def _cuda_expected() -> bool:
    """The library must carry the CUDA kernels wherever they can be built."""
    flag = os.environ.get("MYCONV_CUDA", "").strip().upper()
    if flag in ("0", "OFF"):
        return False
    return flag in ("1", "ON") or (torch.version.cuda is not None and shutil.which("nvcc") is not None)


def test_library_has_cuda_kernels_where_expected():
    if not _cuda_expected():
        pytest.skip("CUDA build not expected: no nvcc or CPU-only torch, or MYCONV_CUDA=0")
    assert myconv.cuda_compiled(), (
        "nvcc and a CUDA-enabled torch are present but libmyconv has no CUDA kernel: "
        "the build silently fell back to CPU-only"
    )


def test_cpu_and_meta_kernels_registered():
    for key in ("CPU", "Meta", "Autograd"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key("myconv::conv2d", key), key
