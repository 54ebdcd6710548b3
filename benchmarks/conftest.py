"""Benchmarks run on UD English-EWT when it is present, else on a synthetic corpus of EWT-like
lengths; ``SEQTAG_CORPORA`` overrides where the corpora are looked for."""

import os
from pathlib import Path

import pytest
import torch

import seqtag
from seqtag.training.bench import synthetic_corpus

CORPORA = Path(os.environ.get("SEQTAG_CORPORA", Path(__file__).resolve().parents[1].parent / "shared" / "corpora"))
EWT_TRAIN = CORPORA / "ud_english_ewt" / "en_ewt-ud-train.conllu"

torch.set_num_threads(int(os.environ.get("SEQTAG_BENCH_THREADS", "2")))


@pytest.fixture(scope="session")
def corpus():
    if EWT_TRAIN.exists():
        return seqtag.read_conllu(EWT_TRAIN)[:4000]
    return synthetic_corpus(4000)


def pytest_benchmark_update_machine_info(config, machine_info):
    """Every pytest-benchmark record names the host: CPU model, cores, threads, measured matmul rates."""
    from seqtag.host import host_info

    machine_info["seqtag_host"] = host_info()
