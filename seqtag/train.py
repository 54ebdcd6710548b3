"""The training loop and evaluation.

:func:`train` builds vocabularies and a :class:`~seqtag.model.Tagger`, trains it on bucketed
minibatches, evaluates on a dev set after each epoch, keeps the best model and stops early.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import TaggerConfig, TrainConfig
from .data import TaggingDataset, check_tags, make_loader
from .device import resolve_device
from .errors import SeqtagError
from .metrics import span_f1, token_accuracy
from .model import Tagger
from .vectors import init_embedding, read_vectors
from .vocab import UNK, Vocabularies

METRICS_FILE = "metrics.jsonl"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def evaluate(tagger: Tagger, sentences: Sequence, batch_size: int = 256) -> dict:
    """Score ``tagger`` on gold-tagged ``sentences``.

    Returns:
        ``accuracy``, ``tokens``, ``sentences``; for span tag sets (BIO, IOB1, BIOES) also
        ``precision``, ``recall``, ``f1`` (conlleval semantics) and ``per_type``.

    Raises:
        SeqtagError: if the gold data has tags the model was not trained with.
    """
    dataset = sentences if isinstance(sentences, TaggingDataset) else None
    if dataset is None:
        check_tags(sentences, tagger.vocabs, "the evaluation data")
        dataset = tagger.dataset(sentences)
    pred_ids = tagger.decode_encoded(dataset.items, batch_size)
    itos = tagger.vocabs.tags.itos
    gold = [[itos[i] for i in e.tags.tolist()] for e in dataset.items]
    pred = [[itos[i] for i in p] for p in pred_ids]
    tokens = int(dataset.lengths.sum())
    result: dict = {
        "accuracy": token_accuracy(gold, pred) if tokens else 0.0,
        "tokens": tokens,
        "sentences": len(dataset),
    }
    if tagger.tag_scheme != "none":
        report = span_f1(gold, pred)
        result.update(
            precision=report.micro.precision,
            recall=report.micro.recall,
            f1=report.micro.f1,
            per_type=report.as_dict()["per_type"],
        )
    return result


def _optimizer(tagger: Tagger, tc: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in tagger.parameters() if p.requires_grad]
    if tc.optimizer == "sgd":
        return torch.optim.SGD(params, lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
    cls = torch.optim.Adam if tc.optimizer == "adam" else torch.optim.AdamW
    # The fused kernel updates the large word embedding several times faster than the default.
    return cls(params, lr=tc.lr, weight_decay=tc.weight_decay, fused=True)


def _unk_probabilities(vocabs: Vocabularies, alpha: float, device: torch.device) -> torch.Tensor:
    """``(num_words,)`` probability of replacing each word id by ``<unk>`` during training:
    ``alpha / (alpha + count)``; never for padding, ``<unk>`` or words unseen in training."""
    counts = torch.tensor(vocabs.word_counts, dtype=torch.float32)
    probs = torch.where(counts > 0, alpha / (alpha + counts), torch.zeros_like(counts))
    return probs.to(device)


def _log(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def train(
    train_data: Sequence,
    dev: Sequence | None = None,
    config: TaggerConfig | None = None,
    train_config: TrainConfig | None = None,
    output_dir: str | Path | None = None,
    quiet: bool = False,
) -> Tagger:
    """Train a tagger on ``train_data`` (a list of :class:`~seqtag.corpus.Sentence`).

    Args:
        train_data: gold-tagged training sentences.
        dev: gold-tagged sentences evaluated after each epoch; the best epoch's model is kept
            (by span F1 for span tag sets, else accuracy). Without ``dev``, the last epoch's.
        config: the architecture (default :class:`TaggerConfig`).
        train_config: optimizer, batch size, epochs, ... (default :class:`TrainConfig`).
        output_dir: where to save the best model and ``metrics.jsonl`` (optional).
        quiet: no progress bar or log lines.

    Returns:
        The trained tagger, in eval mode, on the training device.
    """
    config = config or TaggerConfig()
    tc = train_config or TrainConfig()
    train_data = list(train_data)
    if not train_data:
        raise SeqtagError("no training sentences")
    device = resolve_device(tc.device)
    seed_everything(tc.seed)
    vectors = read_vectors(tc.vectors, tc.vectors_max_words) if tc.vectors else None
    vocabs = Vocabularies.build(
        train_data, lowercase=config.lowercase, min_freq=tc.min_freq, extra_words=vectors[0] if vectors else ()
    )
    tagger = Tagger(config, vocabs)
    if vectors is not None:
        found = init_embedding(tagger.word_embedding.weight, vocabs.words, *vectors)
        _log(f"{tc.vectors}: {len(vectors[0]):,} vectors; {found:,} of {len(vocabs.words):,} words initialised", quiet)
        if tc.freeze_vectors:
            tagger.word_embedding.weight.requires_grad_(False)
    tagger.set_rnn_mode(device)
    tagger.to(device)
    train_set = tagger.dataset(train_data)
    dev_set = None
    if dev:
        check_tags(dev, vocabs, "the dev data")
        dev_set = tagger.dataset(dev)
    loader = make_loader(
        train_set,
        tc.batch_size,
        shuffle=True,
        seed=tc.seed,
        num_workers=tc.num_workers,
        pin_memory=device.type == "cuda",
    )
    optimizer = _optimizer(tagger, tc)
    unk_prob = _unk_probabilities(vocabs, tc.word_dropout, device) if tc.word_dropout > 0 else None
    unk_id = vocabs.words.stoi[UNK]
    select = "f1" if tagger.tag_scheme != "none" else "accuracy"
    out = Path(output_dir) if output_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / METRICS_FILE).write_text("")

    best_score, best_state, best_epoch, stale = -math.inf, None, 0, 0
    step = 0
    start_time = time.perf_counter()
    # Adam's state for rare words decays into denormal floats, which are ~30x slower on x86 CPUs.
    torch.set_flush_denormal(True)
    try:
        for epoch in range(1, tc.epochs + 1):
            loader.batch_sampler.set_epoch(epoch)
            tagger.train()
            epoch_start = time.perf_counter()
            total_loss, total_tokens = 0.0, 0
            bar = tqdm(loader, desc=f"epoch {epoch}", unit="batch", leave=False, disable=quiet, file=sys.stderr)
            for batch in bar:
                batch = batch.to(device, non_blocking=True)
                words = batch.words
                if unk_prob is not None:
                    drop = torch.rand(words.shape, device=device) < unk_prob[words]
                    words = words.masked_fill(drop, unk_id)
                emissions = tagger(words, batch.cases, batch.chars, batch.lengths)
                loss = tagger.loss(emissions, batch.tags, batch.lengths)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if tc.clip > 0:
                    torch.nn.utils.clip_grad_norm_(tagger.parameters(), tc.clip)
                step += 1
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise SeqtagError(
                        f"loss became {value} at epoch {epoch}, step {step}; stopping "
                        f"(try a smaller --lr or --clip); the best model so far is kept"
                        + (f" in {out}" if out is not None and best_state is not None else "")
                    )
                optimizer.step()
                n = batch.num_tokens
                total_loss += value * n
                total_tokens += n
                if step % 10 == 0 and not quiet:
                    elapsed = time.perf_counter() - epoch_start
                    bar.set_postfix(loss=f"{total_loss / total_tokens:.4f}", tok_s=f"{total_tokens / elapsed:,.0f}")
            bar.close()
            seconds = time.perf_counter() - epoch_start
            row = {
                "epoch": epoch,
                "step": step,
                "train_loss": total_loss / max(total_tokens, 1),
                "tokens_per_s": total_tokens / seconds,
                "lr": optimizer.param_groups[0]["lr"],
                "epoch_seconds": seconds,
                "wall_time": time.perf_counter() - start_time,
            }
            improved = True
            if dev_set is not None:
                metrics = evaluate(tagger, dev_set, tc.eval_batch_size)
                row.update({f"dev_{k}": v for k, v in metrics.items() if k != "per_type"})
                score = metrics[select]
                improved = score > best_score
                if improved:
                    best_score, best_epoch, stale = score, epoch, 0
                else:
                    stale += 1
            if improved:
                best_state = {k: v.detach().clone() for k, v in tagger.state_dict().items()}
                if out is not None:
                    tagger.save(out, tc)
            if out is not None:
                with open(out / METRICS_FILE, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
            dev_text = f" dev {select} {row[f'dev_{select}']:.4f}" if dev_set is not None else ""
            _log(
                f"epoch {epoch}: loss {row['train_loss']:.4f}{dev_text} "
                f"{row['tokens_per_s']:,.0f} tok/s {seconds:.1f}s" + (" *" if improved and dev_set else ""),
                quiet,
            )
            if dev_set is not None and not improved:
                if tc.lr_halving and stale % tc.lr_halving == 0:
                    for group in optimizer.param_groups:
                        group["lr"] /= 2
                if tc.patience and stale >= tc.patience:
                    _log(f"no dev gain for {stale} epochs: stopping; best epoch {best_epoch}", quiet)
                    break
    finally:
        torch.set_flush_denormal(False)
    if best_state is not None:
        tagger.load_state_dict(best_state)
    tagger.eval()
    return tagger
