"""Export the id-level path with ``torch.export``: one program per sentence-length bucket.

:func:`to_torch_export` writes a directory of ``torch.export`` programs of
:meth:`Tagger.tag_ids <seqtag.model.tagger.Tagger.tag_ids>` (``words, cases, chars, lengths`` ► tag
ids), one per sentence-length bucket, because exporting the LSTM specializes the sequence
length; :func:`load_torch_export` returns a :class:`TorchExportTagger`, a callable that pads
each batch up to its bucket and tags strings with seqtag's own encoder and batch plan.
The TorchScript export, strings in and strings out, is :mod:`seqtag.serving.torchscript`.
"""

import copy
import io
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from seqtag import __version__
from seqtag.config import DEFAULT_BATCH_SIZE, TaggerConfig, check_value
from seqtag.data.dataset import collate_strings, encode_strings, string_rules
from seqtag.data.encoding import check_batch_size, check_sentences, plan_batches
from seqtag.data.vocab import Vocabularies
from seqtag.errors import SeqtagError
from seqtag.fileio import WriteError, atomic_write_bytes, atomic_write_text, make_dir
from seqtag.model.directory import check_finite, check_vocab_sizes, vocab_sizes
from seqtag.model.tagger import Tagger, as_tagger, check_id_batch, refuse_encoder
from seqtag.serving.files import FORMAT_VERSIONS, METADATA_NAME, TORCH_EXPORT_FORMAT
from seqtag.serving.torchscript import check_metadata

"""Name of the manifest file of a ``torch.export`` directory."""
EXPORT_VOCAB_FILE = "vocab.json"
DEFAULT_MAX_LENGTH = 128
"""Longest sentence that :func:`to_torch_export` covers unless told otherwise."""
MAX_LENGTH = 1024
"""Longest ``max_length`` :func:`to_torch_export` takes: its time grows with the sum of the bucket
lengths (about 2 minutes for 8 to 81 on 2 cores), so past this it would run for hours, and
``--max-length 1000000000`` would try to trace billion-token programs. TorchScript has no limit."""
MIN_WORD_LENGTH = 2
"""Narrowest character width the ``torch.export`` programs take (narrower batches are padded)."""


class TagIds(nn.Module):
    """The id-level path that :func:`to_torch_export` exports: :meth:`Tagger.tag_ids
    <seqtag.model.tagger.Tagger.tag_ids>` (its checks and empty-row handling are skipped while
    exporting), on the padded LSTM path and one character-CNN convolution.

    ``forward(words, cases, chars, lengths)`` takes ``(B, T)``, ``(B, T)``, ``(B, T, W)`` and
    ``(B,)`` int64 tensors (``lengths >= 1``) and returns ``(B, T)`` int64 tag ids, 0 at padding.
    """

    def __init__(self, tagger: Tagger) -> None:
        super().__init__()
        self.tagger = copy.deepcopy(tagger).cpu().eval().requires_grad_(False)
        self.tagger.set_rnn_mode(torch.device("cpu"), exporting=True)
        if self.tagger.char_cnn is not None:
            # One convolution over every character slot: CharCNN's CPU path over the real
            # characters has a data-dependent row count (nonzero), which torch.export cannot
            # trace. Same result up to float rounding.
            self.tagger.char_cnn.dense = True

    def forward(self, words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor) -> Tensor:
        return self.tagger.tag_ids(words, cases, chars, lengths)


def length_buckets(max_length: int) -> list[int]:
    """The default buckets: 8, 16, 32, ... doubling below ``max_length``, then ``max_length``.

    >>> length_buckets(128), length_buckets(100), length_buckets(5)
    ([8, 16, 32, 64, 128], [8, 16, 32, 64, 100], [5])
    """
    if max_length < 1:
        raise ValueError(f"expected max_length >= 1, got {max_length}")
    buckets = []
    size = 8
    while size < max_length:
        buckets.append(size)
        size *= 2
    return [*buckets, max_length]


def _bucket_file(length: int) -> str:
    return f"bucket_{length}.pt2"


def to_torch_export(
    model_or_dir: Tagger | str | os.PathLike,
    path: str | os.PathLike,
    max_length: int = DEFAULT_MAX_LENGTH,
    buckets: Sequence[int] | None = None,
) -> Path:
    """Export the id-level path with ``torch.export``: one program per sentence-length bucket.

    Exporting ``nn.LSTM`` (torch 2.13) specializes the sequence length, and the CRF's Viterbi
    loop is unrolled over it; so each bucket length ``L`` gets its own program, whose batch
    dimension is dynamic. A batch whose longest sentence has ``n`` tokens runs in the smallest
    bucket ``L >= n``, padded: padding changes no result (the model ignores it given lengths).
    The character width is dynamic too, from 2 to ``max_word_length`` (:data:`MIN_WORD_LENGTH`).

    Args:
        model_or_dir: a :class:`~seqtag.model.tagger.Tagger` or a model directory.
        path: a directory to create (it must not exist, or be empty): ``bucket_<L>.pt2`` per
            bucket (each a ``torch.export.save`` file), ``seqtag.json`` (the manifest) and
            ``vocab.json``. Written in a temporary sibling directory, then renamed.
        max_length: the longest sentence covered; longer ones are refused by the loader.
        buckets: the bucket lengths (default :func:`length_buckets` of ``max_length``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Note:
        Exporting takes time roughly proportional to the sum of the bucket lengths: with the
        default architecture, on a busy 2-core CPU, about 2 minutes for buckets 8 to 81.

        About 85 lines, 35 of them this docstring, on purpose: the checks, the dynamic
        dimensions, the loop over buckets and the temporary directory are one transaction
        (nothing is left behind on an error), read best in one place.
    """
    tagger = as_tagger(model_or_dir)
    refuse_encoder(tagger, "torch.export")
    check_value("max_length", max_length, {"min": 1, "max": MAX_LENGTH}, int)
    lengths = sorted(set(buckets if buckets is not None else length_buckets(max_length)))
    if not lengths or lengths[0] < 1 or lengths[-1] > MAX_LENGTH:
        raise SeqtagError(f"expected bucket lengths from 1 to {MAX_LENGTH}, got {lengths}")
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise SeqtagError(f"{path} already exists; choose a new directory for the torch.export programs")
    config = tagger.config
    word_length = config.max_word_length if config.char_filters > 0 else 0
    module = TagIds(tagger)
    batch = torch.export.Dim("batch", min=1)
    char_dims = {0: batch}
    if word_length >= MIN_WORD_LENGTH:
        # a width of 1 would be specialized (torch.export's 0/1 rule): the loader pads to 2
        char_dims[2] = torch.export.Dim("word_length", min=MIN_WORD_LENGTH, max=word_length)
    dynamic = ({0: batch}, {0: batch}, char_dims, {0: batch})
    make_dir(path.parent)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as e:
        raise WriteError(path, e) from None
    try:
        for length in lengths:
            # batch of 2 (a batch of 1 would be specialized), one sentence shorter than the bucket
            example = (
                torch.ones((2, length), dtype=torch.long),
                torch.ones((2, length), dtype=torch.long),
                torch.ones((2, length, min(word_length, 8)), dtype=torch.long),
                torch.tensor([length, max(1, length // 2)], dtype=torch.long),
            )
            with torch.no_grad():
                program = torch.export.export(module, example, dynamic_shapes=dynamic)
            # into memory first: torch.export.save writing to a full disk aborts the process from
            # C++ (no exception to catch); a Python write fails with ENOSPC as every other file
            buffer = io.BytesIO()
            torch.export.save(program, buffer)
            try:
                atomic_write_bytes(tmp / _bucket_file(length), buffer.getvalue())
            except WriteError as e:  # named by the directory asked for, not the temporary one
                raise WriteError(path, e.reason) from None
        manifest = _manifest(tagger, lengths, word_length)
        atomic_write_text(tmp / METADATA_NAME, json.dumps(manifest, indent=2) + "\n")
        atomic_write_text(tmp / EXPORT_VOCAB_FILE, json.dumps(tagger.vocabs.to_dict(), ensure_ascii=False))
        if path.exists():
            path.rmdir()  # empty, checked above
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _manifest(tagger: Tagger, lengths: list[int], word_length: int) -> dict:
    """The JSON object of a ``torch.export`` directory's ``seqtag.json`` (:data:`METADATA_NAME`)."""
    return {
        "format": TORCH_EXPORT_FORMAT,
        "format_version": FORMAT_VERSIONS[TORCH_EXPORT_FORMAT],
        "seqtag_version": __version__,
        "torch_version": torch.__version__,
        "buckets": {str(n): _bucket_file(n) for n in lengths},
        "max_length": lengths[-1],
        "word_length": word_length,
        "min_word_length": min(word_length, MIN_WORD_LENGTH),
        "tags": list(tagger.vocabs.tags.itos),
        "model": tagger.config.to_dict(),
    }


class TorchExportTagger:
    """The programs of a :func:`to_torch_export` directory behind one callable.

    ``tagger(words, cases, chars, lengths)`` picks the smallest bucket that holds the longest
    sentence, pads up to it, runs that program and returns ``(batch, seq_len)`` int64 tag ids
    (0 at padding and in rows of length 0), like ``ScriptedTagger.tag_ids``. :meth:`predict`
    tags token strings, encoding them with seqtag's own :func:`~seqtag.data.dataset.encode_tokens`.

    Attributes:
        buckets: the bucket lengths, ascending; ``max_length`` is the last.
        word_length: the widest character dimension the programs take (``max_word_length``;
            0 without character features).
        min_word_length: the narrowest (2; 0 without character features).
        tags: the tag names, in id order.
        config: the :class:`~seqtag.config.TaggerConfig`.
        vocabs: the :class:`~seqtag.data.vocab.Vocabularies`.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        manifest_path = self.directory / METADATA_NAME
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            vocab = json.loads((self.directory / EXPORT_VOCAB_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise SeqtagError(f"{self.directory}: not a seqtag torch.export directory ({e})") from None
        check_metadata(manifest, TORCH_EXPORT_FORMAT, manifest_path)
        try:
            self.vocabs = Vocabularies.from_dict(vocab)
        except ValueError as e:
            raise SeqtagError(f"{self.directory / EXPORT_VOCAB_FILE}: not a seqtag vocabulary ({e})") from None
        self.metadata = manifest
        self.files = self._bucket_files(manifest, manifest_path)
        self.buckets = sorted(self.files)
        self.max_length = self.buckets[-1]
        self.tags: list[str] = list(manifest["tags"])
        self.config = TaggerConfig.from_dict(manifest["model"])
        if self.tags != self.vocabs.tags.itos:
            raise SeqtagError(f"{manifest_path}: its tags are not those of {EXPORT_VOCAB_FILE}: the two come from different models")
        self.word_length = self.config.max_word_length if self.config.char_filters > 0 else 0
        self.min_word_length = min(self.word_length, MIN_WORD_LENGTH)
        for key, value in (("max_length", self.max_length), ("word_length", self.word_length),
                           ("min_word_length", self.min_word_length)):  # fmt: skip
            if manifest.get(key) != value:
                raise SeqtagError(f"{manifest_path}: expected {key} {value} (its buckets and model), got {manifest.get(key)!r}")
        self._programs: dict[int, nn.Module] = {}

    @staticmethod
    def _bucket_files(manifest: dict, where: Path) -> dict[int, str]:
        """The manifest's ``buckets``: a file name in the directory per bucket length >= 1."""
        buckets = manifest.get("buckets")
        files: dict[int, str] = {}
        if isinstance(buckets, dict):
            for n, name in buckets.items():
                if not (isinstance(n, str) and n.isdigit() and int(n) >= 1 and name == _bucket_file(int(n))):
                    files = {}
                    break
                files[int(n)] = name
        if not files:
            raise SeqtagError(f'{where}: expected "buckets" as {{"8": "bucket_8.pt2", ...}}, got {buckets!r}'[:300])
        missing = [name for name in files.values() if not (where.parent / name).is_file()]
        if missing:
            raise SeqtagError(f"{where.parent}: no {missing[0]}, a program the manifest names")
        return files

    def program(self, length: int) -> nn.Module:
        """The program (``ExportedProgram.module()``) of bucket ``length``, loaded on first use and
        checked then: its tensors fit the vocabularies (:func:`~seqtag.model.directory.check_vocab_sizes`)
        and are finite."""
        if length not in self._programs:
            path = self.directory / self.files[length]
            export_log = logging.getLogger("torch.export")  # it logs a torn archive's traceback, then fails
            level = export_log.level
            export_log.setLevel(logging.ERROR)
            try:
                program = torch.export.load(path)
            except Exception as e:  # a torn or foreign file: RuntimeError, zipfile.BadZipFile, KeyError, ...
                first = (str(e).strip().splitlines() or [""])[0][:200]
                raise SeqtagError(f"{path}: not a readable torch.export program ({type(e).__name__}: {first})") from None
            finally:
                export_log.setLevel(level)
            widths = [tuple(n.meta["val"].shape)[1:2] for n in program.graph.nodes if n.op == "placeholder" and n.name == "words"]
            if widths != [(length,)]:  # another bucket's program under this name: its guard would fail mid-batch
                raise SeqtagError(
                    f"{path}: the program takes sentences of {widths[0][0] if widths and widths[0] else '?'} tokens, "
                    f"not the {length} of its bucket: the directory's files were renamed or come from another export"
                )
            state = program.state_dict
            check_vocab_sizes(state, vocab_sizes(self.vocabs), self.directory / EXPORT_VOCAB_FILE, path, prefix="tagger.")
            check_finite(state, path)
            self._programs[length] = program.module()
        return self._programs[length]

    def bucket(self, length: int) -> int:
        """The smallest bucket that holds a sentence of ``length`` tokens."""
        for size in self.buckets:
            if size >= length:
                return size
        raise ValueError(
            f"expected sentences of at most {self.max_length} tokens (the largest exported bucket), "
            f"got {length}: export with a larger max_length, or use the TorchScript export"
        )

    def __call__(self, words: Tensor, cases: Tensor, chars: Tensor, lengths: Tensor) -> Tensor:
        """Tag ids of a padded batch; the shapes and checks of
        :meth:`Tagger.tag_ids <seqtag.model.tagger.Tagger.tag_ids>` (:func:`~seqtag.model.tagger.check_id_batch`)."""
        lengths = check_id_batch(words, cases, chars, lengths)
        b, t = words.shape
        out = torch.zeros((b, t), dtype=torch.long)
        if b == 0 or t == 0 or int(lengths.max()) == 0:
            return out
        words, cases, chars = words.cpu(), cases.cpu(), chars.cpu()
        if self.word_length and chars.size(2) > self.word_length:
            raise ValueError(f"expected at most {self.word_length} characters per word, got {chars.size(2)}")
        keep = (lengths > 0).nonzero().squeeze(1)
        n = int(lengths.max())
        size = self.bucket(n)
        width = max(chars.size(2), self.min_word_length) if self.word_length else 0
        # shape: (B', size) and (B', size, width), zero-padded
        pad_words = torch.zeros((len(keep), size), dtype=torch.long)
        pad_cases = torch.zeros((len(keep), size), dtype=torch.long)
        pad_chars = torch.zeros((len(keep), size, width), dtype=torch.long)
        pad_words[:, :n] = words[keep, :n]
        pad_cases[:, :n] = cases[keep, :n]
        if self.word_length:
            pad_chars[:, :n, : chars.size(2)] = chars[keep, :n]
        with torch.inference_mode():
            paths = self.program(size)(pad_words, pad_cases, pad_chars, lengths[keep])
        out[keep, :n] = paths[:, :n]
        return out

    def predict(self, sentences: Sequence[Sequence[str]], batch_size: int = DEFAULT_BATCH_SIZE) -> list[list[str]]:
        """Tag tokenized sentences as :meth:`Tagger.predict <seqtag.model.tagger.Tagger.predict>` does:
        the same encoder and batch plan (:func:`~seqtag.data.dataset.plan_batches`).

        Raises:
            ValueError: ``batch_size < 1``; a sentence longer than :attr:`max_length`.
        """
        sentences = check_sentences(sentences)
        check_batch_size(batch_size)
        lens = [len(s) for s in sentences]
        plan = plan_batches(lens, batch_size)
        too_long = [i for i, n in enumerate(lens) if n > self.max_length]
        if too_long:
            raise SeqtagError(
                f"sentence {too_long[0]} has {lens[too_long[0]]} tokens, more than the "
                f"{self.max_length} this export covers: export with a larger max_length, or use TorchScript"
            )
        table = encode_strings(sentences, *string_rules(self.vocabs, self.config))
        out: list[list[str]] = [[] for _ in lens]
        for chunk in plan:
            words, cases, chars, lengths = collate_strings(table, lens, chunk)
            paths = self(words, cases, chars, lengths).tolist()
            for i, path in zip(chunk, paths):
                out[i] = [self.tags[j] for j in path[: lens[i]]]
        return out


    def predict_with_confidence(self, sentences: Sequence[Sequence[str]], batch_size: int = DEFAULT_BATCH_SIZE) -> list:
        """Not available: the programs give tag ids only. Raises :class:`~seqtag.errors.SeqtagError`."""
        raise SeqtagError(_TAGS_ONLY.format(what="confidence"))

    def nbest(self, sentences: Sequence[Sequence[str]], k: int, batch_size: int = DEFAULT_BATCH_SIZE) -> list:
        """Not available: the programs give tag ids only. Raises :class:`~seqtag.errors.SeqtagError`."""
        raise SeqtagError(_TAGS_ONLY.format(what="n-best"))

    def marginals(self, sentences: Sequence[Sequence[str]], batch_size: int = DEFAULT_BATCH_SIZE) -> list:
        """Not available: the programs give tag ids only. Raises :class:`~seqtag.errors.SeqtagError`."""
        raise SeqtagError(_TAGS_ONLY.format(what="marginals"))


_TAGS_ONLY = (
    "a torch.export directory gives tags only, no {what}: use the model directory, "
    "a TorchScript export or an ONNX export"
)


def load_torch_export(path: str | os.PathLike) -> TorchExportTagger:
    """Load a directory written by :func:`to_torch_export` (programs load lazily, per bucket)."""
    return TorchExportTagger(path)
