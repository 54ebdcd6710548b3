"""One prepared run on a CUDA machine (under 8 minutes): correctness across devices, then speed.

1. CUDA and CPU agree: the same weights give the same tags on both (scores within tolerance,
   TF32 off), for the packed (cuDNN) and padded LSTM paths.
2. TorchScript export made on CUDA loads and tags on the CPU, and the other way round.
3. The bench table: train and inference tokens/s for batch 32/128/512/2048, fp32/bf16/fp16,
   eager, plus TorchScript inference (``tag_ids``), with the matmul rate of the GPU.

    bash benchmarks/gpu_check.sh            # writes gpu_check.json into $OUT (or the current folder)
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

import seqtag
from seqtag.data.dataset import collate, encode_tokens
from seqtag.host import host_info, matmul_gflops
from seqtag.model.layers import PackedLSTM, PaddedLSTM
from seqtag.training.bench import bench, synthetic_corpus

CORPORA = Path(os.environ.get("SEQTAG_CORPORA", Path(__file__).resolve().parents[1].parent / "shared" / "corpora"))
EWT = CORPORA / "ud_english_ewt"


def log(*parts) -> None:
    print(*parts, flush=True)


def corpus() -> tuple[list, list]:
    if (EWT / "en_ewt-ud-train.conllu").exists():
        return (seqtag.read_conllu(EWT / "en_ewt-ud-train.conllu")[:6000],
                seqtag.read_conllu(EWT / "en_ewt-ud-dev.conllu"))
    data = synthetic_corpus(8000)
    return data[:6000], data[6000:]


def check_devices(train, dev) -> dict:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    tagger = seqtag.train(train[:2000], None, seqtag.TaggerConfig(),
                          seqtag.TrainConfig(epochs=2, device="cuda"), quiet=True)
    sentences = [s.tokens for s in dev]
    out = {}
    cuda_tags = tagger.predict(sentences)
    for mode in ("packed", "padded"):
        tagger.rnn = (PackedLSTM if mode == "packed" else PaddedLSTM)(tagger.lstm)
        out[f"cuda_{mode}_equals_cuda_auto"] = tagger.predict(sentences) == cuda_tags
    cpu = seqtag.Tagger(tagger.config, tagger.vocabs)
    cpu.load_state_dict({k: v.cpu() for k, v in tagger.state_dict().items()})
    cpu.eval()
    cpu_tags = cpu.predict(sentences)
    out["tags_identical_cpu_cuda"] = cpu_tags == cuda_tags
    out["tokens_differing"] = sum(a != b for x, y in zip(cpu_tags, cuda_tags) for a, b in zip(x, y))
    batch = collate([encode_tokens(s, tagger.vocabs, tagger.config) for s in sentences[:256]])
    with torch.no_grad():
        e_cpu = cpu(batch.words, batch.cases, batch.chars, batch.lengths)
        b = batch.to("cuda")
        tagger.rnn = PackedLSTM(tagger.lstm)
        e_cuda = tagger(b.words, b.cases, b.chars, b.lengths).cpu()
    mask = torch.arange(batch.words.size(1))[None, :] < batch.lengths[:, None]
    out["max_abs_score_difference"] = float((e_cpu - e_cuda)[mask].abs().max())
    out["scores_close_1e-4"] = out["max_abs_score_difference"] < 1e-4

    from seqtag.serving import torchscript as export

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        tagger.rnn = PackedLSTM(tagger.lstm)
        export.to_torchscript(tagger, Path(tmp) / "cuda.pt")
        export.to_torchscript(cpu, Path(tmp) / "cpu.pt")
        on_cpu = torch.jit.load(str(Path(tmp) / "cuda.pt"), map_location="cpu")
        on_cuda = torch.jit.load(str(Path(tmp) / "cpu.pt"), map_location="cuda")
        out["export_cuda_loaded_on_cpu_equals_eager"] = on_cpu(sentences[:500]) == cpu_tags[:500]
        out["export_cpu_loaded_on_cuda_equals_eager"] = on_cuda(sentences[:500]) == cuda_tags[:500]
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return out


def torchscript_inference(train, batch_size: int, precision: str) -> float:
    from seqtag.serving import torchscript as export

    vocabs = seqtag.Vocabularies.build(train)
    tagger = seqtag.Tagger(seqtag.TaggerConfig(), vocabs).to("cuda").eval()
    tagger.rnn = PackedLSTM(tagger.lstm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = export.script(tagger)
    items = [encode_tokens(s.tokens, vocabs, tagger.config) for s in train]
    order = sorted(range(len(items)), key=lambda i: len(items[i]))
    batches = [collate([items[i] for i in order[j : j + batch_size]]).to("cuda")
               for j in range(0, len(order), batch_size)][:20]
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    rates = []
    for rep in range(4):
        torch.cuda.synchronize()
        start = time.perf_counter()
        tokens = 0
        with torch.inference_mode(), torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            for b in batches:
                scripted.tag_ids(b.words, b.cases, b.chars, b.lengths)
                tokens += int(b.lengths.sum())
        torch.cuda.synchronize()
        if rep:
            rates.append(tokens / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    if not torch.cuda.is_available():
        sys.exit("gpu_check: CUDA is not available on this machine")
    out_dir = Path(os.environ.get("OUT", "."))
    start = time.perf_counter()
    train, dev = corpus()
    report = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "seqtag": seqtag.__version__,
              "corpus_sentences": len(train), "host": host_info("cuda")}
    log(f"# {report['gpu']}, torch {report['torch']}")
    report["device_checks"] = check_devices(train, dev)
    log(json.dumps(report["device_checks"], indent=1))
    rows = []
    for precision in ("fp32", "bf16", "fp16"):
        mm = matmul_gflops(torch.device("cuda"), precision)
        for r in bench(train, seqtag.TaggerConfig(), [32, 128, 512, 2048], precision, "cuda", steps=10, repeats=3, warmup=3):
            row = r.as_dict() | {"matmul_gflops": mm}
            row["torchscript_infer_tokens_per_s"] = torchscript_inference(train, r.batch_size, precision)
            rows.append(row)
            log(f"{precision:>5} batch {r.batch_size:>5}: train {r.train_tokens_per_s:>11,.0f} tok/s  "
                f"infer {r.infer_tokens_per_s:>11,.0f} tok/s  torchscript {row['torchscript_infer_tokens_per_s']:>11,.0f} tok/s  "
                f"LSTM {r.lstm_train_gflops:,.0f} GFLOP/s of matmul {mm:,.0f}  ({time.perf_counter() - start:.0f}s)")
    report["bench"] = rows
    report["seconds"] = time.perf_counter() - start
    (out_dir / "gpu_check.json").write_text(json.dumps(report, indent=1))
    log(f"done in {report['seconds']:.0f}s; {out_dir / 'gpu_check.json'}")
    checks = report["device_checks"]
    if not all(v for k, v in checks.items() if isinstance(v, bool)):
        sys.exit("gpu_check: a device check failed")


if __name__ == "__main__":
    main()
