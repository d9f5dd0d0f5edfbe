"""One process or many: the rank/world/device a training process runs with, and model wrapping.

Under `torchrun` (WORLD_SIZE > 1) the process group is gloo on CPU and NCCL on CUDA; a single
process needs no group at all, and every helper here degrades to a no-op, so the training loop is
written once for both.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.nn.parallel import DistributedDataParallel

from quark.device import resolve_device


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def done(self) -> None:
        """Every process waits here for the others, once a run is over (process 0 past its publish):
        a process that tore its process group down while process 0 still held the connection was
        seen to abort in gloo's shutdown (SIGABRT, "terminate called without an active exception")."""
        self.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over processes, in place; returns the tensor."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_gather_object(self, obj: Any) -> list[Any]:
        if not self.distributed:
            return [obj]
        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, obj)
        return gathered


def setup(device: str) -> Dist:
    """Join the torchrun process group if there is one; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    # A bare "cuda" (or auto) is this process's own GPU under torchrun: LOCAL_RANK picks it.
    target = resolve_device(device, what="train.device", default_index=int(os.environ.get("LOCAL_RANK", "0")))
    if target.type == "cuda":
        torch.cuda.set_device(target)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if target.type == "cuda" else "gloo",
                                device_id=target if target.type == "cuda" else None)
    return Dist(rank=rank, world=world, device=target)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, strategy: str, env: Dist) -> nn.Module:
    """DDP (replicated) or FSDP2 (each block, then the root, sharded over all processes).

    The model's own module and parameter names are kept either way, so checkpoints taken with
    full state dicts load under any strategy and world size.
    """
    if not env.distributed:
        return model
    if strategy == "ddp":
        # RoPE tables are constant buffers: nothing to broadcast before each forward.
        device_ids = [env.device.index] if env.device.type == "cuda" else None
        if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters:
            return DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)
        return DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)
    mesh = init_device_mesh(env.device.type, (env.world,))
    for block in model.layers:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The model itself (FSDP2 shards in place; DDP keeps it as `.module`)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def grad_sync(model: nn.Module, sync: bool):
    """Context for one micro-batch's forward and backward: gradients are reduced across processes
    only when `sync` (the last micro-batch of an accumulation), not on every micro-batch."""
    if isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(sync)
    elif isinstance(model, DistributedDataParallel) and not sync:
        return model.no_sync()
    return contextlib.nullcontext()
