import numpy as np
import pytest
import torch

from seqtag import TaggerConfig, Vocabularies, read_conllu
from seqtag.data.dataset import BucketBatchSampler, TaggingDataset, collate, make_loader

from ..helpers import random_sentences, reference_ids

# torch 2.13 deprecates TorchScript; these tests script the planner and encoder on purpose
SCRIPTING = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


def _dataset(sentences, **config):
    cfg = TaggerConfig(**config)
    return TaggingDataset(sentences, Vocabularies.build(sentences), cfg)


def test_collate_pads_to_longest_and_keeps_values():
    sentences = random_sentences(5, max_len=9)
    ds = _dataset(sentences)
    batch = collate([ds[i] for i in range(5)])
    lengths = [len(s) for s in sentences]
    assert batch.lengths.tolist() == lengths and batch.lengths.dtype == torch.int64
    assert batch.lengths.device.type == "cpu"
    assert batch.words.shape == (5, max(lengths))
    longest_word = max(len(t) for s in sentences for t in s.tokens)
    assert batch.chars.shape == (5, max(lengths), longest_word)
    for i, n in enumerate(lengths):
        assert batch.words[i, :n].tolist() == ds[i].words.tolist()
        assert batch.tags[i, :n].tolist() == ds[i].tags.tolist()
        assert (batch.words[i, n:] == 0).all() and (batch.chars[i, n:] == 0).all()


def test_long_words_are_cut_to_max_word_length():
    sentences = random_sentences(2)
    sentences[0].tokens[0] = "x" * 100
    ds = _dataset(sentences, max_word_length=7)
    assert ds[0].chars.shape[1] == 7


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_sampler_yields_every_sentence_once_per_epoch(shuffle, batch_size):
    lengths = np.random.default_rng(0).integers(1, 50, size=103)
    sampler = BucketBatchSampler(lengths, batch_size, shuffle=shuffle, seed=3, pool_size=4)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert sorted(i for b in batches for i in b) == list(range(103))
        assert all(len(b) == batch_size for b in batches if len(b) != 103 % batch_size)


def test_sampler_shuffles_differently_per_epoch_and_reproducibly():
    lengths = np.arange(1, 201)
    s = BucketBatchSampler(lengths, 8, seed=1)
    s.set_epoch(0)
    first = list(s)
    s.set_epoch(1)
    second = list(s)
    s.set_epoch(0)
    assert list(s) == first and first != second


@pytest.mark.parametrize("replicas", [2, 3])
def test_distributed_sampler_splits_batches_disjointly_with_equal_counts(replicas):
    lengths = np.random.default_rng(1).integers(1, 30, size=101)
    per_rank = []
    for rank in range(replicas):
        s = BucketBatchSampler(lengths, 4, seed=7, num_replicas=replicas, rank=rank)
        s.set_epoch(2)
        per_rank.append(list(s))
    assert len({len(b) for b in per_rank}) == 1
    assert len(per_rank[0]) == len(BucketBatchSampler(lengths, 4, num_replicas=replicas))
    seen = [i for batches in per_rank for b in batches for i in b]
    assert set(seen) == set(range(101))
    # only the batches repeated to even out the counts appear twice
    assert len(seen) - 101 < replicas * 4


def test_loader_with_workers_gives_the_same_batches():
    sentences = random_sentences(40)
    ds = _dataset(sentences)
    plain = [b.words for b in make_loader(ds, 8, shuffle=True, seed=2)]
    workers = [b.words for b in make_loader(ds, 8, shuffle=True, seed=2, num_workers=2)]
    assert len(plain) == len(workers)
    assert all(torch.equal(a, b) for a, b in zip(plain, workers))


def test_bucketing_keeps_padding_under_five_percent_on_ewt(ewt_dir):
    sentences = read_conllu(ewt_dir / "en_ewt-ud-train.conllu")
    lengths = np.array([len(s) for s in sentences])
    sampler = BucketBatchSampler(lengths, 32, seed=0)
    padded = real = 0
    for batch in sampler:
        real += lengths[batch].sum()
        padded += len(batch) * lengths[batch].max()
    assert (padded - real) / padded < 0.05


def test_a_very_long_sentence_gets_its_own_batch_and_every_batch_respects_the_token_cap():
    lengths = np.random.default_rng(0).integers(1, 60, size=3000)
    lengths[7] = 10_000
    for shuffle in (True, False):
        sampler = BucketBatchSampler(lengths, 32, shuffle=shuffle, seed=1)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert sorted(i for b in batches for i in b) == list(range(3000))
        assert [b for b in batches if 7 in b] == [[7]]
        assert all(len(b) * lengths[b].max() <= 32 * 128 for b in batches if 7 not in b)
        assert sum(len(b) == 32 for b in batches) >= 3000 // 32 - 2  # ordinary batches stay full


# -- the string encoder and the batch plan (every inference format runs these) ------------

# non-ASCII and printable ASCII (the encoder's two paths), and ASCII with control characters,
# which takes the general path: every case class in each
ODD = ["Über", "ÉCOLE", "naïve", "日本", "🙂", "👍🏽", "e\u0301", "İstanbul", "ß", "ΣΊΣΥΦΟΣ", "", "x" * 45,
       "The", "THE", "the", "qqzzxq", "a", "iPhone", "Dog's", "e.g.", "5-7", "X", "éa", "Éa", "aÉ",
       "Tab\tx", "TAB\tX", "tab\tx", "\x7f", "A\x1b[0m", "\x00", "Ünter", "ÜNTER"]


@SCRIPTING
@pytest.mark.parametrize("config", [dict(), dict(lowercase=False, char_filters=0), dict(max_word_length=3)],
                         ids=["default", "cased-no-chars", "short-words"])
@pytest.mark.parametrize("scripted", [False, True], ids=["python", "torchscript"])
def test_string_encoder_gives_the_ids_of_the_stated_rules(config, scripted):
    from seqtag.data.dataset import collate_strings, encode_strings, encode_tokens, string_rules

    sentences = random_sentences(20, max_len=8)
    cfg = TaggerConfig(**config)
    vocabs = Vocabularies.build(sentences, lowercase=cfg.lowercase)
    rng = np.random.default_rng(0)
    known = [t for s in sentences for t in s.tokens]
    known += [t.title() for t in known[:9]] + [t.upper() for t in known[9:18]]  # known once lowercased
    tokens = [list(rng.choice(ODD + known, size=int(rng.integers(0, 12)))) for _ in range(30)]
    tokens = [[str(t) for t in s] for s in tokens] + [ODD, []]
    encode, pad = encode_strings, collate_strings
    if scripted:
        encode, pad = torch.jit.script(encode_strings), torch.jit.script(collate_strings)
    table = encode(tokens, *string_rules(vocabs, cfg))
    assert table[2].numel() == len({t for s in tokens for t in s})  # each distinct token once
    lens = [len(s) for s in tokens]
    order = list(range(len(tokens)))[::-1]
    expected = collate([encode_tokens(tokens[i], vocabs, cfg) for i in order])
    for got, want in zip(pad(table, lens, order), (expected.words, expected.cases, expected.chars, expected.lengths)):
        assert torch.equal(got, want)
    for sentence in tokens:  # training's encoding against an oracle written from the rules alone
        encoded = encode_tokens(sentence, vocabs, cfg)
        words, cases, chars = reference_ids(sentence, vocabs, cfg)
        assert np.array_equal(encoded.words, words) and np.array_equal(encoded.cases, cases)
        assert np.array_equal(encoded.chars, chars)


def test_the_text_pad_is_a_word_not_padding():
    from seqtag.data.dataset import encode_tokens

    vocabs = Vocabularies.build(random_sentences(5))
    for config in (TaggerConfig(), TaggerConfig(lowercase=False)):
        encoded = encode_tokens(["<pad>", "<PAD>", "<unk>"], vocabs, config)
        assert encoded.words.tolist() == [1, 1, 1]
