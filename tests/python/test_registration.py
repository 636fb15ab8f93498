"""How the op is registered: opcheck, torch.compile, and the CUDA kernel where it must exist."""

import os
import shutil

import pytest
import torch

import myconv

def _samples(device):
    def t(*shape, grad=True):
        return torch.randn(*shape, device=device, requires_grad=grad)

    ops = torch.ops.myconv
    yield ops.conv2d.default, (t(2, 9, 8, 6), t(3, 3, 6, 4), [2, 1], "SAME", [1, 2], t(4))
    yield ops.conv2d.default, (t(2, 9, 8, 6), t(3, 3, 1, 12), [1, 1], "VALID", [1, 1], None)
    yield ops.conv2d.explicit, (t(2, 9, 8, 6), t(2, 3, 3, 4), [1, 2], [1, 0, 2, 1], [1, 1], None)
    yield ops.conv2d.default, (t(2, 9, 8, 6), t(1, 1, 6, 4, grad=False), [1, 1], "SAME", [1, 1], None)
    yield ops.conv2d_backward.default, (t(2, 5, 8, 4), t(2, 9, 8, 6), t(3, 3, 6, 4), [2, 1], "SAME", [1, 2], [True, True, True])
    yield ops.conv2d_backward.default, (t(2, 7, 6, 12), t(2, 9, 8, 6), t(3, 3, 1, 12), [1, 1], "VALID", [1, 1], [True, False, True])
    yield ops.conv2d_backward.explicit, (t(2, 9, 5, 4), t(2, 9, 8, 6), t(2, 3, 3, 4), [1, 2], [1, 0, 2, 1], [1, 1], [False, True, False])


SAMPLES = len(list(_samples("cpu")))


@pytest.mark.parametrize("index", range(SAMPLES))
def test_opcheck(index, device):
    # Every default test: schema, autograd registration, fake tensors and the AOT dispatch tests
    # with static and dynamic shapes (the Meta kernels read symbolic sizes).
    op, args = list(_samples(device))[index]
    torch.library.opcheck(op, args)


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
    for op in ("conv2d", "conv2d.explicit", "conv2d_backward", "conv2d_backward.explicit"):
        for key in ("CPU", "Meta", "Autograd"):
            assert torch._C._dispatch_has_kernel_for_dispatch_key(f"myconv::{op}", key), (op, key)
        name, _, overload = op.partition(".")
        overload_op = getattr(getattr(torch.ops.myconv, name), overload or "default")
        assert torch.Tag.pt2_compliant_tag in overload_op.tags, op
