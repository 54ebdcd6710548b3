"""Distributed training under ``torchrun``: process-group set-up and the few collectives needed.

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` for each process; :func:`setup`
reads them, starts the process group (``nccl`` on CUDA, ``gloo`` on the CPU, unless told
otherwise) and gives each rank its device. Without those variables (or with ``WORLD_SIZE=1``)
training is single-process and nothing here does anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .device import resolve_device
from .errors import SeqtagError


@dataclass(frozen=True)
class Distributed:
    """Where this process stands: ``rank`` of ``world_size``, on ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # True when setup() started the process group (and teardown ends it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files, prints progress and logs."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_equal(self, value: float) -> bool:
        """Whether every rank holds the same ``value`` (a cheap consistency check)."""
        if not self.enabled:
            return True
        t = torch.tensor([value, -value], dtype=torch.float64, device=self._collective_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t[0] == value and -t[1] == value)

    def _collective_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def setup(device: str = "auto", backend: str | None = None) -> Distributed:
    """Join the process group that ``torchrun`` describes, or use one the caller already started,
    or stay single-process.

    Args:
        device: the device request (``auto``, ``cpu``, ``cuda``...). Distributed over CUDA, each
            rank takes ``cuda:LOCAL_RANK``.
        backend: ``nccl``, ``gloo`` or None (``nccl`` for CUDA, else ``gloo``).
    """
    started = dist.is_available() and dist.is_initialized()
    world_size = dist.get_world_size() if started else int(os.environ.get("WORLD_SIZE", "1"))
    dev = resolve_device(device)
    if world_size <= 1:
        return Distributed(device=dev)
    rank = dist.get_rank() if started else int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise SeqtagError(
                f"local rank {local_rank} needs cuda:{local_rank}, but this machine has "
                f"{torch.cuda.device_count()} CUDA device(s): lower --nproc_per_node"
            )
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    elif dev.type == "mps":
        raise SeqtagError("distributed training on MPS is not supported: use --device cpu")
    if not started:
        backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
        dist.init_process_group(backend=backend)
    return Distributed(rank=rank, world_size=world_size, local_rank=local_rank, device=dev, owns_group=not started)


def teardown(info: Distributed) -> None:
    """Leave the process group if :func:`setup` started it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()
