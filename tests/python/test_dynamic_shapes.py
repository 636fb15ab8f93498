"""Symbolic shapes: torch.compile(dynamic=True) and torch.export with dynamic batch/height/width."""

import pytest
import torch
import torch._dynamo.testing
from torch.export import Dim

import myconv


class SmallNet(torch.nn.Module):
    """SAME stride 2, VALID dilated (needs height/width >= 9), explicit padding and a 1x1 conv."""

    def __init__(self):
        super().__init__()
        self.stem = myconv.Conv2d(3, 8, 3, strides=2, padding="same")
        self.valid = myconv.Conv2d(8, 6, 3, padding="VALID", dilation_rate=2)
        self.explicit = myconv.Conv2d(6, 6, (2, 3), padding=((1, 0), (2, 1)), groups=3)
        self.head = myconv.Conv2d(6, 4, 1)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.valid(x))
        return self.head(self.explicit(x))


SHAPES = [(2, 24, 25), (3, 31, 28), (4, 40, 33)]  # three batch sizes, three image sizes


@pytest.fixture
def model(device):
    torch.manual_seed(0)
    return SmallNet().to(device)


def test_compile_dynamic_one_graph_for_all_shapes(model, device):
    counter = torch._dynamo.testing.CompileCounterWithBackend("inductor")
    compiled = torch.compile(model, fullgraph=True, dynamic=True, backend=counter)
    with torch.no_grad():
        for n, h, w in SHAPES:
            x = torch.randn(n, h, w, 3, device=device)
            torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)
    assert counter.frame_count == 1


def test_compile_dynamic_training_step_matches_eager(model, device):
    counter = torch._dynamo.testing.CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(model, fullgraph=True, dynamic=True, backend=counter)
    for n, h, w in SHAPES:
        x = torch.randn(n, h, w, 3, device=device)
        model.zero_grad()
        model(x).square().mean().backward()
        expected = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        compiled(x).square().mean().backward()
        for got, ref in zip((p.grad for p in model.parameters()), expected):
            torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    assert counter.frame_count == 1


def test_export_with_dynamic_batch_height_width(model, device):
    batch, height, width = Dim("batch", max=64), Dim("height", min=11, max=512), Dim("width", min=11, max=512)
    example = torch.randn(2, 24, 25, 3, device=device)
    program = torch.export.export(model, (example,), dynamic_shapes={"x": {0: batch, 1: height, 2: width}})
    ops = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert {"myconv.conv2d.default", "myconv.conv2d.explicit"} <= ops
    exported = program.module()
    for n, h, w in SHAPES + [(1, 11, 12)]:
        x = torch.randn(n, h, w, 3, device=device)
        torch.testing.assert_close(exported(x), model(x))


def test_export_turns_the_valid_fit_into_a_range_constraint(model, device):
    # The dilated VALID layer needs ceil(h / 2) >= 5: a Dim allowing smaller images is refused with
    # the range that works, instead of failing inside the op.
    height = Dim("height", min=2, max=512)
    example = torch.randn(2, 24, 25, 3, device=device)
    with pytest.raises(torch._dynamo.exc.UserError, match=r"height = Dim\('height', min=9"):
        torch.export.export(model, (example,), dynamic_shapes={"x": {1: height}})
    # With automatic dims, export infers that range itself.
    program = torch.export.export(model, (example,), dynamic_shapes={"x": {1: Dim.AUTO}})
    (height_range,) = program.range_constraints.values()
    assert height_range.lower == 9
