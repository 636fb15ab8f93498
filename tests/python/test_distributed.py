"""DistributedDataParallel over the op: two CPU processes (gloo, loopback) train a tiny NHWC model;
the loss falls and the averaged gradients equal one process's on the same global batch."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import myconv

STEPS = 5
GLOBAL_BATCH = 8


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        myconv.Conv2d(3, 8, 3, strides=2, padding="same", activation="relu"),
        myconv.Conv2d(8, 8, 3, padding="same", groups=8, activation="relu"),  # depthwise
        myconv.Conv2d(8, 4, 1),
    )


def _data():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(GLOBAL_BATCH, 10, 12, 3, generator=generator)
    return x, torch.randn(GLOBAL_BATCH, 5, 6, 4, generator=generator)


def _train(model, x, target):
    """SGD steps; returns the losses and the first step's gradients."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses, first_grads = [], None
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), target)
        loss.backward()
        if first_grads is None:
            first_grads = [p.grad.clone() for p in model.parameters()]
        optimizer.step()
        losses.append(loss.detach())
    return torch.stack(losses), first_grads


def _worker(rank, world_size, port, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        model = torch.nn.parallel.DistributedDataParallel(_model())
        x, target = _data()
        shard = slice(rank * GLOBAL_BATCH // world_size, (rank + 1) * GLOBAL_BATCH // world_size)
        losses, grads = _train(model, x[shard], target[shard])
        dist.all_reduce(losses)  # mean over ranks = the global batch's loss
        results[rank] = (losses / world_size, grads, [p.detach() for p in model.parameters()])
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo")
def test_ddp_two_processes_match_single_process():
    world_size = 2
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_worker, args=(world_size, _free_port(), results), nprocs=world_size, join=True)
        results = dict(results)

    single_losses, single_grads = _train(_model(), *_data())
    single_params = list(_model().parameters())  # fresh copy, to check that training moved them
    losses, grads, params = results[0]
    assert losses[-1] < losses[0]
    torch.testing.assert_close(losses, single_losses, rtol=1e-5, atol=1e-6)
    for got, expected in zip(grads, single_grads):  # DDP averaged the two shards' gradients
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    for rank_params in (params, results[1][2]):
        assert not torch.equal(rank_params[0], single_params[0])
    for a, b in zip(params, results[1][2]):  # the replicas stayed in sync
        torch.testing.assert_close(a, b, rtol=0, atol=0)
