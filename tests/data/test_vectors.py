import gzip

import numpy as np
import pytest
import torch

import seqtag
from seqtag import SeqtagError, TaggerConfig, TrainConfig
from seqtag.data.vectors import read_vectors

from ..helpers import random_sentences

TINY = dict(embedding_dim=3, hidden_dim=5, char_filters=0, case_embedding_dim=0, dropout=0.0)


def _write(path, lines, gz=False):
    data = "".join(line + "\n" for line in lines).encode()
    if gz:
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("header", [False, True])
def test_read_vectors_formats(tmp_path, gz, header):
    lines = ["dog 1 2 3", "Cat 4 5 6", "dog 7 8 9"]
    path = _write(tmp_path / ("v.txt.gz" if gz else "v.txt"), (["3 3"] if header else []) + lines, gz)
    words, matrix = read_vectors(path)
    assert words == ["dog", "Cat"]  # a repeated word keeps its first vector
    np.testing.assert_array_equal(matrix, [[1, 2, 3], [4, 5, 6]])
    assert read_vectors(path, max_words=1)[0] == ["dog"]


@pytest.mark.parametrize(
    "lines, message",
    [(["a 1 2", "b 1"], "v.txt:2: expected 2 numbers"), (["a 1 x"], "v.txt:1: a vector value is not a number"), ([], "no vectors")],
)
def test_read_vectors_errors_name_the_line(tmp_path, lines, message):
    with pytest.raises(SeqtagError, match=message):
        read_vectors(_write(tmp_path / "v.txt", lines))


def test_training_starts_from_the_vectors_and_can_freeze_them(tmp_path):
    corpus = [seqtag.Sentence(["The", "Dog", "barks"], ["D", "N", "V"]), seqtag.Sentence(["a", "cat"], ["D", "N"])]
    path = _write(tmp_path / "v.txt", ["the 1 0 0", "dog 0 1 0", "Cat 0 0 1", "zebra 1 1 1"])
    tc = TrainConfig(epochs=3, vectors=str(path), freeze_vectors=True, word_dropout=0.0)
    tagger = seqtag.train(corpus, config=TaggerConfig(**TINY), train_config=tc, quiet=True)
    words, weight = tagger.vocabs.words, tagger.word_embedding.weight
    assert "zebra" in words  # vector words join the vocabulary
    for word, vector in [("the", [1, 0, 0]), ("dog", [0, 1, 0]), ("cat", [0, 0, 1]), ("zebra", [1, 1, 1])]:
        assert weight[words[word]].tolist() == vector  # unchanged by training: frozen
    assert not weight.requires_grad

    tc = tc.replace(freeze_vectors=False, lr=0.1)
    tagger = seqtag.train(corpus, config=TaggerConfig(**TINY), train_config=tc, quiet=True)
    assert tagger.word_embedding.weight[tagger.vocabs.words["dog"]].tolist() != [0, 1, 0]


def test_vector_dimension_must_match(tmp_path):
    path = _write(tmp_path / "v.txt", ["the 1 0"])
    with pytest.raises(SeqtagError, match="--embedding-dim 2"):
        seqtag.train(random_sentences(3), config=TaggerConfig(**TINY), train_config=TrainConfig(epochs=1, vectors=str(path)), quiet=True)


def test_vectors_through_the_cli(tmp_path):
    from seqtag.cli.app import main

    seqtag.write_conll(seqtag.tutorial_corpus(), tmp_path / "t.conll")
    path = _write(tmp_path / "v.txt", ["the 1 0 0", "dog 0 1 0"])
    assert main(["train", "--train", str(tmp_path / "t.conll"), "--output-dir", str(tmp_path / "m"), "--epochs", "1",
                 "--vectors", str(path), "--freeze-vectors", "--embedding-dim", "3", "--quiet", "--threads", "1"]) == 0
    tagger = seqtag.load(tmp_path / "m")
    assert tagger.word_embedding.weight[tagger.vocabs.words["dog"]].tolist() == [0, 1, 0]
    import json

    training = json.loads((tmp_path / "m" / "config.json").read_text())["training"]
    assert training["vectors"] == str(path) and training["freeze_vectors"] is True
    assert torch.equal(tagger.word_embedding.weight[0], torch.zeros(3))


@pytest.mark.parametrize("damage", ["truncated", "not gzip"])
def test_a_damaged_gz_is_one_line(tmp_path, damage):
    data = gzip.compress("".join(f"w{i} 1 2 3\n" for i in range(2000)).encode())
    path = tmp_path / "v.txt.gz"
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"plain text, not gzip\n")
    with pytest.raises(SeqtagError) as info:
        read_vectors(path)
    message = str(info.value)
    assert message.startswith(f"{path}: cannot read the vectors: a truncated or damaged .gz file") and "\n" not in message
