"""Data-parallel training over processes with ``torch.distributed`` (launched by ``torchrun``).

Every process holds the whole model and takes its share of each global minibatch (rows
``rank::world_size``); after ``backward`` the gradients are averaged over all the rows of the
global batch, so one step equals a one-process step on the same batch up to float rounding
and the draws of z. aevb's objectives call ``encode`` and ``decode``, not ``forward``, so
``DistributedDataParallel``'s hooks would not fire: the averaging is one ``all_reduce`` of the
flattened gradients here. Rank 0 alone writes checkpoints and prints; every rank validates
and rank 0's figures are broadcast, so early stopping decides the same on every rank.
Under torchrun each process on a GPU machine takes the GPU of its ``LOCAL_RANK``.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def rank_and_size() -> tuple[int, int]:
    """``(rank, world_size)`` of this process; ``(0, 1)`` without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def join_from_environment(device: torch.device) -> None:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1): gloo on CPU,
    NCCL on GPUs. Multi-node runs use torchrun's own rendezvous options."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        # On GPUs the gradients go through NCCL; the small flags and figures the Trainer
        # agrees on (a NaN, the time budget, rank 0's validation scores) are CPU tensors,
        # which NCCL alone refuses, so gloo carries those.
        dist.init_process_group("cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo")


def local_device(device: torch.device) -> torch.device:
    """``cuda`` means this process's own GPU (``cuda:LOCAL_RANK``) under torchrun."""
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def leave() -> None:
    """Leave the process group, if this process joined one, together with the others: a
    rank that tore down its gloo connections while another still worked aborted once
    ("terminate called without an active exception") in a loaded test run."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def average_gradients(model: nn.Module, rows: int) -> None:
    """Make every rank's gradients the mean over the global batch: each rank's gradient of
    its mean over ``rows`` local rows, weighted by ``rows`` and summed, over all rows."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if any(g.is_sparse for g in grads):
        raise RuntimeError("sparse gradients (per-example tables) are not averaged over ranks")
    flat = torch.cat([g.reshape(-1) for g in grads]) * rows
    total = torch.tensor([float(rows)], device=flat.device)
    dist.all_reduce(flat)
    dist.all_reduce(total)
    flat /= total
    begin = 0
    for g in grads:
        g.copy_(flat[begin : begin + g.numel()].view_as(g))
        begin += g.numel()


def sum_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """``values`` summed over the ranks (a copy)."""
    values = values.clone()
    dist.all_reduce(values)
    return values


def from_rank_zero(values: torch.Tensor) -> torch.Tensor:
    """Rank 0's ``values`` on every rank (in place)."""
    dist.broadcast(values, 0)
    return values
