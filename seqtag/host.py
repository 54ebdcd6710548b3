"""The machine behind a measurement: CPU model, cores, threads, versions and matrix-multiply rates.

Every benchmark records :func:`host_info` beside its numbers, because a tokens/s figure means
nothing without the host: two runs are compared only when their hosts agree.

>>> from seqtag.host import host_info
>>> info = host_info(matmul=False)
>>> sorted(info["matmul_gflops"]), info["torch_threads"] >= 1
([], True)
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from seqtag import __version__
from seqtag.device import resolve_device

CPUINFO = Path("/proc/cpuinfo")
# The flags that decide which kernels run: AVX-512 for fp32, AVX-512 BF16 and AMX for bf16.
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
# Environment variables that change how many threads the math libraries start.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE")


def _read_cpuinfo() -> list[dict[str, str]]:
    """The processor entries of ``/proc/cpuinfo`` as key/value dicts (empty where it is absent)."""
    try:
        text = CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    entries, entry = [], {}
    for line in text.splitlines():
        if not line.strip():
            if entry:
                entries.append(entry)
            entry = {}
            continue
        key, _, value = line.partition(":")
        entry[key.strip()] = value.strip()
    if entry:
        entries.append(entry)
    return entries


def _cpu_model(entries: list[dict[str, str]]) -> str:
    for entry in entries:
        if entry.get("model name"):
            return entry["model name"]
    return platform.processor() or platform.machine() or "unknown"


def _physical_cores(entries: list[dict[str, str]]) -> int | None:
    """Distinct (socket, core) pairs; None where ``/proc/cpuinfo`` does not say."""
    cores = {(e["physical id"], e["core id"]) for e in entries if "physical id" in e and "core id" in e}
    return len(cores) or None


def _cpu_flags(entries: list[dict[str, str]]) -> list[str] | None:
    """Which of :data:`CPU_FLAGS` the CPU has; None where ``/proc/cpuinfo`` gives no flags."""
    for entry in entries:
        if "flags" in entry:
            present = set(entry["flags"].split())
            return [flag for flag in CPU_FLAGS if flag in present]
    return None


def _memory_gib() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (AttributeError, ValueError, OSError):
        return None


def host_info(device: str | torch.device | None = None, matmul: bool = True) -> dict:
    """Describe this host for a benchmark record (a JSON-serializable dict).

    Args:
        device: the device the benchmark ran on (default: the CPU); its name and its measured
            matrix-multiply rates are recorded.
        matmul: measure the fp32 and bf16 matrix-multiply rates on ``device`` with
            :func:`matmul_gflops` (a second or so on a CPU); False leaves
            ``matmul_gflops`` empty.

    Returns:
        ``cpu_model``, ``logical_cores`` (``os.cpu_count()``), ``available_cores`` (those this
        process may run on), ``physical_cores`` (None where unknown), ``cpu_flags`` (the
        present ones among :data:`CPU_FLAGS`, None where unknown), ``torch_cpu_capability``,
        ``memory_gib``, ``torch_threads``, ``torch_version``, ``python_version``, ``platform``,
        ``thread_variables`` (those of :data:`THREAD_VARIABLES` that are set),
        ``load_average_1min`` (None where unknown), ``seqtag_version``, ``device``,
        ``cuda_device`` (the GPU's name, or None) and ``matmul_gflops`` (``{"fp32": ...,
        "bf16": ...}`` on ``device``, measured with the current ``torch_threads``).
    """
    dev = torch.device("cpu") if device is None else resolve_device(device)
    entries = _read_cpuinfo()
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    return {
        "cpu_model": _cpu_model(entries),
        "logical_cores": os.cpu_count() or 1,
        "available_cores": available,
        "physical_cores": _physical_cores(entries),
        "cpu_flags": _cpu_flags(entries),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "memory_gib": _memory_gib(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": f"{sys.platform} {platform.machine()}",
        "thread_variables": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ},
        # other processes on the cores skew every timing: say how busy the host was
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "seqtag_version": __version__,
        "device": str(dev),
        "cuda_device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "matmul_gflops": {p: matmul_gflops(dev, p) for p in ("fp32", "bf16")} if matmul else {},
    }


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work (CUDA runs asynchronously; the CPU does not)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device, precision: str = "fp32", size: int = 1024, repeats: int = 20) -> float:
    """Measured matrix-multiply rate on ``device`` (median over ``repeats``)."""
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if device.type == "cuda":
        size = 4096
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    times = []
    for i in range(repeats + 3):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        if i >= 3:
            times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9
