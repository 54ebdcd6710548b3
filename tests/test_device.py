"""seqtag.device: device names and the precisions a device can run."""

import pytest
import torch

from seqtag import SeqtagError, resolve_device


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_cuda_requested_without_cuda_is_an_error(spec):
    with pytest.raises(SeqtagError, match="CUDA is not available"):
        resolve_device(spec)


def test_device_auto_and_bad_names():
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")
    assert resolve_device("CPU") == torch.device("cpu")
    with pytest.raises(SeqtagError, match="unknown device"):
        resolve_device("gpu")


def _lstm_runs_in_cpu_bf16() -> bool:
    lstm = torch.nn.LSTM(3, 4, batch_first=True, bidirectional=True)
    try:
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            lstm(torch.randn(2, 5, 3))
    except RuntimeError:
        return False
    return True


def test_the_cpu_bf16_probe_agrees_with_a_real_lstm():
    from seqtag.device import check_precision, cpu_bf16_problem

    runs = _lstm_runs_in_cpu_bf16()
    assert (cpu_bf16_problem() == "") == runs
    if runs:
        check_precision(torch.device("cpu"), "bf16")
    else:
        with pytest.raises(SeqtagError, match=r"--precision bf16: this CPU cannot run the LSTM in bf16 \(oneDNN"):
            check_precision(torch.device("cpu"), "bf16")


def test_bf16_on_a_cpu_that_cannot_is_refused_before_anything_is_written(monkeypatch, tmp_path, capsys):
    from seqtag import device, write_conll
    from seqtag.cli.app import main
    from seqtag.data.tutorial import tutorial_corpus

    monkeypatch.setattr(device, "cpu_bf16_problem", lambda: "no bf16 here")
    data = tmp_path / "tutorial.conll"
    write_conll(tutorial_corpus(), data)
    out = tmp_path / "run"
    code = main(["train", "--train", str(data), "--output-dir", str(out), "--precision", "bf16", "--device", "cpu",
                 "--quiet"])  # fmt: skip
    assert code != 0 and not out.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["seqtag: error: --precision bf16: this CPU cannot run the LSTM in bf16 (no bf16 here); use fp32"]
    assert main(["bench", "--precision", "bf16", "--device", "cpu", "--steps", "1", "--repeats", "1"]) != 0
    assert "cannot run the LSTM in bf16 (no bf16 here)" in capsys.readouterr().err


def test_precision_names_and_fp16_without_cuda():
    from seqtag.device import autocast, check_precision

    with pytest.raises(SeqtagError, match="expected precision fp32, bf16 or fp16, got 'fp8'"):
        check_precision(torch.device("cpu"), "fp8")
    with pytest.raises(SeqtagError, match="fp16 needs CUDA"):
        autocast(torch.device("cpu"), "fp16")
