"""``seqtag bench``: a successful run, end to end, in process (the matmul probe replaced: on a
CPU without bf16 hardware, the host record's bf16 probe alone takes a minute)."""

import json

import pytest

from seqtag.cli import bench as bench_command
from seqtag.cli.app import main
from seqtag.training.bench import synthetic_corpus

TINY = ["--hidden-dim", "8", "--embedding-dim", "8", "--char-filters", "0", "--threads", "1"]


@pytest.fixture(autouse=True)
def _fast_matmul_probe(monkeypatch):
    from seqtag import host

    monkeypatch.setattr(host, "matmul_gflops", lambda device, precision="fp32": 100.0)
    monkeypatch.setattr(bench_command, "matmul_gflops", lambda device, precision="fp32": 100.0)


def test_bench_reports_every_batch_size_with_consistent_rates(capsys):
    assert main(["bench", "--batch-size", "4", "8", "--steps", "2", "--repeats", "1", "--json", *TINY]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["batch_size"] for r in report["results"]] == [4, 8]
    assert report["device"] == "cpu" and report["threads"] == 1 and report["precision"] == "fp32"
    assert report["matmul_gflops"] == 100.0 and report["host"]["matmul_gflops"] == {"fp32": 100.0, "bf16": 100.0}
    corpus = synthetic_corpus()
    tokens_per_sentence = sum(len(s) for s in corpus) / len(corpus)
    for r in report["results"]:
        assert r["train_tokens_per_s"] > 0 and r["infer_tokens_per_s"] > 0
        assert 0.0 <= r["padding_fraction"] < 0.5
        # tokens/s and sentences/s of one run describe the same batches: their ratio is a
        # sentence length of the corpus, within its range
        for kind in ("train", "infer"):
            ratio = r[f"{kind}_tokens_per_s"] / r[f"{kind}_sentences_per_s"]
            assert min(map(len, corpus)) <= ratio <= max(map(len, corpus)), (kind, ratio, tokens_per_sentence)
    assert report["batch_size"] == 4 and report["train_tokens_per_s"] == report["results"][0]["train_tokens_per_s"]


def test_bench_prints_a_table_and_the_per_sentence_baseline(capsys):
    assert main(["bench", "--batch-size", "2", "--steps", "1", "--repeats", "1", "--baseline", *TINY]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("device cpu, 1 threads, fp32; matmul 100 GFLOP/s; corpus synthetic")
    assert out[2].split()[0] == "2" and out[2].rstrip().endswith("x")
    assert out[-1].startswith("per-sentence loop (the tutorial's):")


def test_bench_refuses_a_bad_batch_size(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--batch-size", "0", *TINY])
    assert exit_.value.code == 2 and "batch_size" in capsys.readouterr().err
