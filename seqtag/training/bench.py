"""The engine behind ``seqtag bench``: training and inference throughput against the hardware.

For each batch size it times training steps (:func:`seqtag.training.loop.train_step`, the step that
training runs, data loading included) and inference over the
same bucketed batches, reports medians of repeated timed segments after a warm-up, the padding
fraction, and the LSTM's achieved GFLOP/s next to a measured matrix-multiply rate on the same
device, so a user sees how close to the machine's limit the tagger runs.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from seqtag.config import TaggerConfig, TrainConfig
from seqtag.data.corpus import Sentence
from seqtag.data.dataset import TaggingDataset, collate, make_loader
from seqtag.data.encoding import plan_batches
from seqtag.data.vocab import Vocabularies
from seqtag.device import autocast, check_precision, resolve_device
from seqtag.host import synchronize
from seqtag.model.tagger import Tagger
from seqtag.training.step import train_step, word_dropout_probabilities


def synthetic_corpus(
    num_sentences: int = 4000, vocab_size: int = 20000, num_tags: int = 17, seed: int = 0
) -> list[Sentence]:
    """Random sentences with EWT-like lengths (log-normal, median ~14 tokens) and Zipf-distributed words."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(2.65, 0.65, num_sentences).astype(int), 1, 150)
    ranks = np.arange(1, vocab_size + 1)
    p = 1.0 / ranks
    p /= p.sum()
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = ["".join(rng.choice(letters, size=int(rng.integers(1, 12)))) for _ in range(vocab_size)]
    out = []
    for n in lengths:
        ids = rng.choice(vocab_size, size=int(n), p=p)
        tags = rng.integers(0, num_tags, size=int(n))
        out.append(Sentence([words[i] for i in ids], [f"T{t}" for t in tags]))
    return out






def lstm_flops(config: TaggerConfig, input_dim: int, tokens: int) -> float:
    """Forward FLOPs of the LSTM for ``tokens`` real tokens (4 gates, input and recurrent products)."""
    h, d = config.hidden_dim, 2 if config.bidirectional else 1
    total, dim = 0.0, input_dim
    for _ in range(config.num_layers):
        total += d * tokens * 2 * 4 * h * (dim + h)
        dim = h * d
    return total


@dataclass
class BenchResult:
    batch_size: int
    precision: str
    train_tokens_per_s: float
    train_sentences_per_s: float
    infer_tokens_per_s: float
    infer_sentences_per_s: float
    padding_fraction: float
    lstm_train_gflops: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _median_rates(segments: list[tuple[float, int, int]]) -> tuple[float, float]:
    """Median tokens/s and sentences/s over ``(seconds, tokens, sentences)`` segments."""
    return (
        statistics.median(t / s for s, t, _ in segments),
        statistics.median(n / s for s, _, n in segments),
    )


def _endless(loader):
    """Batches from ``loader`` forever, a new shuffle each pass."""
    epoch = 0
    while True:
        loader.batch_sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def bench(
    sentences: Sequence[Sentence],
    config: TaggerConfig,
    batch_sizes: Sequence[int] = (32,),
    precision: str = "fp32",
    device: str = "auto",
    steps: int = 20,
    repeats: int = 5,
    warmup: int = 5,
) -> list[BenchResult]:
    """Time training steps and inference for each batch size.

    Weights are random: speed does not depend on them. A timed segment is ``steps`` training
    steps (the DataLoader's collate included) or ``steps`` inference batches; each rate is the
    median over ``repeats`` segments, after ``warmup`` untimed steps.
    """
    dev = resolve_device(device)
    check_precision(dev, precision)
    vocabs = Vocabularies.build(sentences, lowercase=config.lowercase)
    dataset = TaggingDataset(sentences, vocabs, config)
    flush = torch.set_flush_denormal(True)
    try:
        return [_bench_one(dataset, vocabs, config, b, precision, dev, steps, repeats, warmup) for b in batch_sizes]
    finally:
        if flush:
            torch.set_flush_denormal(False)


def _bench_one(dataset, vocabs, config, batch_size, precision, dev, steps, repeats, warmup) -> BenchResult:
    torch.manual_seed(0)
    tagger = Tagger(config, vocabs)
    tagger.set_rnn_mode(dev)
    tagger.to(dev)
    loader = make_loader(dataset, batch_size, shuffle=True, seed=0, pin_memory=dev.type == "cuda")
    optimizer = torch.optim.Adam([p for p in tagger.parameters() if p.requires_grad], lr=2e-3, fused=True)
    # The step that training runs, with the default clipping and word dropout.
    tc = TrainConfig()
    word_dropout = word_dropout_probabilities(vocabs, tc.word_dropout, dev)
    batches = _endless(loader)

    def train_segment(n: int) -> tuple[float, int, int]:
        synchronize(dev)
        start = time.perf_counter()
        tokens = sents = 0
        for _ in range(n):
            batch = next(batches).to(dev, non_blocking=True)
            train_step(tagger, optimizer, batch, precision=precision, clip=tc.clip, word_dropout=word_dropout)
            tokens += int(batch.lengths.sum())
            sents += len(batch.lengths)
        synchronize(dev)
        return time.perf_counter() - start, tokens, sents

    tagger.train()
    train_segment(warmup)
    train_tok, train_sent = _median_rates([train_segment(steps) for _ in range(repeats)])
    lstm_rate = _lstm_gflops(tagger, loader, dev, precision, max(steps // 2, 3))

    # the batches Tagger.predict runs (the one planner), every length represented, `steps` of them
    plan = plan_batches(dataset.lengths.tolist(), batch_size)
    infer_batches = [collate([dataset[i] for i in b]) for b in plan[:: max(1, len(plan) // steps)][:steps]]
    tagger.eval()

    def infer_segment() -> tuple[float, int, int]:
        synchronize(dev)
        start = time.perf_counter()
        tokens = sents = 0
        with torch.inference_mode(), autocast(dev, precision):
            for b in infer_batches:
                b = b.to(dev, non_blocking=True)
                tagger.tag_ids(b.words, b.cases, b.chars, b.lengths).cpu()
                tokens += int(b.lengths.sum())
                sents += len(b.lengths)
        synchronize(dev)
        return time.perf_counter() - start, tokens, sents

    infer_segment()
    infer_tok, infer_sent = _median_rates([infer_segment() for _ in range(repeats)])

    lengths = dataset.lengths
    real = padded = 0
    for b in loader.batch_sampler:
        real += int(lengths[b].sum())
        padded += len(b) * int(lengths[b].max())
    return BenchResult(
        batch_size=batch_size,
        precision=precision,
        train_tokens_per_s=train_tok,
        train_sentences_per_s=train_sent,
        infer_tokens_per_s=infer_tok,
        infer_sentences_per_s=infer_sent,
        padding_fraction=(padded - real) / padded,
        lstm_train_gflops=lstm_rate,
    )


def _lstm_gflops(tagger: Tagger, loader, dev, precision: str, steps: int) -> float:
    """Achieved GFLOP/s of the recurrent layer alone (forward + backward, ~3x forward FLOPs) on
    training-shaped inputs, counting real tokens only."""
    input_dim = tagger.lstm.input_size
    batches = [b for _, b in zip(range(steps + 2), loader)]
    times, flops = [], []
    for i, b in enumerate(batches):
        x = torch.randn(b.words.shape[0], b.words.shape[1], input_dim, device=dev, requires_grad=True)
        synchronize(dev)
        start = time.perf_counter()
        with autocast(dev, precision):
            out = tagger.recurrent(x, b.lengths)
        out.float().sum().backward()
        synchronize(dev)
        if i >= 2:
            times.append(time.perf_counter() - start)
            flops.append(3 * lstm_flops(tagger.config, input_dim, int(b.lengths.sum())))
    return sum(flops) / sum(times) / 1e9 if times else math.nan


def baseline_tokens_per_s(sentences: Sequence[Sentence], config: TaggerConfig, max_sentences: int = 300) -> float:
    """The tutorial's loop for the same architecture: one sentence per step, no batching or
    packing (``nn.LSTM`` over a length-``n`` sequence), SGD. Returns training tokens/s."""
    vocabs = Vocabularies.build(sentences, lowercase=config.lowercase)
    torch.manual_seed(0)
    tagger = Tagger(config, vocabs)
    tagger.train()
    optimizer = torch.optim.SGD(tagger.parameters(), lr=0.1)
    dataset = TaggingDataset(sentences[:max_sentences], vocabs, config)
    singles = [collate([e]) for e in dataset.items]
    for b in singles[:5]:
        tagger.loss(tagger(b.words, b.cases, b.chars, b.lengths), b.tags, b.lengths).backward()
    start = time.perf_counter()
    tokens = 0
    for b in singles:
        tagger.zero_grad()
        emissions = tagger(b.words, b.cases, b.chars, b.lengths)
        tagger.loss(emissions, b.tags, b.lengths).backward()
        optimizer.step()
        tokens += int(b.lengths[0])
    return tokens / (time.perf_counter() - start)
