import json

import pytest
import torch

from seqtag import host
from seqtag.host import CPU_FLAGS, host_info

TYPES = {
    "cpu_model": str,
    "logical_cores": int,
    "available_cores": int,
    "physical_cores": (int, type(None)),
    "cpu_flags": (list, type(None)),
    "torch_cpu_capability": str,
    "memory_gib": (float, type(None)),
    "torch_threads": int,
    "torch_version": str,
    "python_version": str,
    "platform": str,
    "thread_variables": dict,
    "load_average_1min": (float, type(None)),
    "seqtag_version": str,
    "device": str,
    "cuda_device": (str, type(None)),
    "matmul_gflops": dict,
}

# Two sockets of two cores with two hardware threads each: 8 logical, 4 physical.
CPUINFO = "".join(
    f"processor\t: {i}\nmodel name\t: Test CPU 9000\nphysical id\t: {i // 4}\ncore id\t\t: {i // 2 % 2}\n"
    f"flags\t\t: fpu sse2 avx2 avx512f amx_tile\n\n"
    for i in range(8)
)


@pytest.fixture(scope="module")
def measured():
    return host_info()


def test_keys_and_types(measured):
    assert set(measured) == set(TYPES)
    for key, kind in TYPES.items():
        assert isinstance(measured[key], kind), (key, measured[key])
    assert measured["torch_version"] == torch.__version__
    assert measured["torch_threads"] == torch.get_num_threads()
    assert measured["device"] == "cpu" and measured["cuda_device"] is None
    assert 1 <= measured["available_cores"] <= measured["logical_cores"]
    assert set(measured["cpu_flags"] or []) <= set(CPU_FLAGS)
    assert json.loads(json.dumps(measured)) == measured


def test_matmul_rates_are_positive(measured):
    assert set(measured["matmul_gflops"]) == {"fp32", "bf16"}
    assert all(isinstance(v, float) and v > 0 for v in measured["matmul_gflops"].values())


def test_cpuinfo_is_parsed(monkeypatch, tmp_path):
    (tmp_path / "cpuinfo").write_text(CPUINFO)
    monkeypatch.setattr(host, "CPUINFO", tmp_path / "cpuinfo")
    info = host_info(matmul=False)
    assert info["cpu_model"] == "Test CPU 9000"
    assert info["physical_cores"] == 4
    assert info["cpu_flags"] == ["avx2", "avx512f", "amx_tile"]
    assert info["matmul_gflops"] == {}


def test_works_without_proc_cpuinfo(monkeypatch, tmp_path):
    monkeypatch.setattr(host, "CPUINFO", tmp_path / "missing")
    monkeypatch.setattr(host, "matmul_gflops", lambda device, precision: 1.0)
    info = host_info()
    assert isinstance(info["cpu_model"], str) and info["cpu_model"]
    assert info["physical_cores"] is None and info["cpu_flags"] is None
    assert info["matmul_gflops"] == {"fp32": 1.0, "bf16": 1.0}
