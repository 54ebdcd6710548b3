"""One prepared run on a CUDA machine (under 8 minutes): correctness across devices, then speed.

1. CUDA and CPU agree: the same weights give the same tags on both (scores within tolerance,
   TF32 off), for the packed (cuDNN) and padded LSTM paths.
2. TorchScript export made on CUDA loads and tags on the CPU, and the other way round.
3. The bench table: train and inference tokens/s for batch 32/128/512/2048, fp32/bf16/fp16,
   eager, plus TorchScript inference (``tag_ids``), with the matmul rate of the GPU.
4. Inference precision: the BiLSTM of step 1 scored on EWT dev (``evaluate``) in fp32, bf16 and
   fp16, with the tokens whose tag changed.
5. The encoder model (the ``--encoder`` recipe, ``config.for_encoder``): one epoch of training
   on the same sentences at batch 32, 64, 128 and 256 in bf16 (and 32 in fp32), sentences/s;
   then inference words/s (``predict``) at batch 32/128/256 in fp32/bf16/fp16, and dev accuracy
   in each precision. The encoder is ``$SEQTAG_ENCODER`` (a directory, e.g. all-MiniLM-L6-v2
   from ``../shared/models/get-minilm.sh``), else a BERT of MiniLM's shape (6 layers, hidden
   384, 12 heads) with random weights and a WordPiece vocabulary trained here on the corpus:
   the same speed, no meaningful accuracy (the report says which).

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
from seqtag.host import host_info, matmul_gflops, synchronize
from seqtag.model.layers import PackedLSTM, PaddedLSTM
from seqtag.testing import random_bert
from seqtag.training.bench import bench, synthetic_corpus

CORPORA = Path(os.environ.get("SEQTAG_CORPORA", Path(__file__).resolve().parents[1].parent / "shared" / "corpora"))
EWT = CORPORA / "ud_english_ewt"
DEVICE = "cuda"  # the encoder checks' device (a CPU smoke run of them sets "cpu")


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
    out["bilstm_dev_accuracy_by_precision"] = precision_accuracy(tagger, dev)
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
        synchronize(torch.device(DEVICE))
        start = time.perf_counter()
        tokens = 0
        with torch.inference_mode(), torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            for b in batches:
                scripted.tag_ids(b.words, b.cases, b.chars, b.lengths)
                tokens += int(b.lengths.sum())
        synchronize(torch.device(DEVICE))
        if rep:
            rates.append(tokens / (time.perf_counter() - start))
    return statistics.median(rates)


def precision_accuracy(tagger, dev) -> dict:
    """``evaluate`` on ``dev`` in each precision, and how many tokens' tags differ from fp32 (the
    sentences whose gold tags the model knows: a slice of the training data may lack a rare one)."""
    known = set(tagger.vocabs.tags.itos)
    dev = [s for s in dev if set(s.tags) <= known]
    sentences = [s.tokens for s in dev]
    out: dict = {}
    reference = tagger.predict(sentences)
    for precision in ("fp32", "bf16", "fp16"):
        result = seqtag.evaluate(tagger, dev, precision=precision)
        tags = tagger.predict(sentences, precision=precision)
        changed = sum(a != b for x, y in zip(tags, reference) for a, b in zip(x, y))
        out[precision] = {"accuracy": result["accuracy"], "tokens_changed_from_fp32": changed}
    return out


def encoder_checks(train, dev, tmp: Path, start: float) -> dict:
    from seqtag.config import for_encoder

    given = os.environ.get("SEQTAG_ENCODER", "")
    encoder = Path(given) if given else random_bert(  # MiniLM's cost without its weights (no network)
        tmp / "minilm-shaped", [" ".join(s.tokens) for s in train], vocab_size=30522, hidden_size=384, num_layers=6,
        num_heads=12, intermediate_size=1536, max_positions=512, seed=0)
    out: dict = {"encoder": str(encoder), "weights": "pretrained" if given else "random (MiniLM's shape: speed only)"}
    config = for_encoder(seqtag.TaggerConfig(encoder=str(encoder)))
    rows, tagger = [], None
    for batch_size, precision in ((32, "fp32"), (32, "bf16"), (64, "bf16"), (128, "bf16"), (256, "bf16")):
        tc = for_encoder(seqtag.TrainConfig(device=DEVICE, epochs=1, batch_size=batch_size, precision=precision))
        synchronize(torch.device(DEVICE))
        began = time.perf_counter()
        model = seqtag.train(train, None, config, tc, quiet=True)
        synchronize(torch.device(DEVICE))
        seconds = time.perf_counter() - began
        rows.append({"batch_size": batch_size, "precision": precision, "seconds": seconds,
                     "train_sentences_per_s": len(train) / seconds})  # fmt: skip
        log(f"encoder train {precision} batch {batch_size:>4}: {len(train) / seconds:,.0f} sentences/s "
            f"({time.perf_counter() - start:.0f}s)")
        if tagger is None and precision == "bf16":
            tagger = model
    out["train"] = rows
    sentences = [s.tokens for s in dev]
    words = sum(len(s) for s in sentences)
    inference = []
    for precision in ("fp32", "bf16", "fp16"):
        for batch_size in (32, 128, 256):
            tagger.predict(sentences[:batch_size], batch_size=batch_size, precision=precision)  # warm-up
            synchronize(torch.device(DEVICE))
            began = time.perf_counter()
            tagger.predict(sentences, batch_size=batch_size, precision=precision)
            synchronize(torch.device(DEVICE))
            rate = words / (time.perf_counter() - began)
            inference.append({"precision": precision, "batch_size": batch_size, "words_per_s": rate})
            log(f"encoder infer {precision} batch {batch_size:>4}: {rate:,.0f} words/s")
    out["inference"] = inference
    out["dev_accuracy"] = precision_accuracy(tagger, dev)
    log(json.dumps(out["dev_accuracy"]))
    return out


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
    (out_dir / "gpu_check.json").write_text(json.dumps(report, indent=1))  # kept if what follows runs out of time
    with tempfile.TemporaryDirectory() as tmp:
        report["encoder"] = encoder_checks(train, dev, Path(tmp), start)
    report["seconds"] = time.perf_counter() - start
    (out_dir / "gpu_check.json").write_text(json.dumps(report, indent=1))
    log(f"done in {report['seconds']:.0f}s; {out_dir / 'gpu_check.json'}")
    checks = report["device_checks"]
    if not all(v for k, v in checks.items() if isinstance(v, bool)):
        sys.exit("gpu_check: a device check failed")


if __name__ == "__main__":
    main()
