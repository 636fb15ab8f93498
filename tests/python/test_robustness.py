"""Robustness: property tests over valid and invalid configurations (hypothesis), NaN/Inf
propagation, thread safety, determinism, memory over many calls and > 2**31 elements."""

import threading

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import myconv
from references import TOLERANCE, conv_torch, relative_error, tf_padding

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def configurations(draw):
    """A call TF would define: sizes 0-17 (N, H, W may be 0), channels 1-9 with groups, strides
    and dilations 1-4, SAME/VALID/explicit, four dtypes, contiguous or strided views."""
    groups = draw(st.integers(1, 3))
    cg = draw(st.integers(1, 9 // groups))
    og = draw(st.integers(1, 9 // groups))
    n, h, w = draw(st.integers(0, 3)), draw(st.integers(0, 17)), draw(st.integers(0, 17))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    padding = draw(st.one_of(st.sampled_from(["SAME", "VALID", "same"]),
                             st.lists(st.integers(0, 3), min_size=4, max_size=4)))
    dtype = draw(st.sampled_from([torch.float32, torch.float32, torch.float64, torch.float16, torch.bfloat16]))
    strided = draw(st.booleans())
    with_bias = draw(st.booleans())
    return dict(shape=(n, h, w, groups * cg), filter=(kh, kw, cg, groups * og), stride=stride,
                padding=padding, dilation=dilation, dtype=dtype, strided=strided, with_bias=with_bias)


def _expected_size(size, k, s, d, padding, axis):
    """(output size, or None when TF rejects the call) of one axis, from TF's definition."""
    eff = (k - 1) * d + 1
    if isinstance(padding, str) and padding.upper() == "SAME":
        return -(-size // s)
    before, after = (0, 0) if isinstance(padding, str) else padding[2 * axis: 2 * axis + 2]
    padded = size + before + after
    return None if padded < eff else (padded - eff) // s + 1


def _make_input(shape, dtype, strided, generator):
    if not strided:
        return torch.randn(shape, generator=generator).to(dtype)
    n, h, w, c = shape
    base = torch.randn(n, h + 1, 2 * w, c + 2, generator=generator).to(dtype)
    return base[:, 1:, ::2, 1:c + 1]  # strided in W, offset in H and C


@FAST
@given(configurations(), st.integers(0, 2**31 - 1))
def test_valid_configurations_match_reference(config, seed):
    _check_configuration(config, seed)


@pytest.mark.slow
@SLOW
@given(configurations(), st.integers(0, 2**31 - 1))
def test_valid_configurations_match_reference_thoroughly(config, seed):
    _check_configuration(config, seed)


def _check_configuration(config, seed):
    generator = torch.Generator().manual_seed(seed)
    x = _make_input(config["shape"], config["dtype"], config["strided"], generator)
    w = torch.randn(config["filter"], generator=generator).to(config["dtype"])
    b = torch.randn(config["filter"][3], generator=generator).to(config["dtype"]) if config["with_bias"] else None
    stride, padding, dilation = config["stride"], config["padding"], config["dilation"]
    sizes = [_expected_size(x.shape[1 + a], w.shape[a], stride[a], dilation[a], padding, a) for a in (0, 1)]
    explicit = ((padding[0], padding[1]), (padding[2], padding[3])) if not isinstance(padding, str) else padding
    if None in sizes:
        with pytest.raises(ValueError, match="smaller than the dilated filter"):
            myconv.conv2d(x, w, stride, explicit, dilation, b)
        return
    out = myconv.conv2d(x, w, stride, explicit, dilation, b)
    assert out.shape == (x.shape[0], *sizes, w.shape[3]) and out.dtype == x.dtype
    if out.numel() == 0:
        return
    ref = conv_torch(x, w, stride, padding, dilation, b)
    assert torch.isfinite(out).all(), "unwritten (NaN-poisoned) output"
    if ref.norm() > 0:
        assert relative_error(out, ref) <= TOLERANCE[x.dtype]


@st.composite
def invalid_calls(draw):
    """A valid call with one thing broken, and the message fragment the error must carry."""
    x, w = torch.randn(1, 6, 6, 4), torch.randn(3, 3, 4, 2)
    args = dict(input=x, filters=w, strides=1, padding="SAME", dilations=1, bias=None)
    kind = draw(st.sampled_from([
        "input-rank", "filter-rank", "empty-filter", "channels", "groups", "padding-string",
        "padding-list", "padding-negative", "stride-length", "stride-zero", "dilation-zero",
        "dtype", "bias-dtype", "bias-shape", "device", "not-a-tensor", "valid-too-small"]))
    if kind == "input-rank":
        # (rank > 4 is TF's batch_shape + [H, W, C], valid: test_fused.py)
        args["input"] = torch.randn(draw(st.lists(st.integers(1, 4), min_size=0, max_size=3)))
    elif kind == "filter-rank":
        args["filters"] = torch.randn(draw(st.lists(st.integers(1, 3), min_size=0, max_size=5).filter(lambda s: len(s) != 4)))
    elif kind == "empty-filter":
        shape = [3, 3, 4, 2]
        shape[draw(st.integers(0, 3))] = 0
        args["filters"] = torch.randn(shape)
    elif kind == "channels":
        args["filters"] = torch.randn(3, 3, draw(st.sampled_from([3, 5, 6, 8])), 2)
    elif kind == "groups":
        args["filters"] = torch.randn(3, 3, 2, draw(st.sampled_from([1, 3, 5])))
    elif kind == "padding-string":
        args["padding"] = draw(st.text(min_size=0, max_size=8).filter(lambda t: t.upper() not in ("SAME", "VALID")))
    elif kind == "padding-list":
        args["padding"] = draw(st.sampled_from([((1, 1, 1), (0, 0)), ((1,), (1,)), [[0, 0], [1, 1], [1, 1]], [[1, 0], [1, 1], [1, 1], [0, 0]]]))
    elif kind == "padding-negative":
        args["padding"] = ((draw(st.integers(-5, -1)), 0), (0, 0))
    elif kind == "stride-length":
        args["strides"] = draw(st.lists(st.integers(1, 3), min_size=0, max_size=6).filter(lambda s: len(s) not in (2, 4)))
    elif kind == "stride-zero":
        args["strides"] = (draw(st.integers(-3, 0)), 1)
    elif kind == "dilation-zero":
        args["dilations"] = (1, draw(st.integers(-3, 0)))
    elif kind == "dtype":
        args["filters"] = w.to(draw(st.sampled_from([torch.float64, torch.float16, torch.int32])))
    elif kind == "bias-dtype":
        args["bias"] = torch.randn(2, dtype=torch.float64)
    elif kind == "bias-shape":
        args["bias"] = torch.randn(draw(st.sampled_from([1, 3, 4])))
    elif kind == "device":
        args["filters"] = w.to("meta")
    elif kind == "not-a-tensor":
        args["input"] = x.tolist()
    elif kind == "valid-too-small":
        args["padding"] = "VALID"
        args["input"] = torch.randn(1, draw(st.integers(0, 2)), 6, 4)
    return kind, args


@FAST
@given(invalid_calls())
def test_invalid_configurations_raise_clean_errors(call):
    kind, args = call
    with pytest.raises((ValueError, TypeError)) as info:
        myconv.conv2d(**args)
    message = str(info.value)
    assert message.startswith("myconv.conv2d:") and len(message) > 30, (kind, message)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("groups", [1, 4], ids=["dense", "depthwise"])
def test_nan_and_inf_follow_the_reference(dtype, groups):
    x = torch.randn(2, 9, 10, 4, dtype=dtype)
    x[0, 2, 3, 1] = float("nan")
    x[1, 5, 5, 0] = float("inf")
    x[1, 6, 5, 0] = float("-inf")  # windows holding both infinities give NaN
    x[0, 8, 9, 3] = float("inf")
    w = torch.randn(3, 3, 4 // groups, 4, dtype=dtype)
    out = myconv.conv2d(x, w, 1, "SAME")
    ref = conv_torch(x, w, (1, 1), "SAME", (1, 1))
    assert torch.equal(torch.isnan(out), torch.isnan(ref))
    assert torch.equal(torch.isinf(out), torch.isinf(ref))
    assert torch.equal(torch.sign(out[torch.isinf(out)]), torch.sign(ref[torch.isinf(ref)]).to(dtype))


def _calls():
    generator = torch.Generator().manual_seed(0)
    shapes = [((2, 17, 15, 8), (3, 3, 8, 16), 2), ((1, 20, 21, 12), (3, 3, 1, 12), 1),
              ((3, 9, 9, 16), (1, 1, 16, 8), 1), ((1, 30, 30, 3), (5, 5, 3, 4), 2)]
    return [(torch.randn(xs, generator=generator), torch.randn(ws, generator=generator), s) for xs, ws, s in shapes]


def test_concurrent_python_threads_agree_with_serial_calls():
    calls = _calls()
    serial = [myconv.conv2d(x, w, s, "SAME") for x, w, s in calls]
    results, errors = {}, []

    def worker(index):
        try:
            for repeat in range(10):
                for k, (x, w, s) in enumerate(calls):
                    results[(index, repeat, k)] = myconv.conv2d(x, w, s, "SAME")
        except Exception as error:  # surfaced below: a thread's exception is otherwise lost
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(results) == 8 * 10 * len(calls)
    for (_, _, k), out in results.items():
        assert torch.equal(out, serial[k])


def test_bitwise_identical_across_calls_and_thread_counts():
    previous = torch.get_num_threads()
    try:
        outputs = {}
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outputs[threads] = [[myconv.conv2d(x, w, s, "SAME") for x, w, s in _calls()] for _ in range(3)]
        for threads, runs in outputs.items():
            for run in runs[1:]:
                assert all(torch.equal(a, b) for a, b in zip(run, runs[0])), f"{threads} threads"
        for a, b in zip(outputs[1][0], outputs[2][0]):
            assert torch.equal(a, b), "1 vs 2 intra-op threads"
    finally:
        torch.set_num_threads(previous)


def _resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_many_calls_do_not_grow_memory():
    x, w = torch.randn(1, 8, 8, 4), torch.randn(3, 3, 4, 4)
    b = torch.randn(4)
    for _ in range(1000):  # warm up allocator caches
        myconv.conv2d(x, w, 1, "SAME", 1, b)
    before = _resident_bytes()
    for _ in range(10_000):
        myconv.conv2d(x, w, 1, "SAME", 1, b)
    assert _resident_bytes() - before < 8 * 2**20


@pytest.mark.slow
def test_more_than_2_31_input_elements_on_cpu():
    # 2 * 32768 * 32769 * 1 > 2**31 elements (4.3 GB in bfloat16): 32-bit index math would wrap.
    n, h, w_, c = 2, 32768, 32769, 1
    x = torch.empty(n, h, w_, c, dtype=torch.bfloat16)
    x.view(-1)[: 2**20].normal_()
    x.view(-1)[-2**20:].normal_()
    filt = torch.randn(3, 3, 1, 2, dtype=torch.bfloat16)
    out = myconv.conv2d(x[:, :, :, :], filt, 4, "SAME")
    assert out.shape == (n, h // 4, -(-w_ // 4), 2)
    # The last image's last output rows read only the randomly filled tail of the input.
    corner = x[1:, -12:, :, :]
    top, _ = tf_padding(h, 3, 4, 1, "SAME")
    left, right = tf_padding(w_, 3, 4, 1, "SAME")
    ref = conv_torch(corner, filt, (4, 4), [top, 0, left, right], (1, 1))
    assert relative_error(out[1:, -2:], ref[:, -2:]) <= 1e-2
