"""``seqtag predict``: tag a corpus as a stream, in the corpus formats, with any model format.

The input is read as a stream of sentences (:func:`read_items`), cut into chunks of
``chunk_size`` sentences, each chunk is tagged by the model's :class:`Predictor` (which batches
through the one batch planner) and written before the next one is read, so memory is bounded by
the chunk and not by the input. Output order is input order.

Formats in (``--format``) and out (``--output-format``, default: the input's):

- ``text``: one whitespace-tokenized sentence per line (blank lines skipped); written as
  ``token<TAB>tag`` lines with a blank line after each sentence.
- ``conll``: a column file, the tokens in ``--token-column``; written back with a predicted
  column appended (or ``--tag-column N`` replaced), every other byte unchanged.
- ``conllu``: CoNLL-U, the tokens in FORM; written back with the model's tag column replaced on
  word lines; comments, multiword-token lines and empty nodes unchanged.
- ``jsonl``: one ``{"tokens": [...]}`` object per line; written back with ``tags`` (and
  ``confidence``, ``nbest`` when asked).

:func:`tag_dataset` adds a predicted-tags column to a Hugging Face ``Dataset`` or
``DatasetDict`` with ``Dataset.map(batched=True)``.

>>> import io, seqtag
>>> items = read_items(io.BytesIO(b"\\xef\\xbb\\xbfThe dog\\r\\n\\nA\\xe2\\x80\\xa8cat\\n"), "<stdin>", "text")
>>> [(item.line, item.tokens) for item in items]
[(1, ['The', 'dog']), (3, ['A', 'cat'])]
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import itertools
import json
import math
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from .config import _f, _JsonConfig
from .corpus import CONLLU_COLUMNS
from .errors import SeqtagError

FORMATS = ("text", "conll", "conllu", "jsonl")
SUFFIX_FORMATS = {".conllu": "conllu", ".conll": "conll", ".jsonl": "jsonl"}
"""Input formats by file suffix; any other suffix (``.txt`` included) and standard input are
``text``: a CoNLL-2003 file named ``eng.train`` or ``.txt`` needs ``--format conll``."""
DEFAULT_OUTPUT_COLUMN = "pred_tags"
DEFAULT_WORKERS = 2  # on 2 cores, 2 processes x 1 thread tagged EWT 2.0x faster than 1 x 2 (docs/tagging.md)

# Tags of one sentence: (tags, probability of each tag or None, n-best [(tags, log_prob)] or None)
Tagged = tuple[list[str], "list[float] | None", "list[tuple[list[str], float]] | None"]


def _ranged(default: Any, help: str, **limits: Any) -> Any:
    return _f(default, help, metavar="N", **limits)


@dataclass
class PredictConfig(_JsonConfig):
    """How ``seqtag predict`` runs; the same checks for every model format.

    Ranges live in the field metadata (``min``/``max``) and are checked on construction.

    >>> PredictConfig(batch_size=0)
    Traceback (most recent call last):
    ...
    ValueError: expected batch_size >= 1, got 0
    """

    batch_size: int = _ranged(256, "sentences per forward pass", min=1)
    device: str = _f("cpu", "auto, cpu, cuda, cuda:N or mps (exported torch.export and ONNX models: cpu)")
    threads: int = _ranged(
        0, "intra-op CPU threads per process (0 = torch's choice with one worker, else cores // workers)", min=0
    )
    workers: int = _ranged(DEFAULT_WORKERS, "processes that tag chunks side by side, each with its own model", min=1)
    chunk_size: int = _ranged(10_000, "sentences read, tagged and written at a time (bounds memory)", min=1)

    def __post_init__(self) -> None:
        shared = getattr(super(), "__post_init__", None)
        if shared is not None:  # the one metadata check of every configuration dataclass
            shared()
            return
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            low, high = f.metadata.get("min"), f.metadata.get("max")
            if low is not None and value < low:
                raise ValueError(f"expected {f.name} >= {low}, got {value}")
            if high is not None and value > high:
                raise ValueError(f"expected {f.name} <= {high}, got {value}")

    def threads_per_worker(self) -> int:
        """The torch threads each process uses: ``threads``, else cores // workers (0: torch's choice)."""
        if self.threads:
            return self.threads
        if self.workers == 1:
            return 0
        return max(1, _cores() // self.workers)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


# -- reading ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Item:
    """One sentence of the input and what is needed to write it back.

    Attributes:
        tokens: the tokens (``[]`` for a block without words, written back unchanged).
        line: the number of its first line in the input.
        lines: ``(text, line ending)`` of its input lines (``conll``/``conllu``; else empty).
        rows: for each token, the index of its line in ``lines``.
        obj: the JSON object of a ``jsonl`` line.
    """

    tokens: list[str]
    line: int
    lines: list[tuple[str, str]] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    obj: dict | None = None


def decoded_lines(stream: BinaryIO, name: str) -> Iterator[tuple[int, str, str]]:
    """Yield ``(line_number, text, line_ending)`` for each line of a byte stream.

    Lines end at ``\\n`` (``\\r\\n`` counts as one ending) and nowhere else: U+2028, U+0085 and
    form feeds stay inside their line. A leading byte-order mark is dropped. Bytes that are not
    UTF-8 raise :class:`~seqtag.errors.SeqtagError` ``NAME:LINE: not valid UTF-8 (byte B of the
    line is 0xXX)``, as corpus files do.
    """
    for number, raw in enumerate(stream, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SeqtagError(
                f"{name}:{number}: not valid UTF-8 (byte {e.start + 1} of the line is 0x{raw[e.start]:02x})"
            ) from None
        if number == 1:
            text = text.removeprefix("\ufeff")  # a byte-order mark, as Windows editors write
        if text.endswith("\r\n"):
            yield number, text[:-2], "\r\n"
        elif text.endswith("\n"):
            yield number, text[:-1], "\n"
        else:
            yield number, text, ""


def _split_columns(text: str) -> list[str]:
    """Columns of a CoNLL line: tab-separated, or (a line without a tab) space-separated."""
    return text.split("\t") if "\t" in text else text.split()


def _read_text(lines: Iterable[tuple[int, str, str]]) -> Iterator[Item]:
    for number, text, _ in lines:
        tokens = text.split()  # any whitespace separates tokens; only \n separates lines
        if tokens:
            yield Item(tokens, number)


def _read_blocks(lines: Iterable[tuple[int, str, str]], word: Callable[[int, str], str | None]) -> Iterator[Item]:
    """Blank-line separated blocks; ``word(number, text)`` gives a line's token or None (kept aside)."""
    item: Item | None = None
    for number, text, ending in lines:
        if item is None:
            item = Item([], number)
        item.lines.append((text, ending))
        if not text.strip():
            yield item
            item = None
            continue
        token = word(number, text)
        if token is not None:
            item.rows.append(len(item.lines) - 1)
            item.tokens.append(token)
    if item is not None:
        yield item


def _conll_word(name: str, token_column: int) -> Callable[[int, str], str | None]:
    def word(number: int, text: str) -> str | None:
        cols = _split_columns(text)
        if cols[0].strip() == "-DOCSTART-":
            return None
        try:
            token = cols[token_column].strip()
        except IndexError:
            raise SeqtagError(f"{name}:{number}: needs token column {token_column}, the line has {len(cols)}") from None
        if not token:
            raise SeqtagError(f"{name}:{number}: empty token in column {token_column}")
        return token

    return word


def _conllu_word(name: str) -> Callable[[int, str], str | None]:
    def word(number: int, text: str) -> str | None:
        if text.startswith("#"):
            return None
        cols = text.split("\t")
        if len(cols) != 10:
            raise SeqtagError(f"{name}:{number}: expected 10 tab-separated CoNLL-U fields, got {len(cols)}")
        word_id = cols[0].strip()
        if "-" in word_id or "." in word_id:  # a multiword token or an empty node: written back as is
            return None
        if not word_id.isdigit():
            raise SeqtagError(f"{name}:{number}: expected a word ID, got {word_id!r}")
        token = cols[1].strip()
        if not token:
            raise SeqtagError(f"{name}:{number}: empty FORM")
        return token

    return word


def _read_jsonl(lines: Iterable[tuple[int, str, str]], name: str) -> Iterator[Item]:
    for number, text, _ in lines:
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except ValueError as e:
            raise SeqtagError(f"{name}:{number}: not JSON ({e})") from None
        tokens = obj.get("tokens") if isinstance(obj, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            got = type(obj).__name__ if not isinstance(obj, dict) else f"tokens {type(tokens).__name__}"
            raise SeqtagError(f'{name}:{number}: expected an object with "tokens": a list of strings, got {got}')
        yield Item(tokens, number, obj=obj)


def read_items(stream: BinaryIO, name: str, format: str, token_column: int = 0) -> Iterator[Item]:
    """The sentences of a byte stream in ``format`` (one of :data:`FORMATS`), lazily, in order.

    Args:
        stream: a binary file or ``sys.stdin.buffer``.
        name: the name in error messages (the path, or ``<stdin>``).
        format: ``text``, ``conll``, ``conllu`` or ``jsonl``.
        token_column: the token column of a ``conll`` input.

    Raises:
        SeqtagError: ``NAME:LINE: ...`` for bytes that are not UTF-8 or a malformed line, when
            the iteration reaches it.
    """
    lines = decoded_lines(stream, name)
    if format == "text":
        return _read_text(lines)
    if format == "conll":
        return _read_blocks(lines, _conll_word(name, token_column))
    if format == "conllu":
        return _read_blocks(lines, _conllu_word(name))
    if format == "jsonl":
        return _read_jsonl(lines, name)
    raise ValueError(f"expected a format in {FORMATS}, got {format!r}")


# -- writing ---------------------------------------------------------------------------------


def _set_field(text: str, index: int, value: str) -> str:
    """``text`` with its column ``index`` replaced, every other byte unchanged."""
    if "\t" in text:
        cols = text.split("\t")
        cols[index] = value
        return "\t".join(cols)
    spans = [m.span() for m in re.finditer(r"\S+", text)]
    start, end = spans[index]
    return text[:start] + value + text[end:]


@dataclass
class Writer:
    """Turns an :class:`Item` and its :data:`Tagged` result into output text.

    Args:
        format: the output format.
        input_format: the input format (the ``conll``/``conllu`` lines are written back only
            when the input had them).
        tag_index: ``conllu``: the column replaced (3 = UPOS); ``conll``: the column replaced,
            or None to append a column.
    """

    format: str
    input_format: str
    tag_index: int | None = None

    def __call__(self, item: Item, tagged: Tagged, name: str = "<input>") -> str:
        tags, probs, nbest = tagged
        if self.format == "jsonl":
            if not item.tokens and item.obj is None:
                return ""
            obj = dict(item.obj) if item.obj is not None else {"tokens": item.tokens}
            obj["tags"] = tags
            if probs is not None:
                obj["confidence"] = probs
            if nbest is not None:
                obj["nbest"] = [{"tags": t, "log_prob": p} for t, p in nbest]
            return json.dumps(obj, ensure_ascii=False) + "\n"
        if self.format == "conllu" and self.input_format == "conllu":
            return self._rewrite(item, tags, probs, name, lambda text, tag: _set_field(text, self.tag_index, tag))
        if self.format == "conll" and self.input_format == "conll":
            return self._rewrite(item, tags, probs, name, self._conll_line)
        if not item.tokens:
            return ""
        if self.format == "conllu":
            rows = []
            for i, (token, tag) in enumerate(zip(item.tokens, tags), start=1):
                cols = [str(i), token] + ["_"] * 8
                cols[self.tag_index] = tag
                rows.append("\t".join(cols) + "\n")
            return "".join(rows) + "\n"
        # text, and conll from another format: token<TAB>tag[<TAB>probability]
        if probs is None:
            return "".join(f"{token}\t{tag}\n" for token, tag in zip(item.tokens, tags)) + "\n"
        return "".join(f"{t}\t{tag}\t{p:.4f}\n" for t, tag, p in zip(item.tokens, tags, probs)) + "\n"

    def _conll_line(self, text: str, tag: str) -> str:
        if self.tag_index is not None:
            return _set_field(text, self.tag_index, tag)
        return text + ("\t" if "\t" in text else " ") + tag

    def _rewrite(self, item: Item, tags, probs, name: str, edit: Callable[[str, str], str]) -> str:
        lines = [text + ending for text, ending in item.lines]
        for k, row in enumerate(item.rows):
            text, ending = item.lines[row]
            try:
                text = edit(text, tags[k])
            except IndexError:
                raise SeqtagError(f"{name}:{item.line + row}: no column {self.tag_index} to replace") from None
            if probs is not None:
                text += ("\t" if "\t" in text else " ") + f"{probs[k]:.4f}"
            lines[row] = text + ending
        return "".join(lines)


class Output:
    """Where the text goes: a file written atomically (a temporary sibling renamed at the end;
    removed on error, so nothing partial is left) or standard output."""

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = Path(path) if path is not None else None
        self.tmp: Path | None = None
        if self.path is None:
            sys.stdout.flush()
            self._file = getattr(sys.stdout, "buffer", None)
            return
        if self.path.is_dir():
            raise SeqtagError(f"cannot write {self.path}: it is a directory")
        self.tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        try:
            self._file = open(self.tmp, "wb")  # noqa: SIM115 (closed by commit or discard)
        except OSError as e:
            raise SeqtagError(f"cannot write {self.path}: {e.strerror or e}") from None

    def write(self, text: str) -> None:
        if self._file is None:  # a text-only stdout (no .buffer)
            sys.stdout.write(text)
            return
        try:
            self._file.write(text.encode("utf-8"))
        except BrokenPipeError:
            raise
        except OSError as e:
            raise SeqtagError(f"cannot write {self.path or '<stdout>'}: {e.strerror or e}") from None

    def commit(self) -> None:
        """Finish: flush standard output, or fsync and rename the file into place."""
        if self.tmp is None:
            (self._file or sys.stdout).flush()
            return
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self.tmp, self.path)
        except OSError as e:
            self.discard()
            raise SeqtagError(f"cannot write {self.path}: {e.strerror or e}") from None
        self.tmp = None

    def discard(self) -> None:
        """Remove the temporary file (after an error); standard output is left as it is."""
        if self.tmp is not None:
            self._file.close()
            self.tmp.unlink(missing_ok=True)
            self.tmp = None


# -- predictors ------------------------------------------------------------------------------


class Predictor:
    """One model behind the three calls that tagging needs, whatever its format.

    Args:
        kind: the format in words (``model directory``, ``TorchScript file``, ...).
        source: the path, for messages.
        methods: ``predict(sentences)``, ``predict_with_confidence(sentences)`` and
            ``nbest(sentences, k)``, bound to the model and batch size; None where the format
            lacks the method.
        max_length: the longest sentence the model takes (0: any).
    """

    def __init__(self, kind: str, source: str, methods: dict[str, Callable | None], max_length: int = 0) -> None:
        self.kind = kind
        self.source = source
        self.methods = methods
        self.max_length = max_length

    def _method(self, name: str, what: str) -> Callable:
        method = self.methods.get(name)
        if method is None:
            raise SeqtagError(f"a {self.kind} ({self.source}) cannot give {what}: it has no {name}")
        return method

    def predict(self, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        """One list of tags per sentence."""
        return [list(t) for t in self._method("predict", "tags")(sentences)]

    def predict_with_confidence(self, sentences: Sequence[Sequence[str]]) -> list[tuple[list[str], list[float]]]:
        """Per sentence: the best tags and the marginal probability of each."""
        out = self._method("predict_with_confidence", "confidences")(sentences)
        return [(list(tags), [float(p) for p in probs]) for tags, probs in out]

    def nbest(self, sentences: Sequence[Sequence[str]], k: int) -> list[list[tuple[list[str], float]]]:
        """Per sentence: up to ``k`` ``(tags, log_prob)``, best first (impossible ones dropped)."""
        out = self._method("nbest", "n-best tag sequences")(sentences, k)
        return [[(list(t), float(p)) for t, p in paths if math.isfinite(float(p))] for paths in out]


def _bound(obj: Any, name: str, **keywords: Any) -> Callable | None:
    """``obj.name`` with those ``keywords`` it accepts, or None when ``obj`` has no such method."""
    method = getattr(obj, name, None)
    if method is None:
        return None
    try:
        accepted = inspect.signature(method).parameters
    except (TypeError, ValueError):  # builtins, TorchScript methods
        return method
    given = {k: v for k, v in keywords.items() if k in accepted}
    return partial(method, **given) if given else method


def model_kind(model: str | os.PathLike) -> str:
    """``onnx``, ``torchscript``, ``torch-export`` or ``directory``, from what is at the path."""
    path = Path(model)
    if path.is_file():
        return "onnx" if path.suffix == ".onnx" else "torchscript"
    if path.is_dir():
        from .export import METADATA_FILE

        return "torch-export" if (path / METADATA_FILE).is_file() else "directory"
    raise SeqtagError(f"{model}: no such model file or directory")


KINDS = {
    "directory": "model directory",
    "torchscript": "TorchScript file",
    "torch-export": "torch.export directory",
    "onnx": "ONNX file",
}


def load_predictor(model: str | os.PathLike, config: PredictConfig | None = None) -> Predictor:
    """The :class:`Predictor` of a model directory, a TorchScript ``.pt`` file, a ``torch.export``
    directory or an ``.onnx`` file, with ``config``'s batch size and device.

    Raises:
        SeqtagError: no such model, an unreadable one, or a device the format cannot use.
    """
    config = config or PredictConfig()
    kind = model_kind(model)
    source = str(model)
    bs = config.batch_size
    if kind in ("torch-export", "onnx") and config.device not in ("cpu", "auto"):
        raise SeqtagError(f"a {KINDS[kind]} runs on the CPU; got --device {config.device}")
    if kind == "directory":
        from .model import Tagger

        tagger = Tagger.load(model, device=config.device)
        backend: Any = tagger
    elif kind == "torchscript":
        from .device import resolve_device
        from .export import load_torchscript

        module = load_torchscript(model, map_location=resolve_device(config.device))
        module.batch_size = bs  # the scripted methods read it: checked above, like every format
        return Predictor(KINDS[kind], source, {
            "predict": module,
            "predict_with_confidence": getattr(module, "predict_with_confidence", None),
            "nbest": getattr(module, "nbest", None),
        })  # fmt: skip
    elif kind == "torch-export":
        from .export import load_torch_export

        backend = load_torch_export(model)
    else:
        try:
            from .onnx_tagger import OnnxTagger
        except ImportError as e:
            raise SeqtagError(f"{model}: ONNX models need onnxruntime (pip install 'seqtag[onnx]'): {e}") from None
        backend = OnnxTagger(model, intra_op_num_threads=config.threads_per_worker() or 0)
    methods = {name: _bound(backend, name, batch_size=bs) for name in ("predict", "predict_with_confidence", "nbest")}
    return Predictor(KINDS[kind], source, methods, max_length=int(getattr(backend, "max_length", 0) or 0))


def tag_sentences(
    predictor: Predictor, sentences: list[list[str]], confidence: bool = False, nbest: int = 0
) -> list[Tagged]:
    """Tag ``sentences``: ``(tags, probabilities or None, n-best or None)`` per sentence."""
    if confidence:
        pairs = predictor.predict_with_confidence(sentences)
        tags = [t for t, _ in pairs]
        probs: list = [p for _, p in pairs]
    else:
        tags = predictor.predict(sentences)
        probs = [None] * len(sentences)
    paths: list = predictor.nbest(sentences, nbest) if nbest else [None] * len(sentences)
    return list(zip(tags, probs, paths))


@dataclass(frozen=True)
class Job:
    """What tagging one chunk needs, picklable for worker processes."""

    model: str
    config: dict
    name: str
    confidence: bool
    nbest: int


def _check_lengths(predictor: Predictor, chunk: list[Item], name: str) -> None:
    if not predictor.max_length:
        return
    for item in chunk:
        if len(item.tokens) > predictor.max_length:
            raise SeqtagError(
                f"{name}:{item.line}: {len(item.tokens)} tokens, more than the {predictor.max_length} that "
                f"the {predictor.kind} {predictor.source} covers: export with a larger --max-length, or use "
                f"the TorchScript format"
            )


def _tag_chunk(predictor: Predictor, job: Job, chunk: list[Item]) -> list[Tagged]:
    """The results of every item of ``chunk`` (items without tokens get empty ones)."""
    _check_lengths(predictor, chunk, job.name)
    sentences = [item.tokens for item in chunk if item.tokens]
    tagged = iter(tag_sentences(predictor, sentences, job.confidence, job.nbest) if sentences else [])
    empty: Tagged = ([], [] if job.confidence else None, [] if job.nbest else None)
    return [next(tagged) if item.tokens else empty for item in chunk]


_PROCESS_PREDICTOR: dict[tuple, Predictor] = {}  # this process's model, loaded by its first chunk


def process_predictor(job: Job) -> Predictor:
    """The model of ``job`` in this process, loaded once (with this process's share of threads)."""
    key = (job.model, json.dumps(job.config, sort_keys=True))
    predictor = _PROCESS_PREDICTOR.get(key)
    if predictor is None:
        config = PredictConfig.from_dict(job.config)
        _set_threads(config.threads_per_worker())
        predictor = _PROCESS_PREDICTOR[key] = load_predictor(job.model, config)
    return predictor


def _worker_tag(job: Job, chunk: list[Item]) -> list[Tagged]:
    return _tag_chunk(process_predictor(job), job, chunk)


def _set_threads(threads: int) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _ignore_interrupts() -> None:
    """In a worker: Ctrl-C is for the parent, which stops the pool and says so once."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _chunks(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    chunk: list[Item] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def tag_stream(
    items: Iterable[Item], job: Job, predictor: Predictor | None = None, workers: int = 1
) -> Iterator[tuple[list[Item], list[Tagged]]]:
    """Tag ``items`` chunk by chunk, in order: ``(chunk, results)`` pairs.

    With ``workers > 1`` and more than one chunk, the chunks go to that many spawned processes,
    each loading the model once; at most ``2 * workers`` chunks are in flight, so memory stays
    bounded. ``predictor`` (else :func:`process_predictor`) tags in this process otherwise.
    """
    chunks = _chunks(items, job.config.get("chunk_size", PredictConfig.chunk_size))
    first = next(chunks, None)
    if first is None:
        return
    second = next(chunks, None) if workers > 1 else None
    if second is None:  # one process: asked for, or the whole input is one chunk (no start-up cost)
        predictor = predictor or process_predictor(job)
        for chunk in itertools.chain([first], chunks):
            yield chunk, _tag_chunk(predictor, job, chunk)
        return
    # spawn: a fresh interpreter per worker (no forked torch thread pools), the same on every OS
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_ignore_interrupts) as pool:
        pending: deque = deque()
        for chunk in itertools.chain([first, second], chunks):
            slim = [Item(item.tokens, item.line) for item in chunk]  # the lines stay here
            pending.append((chunk, pool.apply_async(_worker_tag, (job, slim))))
            if len(pending) >= 2 * workers:
                done, result = pending.popleft()
                yield done, result.get()
        while pending:
            done, result = pending.popleft()
            yield done, result.get()


# -- Hugging Face datasets --------------------------------------------------------------------


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
            return Predictor(type(self.model).__name__, "", {"predict": _bound(self.model, "predict", batch_size=bs)})
        key = (str(self.model), json.dumps(self.config.to_dict(), sort_keys=True))
        if key not in _PROCESS_PREDICTOR:
            _PROCESS_PREDICTOR[key] = load_predictor(self.model, self.config)
        return _PROCESS_PREDICTOR[key]

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        if os.getpid() != self.parent and not self.threads_set:  # a num_proc process: its share of the cores
            _set_threads(self.config.threads_per_worker())
            self.threads_set = True
        rows = batch[self.tokens]
        sentences = [list(row) for row in rows]
        predictor = self._predictor()
        nonempty = [s for s in sentences if s]
        tags = iter(predictor.predict(nonempty) if nonempty else [])
        return {self.output: [next(tags) if s else [] for s in sentences]}


def tag_dataset(
    tagger_or_path,
    dataset,
    tokens_column: str | None = None,
    output_column: str = DEFAULT_OUTPUT_COLUMN,
    batch_size: int = 256,
    num_proc: int | None = None,
):
    """Add a column of predicted tags to a Hugging Face ``Dataset`` or ``DatasetDict``.

    The rows are tagged by ``Dataset.map(batched=True)``: the result is Arrow-backed (written to
    the dataset's cache files when it comes from files), so a corpus larger than memory is
    tagged without loading it.

    Args:
        tagger_or_path: a :class:`~seqtag.model.Tagger` (or any object with
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
    return _tag_dataset(tagger_or_path, dataset, tokens_column, output_column, config)


def _tag_dataset(tagger_or_path, dataset, tokens_column: str | None, output_column: str, config: PredictConfig):
    import datasets

    from . import hf

    if isinstance(dataset, datasets.DatasetDict):
        return datasets.DatasetDict({
            name: _tag_dataset(tagger_or_path, split, tokens_column, output_column, config)
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


def _save_dataset(dataset, directory: Path) -> None:
    """``save_to_disk`` into a temporary sibling of ``directory``, then rename it into place."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise SeqtagError(f"{directory} already exists; choose a new directory for the tagged dataset")
    directory.parent.mkdir(parents=True, exist_ok=True)
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


# -- the command -----------------------------------------------------------------------------


def add_parser(subparsers) -> None:
    """Add the ``predict`` subcommand to ``seqtag``'s subparsers."""
    from .cli import _add_config_options

    p = subparsers.add_parser(
        "predict", help="tag a corpus (text, CoNLL, CoNLL-U, JSON lines or a Hugging Face dataset) as a stream"
    )
    p.add_argument("model", metavar="MODEL", help="model directory written by 'seqtag train', or a TorchScript "
                   "file, torch.export directory or .onnx file written by 'seqtag export'")  # fmt: skip
    p.add_argument("--input", metavar="FILE", help="input file (default: standard input)")
    p.add_argument("--format", choices=FORMATS, help="input format (default: from the suffix: .conllu, .conll, "
                   ".jsonl; else text)")  # fmt: skip
    p.add_argument("--output-format", choices=FORMATS, help="output format (default: the input's)")
    p.add_argument("--output", metavar="PATH", help="file to write, atomically (default: standard output); "
                   "with --hf-dataset, a new directory for save_to_disk")  # fmt: skip
    p.add_argument("--token-column", metavar="COLUMN", help="conll: the token column index (default: 0); "
                   "--hf-dataset: the tokens column (default: tokens)")  # fmt: skip
    p.add_argument("--tokens-column", dest="token_column", help=argparse.SUPPRESS)
    p.add_argument("--tag-column", metavar="COLUMN", help="conllu: the column replaced, a name or index "
                   "(default: the one the model was trained on, else upos); conll: the index of a column to "
                   "replace (default: append a column)")  # fmt: skip
    p.add_argument("--confidence", action="store_true", help="add each tag's probability (4 decimals: text, conll; "
                   "jsonl: a 'confidence' list)")  # fmt: skip
    p.add_argument("--nbest", type=int, default=0, metavar="K",
                   help="jsonl: the K best tag sequences with their log-probabilities ('nbest')")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="a progress bar on stderr (default: when the input is a file and stderr a terminal)")
    group = p.add_argument_group("Hugging Face datasets (instead of --input)")
    group.add_argument("--hf-dataset", metavar="NAME_OR_PATH", help="a Hub dataset name, a save_to_disk folder, "
                       "or data files (see docs/datasets.md); tagged with Dataset.map, saved to --output")  # fmt: skip
    group.add_argument("--hf-config", metavar="NAME", help="the Hub dataset's configuration")
    group.add_argument("--split", metavar="SPLIT", help="the split to tag (default: all)")
    group.add_argument("--output-column", default=DEFAULT_OUTPUT_COLUMN, metavar="NAME",
                       help=f"the new column of predicted tags (default: {DEFAULT_OUTPUT_COLUMN})")
    group.add_argument("--hf-cache-dir", metavar="DIR", help="where converted Arrow files go (default: HF_DATASETS_CACHE)")
    group.add_argument("--num-proc", dest="workers", type=int, help=argparse.SUPPRESS)  # = --workers
    _add_config_options(p, PredictConfig, "prediction")


def _input_format(args: argparse.Namespace) -> str:
    if args.format:
        return args.format
    if args.input:
        return SUFFIX_FORMATS.get(Path(args.input).suffix.lower(), "text")
    return "text"


def _trained_tag_column(model: str) -> str | None:
    """The tag column a model directory was trained on: config.json ``data.tag_column``, else the
    run's data.json."""
    path = Path(model)
    for name, key in (("config.json", "data"), ("data.json", None)):
        try:
            saved = json.loads((path / name).read_text(encoding="utf-8"))
            column = (saved.get(key) or {}) if key else saved
            if column.get("tag_column") is not None:
                return str(column["tag_column"])
        except (OSError, ValueError, AttributeError):
            continue
    return None


def _conllu_tag_index(column: str) -> int:
    if column.lstrip("-").isdigit():
        index = int(column)
    elif column.lower() in CONLLU_COLUMNS:
        index = CONLLU_COLUMNS.index(column.lower())
    else:
        raise SeqtagError(f"expected a CoNLL-U column name ({', '.join(CONLLU_COLUMNS)}) or index, got {column!r}")
    if not 2 <= index < len(CONLLU_COLUMNS):
        raise SeqtagError(f"expected a CoNLL-U tag column other than id and form (2-9), got {column!r}")
    return index


def _int_column(value: str | None, flag: str, default: int | None) -> int | None:
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise SeqtagError(f"expected an integer {flag} for a CoNLL file, got {value!r}") from None


def _writer(args: argparse.Namespace, input_format: str, output_format: str, token_column: int) -> Writer:
    if args.nbest and output_format != "jsonl":
        raise SeqtagError("--nbest K writes JSON lines: add --output-format jsonl")
    if args.confidence and output_format == "conllu":
        raise SeqtagError("--confidence has no CoNLL-U column: use --output-format conll or jsonl")
    tag_index = None
    if output_format == "conllu":
        column = args.tag_column
        if column is None:
            trained = _trained_tag_column(args.model)  # a CoNLL file's column index means nothing here
            column = trained if trained and trained.lower() in CONLLU_COLUMNS[2:] else "upos"
        tag_index = _conllu_tag_index(column)
    elif output_format == "conll" and input_format == "conll":
        tag_index = _int_column(args.tag_column, "--tag-column", None)
        if tag_index is not None and tag_index == token_column:
            raise SeqtagError(f"--tag-column {tag_index} is the token column: choose another")
    return Writer(output_format, input_format, tag_index)


def _predict_config(args: argparse.Namespace) -> PredictConfig:
    from .cli import _config_from_args

    config = _config_from_args(PredictConfig, args)
    if args.workers is None and config.device != "cpu":
        config = config.replace(workers=1)  # processes share out CPU cores, not one accelerator
    if args.nbest < 0:
        raise SeqtagError(f"expected --nbest K >= 1, got {args.nbest}")
    return config


def _progress_bar(args: argparse.Namespace):
    wanted = args.progress if args.progress is not None else bool(args.input) and sys.stderr.isatty()
    if not wanted:
        return None
    from tqdm import tqdm

    return tqdm(desc=args.input or "<stdin>", unit=" sentences", file=sys.stderr, dynamic_ncols=True)


def _quiet_stdout() -> None:
    """After a closed pipe (``| head``): send what is left to /dev/null, so that the final flush
    does not report the broken pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


def run(args: argparse.Namespace) -> None:
    """``seqtag predict``: check every option, then read, tag and write chunk by chunk."""
    config = _predict_config(args)
    if args.hf_dataset:
        _run_hf(args, config)
        return
    input_format = _input_format(args)
    output_format = args.output_format or input_format
    token_column = _int_column(args.token_column, "--token-column", 0) if input_format == "conll" else 0
    writer = _writer(args, input_format, output_format, token_column)
    model_kind(args.model)  # a missing model is reported before anything is read
    name = args.input or "<stdin>"
    if args.input:
        if not Path(args.input).is_file():
            raise SeqtagError(f"{args.input}: no such file")
        try:
            stream: BinaryIO = open(args.input, "rb")  # noqa: SIM115 (closed below)
        except OSError as e:
            raise SeqtagError(f"{args.input}: cannot read ({e.strerror or e})") from None
    elif sys.stdin is None:  # started with standard input closed
        raise SeqtagError("no standard input to read: pass --input FILE")
    else:
        stream = sys.stdin.buffer
    job = Job(str(args.model), config.to_dict(), name, args.confidence, args.nbest)
    try:
        _stream(args, config, job, writer, stream, input_format, token_column)
    finally:
        if args.input:
            stream.close()


def _stream(args, config: PredictConfig, job: Job, writer: Writer, stream: BinaryIO, input_format: str,
            token_column: int) -> None:  # fmt: skip
    name = job.name
    output = Output(args.output)
    bar = None
    try:
        predictor = None
        if config.workers == 1:
            _set_threads(config.threads_per_worker())
            predictor = load_predictor(args.model, config)
            if args.confidence:  # a missing method is reported before anything is read
                predictor._method("predict_with_confidence", "confidences")
            if args.nbest:
                predictor._method("nbest", "n-best tag sequences")
        bar = _progress_bar(args)
        start, tokens = time.perf_counter(), 0
        items = read_items(stream, name, input_format, token_column)
        for chunk, results in tag_stream(items, job, predictor, config.workers):
            output.write("".join(writer(item, tagged, name) for item, tagged in zip(chunk, results)))
            if bar is not None:
                tokens += sum(len(item.tokens) for item in chunk)
                bar.update(len(chunk))
                bar.set_postfix_str(f"{tokens / max(time.perf_counter() - start, 1e-9):,.0f} tokens/s")
        output.commit()
    except BrokenPipeError:
        output.discard()
        _quiet_stdout()  # the reader of standard output has gone: stop quietly, as Unix tools do
    except BaseException:
        output.discard()
        raise
    finally:
        if bar is not None:
            bar.close()


def _run_hf(args: argparse.Namespace, config: PredictConfig) -> None:
    """``--hf-dataset``: tag a split (or every split) with ``Dataset.map`` and ``save_to_disk``."""
    if args.input:
        raise SeqtagError("predict takes --input FILE or --hf-dataset NAME_OR_PATH, not both")
    if not args.output:
        raise SeqtagError("--hf-dataset needs --output DIR (a new directory for save_to_disk)")
    if args.confidence or args.nbest or args.format or args.output_format:
        raise SeqtagError("--hf-dataset adds a column of tags: drop --confidence, --nbest, --format, --output-format")
    out = Path(args.output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SeqtagError(f"{out} already exists; choose a new directory for the tagged dataset")
    model_kind(args.model)
    from . import hf

    splits = hf.load_splits(args.hf_dataset, args.hf_config, cache_dir=args.hf_cache_dir)
    data = hf.pick_split(splits, args.split, args.hf_dataset) if args.split else splits
    _set_threads(config.threads if config.workers == 1 else 0)
    tagged = _tag_dataset(args.model, data, args.token_column, args.output_column, config)
    _save_dataset(tagged, out)
    print(f"tagged {args.hf_dataset} saved in {out}", file=sys.stderr)
