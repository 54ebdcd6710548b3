"""What a :class:`~seqtag.config.DataConfig` names, as data: the training and dev data of a
run (files read into sentences, or a Hugging Face dataset encoded into memory-mapped Arrow
datasets), and the paths a checkpoint keeps.

``seqtag train``, ``train --resume``, ``evaluate`` and ``bench`` read their data through here;
the readers themselves are :mod:`seqtag.data.corpus` (files) and :mod:`seqtag.data.hf` (datasets).
"""

from __future__ import annotations

from pathlib import Path

from seqtag.config import DataConfig, TaggerConfig, TrainConfig
from seqtag.data.corpus import Sentence, read_corpus
from seqtag.data.vectors import read_vectors
from seqtag.data.vocab import Vocabularies
from seqtag.errors import SeqtagError


def read_files(dc: DataConfig, path: str) -> list[Sentence]:
    """The sentences of the corpus file ``path``, read with ``dc``'s format and columns.

    Raises:
        SeqtagError: a token column that is not an index; CorpusError: a malformed file.
    """
    try:
        options = dc.file_reader_options()
    except ValueError as e:
        raise SeqtagError(str(e)) from None
    return read_corpus(path, **options)


def hf_columns(dc: DataConfig) -> dict:
    """``dc``'s columns as the keyword arguments of :mod:`seqtag.data.hf`'s functions."""
    return {"tokens_column": dc.token_column or None, "tags_column": dc.tag_column or None, "label_names": dc.labels}


def training_data(dc: DataConfig, config: TaggerConfig, tc: TrainConfig, vocabs: Vocabularies | None = None):
    """The training and dev data that ``dc`` names: sentences read from files, or for a dataset
    memory-mapped Arrow datasets encoded with ``vocabs`` (built here from the training split
    when None)."""
    if not dc.hf_dataset:
        return read_files(dc, dc.train_file), read_files(dc, dc.validation_file) if dc.validation_file else None
    if config.encoder:  # before encoding the whole dataset for nothing
        raise SeqtagError("--hf-dataset does not train an encoder model yet (its Arrow encoding holds no subwords): "
                          "give --train FILE")
    from seqtag.data import hf  # imports datasets: only when asked for
    from seqtag.data.arrow import ArrowTaggingDataset

    cache_dir = dc.cache_dir or None
    splits = hf.load_splits(dc.hf_dataset, dc.hf_config or None, cache_dir=cache_dir)
    train_split = hf.pick_split(splits, dc.train_split, dc.hf_dataset)
    dev_name = dc.dev_split or ("validation" if "validation" in splits else None)
    dev_split = hf.pick_split(splits, dev_name, dc.hf_dataset) if dev_name else None
    columns = hf_columns(dc)
    if vocabs is None:
        extra = read_vectors(tc.vectors, tc.vectors_max_words)[0] if tc.vectors else ()
        vocabs = hf.build_vocabs(train_split, config.lowercase, tc.min_freq, extra_words=extra, **columns)
    encode = dict(num_proc=dc.num_proc, cache_dir=cache_dir, **columns)
    train_set = ArrowTaggingDataset(train_split, vocabs, config, **encode)
    dev_set = ArrowTaggingDataset(dev_split, vocabs, config, **encode) if dev_split is not None else None
    return train_set, dev_set


def absolute_paths(dc: DataConfig) -> DataConfig:
    """``dc`` with absolute paths, as a checkpoint keeps it (a resumed run may start elsewhere)."""
    local = Path(dc.hf_dataset).expanduser() if dc.hf_dataset else None
    return dc.replace(
        train_file=str(Path(dc.train_file).resolve()) if dc.train_file else "",
        validation_file=str(Path(dc.validation_file).resolve()) if dc.validation_file else "",
        hf_dataset=str(local.resolve()) if local is not None and local.exists() else dc.hf_dataset,
        cache_dir=str(Path(dc.cache_dir).resolve()) if dc.cache_dir else "",
    )




def evaluation_data(dc: DataConfig, path: str | None, split: str | None):
    """The gold data to score: the file ``path`` read as ``dc`` says, or without a path the
    ``split`` of ``dc.hf_dataset`` (default: ``test``, or the only split) as lazy sentences."""
    if not dc.hf_dataset:
        return read_files(dc, path)
    from seqtag.data import hf  # imports datasets: only when asked for

    splits = hf.load_splits(dc.hf_dataset, dc.hf_config or None, cache_dir=dc.cache_dir or None)
    split = split or ("test" if "test" in splits else None)
    return hf.sentences(hf.pick_split(splits, split, dc.hf_dataset), **hf_columns(dc))
