"""What a :class:`~seqtag.config.DataConfig` names, as data: the training and dev data of a
run (files read into sentences, or a Hugging Face dataset encoded into memory-mapped Arrow
datasets), and the paths a checkpoint keeps.

``seqtag train``, ``train --resume``, ``evaluate`` and ``bench`` read their data through here;
the readers themselves are :mod:`seqtag.data.corpus` (files) and :mod:`seqtag.data.hf` (datasets).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from seqtag.config import DataConfig, TaggerConfig, TrainConfig
from seqtag.data.corpus import Sentence, read_corpus
from seqtag.data.vectors import read_vectors
from seqtag.data.vocab import Vocabularies
from seqtag.errors import SeqtagError
from seqtag.schemes import (
    describe_break,
    detect_scheme,
    first_break,
    foreign_tags,
    repair,
    resolve_scheme,
)


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


def _where(where: str, sentence: Sentence, index: int, token: int, by_line: bool, unit: str) -> str:
    """``FILE:LINE`` of a sentence's token read from a file, else ``WHERE, UNIT I, token J``
    (indices from 0)."""
    if sentence.lines and by_line:
        return f"{where}:{sentence.lines[min(token, len(sentence) - 1)]}"
    return f"{where}, {unit} {index}, token {min(token, len(sentence) - 1)}"


def follow_scheme(
    sentences: Sequence[Sentence],
    scheme: str,
    where: str,
    repair_tags: bool = False,
    scoring: bool = False,
    by_line: bool = True,
    unit: str = "sentence",
) -> list[Sentence]:
    """``sentences`` checked against the span ``scheme`` (``"none"``: nothing to check), or
    repaired (``repair_tags``: :func:`seqtag.schemes.repair`, saying on standard error how many
    tags in how many sentences changed).

    Every model with a span scheme is held to it, whatever its head: the CRF's constraints
    forbid the moves a sentence breaks (it would train on paths it can never output), and span
    F1, which picks the best epoch, reads chunks by the same rules.

    Args:
        sentences: gold-tagged sentences (their ``lines``, if any, name the line of a problem).
        scheme: ``"none"`` or one of :data:`seqtag.schemes.SCHEMES`.
        where: the file (or a name for the data) the messages start with.
        repair_tags: repair the sentences that break the scheme instead of refusing them.
        scoring: gold data to score a model with: a tag foreign to the model's scheme is no
            error here (the model lacks it: ``--unknown-tags`` scores it as ``O`` or refuses it)
            and reads as ``O``.
        by_line: name a problem by the file's line (``where`` is the file the sentences were
            read from), else by the sentence's index in ``sentences`` and the token's.
        unit: what a sentence is called in the messages (a dataset's ``"row"``).

    Raises:
        SeqtagError: a tag the scheme lacks (unless ``scoring``), naming its line and every
            such tag; a sentence that breaks the scheme, naming the line of the
            token, the two tags and how many more sentences break it.
    """
    if scheme == "none":
        return list(sentences)
    if not scoring:
        _refuse_foreign_tags(sentences, scheme, where, by_line, unit)
    out, broken, first, changed = [], 0, None, 0
    for i, s in enumerate(sentences):
        at = first_break(s.tags, scheme)
        if at is None:
            out.append(s)
            continue
        broken += 1
        if first is None:
            first = f"{_where(where, s, i, at, by_line, unit)}: {describe_break(s.tags, at)} breaks the {scheme.upper()} scheme"
        if repair_tags:
            fixed = repair(s.tags, scheme)
            changed += sum(a != b for a, b in zip(s.tags, fixed))
            out.append(Sentence(list(s.tokens), fixed, list(s.comments), list(s.lines)))
    if broken and not repair_tags:
        more = f" (and {broken - 1} more {unit}{'' if broken == 2 else 's'} that break it)" if broken > 1 else ""
        raise SeqtagError(
            f"{first}{more}: repair them with --repair-tags (in Python: seqtag.schemes.repair)"
            + ("" if scoring else ", or name the scheme the data follows with --tag-scheme")
        )
    if broken:
        print(f"seqtag: {where}: repaired {changed} tag(s) in {broken} {unit}(s) to follow "
              f"{scheme.upper()} (--repair-tags)", file=sys.stderr)  # fmt: skip
    return out


def _refuse_foreign_tags(
    sentences: Sequence[Sentence], scheme: str, where: str, by_line: bool, unit: str
) -> None:
    foreign = foreign_tags((t for s in sentences for t in s.tags), scheme)
    if not foreign:
        return
    i, s = next((i, s) for i, s in enumerate(sentences) if any(t in foreign for t in s.tags))
    j = next(j for j, t in enumerate(s.tags) if t in foreign)
    followed = detect_scheme(t for s in sentences for t in s.tags)
    fix = f"these tags follow {followed.upper()}" if followed else "these are not span tags"
    shown = ", ".join(foreign[:20]) + (" ..." if len(foreign) > 20 else "")
    raise SeqtagError(
        f"{_where(where, s, i, j, by_line, unit)}: tag {s.tags[j]!r} is not a {scheme.upper()} tag "
        f"({len(foreign)} such tags: {shown}); {fix}: give --tag-scheme {followed or 'none'} (or auto)"
    )


def scheme_of(config: TaggerConfig, sentences: Sequence[Sentence]) -> str:
    """The span scheme a model of ``config`` trained on ``sentences`` has (as
    :class:`~seqtag.model.tagger.Tagger` resolves it from its tag set)."""
    return resolve_scheme(config.tag_scheme, sorted({t for s in sentences for t in s.tags}))


def hf_columns(dc: DataConfig) -> dict:
    """``dc``'s columns as the keyword arguments of :mod:`seqtag.data.hf`'s functions."""
    return {"tokens_column": dc.token_column or None, "tags_column": dc.tag_column or None, "label_names": dc.labels}


def training_data(dc: DataConfig, config: TaggerConfig, tc: TrainConfig, vocabs: Vocabularies | None = None):
    """The training and dev data that ``dc`` names: sentences read from files, or for a dataset
    memory-mapped Arrow datasets encoded with ``vocabs`` (built here from the training split
    when None); for a model with a pretrained encoder, a dataset's rows as sentences (the
    encoder's tokenizer reads them when they are encoded: the Arrow encoding holds no subwords)."""
    if not dc.hf_dataset:
        train = read_files(dc, dc.train_file)
        scheme = scheme_of(config, train)
        train = follow_scheme(train, scheme, dc.train_file, dc.repair_tags)
        if not dc.validation_file:
            return train, None
        return train, follow_scheme(read_files(dc, dc.validation_file), scheme, dc.validation_file, dc.repair_tags)
    from seqtag.data import hf  # imports datasets: only when asked for
    from seqtag.data.arrow import ArrowTaggingDataset

    cache_dir = dc.cache_dir or None
    splits = hf.load_splits(dc.hf_dataset, dc.hf_config or None, cache_dir=cache_dir)
    train_split = hf.pick_split(splits, dc.train_split, dc.hf_dataset)
    dev_name = dc.dev_split or ("validation" if "validation" in splits else None)
    dev_split = hf.pick_split(splits, dev_name, dc.hf_dataset) if dev_name else None
    columns = hf_columns(dc)
    if config.encoder:  # the Arrow encoding holds no subwords: the rows are read as sentences, tokenized in memory
        read = {name: list(hf.sentences(split, **columns)) for name, split in ((dc.train_split, train_split),
                                                                               (dev_name, dev_split)) if split is not None}  # fmt: skip
        scheme = scheme_of(config, read[dc.train_split])
        checked = {name: follow_scheme(rows, scheme, f"{dc.hf_dataset} ({name})", dc.repair_tags, by_line=False, unit="row")
                   for name, rows in read.items()}  # fmt: skip
        return checked[dc.train_split], checked.get(dev_name) if dev_name else None
    if vocabs is None:
        extra = read_vectors(tc.vectors, tc.vectors_max_words)[0] if tc.vectors else ()
        vocabs = hf.build_vocabs(train_split, config.lowercase, tc.min_freq, extra_words=extra, **columns)
    scheme = resolve_scheme(config.tag_scheme, vocabs.tags.itos)
    for name, split in ((dc.train_split, train_split), (dev_name, dev_split)):
        found = hf.scheme_problem(split, scheme, **columns) if split is not None else None
        if found is not None:
            problem, repairable = found
            fix = (
                "--repair-tags does not repair a --hf-dataset to train on yet: seqtag.data.hf.to_conll writes it as "
                "CoNLL files, which --train/--dev with --repair-tags repair" if dc.repair_tags else
                "name the scheme the data follows with --tag-scheme, or repair the tags: seqtag.data.hf.to_conll "
                "writes the dataset as CoNLL files, which --train/--dev with --repair-tags repair"
            )  # fmt: skip
            raise SeqtagError(f"{dc.hf_dataset} ({name}), {problem}" + (f": {fix}" if repairable else ""))
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




def evaluation_data(dc: DataConfig, path: str | None, split: str | None, scheme: str = "none") -> list[Sentence]:
    """The gold data to score: the file ``path`` read as ``dc`` says, or without a path the
    ``split`` of ``dc.hf_dataset`` (default: ``test``, or the only split), held to the model's
    span ``scheme`` (or repaired, ``dc.repair_tags``) as training data is (:func:`follow_scheme`)."""
    if not dc.hf_dataset:
        return follow_scheme(read_files(dc, path), scheme, path, dc.repair_tags, scoring=True)
    from seqtag.data import hf  # imports datasets: only when asked for

    splits = hf.load_splits(dc.hf_dataset, dc.hf_config or None, cache_dir=dc.cache_dir or None)
    split = split or ("test" if "test" in splits else None)
    dataset = hf.pick_split(splits, split, dc.hf_dataset)
    where = f"{dc.hf_dataset} ({split or next(iter(splits))})"
    sentences = hf.sentences(dataset, **hf_columns(dc))
    return follow_scheme(sentences, scheme, where, dc.repair_tags, scoring=True, unit="row")
