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
    follow_scheme,
    read_files,
    training_data,
)
from seqtag.data.tutorial import TUTORIAL_MODEL, TUTORIAL_TRAINING, tutorial_corpus
from seqtag.model.directory import trained_data_config
from seqtag.schemes import first_break

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


# -- tag schemes, held where the data is read -----------------------------------------------------

BIO_BROKEN = "Ann\tB-PER\nSmith\tI-PER\nin\tO\nOslo\tB-LOC\n\nto\tO\nRome\tI-LOC\n\nBob\tI-PER\nLee\tI-PER\n"
BIOES = "Ann\tB-PER\nSmith\tE-PER\nin\tO\nOslo\tS-LOC\n\n"


def test_a_sentence_that_breaks_the_scheme_names_file_line_tags_and_how_many_more(tmp_path):
    path = tmp_path / "train.conll"
    path.write_text(BIO_BROKEN, encoding="utf-8")
    dc = DataConfig(train_file=str(path))
    with pytest.raises(SeqtagError) as e:
        training_data(dc, TaggerConfig(), TrainConfig())
    assert str(e.value).startswith(f"{path}:7: 'I-LOC' after 'O' breaks the BIO scheme (and 1 more sentence ")
    assert "--repair-tags" in str(e.value) and "\n" not in str(e.value)


def test_repair_tags_reads_the_sentences_as_conlleval_and_says_how_many(tmp_path, capsys):
    path = tmp_path / "train.conll"
    path.write_text(BIO_BROKEN, encoding="utf-8")
    dc = DataConfig(train_file=str(path), validation_file=str(path), repair_tags=True)
    train, dev = training_data(dc, TaggerConfig(), TrainConfig())
    assert [s.tags for s in train] == [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-LOC"], ["B-PER", "I-PER"]]
    assert dev == train and [s.lines for s in train] == [[1, 2, 3, 4], [6, 7], [9, 10]]
    err = capsys.readouterr().err.splitlines()
    assert err == [f"seqtag: {path}: repaired 2 tag(s) in 2 sentence(s) to follow BIO (--repair-tags)"] * 2


def test_a_forced_scheme_the_tags_do_not_follow_is_refused_where_they_are_read(tmp_path):
    good, bioes = tmp_path / "good.conll", tmp_path / "bioes.conll"
    good.write_text("Ann\tB-PER\nSmith\tI-PER\nin\tO\n\n", encoding="utf-8")
    bioes.write_text(BIOES, encoding="utf-8")
    with pytest.raises(SeqtagError, match=r"bioes.conll:2: tag 'E-PER' is not a BIO tag \(2 such tags: E-PER, S-LOC\); "
                       r"these tags follow BIOES: give --tag-scheme bioes"):  # fmt: skip
        training_data(DataConfig(train_file=str(bioes)), TaggerConfig(tag_scheme="bio"), TrainConfig())
    for config in (TaggerConfig(), TaggerConfig(crf=False), TaggerConfig(constrain=False)):  # dev: the train scheme
        with pytest.raises(SeqtagError, match=r"bioes.conll:2: tag 'E-PER' is not a BIO tag"):
            training_data(DataConfig(train_file=str(good), validation_file=str(bioes)), config, TrainConfig())
    pos = tmp_path / "pos.conll"
    write_conll(tutorial_corpus(), pos)
    with pytest.raises(SeqtagError, match=r"pos.conll:1: tag 'DET' is not a IOB1 tag .* these are not span tags: "
                       r"give --tag-scheme none"):  # fmt: skip
        training_data(DataConfig(train_file=str(pos)), TaggerConfig(tag_scheme="iob1"), TrainConfig())


def test_bio_and_bioes_sentences_mixed_are_refused_or_repaired_to_bioes(tmp_path, capsys):
    path = tmp_path / "mixed.conll"
    path.write_text(BIOES + "Bob\tB-PER\nLee\tI-PER\nsaw\tO\nRome\tB-LOC\n", encoding="utf-8")
    with pytest.raises(SeqtagError, match=r"mixed.conll:8: 'O' after 'I-PER' breaks the BIOES scheme: "):
        training_data(DataConfig(train_file=str(path)), TaggerConfig(), TrainConfig())
    train, _ = training_data(DataConfig(train_file=str(path), repair_tags=True), TaggerConfig(), TrainConfig())
    assert train[1].tags == ["B-PER", "E-PER", "O", "S-LOC"]
    assert "repaired 2 tag(s) in 1 sentence(s) to follow BIOES" in capsys.readouterr().err


def test_evaluation_data_is_held_to_the_models_scheme_and_tags_it_lacks_are_left_to_unknown_tags(tmp_path):
    path = tmp_path / "gold.conll"
    path.write_text("Ann\tS-PER\nin\tO\nOslo\tI-LOC\n\n", encoding="utf-8")
    with pytest.raises(SeqtagError, match=r"gold.conll:3: 'I-LOC' after 'O' breaks the BIO scheme: repair them with "
                       r"--repair-tags \(in Python: seqtag.schemes.repair\)$"):  # fmt: skip
        evaluation_data(DataConfig(), str(path), None, "bio")  # S-PER: a tag the model lacks, read as O
    gold = evaluation_data(DataConfig(repair_tags=True), str(path), None, "bio")
    assert gold[0].tags == ["S-PER", "O", "B-LOC"]
    assert evaluation_data(DataConfig(), str(path), None, "none")[0].tags == ["S-PER", "O", "I-LOC"]


def test_python_sentences_are_named_by_index(capsys):
    sentences = [Sentence(["a"], ["O"]), Sentence(["a", "b", "c"], ["B-X", "E-X", "B-X"])]
    with pytest.raises(SeqtagError, match=r"^the dev data, sentence 1, token 2: 'B-X' ending the sentence breaks the BIOES"):
        follow_scheme(sentences, "bioes", "the dev data", by_line=False)
    assert follow_scheme(sentences, "none", "the dev data") == sentences


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_the_shared_corpora_follow_their_schemes(ewt_dir, wnut_dir, split, capsys):
    """WNUT-17 is BIO without a single break (so --repair-tags changes nothing); EWT's POS tags
    have no scheme to follow."""
    wnut = read_files(DataConfig(), str(wnut_dir / f"{split}.conll"))
    assert all(first_break(s.tags, "bio") is None for s in wnut)
    dc = DataConfig(train_file=str(wnut_dir / f"{split}.conll"), repair_tags=True)
    assert training_data(dc, TaggerConfig(), TrainConfig())[0] == wnut
    ewt = str(ewt_dir / f"en_ewt-ud-{split}.conllu")
    assert len(training_data(DataConfig(train_file=ewt), TaggerConfig(), TrainConfig())[0]) > 2000
    assert capsys.readouterr().err == ""
