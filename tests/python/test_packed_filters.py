"""Packed filters are never stale: every conv2d call packs the filter it is given, whatever wrote
to it since (paths that bump no version counter included), and a filter kept packed on purpose
(prepack_filter, Conv2d.freeze()) is checked against every call and every change the layer can see.
Also: geometry up to 2^63 - 1 gives the reference result or a clear error, never garbage.
test_microkernel.py runs this file under every instruction set the CPU has."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import myconv
from references import conv_direct, conv_torch, relative_error


def _check(x, w, bias=None, dilation=(1, 1), tolerance=1e-5):
    out = myconv.conv2d(x, w, 1, "SAME", dilation, bias=bias)
    ref = conv_torch(x.detach(), w.detach(), (1, 1), "SAME", dilation, None if bias is None else bias.detach())
    assert relative_error(out, ref) <= tolerance


def _write_through_numpy_view(w):
    w.detach().numpy()[...] = np.random.default_rng(1).standard_normal(w.shape, dtype=np.float32)


def _write_through_dlpack(w):
    array = np.from_dlpack(w.detach())  # memory shared with another framework
    array *= -3.0


def _optimizer_step(make):
    def step(w):
        optimizer = make([w])
        w.grad = torch.randn_like(w)
        optimizer.step()
    return step


# Each mutates the filter in place; several bump no version counter anywhere the op could see.
MUTATIONS = {
    "data.copy_": lambda w: w.data.copy_(torch.randn_like(w)),
    "data.mul_": lambda w: w.data.mul_(2.0),
    "numpy view": _write_through_numpy_view,
    "dlpack": _write_through_dlpack,
    "no_grad copy_": lambda w: torch.no_grad()(lambda: w.copy_(torch.randn_like(w)))(),
    "no_grad mul_": lambda w: torch.no_grad()(lambda: w.mul_(-1.5))(),
    "setitem": lambda w: torch.no_grad()(lambda: w.__setitem__((0, 0, 0, 0), 7.0))(),
    "sgd foreach": _optimizer_step(lambda p: torch.optim.SGD(p, lr=0.5, foreach=True)),
    "sgd fused": _optimizer_step(lambda p: torch.optim.SGD(p, lr=0.5, fused=True)),
    "adam foreach": _optimizer_step(lambda p: torch.optim.Adam(p, lr=0.5, foreach=True)),
    "adam fused": _optimizer_step(lambda p: torch.optim.Adam(p, lr=0.5, fused=True)),
    "adamw fused": _optimizer_step(lambda p: torch.optim.AdamW(p, lr=0.5, fused=True)),
}


@pytest.mark.parametrize("shape", [((2, 9, 9, 16), (3, 3, 16, 32)), ((1, 8, 9, 24), (3, 3, 1, 24)),
                                   ((1, 7, 8, 8), (1, 1, 8, 40))], ids=["dense", "depthwise", "pointwise"])
@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_cpu_every_mutation_path_is_seen_by_the_next_call(mutation, shape):
    x = torch.randn(shape[0])
    w = torch.nn.Parameter(torch.randn(shape[1]))
    _check(x, w)  # the call before the write
    MUTATIONS[mutation](w)
    _check(x, w)


def test_cpu_from_numpy_array_written_between_calls():
    array = np.random.default_rng(0).standard_normal((3, 3, 8, 16), dtype=np.float32)
    w, x = torch.from_numpy(array), torch.randn(1, 6, 7, 8)
    _check(x, w)
    array[:] = -array[::-1]
    _check(x, w)


def test_cpu_load_state_dict_is_seen_by_the_next_call():
    layer, other = myconv.Conv2d(8, 16, 3, padding="same"), myconv.Conv2d(8, 16, 3, padding="same")
    x = torch.randn(2, 6, 7, 8)
    layer(x)
    layer.load_state_dict(other.state_dict())
    torch.testing.assert_close(layer(x), other(x), rtol=0, atol=0)


def test_cpu_alternating_filters_that_share_one_storage():
    storage = torch.randn(2, 3, 3, 8, 16)
    x = torch.randn(1, 6, 6, 8)
    for step in range(20):
        w = storage[step % 2]
        _check(x, w)
        storage.data[step % 2].mul_(-1.0).add_(0.25)  # rewritten through .data: no version bump seen


def test_cpu_views_of_one_storage_in_two_dtypes():
    w16 = torch.randn(3, 3, 8, 32, dtype=torch.float16)
    wbf = w16.view(torch.bfloat16)
    wbf = torch.where(wbf.float().abs() < 1e4, wbf, 0.5)  # finite bfloat16 values, as a fresh tensor
    w16.view(torch.bfloat16).copy_(wbf)
    for w in (w16, w16.view(torch.bfloat16), w16):
        x = torch.randn(1, 8, 8, 8).to(w.dtype)
        _check(x, w, tolerance=1e-2)


def test_cpu_inference_mode_filters_changed_between_calls():
    with torch.inference_mode():
        x, w = torch.randn(1, 6, 6, 4), torch.randn(3, 3, 4, 16)
        _check(x, w)
        w.add_(1.0)
        _check(x, w)


# Explicit prepacking: the caller keeps the packed form, every use is checked against it.
PREPACK_CASES = {  # (input, filter, dilation, dtype)
    "dense": ((2, 9, 10, 8), (3, 3, 8, 24), (1, 1), torch.float32),
    "dense dilated": ((1, 9, 10, 8), (3, 3, 4, 20), (2, 2), torch.float32),
    "pointwise bfloat16": ((1, 7, 9, 16), (1, 1, 16, 40), (1, 1), torch.bfloat16),
    "dense float16": ((1, 7, 9, 6), (3, 3, 6, 10), (1, 1), torch.float16),
    "depthwise": ((2, 9, 10, 20), (3, 3, 1, 20), (1, 1), torch.float32),
    "depthwise multiplier 2": ((1, 6, 7, 5), (3, 3, 1, 10), (1, 1), torch.float32),
    "float64": ((1, 6, 7, 4), (3, 3, 2, 6), (1, 2), torch.float64),
}


@pytest.mark.parametrize("case", list(PREPACK_CASES))
@pytest.mark.parametrize("padding", ["SAME", "VALID", [[0, 0], [2, 0], [1, 3], [0, 0]]], ids=["same", "valid", "explicit"])
def test_cpu_prepacked_equals_conv2d(case, padding):
    in_shape, w_shape, dilation, dtype = PREPACK_CASES[case]
    x, w, b = torch.randn(in_shape).to(dtype), torch.randn(w_shape).to(dtype), torch.randn(w_shape[3]).to(dtype)
    groups = in_shape[3] // w_shape[2]
    packed = myconv.prepack_filter(w, groups, dilation)
    assert packed.dtype == torch.uint8 and packed.dim() == 1
    expected = myconv.conv2d(x, w, 2, padding, dilation, bias=b)
    torch.testing.assert_close(myconv.conv2d_prepacked(x, packed, w.shape, 2, padding, dilation, bias=b), expected,
                               rtol=0, atol=0)
    assert torch.ops.myconv.prepack_filter(w.to("meta"), groups, list(dilation)).shape == packed.shape


STRIDED_PACK_CASES = {
    **PREPACK_CASES,  # and bfloat16 pairs: odd segments (a value paired with a zero), whole filter
    # rows over transposed storage, per-tap segments (dilation, groups)
    "bfloat16 odd rows": ((1, 7, 9, 5), (3, 3, 5, 40), (1, 1), torch.bfloat16),
    "bfloat16 dilated": ((1, 9, 9, 7), (3, 2, 7, 33), (1, 2), torch.bfloat16),
    "bfloat16 groups": ((1, 7, 9, 9), (3, 3, 3, 36), (1, 1), torch.bfloat16),
}


@pytest.mark.parametrize("case", list(STRIDED_PACK_CASES))
@pytest.mark.parametrize("layout", ["transposed", "sliced"])
def test_cpu_strided_filters_pack_to_the_same_bytes(case, layout):
    # Packing reads a filter view through its strides (the input gradient packs the forward's
    # filter transposed, without a copy): the bytes equal those of the contiguous copy.
    in_shape, w_shape, dilation, dtype = STRIDED_PACK_CASES[case]
    kh, kw, cg, o = w_shape
    if layout == "transposed":  # HWIO over OHWI storage (torch's layout, channels last)
        w = torch.randn(o, kh, kw, cg).to(dtype).permute(1, 2, 3, 0)
    else:  # every other tap and output channel of a larger filter
        w = torch.randn(2 * kh, 2 * kw, cg + 3, 2 * o).to(dtype)[::2, 1::2, 2:cg + 2, ::2]
    assert w.shape == w_shape and not w.is_contiguous()
    groups = in_shape[3] // cg
    assert torch.equal(myconv.prepack_filter(w, groups, dilation), myconv.prepack_filter(w.contiguous(), groups, dilation))


def test_cpu_prepacked_refuses_what_it_was_not_packed_for():
    w = torch.randn(3, 3, 8, 24)
    packed = myconv.prepack_filter(w)
    x = torch.randn(1, 6, 6, 8)
    with pytest.raises(ValueError, match=r"packed for 1 group\(s\), this call has 2 .*pass groups=2"):
        myconv.conv2d_prepacked(torch.randn(1, 6, 6, 16), packed, (3, 3, 8, 24))
    with pytest.raises(ValueError, match="segments of 8.*pack the filter again"):
        myconv.conv2d_prepacked(x, packed, w.shape, dilations=2)  # dilated taps: another segment layout
    with pytest.raises(TypeError, match="holds a Float filter, the input is Double"):
        myconv.conv2d_prepacked(x.double(), packed, w.shape)
    with pytest.raises(ValueError, match=r"filter_shape \[3, 3, 8, 32\] differs .* \[3, 3, 8, 24\]"):
        myconv.conv2d_prepacked(x, packed, (3, 3, 8, 32))
    # (the payload's size depends on the instruction set's panel width: NEON's 8 channels pad 24 to 24)
    with pytest.raises(ValueError, match=r"header gives a payload of \d+ bytes, the tensor holds \d+") as error:
        myconv.conv2d_prepacked(x, packed[:-1].clone(), w.shape)
    payload, held = map(int, re.search(r"payload of (\d+) bytes, the tensor holds (\d+)", str(error.value)).groups())
    assert payload == held + 1 and payload % (3 * 3 * 8 * 4) == 0 and payload >= 3 * 3 * 8 * 24 * 4
    with pytest.raises(ValueError, match="not a packed filter"):
        myconv.conv2d_prepacked(x, torch.zeros_like(packed), w.shape)
    with pytest.raises(TypeError, match="1-D uint8"):
        myconv.conv2d_prepacked(x, w, w.shape)
    with pytest.raises(RuntimeError, match="no input gradient"):
        myconv.conv2d_prepacked(x.requires_grad_(), packed, w.shape).sum().backward()


def test_cpu_prepacked_bias_gradient():
    w, b = torch.randn(3, 3, 4, 6), torch.randn(6, requires_grad=True)
    x = torch.randn(2, 5, 5, 4)
    myconv.conv2d_prepacked(x, myconv.prepack_filter(w), w.shape, bias=b).square().sum().backward()
    expected = torch.autograd.grad(myconv.conv2d(x, w, bias=b).square().sum(), b)[0]
    torch.testing.assert_close(b.grad, expected)


def _isa_flags():
    flags = set(open("/proc/cpuinfo").read().split("flags", 1)[1].split("\n", 1)[0].split())
    return flags


@pytest.mark.skipif("avx512f" not in _isa_flags() or "avx512" not in torch.ops.myconv.cpu_compiled_isas(),
                    reason="needs two instruction sets with different panels")
def test_cpu_packed_on_another_instruction_set_is_an_error(tmp_path):
    w = torch.randn(3, 3, 8, 24)
    torch.save(w, tmp_path / "w.pt")
    pack = ("import sys, torch, myconv; w = torch.load(sys.argv[1]); "
            "torch.save(myconv.prepack_filter(w), sys.argv[2])")
    subprocess.run([sys.executable, "-c", pack, str(tmp_path / "w.pt"), str(tmp_path / "p.pt")], check=True,
                   env=dict(os.environ, MYCONV_CPU_ISA="avx2"))
    use = ("import sys, torch, myconv; w = torch.load(sys.argv[1]); p = torch.load(sys.argv[2]); "
           "myconv.conv2d_prepacked(torch.randn(1, 5, 5, 8), p, w.shape)")
    result = subprocess.run([sys.executable, "-c", use, str(tmp_path / "w.pt"), str(tmp_path / "p.pt")],
                            capture_output=True, text=True, env=dict(os.environ, MYCONV_CPU_ISA="avx512"))
    assert result.returncode != 0
    assert "packed as avx2 panels of 16" in result.stderr and "reads avx512 panels of 32" in result.stderr


# A frozen layer: packed once, checked against every change it can see.
def test_cpu_frozen_layer_computes_with_its_packed_weight_until_the_weight_changes():
    layer = myconv.Conv2d(8, 16, 3, strides=2, padding="same", activation="relu")
    x = torch.randn(2, 9, 9, 8)
    expected = layer(x)
    assert layer.freeze() is layer and not layer.training and layer.packed_weight is not None
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=0)
    assert set(layer.state_dict()) == {"weight", "bias"}  # the packed form is not saved
    with torch.no_grad():
        layer.weight.add_(1.0)  # an optimizer step, load_state_dict, copy_ ...
    with pytest.raises(RuntimeError, match=r"weight changed after freeze\(\)"):
        layer(x)
    layer.freeze()
    torch.testing.assert_close(layer(x), myconv.conv2d(x, layer.weight, 2, "SAME", bias=layer.bias).relu())
    layer.weight = torch.nn.Parameter(torch.randn_like(layer.weight))  # a new tensor
    with pytest.raises(RuntimeError, match=r"weight changed after freeze\(\)"):
        layer(x)
    layer.train()  # unfreezes: every call packs the current weight again
    assert layer.packed_weight is None
    torch.testing.assert_close(layer(x), myconv.conv2d(x, layer.weight, 2, "SAME", bias=layer.bias).relu())


def test_cpu_frozen_layer_scripts_compiles_and_exports():
    layer = myconv.Conv2d(8, 16, 3, padding=((1, 0), (2, 1)), groups=2).freeze()
    x = torch.randn(2, 9, 9, 8)
    expected = layer(x)
    torch.testing.assert_close(torch.jit.script(layer)(x), expected, rtol=0, atol=0)
    torch.testing.assert_close(torch.compile(layer, fullgraph=True)(x), expected, rtol=0, atol=0)
    program = torch.export.export(layer, (x,), dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    torch.testing.assert_close(program.module()(torch.cat([x, x])), torch.cat([expected, expected]), rtol=0, atol=0)


def test_prepacked_ops_pass_opcheck():
    w, b = torch.randn(3, 3, 4, 6), torch.randn(6)
    packed = myconv.prepack_filter(w)
    x = torch.randn(2, 5, 5, 4)
    torch.library.opcheck(torch.ops.myconv.prepack_filter.default, (w, 1, [1, 1]))
    torch.library.opcheck(torch.ops.myconv.conv2d_prepacked.default, (x, packed, [3, 3, 4, 6], [1, 1], "SAME", [1, 1], b))
    torch.library.opcheck(torch.ops.myconv.conv2d_prepacked.explicit,
                          (x, packed, [3, 3, 4, 6], [2, 1], [1, 0, 2, 1], [1, 1], b))


# Geometry up to 2^63 - 1: the definition's result (small outputs) or a clear ValueError.
BIG = st.one_of(st.integers(1, 4), st.integers(5, 2**63 - 1), st.sampled_from([2**60, 2**60 + 1, 2**62, 2**63 - 1]))
PAD = st.one_of(st.integers(0, 3), st.integers(0, 2**63 - 1), st.sampled_from([2**60, 2**60 + 1, 2**63 - 1]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 5), st.integers(1, 3), st.integers(1, 3), st.booleans(), st.sampled_from([1, 2, 16]),
       st.lists(BIG, min_size=2, max_size=2), st.lists(BIG, min_size=2, max_size=2), st.lists(PAD, min_size=4, max_size=4),
       st.sampled_from([torch.float32, torch.float64, torch.bfloat16]))
def test_cpu_extreme_strides_dilations_and_paddings(size, kh, kw, depthwise, channels, stride, dilation, pads, dtype):
    x = torch.randn(1, size, size + 1, channels).to(dtype)
    w = torch.randn(kh, kw, 1 if depthwise else channels, channels * (1 if depthwise else 2)).to(dtype)
    t, b, l, r = pads
    sizes = []
    for axis, (n, k, top, bottom) in enumerate(((size, kh, t, b), (size + 1, kw, l, r))):
        padded, eff = n + top + bottom, (k - 1) * dilation[axis] + 1
        sizes.append(None if padded < eff else (padded - eff) // stride[axis] + 1)
    allowed = max(stride + dilation + pads) <= 2**60 and max((kh - 1) * dilation[0], (kw - 1) * dilation[1]) < 2**60
    padding = [[0, 0], [t, b], [l, r], [0, 0]]
    if allowed and None not in sizes and sizes[0] * sizes[1] <= 64:
        out = myconv.conv2d(x, w, stride, padding, dilation)
        ref = conv_direct(x, w, stride, pads, dilation)
        assert out.shape == ref.shape
        tolerance = 1e-2 if dtype == torch.bfloat16 else 1e-5
        assert torch.allclose(out.double(), ref, rtol=tolerance, atol=tolerance * (1 + ref.abs().max().item()))
    elif not allowed or None in sizes:
        with pytest.raises(ValueError, match="myconv.conv2d: "):
            myconv.conv2d(x, w, stride, padding, dilation)


def test_cpu_crafted_packed_filters_are_refused_before_anything_is_read():
    # A header claiming a filter whose packed size wraps int64 around to a tiny payload.
    real = myconv.prepack_filter(torch.randn(3, 3, 1, 2), 2)
    for shape in ([16, 2**57 + 1, 1, 2], [2**57 + 1, 16, 1, 2], [3, 3, 8, 2**40]):
        with pytest.raises(ValueError, match=r"is not the shape of a filter|differs from the shape"):
            myconv.conv2d_prepacked(torch.randn(1, 1, 1, 2 if shape[2] == 1 else 8), real, shape)
    header = real[:128].clone()
    header[96:104] = torch.tensor([255] * 7 + [127], dtype=torch.uint8)  # payload_bytes = 2^63 - 1
    with pytest.raises(ValueError, match="header gives a payload of 9223372036854775807 bytes"):
        myconv.conv2d_prepacked(torch.randn(1, 4, 4, 2), torch.cat([header, real[128:]]), [3, 3, 1, 2])
    storage = torch.zeros(real.numel() + 4, dtype=torch.uint8)
    storage[1:1 + real.numel()] = real  # a view whose float32 payload is not aligned
    with pytest.raises(ValueError, match="aligned to its 4-byte elements"):
        myconv.conv2d_prepacked(torch.randn(1, 4, 4, 2), storage[1:1 + real.numel()], [3, 3, 1, 2])


def test_cpu_packed_filter_is_checked_even_when_the_output_is_empty():
    packed = myconv.prepack_filter(torch.randn(3, 3, 4, 6))
    with pytest.raises(TypeError, match="holds a Float filter, the input is Double"):
        myconv.conv2d_prepacked(torch.randn(0, 6, 6, 4).double(), packed, [3, 3, 4, 6])
    with pytest.raises(ValueError, match="not a packed filter"):
        myconv.conv2d_prepacked(torch.randn(0, 6, 6, 4), torch.zeros_like(packed), [3, 3, 4, 6])


def test_cpu_empty_input_with_outputs_that_read_only_padding():
    # H = 0 yet explicit padding holds windows: every output is the bias, on every path.
    x, w, b = torch.randn(2, 0, 5, 4), torch.randn(1, 3, 4, 6), torch.randn(6)
    out = myconv.conv2d(x, w, 1, [[0, 0], [2, 1], [1, 1], [0, 0]], bias=b)
    assert out.shape == (2, 3, 5, 6) and torch.equal(out, b.expand(2, 3, 5, 6))
    packed = myconv.prepack_filter(w)
    assert torch.equal(myconv.conv2d_prepacked(x, packed, w.shape, 1, [[0, 0], [2, 1], [1, 1], [0, 0]], bias=b), out)
    x.requires_grad_(), w.requires_grad_(), b.requires_grad_()
    y = myconv.conv2d(x, w, 1, [[0, 0], [2, 1], [1, 1], [0, 0]], bias=b)
    gx, gw, gb = torch.autograd.grad(y.sum(), (x, w, b))
    assert gx.shape == x.shape and torch.equal(gw, torch.zeros_like(w)) and torch.equal(gb, torch.full((6,), 30.0))


def test_cpu_frozen_layer_stops_the_weight_gradient_and_copies_pack_their_own():
    import copy
    import pickle

    layer = myconv.Conv2d(4, 6, 3, padding="same")
    x = torch.randn(1, 5, 5, 4)
    expected = layer(x)
    layer.freeze()
    assert not layer.weight.requires_grad  # visible, not a silently missing gradient
    for twin in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        torch.testing.assert_close(twin(x), expected, rtol=0, atol=0)
        assert twin.packed_weight.data_ptr() != layer.packed_weight.data_ptr()
    layer.weight.requires_grad_(True)
    with pytest.raises(RuntimeError, match="requires_grad set again"):
        layer(x)
    layer.freeze().unfreeze()
    assert layer.weight.requires_grad and layer.packed_weight is None


def test_frozen_layer_runs_in_an_aoti_package(tmp_path):
    # The packed filter travels in the package as a constant; a dynamic batch runs it bit-exactly.
    layer = myconv.Conv2d(8, 16, 3, padding="same", activation="relu").freeze()
    x = torch.randn(2, 9, 9, 8)
    program = torch.export.export(layer, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    path = torch._inductor.aoti_compile_and_package(program, package_path=str(tmp_path / "frozen.pt2"))
    runner = torch._inductor.aoti_load_package(path)
    torch.testing.assert_close(runner(torch.cat([x, x, x])), torch.cat([layer(x)] * 3), rtol=0, atol=0)
