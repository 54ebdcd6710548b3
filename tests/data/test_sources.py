"""seqtag.data.sources: what a DataConfig names, as data (files and a local Hugging Face dataset),
the data settings a model directory was trained with, and the paths a checkpoint keeps."""

import json

import numpy as np
import pytest

import seqtag
from seqtag import SeqtagError, write_conll
from seqtag.config import DataConfig, TaggerConfig, TrainConfig
from seqtag.data.corpus import Sentence, read_conllu
from seqtag.data.dataset import TaggingDataset
from seqtag.data.sources import (
    absolute_paths,
    evaluation_data,
    read_files,
    training_data,
)
from seqtag.data.tutorial import TUTORIAL_MODEL, TUTORIAL_TRAINING, tutorial_corpus
from seqtag.model.directory import trained_data_config

from ..helpers import random_sentences

CONLLU = """# sent_id = 1
1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_
2\tdog\tdog\tNOUN\tNN\t_\t3\tnsubj\t_\t_
3\tbarks\tbark\tVERB\tVBZ\t_\t0\troot\t_\t_

# sent_id = 2
1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_

"""


@pytest.fixture
def files(tmp_path):
    (tmp_path / "train.conllu").write_text(CONLLU, encoding="utf-8")
    write_conll(tutorial_corpus(), tmp_path / "dev.conll")
    return tmp_path


def test_training_data_from_files_reads_the_named_columns(files):
    dc = DataConfig(train_file=str(files / "train.conllu"), tag_column="xpos")
    train, dev = training_data(dc, TaggerConfig(), TrainConfig())
    assert dev is None
    assert [(s.tokens, s.tags) for s in train] == [(["The", "dog", "barks"], ["DT", "NN", "VBZ"]), (["Hi"], ["UH"])]
    assert [s.tags for s in read_files(DataConfig(), str(files / "train.conllu"))] == [
        s.tags for s in read_conllu(files / "train.conllu")
    ]  # upos by default, as the reader's own default
    dc = dc.replace(validation_file=str(files / "dev.conll"), tag_column="")
    _, dev = training_data(dc, TaggerConfig(), TrainConfig())
    assert [(s.tokens, s.tags) for s in dev] == [(s.tokens, s.tags) for s in tutorial_corpus()]
    assert [s.tokens for s in evaluation_data(dc, str(files / "dev.conll"), None)] == [s.tokens for s in dev]


def test_a_token_column_that_is_not_an_index_is_one_clear_error(files):
    with pytest.raises(SeqtagError, match="expected an integer token column for a CoNLL file, got 'form'"):
        read_files(DataConfig(token_column="form"), str(files / "dev.conll"))


def test_training_data_from_a_local_dataset_encodes_as_tagging_dataset(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    train_s = random_sentences(40, max_len=9, tags=("A", "B", "C"))
    dev_s = random_sentences(10, max_len=9, tags=("A", "B", "C"))

    def rows(sentences):
        return {"tokens": [s.tokens for s in sentences], "tags": [s.tags for s in sentences]}

    splits = datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict(rows(train_s)), "validation": datasets.Dataset.from_dict(rows(dev_s))}
    )
    splits.save_to_disk(str(tmp_path / "ds"))
    config = TaggerConfig(max_word_length=6)
    dc = DataConfig(hf_dataset=str(tmp_path / "ds"), cache_dir=str(tmp_path / "cache"))
    train_set, dev_set = training_data(dc, config, TrainConfig())
    vocabs = seqtag.Vocabularies.build(train_s)
    for arrow, sentences in ((train_set, train_s), (dev_set, dev_s)):
        expected = TaggingDataset(sentences, vocabs, config)
        assert len(arrow) == len(expected)
        for i in range(len(arrow)):
            for field in ("words", "cases", "chars", "tags"):
                np.testing.assert_array_equal(np.asarray(getattr(arrow[i], field)),
                                              np.asarray(getattr(expected[i], field)), err_msg=f"{i} {field}")


def test_absolute_paths_resolve_files_and_local_datasets_but_keep_hub_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "local_ds").mkdir()
    dc = absolute_paths(DataConfig(train_file="a.conll", validation_file="", cache_dir="c", hf_dataset="local_ds"))
    assert dc.train_file == str(tmp_path / "a.conll") and dc.validation_file == ""
    assert dc.cache_dir == str(tmp_path / "c") and dc.hf_dataset == str(tmp_path / "local_ds")
    assert absolute_paths(DataConfig(hf_dataset="conll2003")).hf_dataset == "conll2003"


def test_trained_data_config_reads_config_json_only(tmp_path):
    corpus = tutorial_corpus()
    dc = DataConfig(train_file="train.conll", tag_column="3")
    model = tmp_path / "m"
    seqtag.train(corpus, config=TUTORIAL_MODEL, train_config=TUTORIAL_TRAINING.replace(epochs=1),
                 output_dir=model, quiet=True, data_config=dc)  # fmt: skip
    assert trained_data_config(model) == dc
    meta = json.loads((model / "config.json").read_text())
    meta.pop("data")  # a model saved without its data settings: the checkpoints are not read
    (model / "config.json").write_text(json.dumps(meta))
    assert any((model / "checkpoints").iterdir())
    assert trained_data_config(model) is None
    meta["data"] = {"num_proc": 0}
    (model / "config.json").write_text(json.dumps(meta))
    with pytest.raises(SeqtagError, match=r"config.json: unreadable data settings \(expected num_proc >= 1"):
        trained_data_config(model)


def test_sentences_read_keep_non_ascii_tokens(tmp_path):
    path = tmp_path / "odd.conll"
    write_conll([Sentence(["Über", "naïve", "日本"], ["A", "B", "C"])], path)
    assert read_files(DataConfig(), str(path))[0].tokens == ["Über", "naïve", "日本"]
