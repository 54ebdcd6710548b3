"""The ``seqtag`` command: train (and ``train --resume``), evaluate, predict, export, bench, plot, demo.

Model, training and data options are generated from :class:`~seqtag.config.TaggerConfig`,
:class:`~seqtag.config.TrainConfig` and :class:`~seqtag.config.DataConfig`, so their names,
defaults, ranges and help live in one place.
What the data options name is read by :mod:`seqtag.data.sources`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from seqtag import __version__
from seqtag.cli import predict
from seqtag.config import (
    DataConfig,
    TaggerConfig,
    TrainConfig,
    check_value,
    command_fields,
    field_kind,
)
from seqtag.data import sources
from seqtag.data.tutorial import demo
from seqtag.data.vocab import Vocabularies
from seqtag.device import PRECISIONS, resolve_device
from seqtag.errors import SeqtagError
from seqtag.fileio import hold_directory
from seqtag.host import host_info
from seqtag.model.tagger import Tagger
from seqtag.serving.torchscript import (
    DEFAULT_MAX_LENGTH,
    to_torch_export,
    to_torchscript,
)
from seqtag.training.bench import baseline_tokens_per_s, bench, matmul_gflops, synthetic_corpus
from seqtag.training.checkpoint import find_checkpoint, read_checkpoint
from seqtag.training.distributed import BACKENDS, is_main_process
from seqtag.training.evaluation import evaluate
from seqtag.training.interrupts import TrainingInterrupted
from seqtag.training.loop import train
from seqtag.training.plot import plot_learning_curve
from seqtag.training.runs import check_output_dir, resumed_config


def _add_config_options(
    parser: argparse.ArgumentParser,
    cls: type,
    title: str | None,
    command: str | None = None,
    only: Sequence[str] | None = None,
    help: Mapping[str, str] | None = None,
) -> None:
    """One option per field of ``cls`` (flag, type, choices, help and default from the field's
    metadata; its range is checked by the dataclass). ``aliases`` in the metadata are hidden
    alternative spellings. ``command`` keeps the fields that subcommand offers
    (:func:`~seqtag.config.command_fields`), ``only`` (within those) just the fields named;
    ``help`` replaces a field's help where a subcommand uses the field in its own way
    (``predict``'s ``--tag-column`` names the column it writes). ``title`` None adds the options
    to ``parser`` itself, not a new group."""
    group = parser.add_argument_group(title) if title is not None else parser
    offered = command_fields(cls, command) if command is not None else None
    for f in dataclasses.fields(cls):
        if (offered is not None and f.name not in offered) or (only is not None and f.name not in only):
            continue
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        default = f" (default: {f.default})" if f.default not in ("", None) else ""
        aliases = f.metadata.get("aliases", ())
        also = f"; also {', '.join(aliases)}, the former spelling" if aliases else ""
        help_text = (help or {}).get(f.name, f.metadata.get("help", "")) + default + also
        kind = field_kind(f)
        if kind is bool:
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
            continue
        choices = f.metadata.get("choices")
        # a number is N or X unless the field names its own (DIM, SIZE, FILE); argparse's default
        # (the dest upper-cased: --dropout DROPOUT) repeats the flag and says nothing
        default_metavar = {int: "N", float: "X"}.get(kind, f.name.split("_")[-1].upper())
        metavar = None if choices else f.metadata.get("metavar", default_metavar)
        options = dict(dest=f.name, type=kind, default=None, choices=choices, metavar=metavar)
        group.add_argument(flag, help=help_text, **options)
        for alias in aliases:
            group.add_argument(alias, help=argparse.SUPPRESS, **options)


def _config_from_args(cls: type, args: argparse.Namespace, base=None):
    """``base`` (default: ``cls()``) with the options given on the command line."""
    names = [f.name for f in dataclasses.fields(cls)]
    changes = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    try:
        return (base or cls()).replace(**changes)
    except ValueError as e:
        raise SeqtagError(str(e)) from None


def _checked_type(kind: type, name: str, **bounds):
    """An argparse type for an option outside the dataclasses, checked like their fields."""

    def parse(text: str):
        try:
            value = kind(text)
            check_value(name, value, bounds, kind)
        except ValueError as e:
            message = str(e) if str(e).startswith("expected") else f"expected {name} a number, got {text!r}"
            raise argparse.ArgumentTypeError(message) from None
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqtag", description="Neural sequence tagging on PyTorch.")
    parser.add_argument("--version", action="version", version=f"seqtag {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a tagger on CoNLL or CoNLL-U files or a Hugging Face dataset")
    p.add_argument("--output-dir", metavar="DIR", help="where the model is saved (required unless --resume)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR (or from a checkpoint file in "
                   "DIR/checkpoints) with its saved settings, data included; --epochs N trains up to N epochs in all")
    p.add_argument("--overwrite", action="store_true", help="replace the model or run already in --output-dir")
    p.add_argument("--threads", type=_checked_type(int, "threads", min=0), default=0, metavar="N",
                   help="intra-op CPU threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    p.add_argument("--dist-backend", choices=BACKENDS, default=None,
                   help="under torchrun: the torch.distributed backend (default: nccl on CUDA, else gloo)")
    _add_config_options(p, DataConfig, "data (files, or a Hugging Face dataset with --hf-dataset)", command="train")
    _add_config_options(p, TaggerConfig, "model")
    _add_config_options(p, TrainConfig, "training")

    p = sub.add_parser("evaluate", help="score a trained tagger on gold-tagged data")
    p.add_argument("model", metavar="DIR", help="model directory written by 'seqtag train'")
    p.add_argument("--data", metavar="FILE", help="gold-tagged data (or --hf-dataset)")
    p.add_argument("--split", metavar="SPLIT", help="--hf-dataset: the split to score (default: test, or the only split)")
    p.add_argument("--unknown-tags", choices=("error", "map-to-O"), default=None,
                   help="gold tags the model does not know: scored as O (the default for span tag sets such as "
                   "BIO: conlleval counts such a chunk as missed; a note on stderr says what was mapped), "
                   "or an error (the default for other tag sets)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--device", default="cpu", metavar="DEVICE", help="auto, cpu, cuda, cuda:N or mps (default: cpu)")
    p.add_argument("--batch-size", type=_checked_type(int, "batch_size", min=1), default=TrainConfig.eval_batch_size,
                   metavar="N", help=f"sentences per batch (default: {TrainConfig.eval_batch_size})")
    _add_config_options(p, DataConfig, "data (default: the columns the model was trained on)", command="evaluate")

    p = sub.add_parser("export", help="export a trained tagger as TorchScript (strings in, tags out), ONNX or "
                       "torch.export")
    p.add_argument("model", metavar="DIR", help="model directory written by 'seqtag train'")
    p.add_argument("--output", required=True, metavar="PATH",
                   help="torchscript: the file to write (e.g. tagger.pt); onnx: the file to write (e.g. "
                   "tagger.onnx); torch-export: a new directory")
    p.add_argument("--format", choices=("torchscript", "onnx", "torch-export"), default="torchscript",
                   help="torchscript: one self-contained file, any sentence length, loads in C++ (default); "
                   "onnx: one ONNX graph for ONNX Runtime, any batch and sentence length, vocabularies in its "
                   "metadata (needs the onnx extra; see docs/serving.md); "
                   "torch-export: id tensors in, one program per sentence-length bucket (see docs/export.md)")
    p.add_argument("--max-length", type=_checked_type(int, "max_length", min=1), default=DEFAULT_MAX_LENGTH, metavar="N",
                   help=f"torch-export: the longest sentence covered (default: {DEFAULT_MAX_LENGTH})")

    predict.add_parser(sub)

    sub.add_parser("demo", help="train the tutorial's tagger and a batched BiLSTM-CRF on the tutorial corpus")

    p = sub.add_parser("plot", help="draw a run's learning curve from its metrics.jsonl (needs matplotlib)")
    p.add_argument("run", metavar="DIR", help="output directory of 'seqtag train'")
    p.add_argument("--out", metavar="FILE", help="PNG file to write (default: DIR/learning_curve.png)")

    p = sub.add_parser("bench", help="measure training and inference tokens/s against the device's matmul rate")
    p.add_argument("--corpus", default="synthetic", metavar="FILE", help="a corpus file, or 'synthetic' (default)")
    p.add_argument("--batch-size", type=_checked_type(int, "batch_size", min=1), nargs="+", default=None, metavar="N",
                   help=f"batch sizes to time (default: {TrainConfig.batch_size})")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="autocast precision (default: fp32)")
    p.add_argument("--device", default="auto", metavar="DEVICE", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.add_argument("--threads", type=_checked_type(int, "threads", min=0), default=0, metavar="N",
                   help="intra-op CPU threads (default: torch's choice)")
    p.add_argument("--steps", type=_checked_type(int, "steps", min=1), default=20, metavar="N",
                   help="steps per timed segment (default: 20)")
    p.add_argument("--repeats", type=_checked_type(int, "repeats", min=1), default=5, metavar="N",
                   help="timed segments; the median is reported (default: 5)")
    p.add_argument("--baseline", action="store_true", help="also time the tutorial's one-sentence-per-step loop")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_config_options(p, DataConfig, "corpus file columns", command="bench")
    _add_config_options(p, TaggerConfig, "model")
    return parser


def _hold(out: Path):
    """The run's hold on its directory (rank 0 under torchrun; the others wait in train())."""
    return hold_directory(out) if is_main_process() else contextlib.nullcontext()


def _set_threads(threads: int) -> None:
    if threads:
        torch.set_num_threads(threads)


def _cmd_train(args: argparse.Namespace) -> None:
    _set_threads(args.threads)
    if args.resume:
        _resume_training(args)
        return
    data = _config_from_args(DataConfig, args)
    if not (data.train_file or data.hf_dataset) or not args.output_dir:
        raise SeqtagError("train needs --train FILE (or --hf-dataset) and --output-dir DIR (or --resume DIR)")
    if data.train_file and data.hf_dataset:
        raise SeqtagError("train takes --train FILE or --hf-dataset, not both")
    model_config = _config_from_args(TaggerConfig, args)
    train_config = _config_from_args(TrainConfig, args)
    out = Path(args.output_dir)
    with _hold(out):  # for the whole run; train() checks everything else before its first write
        check_output_dir(out, args.overwrite)  # before reading the data; train() checks again
        train_data, dev_data = sources.training_data(data, model_config, train_config)
        train(train_data, dev_data, model_config, train_config, output_dir=out, quiet=args.quiet,
              dist_backend=args.dist_backend, overwrite=args.overwrite, data_config=sources.absolute_paths(data))  # fmt: skip
    if is_main_process():
        print(f"model saved in {out}", file=sys.stderr)


def _resume_training(args: argparse.Namespace) -> None:
    """``seqtag train --resume DIR``: the checkpoint's settings (data included), with the changes
    resuming allows."""
    target = Path(args.resume)
    out = target.parent.parent if target.is_file() else target
    given = [f.name for f in dataclasses.fields(TaggerConfig) if getattr(args, f.name) is not None]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise SeqtagError(f"--resume continues the run with its saved model settings; drop {flags}")
    if args.output_dir and Path(args.output_dir).resolve() != out.resolve():
        raise SeqtagError(f"--resume continues the run in {out}; drop --output-dir")
    if not out.is_dir():
        raise SeqtagError(f"{out}: no run to resume (not a directory)")
    with _hold(out):
        source = find_checkpoint(out, target if target.is_file() else True)
        saved = read_checkpoint(source)
        if saved["data_config"] is None:
            raise SeqtagError(
                f"{source} has no data settings (the run was started from Python): continue it with "
                f"seqtag.train(..., output_dir={str(out)!r}, resume=True)"
            )
        train_config = _config_from_args(TrainConfig, args, base=TrainConfig.from_dict(saved["train_config"]))
        data = sources.absolute_paths(_config_from_args(DataConfig, args, base=DataConfig.from_dict(saved["data_config"])))
        # Refused changes are refused before the data is read (train() checks them again).
        resumed_config(saved, train_config, TrainConfig, "train_config")
        resumed_config(saved, data, DataConfig, "data_config")
        config = TaggerConfig.from_dict(saved["model_config"])
        vocabs = Vocabularies.from_dict(saved["vocab"]) if data.hf_dataset else None
        train_data, dev_data = sources.training_data(data, config, train_config, vocabs)
        train(train_data, dev_data, None, train_config, output_dir=out, quiet=args.quiet, resume=source,
              dist_backend=args.dist_backend, data_config=data)  # fmt: skip
    if is_main_process():
        print(f"model saved in {out}", file=sys.stderr)


def _evaluation_data(args: argparse.Namespace, model: Path):
    """The gold data to score, read with the options given, else the columns the model was trained on."""
    trained = sources.trained_data_config(model)
    given = _config_from_args(DataConfig, args)
    if trained is not None and bool(trained.hf_dataset) == bool(args.hf_dataset):  # the same kind of input
        inherited = {f.name: getattr(trained, f.name) for f in dataclasses.fields(DataConfig) if f.metadata.get("from_model")}
        given = _config_from_args(DataConfig, args, base=DataConfig(**inherited))
    return sources.evaluation_data(given, args.data, args.split)


def _cmd_evaluate(args: argparse.Namespace) -> None:
    if bool(args.data) == bool(args.hf_dataset):
        raise SeqtagError("evaluate takes --data FILE or --hf-dataset NAME_OR_PATH (one of them)")
    tagger = Tagger.load(args.model, device=args.device)
    data = _evaluation_data(args, Path(args.model))
    # Span tag sets: a gold tag the model lacks is scored as O by default, as conlleval would
    # (the chunk is missed), e.g. CoNLL-2000's I-LST, which its training data lacks.
    unknown_tags = args.unknown_tags or ("map-to-O" if tagger.tag_scheme != "none" else "error")
    result = evaluate(tagger, data, batch_size=args.batch_size, unknown_tags=unknown_tags)
    if result.get("unknown_tags"):
        mapped = ", ".join(f"{tag} ({n})" for tag, n in sorted(result["unknown_tags"].items()))
        print(f"seqtag: gold tags unknown to the model, scored as O: {mapped}", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
        return
    print(f"sentences {result['sentences']}  tokens {result['tokens']}  accuracy {100 * result['accuracy']:.2f}")
    if "f1" in result:
        print(
            f"spans: precision {100 * result['precision']:.2f}  recall {100 * result['recall']:.2f}  "
            f"F1 {100 * result['f1']:.2f}"
        )
        for name, score in result["per_type"].items():
            print(f"  {name:>20}: precision {100 * score['precision']:6.2f}  recall {100 * score['recall']:6.2f}  "
                  f"F1 {100 * score['f1']:6.2f}  ({score['support']} gold)")


def _cmd_export(args: argparse.Namespace) -> None:
    if args.format == "torchscript":
        path = to_torchscript(args.model, args.output)
    elif args.format == "onnx":
        try:
            from seqtag.serving.onnx_export import to_onnx
        except ImportError as e:
            raise SeqtagError(f"--format onnx needs the onnx package ({e}): pip install 'seqtag[onnx]'") from None
        path = to_onnx(args.model, args.output)
    else:
        path = to_torch_export(args.model, args.output, max_length=args.max_length)
    print(f"exported {args.model} ({args.format}) to {path}", file=sys.stderr)


def _cmd_demo(args: argparse.Namespace) -> None:
    demo()


def _cmd_plot(args: argparse.Namespace) -> None:
    print(plot_learning_curve(args.run, args.out))


def _cmd_bench(args: argparse.Namespace) -> None:
    _set_threads(args.threads)
    config = _config_from_args(TaggerConfig, args)
    sentences = synthetic_corpus() if args.corpus == "synthetic" else sources.read_files(_config_from_args(DataConfig, args), args.corpus)
    device = resolve_device(args.device)
    batch_sizes = args.batch_size or [TrainConfig.batch_size]
    results = bench(sentences, config, batch_sizes, args.precision, str(device), args.steps, args.repeats)
    summary = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "threads": torch.get_num_threads(),
        "precision": args.precision,
        "matmul_gflops": matmul_gflops(device, args.precision),
        **results[0].as_dict(),
        "results": [r.as_dict() for r in results],
        "host": host_info(device),
    }
    if args.baseline:
        base = baseline_tokens_per_s(sentences, config)
        summary["baseline_train_tokens_per_s"] = base
        for r in summary["results"]:
            r["speedup_over_baseline"] = r["train_tokens_per_s"] / base
    if args.json:
        print(json.dumps(summary))
        return
    print(f"device {summary['device']}, {summary['threads']} threads, {args.precision}; "
          f"matmul {summary['matmul_gflops']:.0f} GFLOP/s; corpus {args.corpus} ({len(sentences)} sentences)")
    print(f"{'batch':>6} {'train tok/s':>12} {'train sent/s':>12} {'infer tok/s':>12} {'infer sent/s':>12} "
          f"{'padding':>8} {'LSTM GFLOP/s':>13} {'of matmul':>9}" + ("  vs per-sentence" if args.baseline else ""))
    for r in summary["results"]:
        line = (f"{r['batch_size']:>6} {r['train_tokens_per_s']:>12,.0f} {r['train_sentences_per_s']:>12,.0f} "
                f"{r['infer_tokens_per_s']:>12,.0f} {r['infer_sentences_per_s']:>12,.0f} "
                f"{100 * r['padding_fraction']:>7.1f}% {r['lstm_train_gflops']:>13.1f} "
                f"{100 * r['lstm_train_gflops'] / summary['matmul_gflops']:>8.0f}%")
        if args.baseline:
            line += f"  {r['speedup_over_baseline']:>6.1f}x"
        print(line)
    if args.baseline:
        print(f"per-sentence loop (the tutorial's): {summary['baseline_train_tokens_per_s']:,.0f} train tok/s")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = {
        "train": _cmd_train,
        "evaluate": _cmd_evaluate,
        "predict": predict.run,
        "demo": _cmd_demo,
        "bench": _cmd_bench,
        "export": _cmd_export,
        "plot": _cmd_plot,
    }
    if sys.stdout is None:  # started with standard output closed (`>&-`)
        print("seqtag: error: standard output is closed: redirect it to a file or /dev/null", file=sys.stderr)
        return 1
    try:
        command[args.command](args)
        sys.stdout.flush()  # here, so that a closed pipe is an error caught below, not at exit
    except BrokenPipeError:
        # The reader went away (e.g. `seqtag evaluate ... | head -1`): stop quietly, as a Unix
        # tool killed by SIGPIPE would (exit status 141), without a traceback at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except SeqtagError as e:
        print(f"seqtag: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        if e.filename is not None:  # only a failed write to standard output is expected here
            raise
        # e.g. `> /dev/full`; stdout is left unusable, so nothing more is written to it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(f"seqtag: error: cannot write standard output: {e.strerror or e}", file=sys.stderr)
        return 1
    except TrainingInterrupted as e:
        if is_main_process():  # under torchrun every rank stops; one says so
            print(f"seqtag: training interrupted {e.where}; checkpoint saved in {e.checkpoint}\n"
                  f"seqtag: resume with: seqtag train --resume {e.output_dir}", file=sys.stderr)
        return 128 + e.signal_number
    except KeyboardInterrupt:
        print("seqtag: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
