"""Tagging a Hugging Face ``Dataset`` or ``DatasetDict``: a column of predicted tags added with
``Dataset.map(batched=True)``, so a corpus larger than memory is tagged without loading it
(``seqtag predict --hf-dataset`` and :func:`tag_dataset`)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqtag.config import DEFAULT_BATCH_SIZE, PredictConfig
from seqtag.errors import SeqtagError
from seqtag.fileio import make_dir
from seqtag.serving.predictor import Predictor, bound_method, process_predictor, set_torch_threads

if TYPE_CHECKING:
    import datasets

DEFAULT_OUTPUT_COLUMN = "pred_tags"


class _TagBatch:
    """The ``Dataset.map`` function of :func:`tag_dataset`: picklable; a model given by path is
    loaded once per process."""

    def __init__(self, model, tokens: str, output: str, config: PredictConfig) -> None:
        self.model = model
        self.tokens = tokens
        self.output = output
        self.config = config
        self.parent = os.getpid()
        self.threads_set = False

    def _predictor(self) -> Predictor:
        if isinstance(self.model, Predictor):
            return self.model
        if not isinstance(self.model, (str, os.PathLike)):  # a Tagger or another object with predict()
            bs = self.config.batch_size
            return Predictor(type(self.model).__name__, "", {"predict": bound_method(self.model, "predict", batch_size=bs)})
        return process_predictor(self.model, self.config.to_dict())

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        if os.getpid() != self.parent and not self.threads_set:  # a num_proc process: its share of the cores
            set_torch_threads(self.config.threads_per_worker())
            self.threads_set = True
        rows = batch[self.tokens]
        sentences = [list(row) for row in rows]
        predictor = self._predictor()
        nonempty = [s for s in sentences if s]
        tags = iter(predictor.predict(nonempty) if nonempty else [])
        return {self.output: [next(tags) if s else [] for s in sentences]}


def tag_dataset(
    tagger_or_path: Any,
    dataset: datasets.Dataset | datasets.DatasetDict,
    tokens_column: str | None = None,
    output_column: str = DEFAULT_OUTPUT_COLUMN,
    batch_size: int = DEFAULT_BATCH_SIZE,
    num_proc: int | None = None,
) -> datasets.Dataset | datasets.DatasetDict:
    """Add a column of predicted tags to a Hugging Face ``Dataset`` or ``DatasetDict``.

    The rows are tagged by ``Dataset.map(batched=True)``: the result is Arrow-backed (written to
    the dataset's cache files when it comes from files), so a corpus larger than memory is
    tagged without loading it.

    Args:
        tagger_or_path: a :class:`~seqtag.model.tagger.Tagger` (or any object with
            ``predict(sentences, batch_size)``), or the path of a model in any format that
            ``seqtag predict`` takes (loaded once per process).
        dataset: a ``datasets.Dataset`` or ``DatasetDict`` (every split is tagged).
        tokens_column: the tokens column (default ``tokens``): lists of strings, or
            whitespace-separated strings.
        output_column: the new column, ``Sequence(Value("string"))``; it must not exist.
        batch_size: sentences per forward pass (also the rows per ``map`` batch).
        num_proc: processes for ``map`` (each loads the model given by path once, and uses
            cores // num_proc threads); None or 1: this process.

    Returns:
        The dataset (or dict of splits) with ``output_column`` added.

    Raises:
        SeqtagError: a missing tokens column, an existing output column, a bad model.

    Example:
        >>> import datasets, seqtag
        >>> tagger = seqtag.Tagger(seqtag.TaggerConfig(hidden_dim=8), seqtag.Vocabularies.build(seqtag.tutorial_corpus()))
        >>> ds = datasets.Dataset.from_dict({"tokens": [["The", "dog"], []]})
        >>> tagged = tag_dataset(tagger, ds)
        >>> tagged["pred_tags"] == tagger.predict(ds["tokens"])
        True
    """
    if num_proc is not None and num_proc < 1:
        raise ValueError(f"expected num_proc >= 1, got {num_proc}")
    config = PredictConfig(batch_size=batch_size, workers=num_proc or 1)
    return tag_dataset_with(tagger_or_path, dataset, tokens_column, output_column, config)


def tag_dataset_with(tagger_or_path, dataset, tokens_column: str | None, output_column: str, config: PredictConfig):
    import datasets

    from seqtag.data import hf

    if isinstance(dataset, datasets.DatasetDict):
        return datasets.DatasetDict({
            name: tag_dataset_with(tagger_or_path, split, tokens_column, output_column, config)
            for name, split in dataset.items()
        })  # fmt: skip
    columns = hf.resolve_columns(dataset, tokens_column, with_tags=False)
    if output_column in dataset.column_names:
        raise SeqtagError(f"the dataset already has a column {output_column!r}: choose another output column")
    features = dataset.features.copy()
    features[output_column] = datasets.List(datasets.Value("string"))
    function = _TagBatch(tagger_or_path, columns.tokens, output_column, config)
    return dataset.map(
        function, batched=True, batch_size=config.batch_size, num_proc=config.workers if config.workers > 1 else None,
        features=features, load_from_cache_file=False, desc="tagging",
    )  # fmt: skip


def save_dataset(dataset, directory: Path) -> None:
    """``save_to_disk`` into a temporary sibling of ``directory``, then rename it into place."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise SeqtagError(f"{directory} already exists; choose a new directory for the tagged dataset")
    make_dir(directory.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        dataset.save_to_disk(str(tmp))
        if directory.exists():
            directory.rmdir()  # empty, checked above
        os.replace(tmp, directory)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SeqtagError(f"cannot write {directory}: {e.strerror or e}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
