"""Distributed training under ``torchrun``: process-group set-up and the few collectives needed.

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` for each process; :func:`setup`
reads them, starts the process group (``nccl`` on CUDA, ``gloo`` on the CPU, unless told
otherwise) and gives each rank its device. A process group that the caller started already
(``torch.distributed.init_process_group``) is used as it is. Without either (or with a world
of one process) training is single-process and every collective here returns its input.
See ``docs/distributed.md``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from seqtag.device import resolve_device
from seqtag.errors import SeqtagError

BACKENDS = ("nccl", "gloo")


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

    def same_text(self, text: str) -> bool:
        """Whether every rank holds the same ``text`` (compared by a 52-bit hash, exact in a float64)."""
        return self.all_equal(float(int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:13], 16)))

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sums of ``values`` over the ranks (float64), the same on every rank."""
        if not self.enabled:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self._collective_device())
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (pickled: for small objects that rank 0 made)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self._collective_device())
        return box[0]

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj``, by rank, on rank 0; None on the other ranks."""
        if not self.enabled:
            return [obj]
        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def _collective_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def setup(device: str = "auto", backend: str | None = None) -> Distributed:
    """Join the process group that ``torchrun`` describes, or use one the caller already started,
    or stay single-process.

    Args:
        device: the device request (``auto``, ``cpu``, ``cuda``...). Distributed over CUDA, each
            rank takes ``cuda:LOCAL_RANK`` (in a group the caller started without ``LOCAL_RANK``
            set: the current CUDA device, see ``torch.cuda.set_device``).
        backend: ``nccl``, ``gloo`` or None (``nccl`` for CUDA, else ``gloo``). Ignored unless
            this call starts the process group.

    Raises:
        SeqtagError: for an unknown backend, ``nccl`` without CUDA, more local ranks than
            GPUs, or MPS.
    """
    if backend is not None and backend not in BACKENDS:
        raise SeqtagError(f"unknown distributed backend {backend!r}: expected {' or '.join(BACKENDS)}")
    started = dist.is_available() and dist.is_initialized()
    world_size = dist.get_world_size() if started else int(os.environ.get("WORLD_SIZE", "1"))
    dev = resolve_device(device)
    if world_size <= 1:
        return Distributed(device=dev)
    if not dist.is_available():
        raise SeqtagError("WORLD_SIZE > 1, but this PyTorch build has no torch.distributed")
    rank = dist.get_rank() if started else int(os.environ["RANK"])
    if "LOCAL_RANK" in os.environ:
        local_rank = int(os.environ["LOCAL_RANK"])
    elif started and dev.type == "cuda":
        local_rank = torch.cuda.current_device()
    else:
        local_rank = 0
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
        if backend == "nccl" and dev.type != "cuda":
            raise SeqtagError(f"the nccl backend needs CUDA devices; training on {dev.type} takes --dist-backend gloo")
        dist.init_process_group(backend=backend, device_id=dev if backend == "nccl" else None)
    return Distributed(rank=rank, world_size=world_size, local_rank=local_rank, device=dev, owns_group=not started)


def teardown(info: Distributed) -> None:
    """Leave the process group if :func:`setup` started it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def is_main_process() -> bool:
    """Whether this process is rank 0 (or not distributed): the one that writes and prints."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0
