"""The Hugging Face ``datasets`` adapter (seqtag/data/hf.py). Offline; every cache under tmp_path."""

import json
import re
import time

import datasets
import huggingface_hub.constants
import numpy as np
import pytest
import torch

from seqtag import (
    Sentence,
    SeqtagError,
    Tagger,
    TaggerConfig,
    TrainConfig,
    Vocabularies,
    evaluate,
    train,
)
from seqtag.config import DataConfig
from seqtag.data import arrow as arrow_data
from seqtag.data import hf
from seqtag.data.corpus import read_conll, read_conllu, write_conll
from seqtag.data.dataset import TaggingDataset, collate, make_loader

from ..helpers import random_sentences

TINY = dict(embedding_dim=16, hidden_dim=16, char_embedding_dim=8, char_filters=8)
FAST = dict(epochs=2, batch_size=16, lr=1e-2, device="cpu", patience=0, eval_batch_size=64)


@pytest.fixture(autouse=True)
def _offline_and_private_cache(tmp_path, monkeypatch):
    """No network, and no cache outside tmp_path: datasets reads these settings at import
    time, so its config module is patched as well as the environment."""
    cache = tmp_path / "hf-cache"
    for var in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(var, "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def _rows(sentences):
    return {"tokens": [s.tokens for s in sentences], "tags": [s.tags for s in sentences]}


def _classlabel_dataset(sentences, names, column="upos"):
    features = datasets.Features(
        {"tokens": datasets.List(datasets.Value("string")), column: datasets.List(datasets.ClassLabel(names=names))}
    )
    return datasets.Dataset.from_dict(
        {"tokens": [s.tokens for s in sentences], column: [s.tags for s in sentences]}, features=features
    )


@pytest.fixture(scope="module")
def ewt_slices():
    from ..conftest import EWT

    if not (EWT / "en_ewt-ud-train.conllu").exists():
        pytest.skip(f"UD English-EWT not found at {EWT}")
    train_s = read_conllu(EWT / "en_ewt-ud-train.conllu")
    names = sorted({t for s in train_s for t in s.tags})
    return train_s[:600], read_conllu(EWT / "en_ewt-ud-dev.conllu")[:200], names


@pytest.fixture(scope="module")
def ewt_expected(ewt_slices):
    """Dev scores of a tiny model trained on the EWT slices read from the CoNLL-U files."""
    train_s, dev_s, _ = ewt_slices
    tagger = train(train_s, dev_s, TaggerConfig(**TINY), TrainConfig(**FAST), quiet=True)
    return evaluate(tagger, dev_s)


def _same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for f in ("words", "cases", "chars", "tags", "lengths"):
            assert torch.equal(getattr(x, f), getattr(y, f)), f


# -- training and evaluation -----------------------------------------------------------------


def test_ewt_classlabel_dataset_trains_and_evaluates_like_the_conllu_files(ewt_slices, ewt_expected):
    train_s, dev_s, names = ewt_slices
    train_ds, dev_ds = _classlabel_dataset(train_s, names), _classlabel_dataset(dev_s, names)
    assert train_ds.features["upos"].feature.names == names  # the test is about ClassLabel ids

    from_hf = train(hf.sentences(train_ds), hf.sentences(dev_ds), TaggerConfig(**TINY), TrainConfig(**FAST), quiet=True)

    assert evaluate(from_hf, hf.sentences(dev_ds)) == ewt_expected
    assert ewt_expected["accuracy"] > 0.5  # it learned something in 2 tiny epochs


def test_ewt_arrow_dataset_trains_and_evaluates_like_the_conllu_files(ewt_slices, ewt_expected, tmp_path):
    train_s, dev_s, names = ewt_slices
    train_ds, dev_ds = _classlabel_dataset(train_s, names), _classlabel_dataset(dev_s, names)
    config, tc = TaggerConfig(**TINY), TrainConfig(**FAST)
    vocabs = hf.build_vocabs(train_ds, lowercase=config.lowercase, min_freq=tc.min_freq)
    train_set = arrow_data.ArrowTaggingDataset(train_ds, vocabs, config, cache_dir=tmp_path / "enc")
    dev_set = arrow_data.ArrowTaggingDataset(dev_ds, vocabs, config, cache_dir=tmp_path / "enc")

    from_arrow = train(train_set, dev_set, config, tc, quiet=True)

    assert evaluate(from_arrow, dev_set) == ewt_expected


def test_build_vocabs_streams_to_the_vocabularies_of_the_sentences(ewt_slices):
    train_s, _, names = ewt_slices
    names = [*names, "UNUSED"]
    for ds in (_classlabel_dataset(train_s, names), datasets.Dataset.from_dict(_rows(train_s))):
        for lowercase, min_freq in ((True, 1), (False, 2)):
            # small Arrow batches: the first-seen order (which breaks frequency ties) must
            # survive the batch boundaries
            streamed = hf.build_vocabs(ds, lowercase=lowercase, min_freq=min_freq, batch_size=97)
            assert streamed == Vocabularies.build(train_s, lowercase=lowercase, min_freq=min_freq)
    # tags are those that occur, not every ClassLabel name, as with Vocabularies.build
    assert "UNUSED" not in streamed.tags


# -- input forms -----------------------------------------------------------------------------


def _write_jsonl(path, sentences):
    path.write_text("".join(json.dumps({"tokens": s.tokens, "ner_tags": s.tags}) + "\n" for s in sentences))


@pytest.mark.parametrize(
    "form", ["dataset", "dataset_dict", "saved_dataset", "saved_dict", "jsonl", "json", "parquet", "csv", "mapping",
             "folder", "conll"]
)
def test_every_input_form_gives_the_same_sentences(form, tmp_path):
    train_s, test_s = random_sentences(30, seed=1), random_sentences(7, seed=2)
    cache = tmp_path / "cache"
    data = tmp_path / "data"
    data.mkdir()
    ds = datasets.Dataset.from_dict(_rows(train_s))
    split = "train"
    if form == "dataset":
        source = ds
    elif form in ("dataset_dict", "saved_dict"):
        source = datasets.DatasetDict({"train": ds, "test": datasets.Dataset.from_dict(_rows(test_s))})
        split = "test"
        if form == "saved_dict":
            source.save_to_disk(data / "saved")
            source = data / "saved"
    elif form == "saved_dataset":
        ds.save_to_disk(data / "saved")
        source = str(data / "saved")
    elif form in ("jsonl", "json"):
        source = data / f"train.{form}"
        _write_jsonl(source, train_s)
    elif form == "parquet":
        source = data / "train.parquet"
        ds.to_parquet(source)
    elif form == "csv":
        source = data / "train.csv"
        flat = datasets.Dataset.from_dict(
            {"tokens": [" ".join(s.tokens) for s in train_s], "tags": [" ".join(s.tags) for s in train_s]}
        )
        flat.to_csv(source)
    elif form in ("mapping", "folder"):
        _write_jsonl(data / "train.jsonl", train_s)
        _write_jsonl(data / "test.jsonl", test_s)
        source = {"train": str(data / "train.jsonl"), "test": str(data / "test.jsonl")} if form == "mapping" else data
        split = "test"
    elif form == "conll":
        source = data / "train.conll"
        write_conll(train_s, source)
    expected = test_s if split == "test" else train_s
    loaded = hf.load_split(source, split, cache_dir=cache)
    assert list(hf.sentences(loaded)) == expected
    assert hf.load_splits(source, cache_dir=cache)[split].num_rows == len(expected)


@pytest.mark.parametrize("encoding", ["strings", "classlabel", "ids_with_label_names"])
def test_string_classlabel_and_named_integer_tags_agree(encoding):
    sentences = random_sentences(20, tags=("B-PER", "I-PER", "O"))
    names = ["B-PER", "I-PER", "O"]
    label_names = None
    if encoding == "strings":
        ds = datasets.Dataset.from_dict(_rows(sentences)).rename_column("tags", "ner_tags")
    elif encoding == "classlabel":
        ds = _classlabel_dataset(sentences, names, column="ner_tags")
    else:
        ids = [[names.index(t) for t in s.tags] for s in sentences]
        ds = datasets.Dataset.from_dict({"tokens": [s.tokens for s in sentences], "ner_tags": ids})
        label_names = names
    view = hf.sentences(ds.with_format("numpy"), label_names=label_names)  # any format reads alike
    assert len(view) == 20 and list(view) == sentences
    assert view[3] == sentences[3] and view[-1] == sentences[-1] and view[2:5] == sentences[2:5]
    assert hf.build_vocabs(ds, label_names=label_names) == Vocabularies.build(sentences)


def test_tags_column_is_detected_in_the_ecosystem_order_or_chosen():
    ds = datasets.Dataset.from_dict(
        {"words": [["a", "b"]], "pos_tags": [["D", "N"]], "ner_tags": [["O", "B-X"]], "labels": [["l", "m"]]}
    )
    assert hf.sentences(ds, tokens_column="words")[0].tags == ["O", "B-X"]
    assert hf.sentences(ds, tokens_column="words", tags_column="labels")[0].tags == ["l", "m"]


@pytest.mark.parametrize(
    "data, kwargs, message",
    [
        ({"words": [["a"]], "tags": [["X"]]}, {}, "no tokens column 'tokens' (columns: words, tags)"),
        ({"tokens": [["a"]], "gold": [["X"]]}, {}, "no tags column: looked for ner_tags"),
        ({"tokens": [["a"]], "tags": [["X"]]}, {"tags_column": "upos"}, "no tags column 'upos'"),
        ({"tokens": [["a"]], "ner_tags": [[3]]}, {}, "integer tag ids without names"),
        ({"tokens": [["a", "b"]], "tags": [["X"]]}, {}, "row 0: expected as many tags as tokens"),
        ({"tokens": [["a"]], "ner_tags": [[3]]}, {"label_names": ["O", "B"]}, "outside the 2 label names"),
        ({"tokens": [[1, 2]], "tags": [["X", "Y"]]}, {}, "to hold lists of strings"),
    ],
)
def test_bad_columns_give_clear_errors(data, kwargs, message):
    ds = datasets.Dataset.from_dict(data)
    with pytest.raises(SeqtagError, match=re.escape(message)):
        list(hf.sentences(ds, **kwargs))
    with pytest.raises(SeqtagError, match=re.escape(message)):
        hf.build_vocabs(ds, **kwargs)


def test_missing_split_file_or_streaming_input_give_clear_errors(tmp_path):
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"tokens": [["a"]], "tags": [["X"]]})})
    with pytest.raises(SeqtagError, match="no split 'validation'; it has train"):
        hf.load_split(dd, "validation")
    with pytest.raises(SeqtagError, match="no such file"):
        hf.load_split(tmp_path / "missing.jsonl")
    with pytest.raises(SeqtagError, match="streaming"):
        hf.load_splits(dd["train"].to_iterable_dataset())
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(SeqtagError, match="expected data files of one format"):
        hf.load_splits(tmp_path / "notes.txt")


@pytest.mark.parametrize("name, config", [("conll2003", None), ("universal_dependencies", "en_ewt")])
def test_hub_name_offline_fails_fast_with_a_clear_error(name, config, tmp_path):
    start = time.perf_counter()
    with pytest.raises(SeqtagError, match=f"cannot load the Hugging Face dataset '{name}'.*Offline mode is on"):
        hf.load_splits(name, config, cache_dir=tmp_path / "cache")
    assert time.perf_counter() - start < 20


# -- CoNLL <-> datasets ----------------------------------------------------------------------


def test_from_conll_to_conll_round_trip_conllu_keeps_comments(ewt_dir, tmp_path):
    path = ewt_dir / "en_ewt-ud-dev.conllu"
    expected = read_conllu(path)
    ds = hf.from_conll(path, cache_dir=tmp_path / "cache")
    assert ds.column_names == ["tokens", "upos", "comments"]
    names = ds.features["upos"].feature.names
    assert names == sorted({t for s in expected for t in s.tags})
    assert list(hf.sentences(ds)) == expected
    hf.to_conll(ds, tmp_path / "out.conllu")
    assert read_conllu(tmp_path / "out.conllu") == expected
    # converted once: a second call reads the cached Arrow file
    assert hf.from_conll(path, cache_dir=tmp_path / "cache").cache_files == ds.cache_files


def test_from_conll_to_conll_round_trip_column_file_and_cache_follows_edits(tmp_path):
    sentences = random_sentences(25, tags=("B-LOC", "O", "I-LOC"))
    path = tmp_path / "in.conll"
    write_conll(sentences, path)
    ds = hf.from_conll(path, cache_dir=tmp_path / "cache")
    assert ds.column_names == ["tokens", "tags"]
    assert ds.features["tags"].feature.names == ["B-LOC", "I-LOC", "O"]
    hf.to_conll(ds, tmp_path / "out.conll")
    assert read_conll(tmp_path / "out.conll") == sentences
    write_conll(sentences[:3], path)  # an edited file is converted again, not read from the cache
    assert hf.from_conll(path, cache_dir=tmp_path / "cache").num_rows == 3


def test_from_conll_reads_the_token_column_it_is_given(tmp_path):
    path = tmp_path / "three.conll"
    path.write_text("1 The B-X\n2 dog O\n\n1 Runs O\n", encoding="utf-8")
    ds = hf.from_conll(path, tag_column=2, token_column=1, cache_dir=tmp_path / "cache")
    assert ds["tokens"] == [["The", "dog"], ["Runs"]]
    # the same file with the default token column is another dataset, not the cached one
    assert hf.from_conll(path, tag_column=2, cache_dir=tmp_path / "cache")["tokens"] == [["1", "2"], ["1"]]


def test_from_conll_xpos_column_is_found_without_naming_it(ewt_dir, tmp_path):
    ds = hf.from_conll(ewt_dir / "en_ewt-ud-dev.conllu", tag_column="xpos", cache_dir=tmp_path / "cache")
    assert hf.sentences(ds)[0] == read_conllu(ewt_dir / "en_ewt-ud-dev.conllu", column="xpos")[0]


# -- the encoded Arrow dataset ---------------------------------------------------------------


@pytest.fixture
def encoded_pair(tmp_path):
    sentences = random_sentences(150, max_len=25, tags=("A", "B", "C", "D"))
    sentences.append(Sentence(["x" * 50, "Üy"], ["A", "B"]))  # a word longer than max_word_length
    config = TaggerConfig(max_word_length=12)
    vocabs = Vocabularies.build(sentences)
    ds = datasets.Dataset.from_dict(_rows(sentences))
    arrow = arrow_data.ArrowTaggingDataset(ds, vocabs, config, cache_dir=tmp_path / "enc", batch_size=64)
    return arrow, TaggingDataset(sentences, vocabs, config), ds, vocabs, config


def test_arrow_dataset_items_equal_tagging_dataset_items(encoded_pair):
    arrow, reference, *_ = encoded_pair
    assert len(arrow) == len(reference)
    np.testing.assert_array_equal(arrow.lengths, reference.lengths)
    assert arrow.lengths.dtype == np.int64
    for i in (0, 7, len(arrow) - 1, -1):
        a, b = arrow[i], reference[i]
        for f in ("words", "cases", "chars", "tags"):
            assert getattr(a, f).dtype == getattr(b, f).dtype
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert [e.chars.shape for e in arrow] == [e.chars.shape for e in reference.items]
    with pytest.raises(IndexError):
        arrow[len(arrow)]


def test_arrow_dataset_batches_equal_tagging_dataset_batches_with_and_without_workers(encoded_pair):
    arrow, reference, *_ = encoded_pair
    expected = list(make_loader(reference, 16, shuffle=True, seed=5))
    _same_batches(list(make_loader(arrow, 16, shuffle=True, seed=5)), expected)
    _same_batches(list(make_loader(arrow, 16, shuffle=True, seed=5, num_workers=2)), expected)
    _same_batches([collate(arrow.__getitems__([3, 1, 4]))], [collate([reference[i] for i in (3, 1, 4)])])


def test_arrow_encoding_is_cached_and_parallel_encoding_agrees(encoded_pair, tmp_path):
    arrow, reference, ds, vocabs, config = encoded_pair
    files = [f["filename"] for f in arrow.encoded.cache_files]
    assert files and all(f.startswith(str(tmp_path / "enc")) for f in files)
    again = arrow_data.ArrowTaggingDataset(ds, vocabs, config, cache_dir=tmp_path / "enc", batch_size=64)
    assert [f["filename"] for f in again.encoded.cache_files] == files
    parallel = arrow_data.ArrowTaggingDataset(ds, vocabs, config, num_proc=2, cache_dir=tmp_path / "enc2")
    _same_batches(list(make_loader(parallel, 16, True, seed=2)), list(make_loader(reference, 16, True, seed=2)))
    other = arrow_data.ArrowTaggingDataset(ds, vocabs, config.replace(char_filters=0), cache_dir=tmp_path / "enc")
    assert other[0].chars.shape == (len(reference[0]), 0)  # another encoding, another cache file
    formatted = arrow_data.ArrowTaggingDataset(ds.with_format("torch"), vocabs, config)  # any format encodes alike
    _same_batches([collate(list(formatted))], [collate(reference.items)])


def test_arrow_dataset_without_tags_and_with_unknown_tags(encoded_pair):
    _, reference, ds, vocabs, config = encoded_pair
    untagged = arrow_data.ArrowTaggingDataset(ds.remove_columns("tags"), vocabs, config, with_tags=False)
    assert len(untagged[0].tags) == 0
    np.testing.assert_array_equal(untagged[0].words, reference[0].words)
    bad = datasets.Dataset.from_dict({"tokens": [["a"], ["b"]], "tags": [["A"], ["ZZZ"]]})
    with pytest.raises(SeqtagError, match="row 1: tags not in the model's tag set: ZZZ"):
        arrow_data.ArrowTaggingDataset(bad, vocabs, config)


def test_decoding_an_arrow_dataset_equals_decoding_its_sentences(encoded_pair):
    arrow, reference, *_ = encoded_pair
    tagger = Tagger(arrow.config.replace(**TINY), arrow.vocabs).eval()  # same encoding options
    assert tagger.decode_encoded(list(arrow), 32) == tagger.decode_encoded(reference.items, 32)


def test_arrow_encoding_of_a_read_only_saved_dataset_goes_to_the_datasets_cache(tmp_path, monkeypatch):
    sentences = random_sentences(10)
    datasets.Dataset.from_dict(_rows(sentences)).save_to_disk(tmp_path / "saved")
    saved = hf.load_split(tmp_path / "saved")
    monkeypatch.setattr(arrow_data, "_writable", lambda folder: folder != tmp_path / "saved")
    arrow = arrow_data.ArrowTaggingDataset(saved, Vocabularies.build(sentences), TaggerConfig())
    assert arrow.encoded.cache_files[0]["filename"].startswith(str(tmp_path / "hf-cache" / "seqtag-encoded"))
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == sorted(
        ["data-00000-of-00001.arrow", "dataset_info.json", "state.json"]
    )


def test_cli_trains_resumes_and_evaluates_on_a_saved_dataset_dict(tmp_path, capsys):
    from seqtag import Tagger
    from seqtag.cli.app import main

    splits = {"train": random_sentences(60, seed=1), "validation": random_sentences(20, seed=2),
              "test": random_sentences(20, seed=3)}  # fmt: skip
    datasets.DatasetDict({k: datasets.Dataset.from_dict(_rows(v)) for k, v in splits.items()}).save_to_disk(
        tmp_path / "saved"
    )
    out, cache = tmp_path / "run", tmp_path / "cache"
    tiny = ["--embedding-dim", "8", "--hidden-dim", "8", "--char-filters", "4", "--device", "cpu", "--quiet"]
    common = ["--hf-dataset", str(tmp_path / "saved"), "--hf-cache-dir", str(cache)]
    assert main(["train", *common, "--output-dir", str(out), "--epochs", "1", *tiny]) == 0
    assert main(["train", "--resume", str(out), "--epochs", "2", "--quiet"]) == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    capsys.readouterr()
    assert main(["evaluate", str(out), *common, "--split", "test", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == evaluate(Tagger.load(out), splits["test"])
    assert main(["evaluate", str(out), *common, "--split", "dev"]) == 1
    assert "has no split 'dev'; it has train, validation, test" in capsys.readouterr().err


def test_csv_strings_are_split_once_at_load_time_and_nowhere_else(tmp_path):
    sentences = random_sentences(12, seed=5)
    path = tmp_path / "train.csv"
    datasets.Dataset.from_dict(
        {"tokens": [" ".join(s.tokens) for s in sentences], "tags": [" ".join(s.tags) for s in sentences]}
    ).to_csv(path)
    loaded = hf.load_split(path, cache_dir=tmp_path / "cache")
    assert loaded.features["tokens"] == datasets.List(datasets.Value("string"))  # lists from here on
    assert hf.build_vocabs(loaded) == Vocabularies.build(sentences)
    text = datasets.Dataset.from_dict({"tokens": ["The dog"], "tags": ["DET NN"]})  # not from a CSV file
    with pytest.raises(SeqtagError, match="split into words only when read from a CSV file"):
        hf.sentences(text)


# -- tag schemes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["bio", "iob1", "bioes"])
@pytest.mark.parametrize("classlabel", [False, True])
def test_scheme_problem_agrees_with_first_break_row_by_row(scheme, classlabel):
    """The vectorized check over Arrow batches (batches of 7 rows, empty rows among them) finds
    the rows that first_break finds one by one, and names the first."""
    from seqtag.schemes import PREFIXES, describe_break, first_break

    names = ["O"] + [f"{p}-{t}" for t in ("PER", "creative-work") for p in PREFIXES[scheme]]
    sents = random_sentences(60, min_len=0, max_len=5, tags=tuple(names), seed=4)
    sents += [Sentence([], [])] * 3
    feature = datasets.ClassLabel(names=names) if classlabel else datasets.Value("string")
    features = datasets.Features({"tokens": datasets.List(datasets.Value("string")), "tags": datasets.List(feature)})
    ds = datasets.Dataset.from_dict(
        {"tokens": [s.tokens for s in sents], "tags": [[names.index(t) for t in s.tags] if classlabel else s.tags for s in sents]},
        features=features,
    )  # fmt: skip
    breaks = [(i, first_break(s.tags, scheme)) for i, s in enumerate(sents) if first_break(s.tags, scheme) is not None]
    assert len(breaks) > 2
    row, at = breaks[0]
    tags = sents[row].tags
    expected = (f"row {row}, token {min(at, len(tags) - 1)}: {describe_break(tags, at)} breaks the "
                f"{scheme.upper()} scheme (and {len(breaks) - 1} more rows that break it)")  # fmt: skip
    assert hf.scheme_problem(ds, scheme, batch_size=7) == (expected, True)
    fixed = ds.select(range(row)) if row else ds.select([len(sents) - 1])
    assert hf.scheme_problem(fixed, scheme, batch_size=7) is None
    assert hf.scheme_problem(ds, "none") is None


def test_scheme_problem_names_a_tag_the_forced_scheme_lacks():
    ds = datasets.Dataset.from_dict({"tokens": [["a"], ["b", "c"]], "tags": [["O"], ["B-PER", "E-PER"]]})
    message, repairable = hf.scheme_problem(ds, "bio")
    assert message.startswith("row 1, token 1: tag 'E-PER' is not a BIO tag (E-PER); these tags follow BIOES")
    assert not repairable


def test_training_on_a_dataset_that_breaks_its_scheme_is_one_line_naming_split_row_and_tags(tmp_path, capsys):
    from seqtag.cli.app import main

    rows = {"tokens": [["Ann", "Lee"], ["in", "Oslo"]], "ner_tags": [[1, 2], [0, 2]]}
    ner = datasets.Features({"tokens": datasets.List(datasets.Value("string")),
                             "ner_tags": datasets.List(datasets.ClassLabel(names=["O", "B-PER", "I-PER"]))})  # fmt: skip
    splits = datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows, features=ner)})
    splits.save_to_disk(str(tmp_path / "ds"))
    argv = ["train", "--hf-dataset", str(tmp_path / "ds"), "--output-dir", str(tmp_path / "m"), "--epochs", "1",
            "--hf-cache-dir", str(tmp_path / "cache"), "--quiet"]  # fmt: skip
    capsys.readouterr()  # save_to_disk's progress bar
    for flags, message in (
        ([], f"{tmp_path / 'ds'} (train), row 1, token 1: 'I-PER' after 'O' breaks the BIO scheme: name the scheme"),
        (["--repair-tags"], "--repair-tags does not repair a --hf-dataset to train on yet"),
    ):
        assert main([*argv, *flags]) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "m").exists()
    # evaluation reads the split as sentences: --repair-tags repairs them there
    from seqtag.data.sources import evaluation_data

    dc = DataConfig(hf_dataset=str(tmp_path / "ds"), repair_tags=True)
    assert [s.tags for s in evaluation_data(dc, None, "train", "bio")] == [["B-PER", "I-PER"], ["O", "B-PER"]]
    assert "ds (train): repaired 1 tag(s) in 1 row(s) to follow BIO" in capsys.readouterr().err
    with pytest.raises(SeqtagError, match=r"ds \(train\), row 1, token 1: 'I-PER' after 'O' breaks the BIO"):
        evaluation_data(dc.replace(repair_tags=False), None, "train", "bio")


@pytest.mark.parametrize("text", ["", "  \n\n"])
def test_an_empty_data_file_is_one_line(tmp_path, text):
    """datasets' JSON builder fails on it with a bare StopIteration."""
    path = tmp_path / "d.jsonl"
    path.write_text(text)
    with pytest.raises(SeqtagError, match=r"d.jsonl: an empty file: no rows to read"):
        hf.load_split(str(path), "train")
