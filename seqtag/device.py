"""Device selection: ``auto`` picks CUDA, then MPS, then CPU; an explicit device must exist."""

from __future__ import annotations

import contextlib

import torch

from .errors import SeqtagError

PRECISIONS = ("fp32", "bf16", "fp16")


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"`` into a ``torch.device``.

    Asking for a device that this machine lacks is an error, never a silent fall back to the CPU.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise SeqtagError(f"unknown device {spec!r}: expected auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SeqtagError(f"device {spec!r} requested, but CUDA is not available on this machine")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise SeqtagError(f"device {spec!r} requested, but this machine has {count} CUDA device(s)")
    elif device.type == "mps":
        if not _mps_available():
            raise SeqtagError(f"device {spec!r} requested, but MPS is not available on this machine")
    elif device.type != "cpu":
        raise SeqtagError(f"unsupported device {spec!r}: expected auto, cpu, cuda, cuda:N or mps")
    return device


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for ``precision`` (``fp32``, ``bf16``, ``fp16``) on ``device``:
    none for fp32; fp16 needs CUDA (it also needs a gradient scaler when training)."""
    if precision not in PRECISIONS:
        raise SeqtagError(f"expected precision fp32, bf16 or fp16, got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise SeqtagError(f"fp16 needs CUDA; on {device.type} use --precision bf16")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
