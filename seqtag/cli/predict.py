"""``seqtag predict``: tag a corpus as a stream, in the corpus formats, with any model format.

The input is read as a stream of sentences (:func:`~seqtag.data.formats.read_items`), cut into
chunks of ``chunk_size`` sentences, each chunk is tagged by the model's
:class:`~seqtag.serving.predictor.Predictor` (which batches through the one batch planner) and written
before the next one is read, so memory is bounded by the chunk and not by the input. Output
order is input order.

The formats in (``--format``) and out (``--output-format``, default: the input's) are read and
written by :mod:`seqtag.data.formats`: ``text``, ``conll``, ``conllu`` and ``jsonl``. The
models of every format are loaded by :mod:`seqtag.serving.predictor` (with
:class:`~seqtag.serving.predictor.PredictConfig`, how prediction runs), and ``--hf-dataset`` tags with
:func:`~seqtag.serving.hf_tagging.tag_dataset`; ``PredictConfig``, ``load_predictor`` and
``tag_dataset`` can be imported from here too. This module holds the rest: the chunked stream
(:func:`tag_stream`, in worker processes with ``--workers N``) and the command itself.
"""

from __future__ import annotations

import argparse
import io
import itertools
import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from seqtag.cli.options import (
    add_config_options,
    checked_type,
    config_from_args,
    refuse_dataset_options_without_dataset,
)
from seqtag.config import DataConfig, PredictConfig
from seqtag.data.corpus import CONLLU_COLUMNS, conllu_column, file_format
from seqtag.data.formats import FORMATS, Item, Output, Tagged, Writer, read_items
from seqtag.errors import SeqtagError
from seqtag.serving.hf_tagging import (
    DEFAULT_OUTPUT_COLUMN,
    save_dataset,
    tag_dataset_with,
)
from seqtag.serving.predictor import (
    Predictor,
    load_predictor,
    model_kind,
    process_predictor,
    set_torch_threads,
    tag_sentences,
)


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


def _job_predictor(job: Job) -> Predictor:
    """The model of ``job`` in this process, loaded once (with this process's share of threads)."""
    return process_predictor(job.model, job.config, set_threads=True)


def _worker_tag(job: Job, chunk: list[Item]) -> list[Tagged]:
    return _tag_chunk(_job_predictor(job), job, chunk)


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
    bounded. ``predictor`` (else :func:`~seqtag.serving.predictor.process_predictor`) tags in this
    process otherwise.
    """
    chunks = _chunks(items, job.config.get("chunk_size", PredictConfig.chunk_size))
    first = next(chunks, None)
    if first is None:
        return
    second = next(chunks, None) if workers > 1 else None
    if second is None:  # one process: asked for, or the whole input is one chunk (no start-up cost)
        predictor = predictor or _job_predictor(job)
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


# -- the command -----------------------------------------------------------------------------


def add_parser(subparsers) -> None:
    """Add the ``predict`` subcommand to ``seqtag``'s subparsers."""
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
    add_config_options(p, DataConfig, None, command="predict", only=("token_column", "tag_column"), help={
        "token_column": "conll: the token column index (default: 0); --hf-dataset: the tokens column (default: tokens)",
        "tag_column": "conllu: the column replaced, a name or index (default: the one the model was trained on, else "
                      "upos); conll: the index of a column to replace (default: append a column)",
    })  # fmt: skip
    p.add_argument("--confidence", action="store_true", help="add each tag's probability (4 decimals: text, conll; "
                   "jsonl: a 'confidence' list)")  # fmt: skip
    p.add_argument("--nbest", type=checked_type(int, "nbest", min=1), default=None, metavar="K",
                   help="jsonl: the K best tag sequences with their log-probabilities ('nbest')")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="a progress bar on stderr (default: when the input is a file and stderr a terminal)")
    group = p.add_argument_group("Hugging Face datasets (instead of --input)")
    add_config_options(group, DataConfig, None, command="predict", only=("hf_dataset", "hf_config", "cache_dir"), help={
        "hf_dataset": "a Hub dataset name, a save_to_disk folder, or data files (see docs/datasets.md); tagged with "
                      "Dataset.map, saved to --output",
    })  # fmt: skip
    group.add_argument("--split", metavar="SPLIT", help="the split to tag (default: all)")
    group.add_argument("--output-column", default=DEFAULT_OUTPUT_COLUMN, metavar="NAME",
                       help=f"the new column of predicted tags (default: {DEFAULT_OUTPUT_COLUMN})")
    group.add_argument("--num-proc", dest="workers", type=int, metavar="N", help=argparse.SUPPRESS)  # = --workers
    add_config_options(p, PredictConfig, "prediction")


def _input_format(args: argparse.Namespace) -> str:
    return file_format(args.input, args.format, tagged=False)


def _trained_tag_column(model: str) -> str | None:
    """The tag column a model directory was trained on (its run's ``DataConfig.tag_column``;
    None for an exported file or a run without one)."""
    if not Path(model).is_dir():
        return None
    from seqtag.model.directory import (
        trained_data_config,  # imports torch: only for a model directory
    )

    trained = trained_data_config(Path(model))
    return trained.tag_column or None if trained is not None else None


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
        tag_index = conllu_column(column)
    elif output_format == "conll" and input_format == "conll":
        tag_index = _int_column(args.tag_column, "--tag-column", None)
        if tag_index is not None and tag_index == token_column:
            raise SeqtagError(f"--tag-column {tag_index} is the token column: choose another")
    return Writer(output_format, input_format, tag_index)


def _predict_config(args: argparse.Namespace) -> PredictConfig:
    config = config_from_args(PredictConfig, args)
    if args.workers is None and config.device != "cpu":
        config = config.replace(workers=1)  # processes share out CPU cores, not one accelerator
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
    refuse_dataset_options_without_dataset(args)
    config = _predict_config(args)
    # oneDNN keeps a compiled LSTM kernel for every (batch, length) shape it meets (1,024 by
    # default): over a stream of millions of sentences that grew each process by ~10 MB/s, to
    # 3.2 GB for 2,000,000 EWT sentences. 64 kernels bound the memory at the same speed
    # (docs/tagging.md). Set before the first kernel runs; worker processes inherit it.
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")
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
        if not Path(args.input).exists():
            raise SeqtagError(f"{args.input}: no such file")
        if Path(args.input).is_dir():  # a pipe or a device is read once, like standard input
            raise SeqtagError(f"{args.input}: is a directory; give a file in it")
        try:
            stream: BinaryIO = open(args.input, "rb")  # noqa: SIM115 (closed below)
        except OSError as e:
            raise SeqtagError(f"{args.input}: cannot read ({e.strerror or e})") from None
    elif sys.stdin is None:  # started with standard input closed
        raise SeqtagError("no standard input to read: pass --input FILE")
    else:
        stream = sys.stdin.buffer
    job = Job(str(args.model), config.to_dict(), name, args.confidence, args.nbest or 0)
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
            set_torch_threads(config.threads_per_worker())
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
    from seqtag.data import hf

    splits = hf.load_splits(args.hf_dataset, args.hf_config, cache_dir=args.cache_dir)
    data = hf.pick_split(splits, args.split, args.hf_dataset) if args.split else splits
    set_torch_threads(config.threads if config.workers == 1 else 0)
    tagged = tag_dataset_with(args.model, data, args.token_column, args.output_column, config)
    save_dataset(tagged, out)
    print(f"tagged {args.hf_dataset} saved in {out}", file=sys.stderr)
