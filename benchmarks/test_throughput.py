"""Throughput benchmarks (pytest-benchmark). Run: ``python -m pytest benchmarks``.

Each benchmark processes a fixed set of batches per round; ``extra_info`` records tokens per
round so that tokens/s = tokens / median time. ``seqtag bench`` prints the same numbers as a
table; these exist so that variants can be compared and tracked with pytest-benchmark's tools.
"""

import itertools

import pytest
import torch

from seqtag import Tagger, TaggerConfig, TrainConfig, Vocabularies
from seqtag.data.dataset import BucketBatchSampler, TaggingDataset, collate, make_loader
from seqtag.device import cpu_bf16_problem
from seqtag.model.crf import CRF
from seqtag.training.step import train_step, word_dropout_probabilities

CPU = torch.device("cpu")
ARCHS = {
    "bilstm-crf-char": TaggerConfig(),
    "bilstm-softmax": TaggerConfig(crf=False, char_filters=0),
    "tutorial-arch": TaggerConfig(bidirectional=False, crf=False, char_filters=0, case_embedding_dim=0),
}


def _setup(corpus, config, batch_size, rounds_batches=10):
    vocabs = Vocabularies.build(corpus)
    torch.manual_seed(0)
    tagger = Tagger(config, vocabs)
    dataset = TaggingDataset(corpus, vocabs, config)
    loader = make_loader(dataset, batch_size, shuffle=True, seed=0)
    batches = list(itertools.islice(iter(loader), rounds_batches))
    return tagger, batches


def _tokens(batches):
    return sum(int(b.lengths.sum()) for b in batches)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("batch_size", [1, 8, 32, 128, 512])
def test_train_steps(benchmark, corpus, arch, batch_size, precision):
    if batch_size == 1 and arch != "tutorial-arch":
        pytest.skip("batch 1 is timed for the tutorial architecture only")
    if precision == "bf16" and cpu_bf16_problem():
        pytest.skip(f"this CPU cannot run the LSTM in bf16 ({cpu_bf16_problem()})")
    tagger, batches = _setup(corpus, ARCHS[arch], batch_size, rounds_batches=max(2, 256 // batch_size))
    tagger.train()
    optimizer = torch.optim.Adam(tagger.parameters(), lr=1e-3, fused=True)
    tc = TrainConfig()  # the default clipping and word dropout: the step that training runs
    word_dropout = word_dropout_probabilities(tagger.vocabs, tc.word_dropout, CPU)

    def run():
        for b in batches:
            train_step(tagger, optimizer, b, precision=precision, clip=tc.clip, word_dropout=word_dropout)

    benchmark.extra_info["tokens_per_round"] = _tokens(batches)
    benchmark.pedantic(run, rounds=5, warmup_rounds=1)


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("batch_size", [1, 32, 256])
def test_inference(benchmark, corpus, arch, batch_size):
    tagger, batches = _setup(corpus, ARCHS[arch], batch_size, rounds_batches=max(2, 1024 // batch_size))
    tagger.eval()

    def run():
        with torch.inference_mode():
            for b in batches:
                tagger.decode(tagger(b.words, b.cases, b.chars, b.lengths), b.lengths).tolist()

    benchmark.extra_info["tokens_per_round"] = _tokens(batches)
    benchmark.pedantic(run, rounds=5, warmup_rounds=1)


def test_data_pipeline(benchmark, corpus):
    config = TaggerConfig()
    dataset = TaggingDataset(corpus, Vocabularies.build(corpus), config)
    sampler = BucketBatchSampler(dataset.lengths, 32, seed=0)

    def run():
        for b in sampler:
            collate([dataset[i] for i in b])

    benchmark.extra_info["tokens_per_round"] = int(dataset.lengths.sum())
    benchmark.pedantic(run, rounds=3, warmup_rounds=1)


@pytest.mark.parametrize("part", ["loss", "viterbi"])
@pytest.mark.parametrize("batch_size", [32, 256])
def test_crf(benchmark, part, batch_size):
    torch.manual_seed(0)
    crf = CRF(17)
    emissions = torch.randn(batch_size, 40, 17, requires_grad=part == "loss")
    tags = torch.randint(0, 17, (batch_size, 40))
    mask = torch.arange(40)[None, :] < torch.randint(1, 41, (batch_size, 1))
    mask[:, 0] = True
    if part == "loss":
        benchmark(lambda: crf(emissions, tags, mask).sum().backward())
    else:
        with torch.no_grad():
            benchmark(lambda: crf.decode(emissions, mask))
    benchmark.extra_info["tokens_per_round"] = int(mask.sum())


def test_tutorial_per_sentence_loop(benchmark, corpus):
    """The tutorial's loop for the tutorial architecture (batch 1, one sentence per step): the
    baseline the batched rows of test_train_steps compare against."""
    config = ARCHS["tutorial-arch"]
    vocabs = Vocabularies.build(corpus)
    tagger = Tagger(config, vocabs).train()
    singles = [collate([e]) for e in TaggingDataset(corpus[:64], vocabs, config).items]
    optimizer = torch.optim.SGD(tagger.parameters(), lr=0.1)

    def run():
        for b in singles:
            tagger.zero_grad()
            tagger.loss(tagger(b.words, b.cases, b.chars, b.lengths), b.tags, b.lengths).backward()
            optimizer.step()

    benchmark.extra_info["tokens_per_round"] = _tokens(singles)
    benchmark.pedantic(run, rounds=5, warmup_rounds=1)
