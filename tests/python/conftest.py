import os

# cuBLAS needs this for deterministic mode, which the poison fixture below turns on.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import pytest  # noqa: E402
import torch  # noqa: E402

import myconv  # noqa: E402,F401  (registers the op)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return request.param


@pytest.fixture(autouse=True)
def poison_uninitialized_memory():
    """Makes every torch.empty (the op's output included) start as NaN, so an unwritten output
    element cannot pass a parity check by being zero by chance."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    yield
    torch.use_deterministic_algorithms(previous)


@pytest.fixture(autouse=True)
def fresh_seed(request):
    torch.manual_seed(hash(request.node.nodeid) % (2**31))
