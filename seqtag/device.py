"""Device selection: ``auto`` picks CUDA, then MPS, then CPU; an explicit device must exist."""

from __future__ import annotations

import contextlib
import functools

import torch

from seqtag.config import PRECISIONS
from seqtag.errors import SeqtagError


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


def check_precision(device: torch.device, precision: str) -> None:
    """Refuse a ``precision`` that ``device`` cannot run (:class:`SeqtagError`): fp16 needs CUDA
    (training scales its gradients there; CPUs have no fast fp16), and bf16 on a CPU needs oneDNN's bf16 LSTM, which CPUs without AVX-512 or AMX lack (there
    torch fails in the LSTM, "could not create a primitive descriptor"). A request the machine
    cannot serve is an error, never fp32 in its place."""
    if precision not in PRECISIONS:
        raise SeqtagError(f"expected precision fp32, bf16 or fp16, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise SeqtagError(f"--precision fp16 needs CUDA; on {device.type} use bf16 or fp32")
    if precision == "bf16" and device.type == "cpu":
        problem = cpu_bf16_problem()
        if problem:
            raise SeqtagError(f"--precision bf16: this CPU cannot run the LSTM in bf16 ({problem}); use fp32")


@functools.cache
def cpu_bf16_problem() -> str:
    """Why an LSTM under CPU bf16 autocast fails on this machine ("" if it runs): tried once on
    a 1-token input with zero weights (no random numbers drawn)."""
    x, h = torch.zeros(1, 1, 2), torch.zeros(1, 1, 2)
    weights = [torch.zeros(8, 2), torch.zeros(8, 2), torch.zeros(8), torch.zeros(8)]
    try:
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            torch.lstm(x, [h, h], weights, True, 1, 0.0, False, False, True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"oneDNN needs AVX-512 or AMX for it: {first.split('. ')[0]}"
    return ""


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for ``precision`` (``fp32``, ``bf16``, ``fp16``) on ``device``:
    none for fp32; :func:`check_precision` first (fp16 also needs a gradient scaler when
    training)."""
    check_precision(device, precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
