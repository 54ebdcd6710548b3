"""The ``seqtag`` command: train (and ``train --resume``), evaluate, predict, export, bench, plot, demo.

Model and training options are generated from :class:`~seqtag.config.TaggerConfig` and
:class:`~seqtag.config.TrainConfig`, so their names, defaults and help live in one place.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from . import __version__
from .bench import baseline_tokens_per_s, bench, matmul_gflops, synthetic_corpus
from .checkpoint import find_checkpoint, read_checkpoint
from .config import TaggerConfig, TrainConfig
from .corpus import Sentence, read_corpus
from .device import PRECISIONS, resolve_device
from .distributed import BACKENDS, is_main_process
from .errors import SeqtagError
from .evaluation import evaluate
from .export import (
    DEFAULT_MAX_LENGTH,
    METADATA_FILE,
    load_torch_export,
    load_torchscript,
    to_torch_export,
    to_torchscript,
)
from .fileio import atomic_write_text
from .model import Tagger
from .plot import plot_learning_curve
from .training import TrainingInterrupted, check_output_dir, train
from .tutorial import demo
from .vectors import read_vectors
from .vocab import Vocabularies


def _add_config_options(parser: argparse.ArgumentParser, cls: type, title: str) -> None:
    group = parser.add_argument_group(title)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        if f.type in (bool, "bool"):
            group.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                help=f"{help_text} (default: {f.default})",
            )
        else:
            kind = {"int": int, "float": float, "str": str}.get(str(f.type), str)
            group.add_argument(
                flag, dest=f.name, type=kind, default=None, choices=f.metadata.get("choices"),
                metavar=None if f.metadata.get("choices") else f.metadata.get("metavar", f.name.split("_")[-1].upper()),
                help=f"{help_text} (default: {f.default})",
            )


def _config_from_args(cls: type, args: argparse.Namespace, base=None):
    changes = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name) is not None}
    try:
        return (base or cls()).replace(**changes)
    except ValueError as e:
        raise SeqtagError(str(e)) from None


def _add_data_options(parser: argparse.ArgumentParser, tag_default: str = "upos / last") -> None:
    parser.add_argument("--format", choices=("conll", "conllu"), help="file format (default: from the suffix)")
    parser.add_argument(
        "--tag-column", help=f"tag column: a CoNLL-U name (upos, xpos, ...) or a column index (default: {tag_default})"
    )
    parser.add_argument("--token-column", type=int, default=0, help="token column index of a CoNLL file (default: 0)")


def _read(path: str, args: argparse.Namespace) -> list[Sentence]:
    return read_corpus(path, format=args.format, tag_column=args.tag_column, token_column=args.token_column)


def _add_hf_options(parser: argparse.ArgumentParser, splits: dict[str, tuple[str | None, str]]) -> None:
    group = parser.add_argument_group("Hugging Face datasets (instead of files)")
    group.add_argument("--hf-dataset", metavar="NAME_OR_PATH",
                       help="a Hub dataset name, a save_to_disk folder, a .json/.jsonl/.parquet/.csv file or a "
                       "folder of them")  # fmt: skip
    group.add_argument("--hf-config", metavar="NAME", help="the Hub dataset's configuration")
    for flag, (default, help_text) in splits.items():
        group.add_argument(flag, default=default, metavar="SPLIT", help=help_text)
    group.add_argument("--tokens-column", help="tokens column (default: tokens)")
    group.add_argument("--tags-column", help="tags column (default: the first of ner_tags, pos_tags, upos, tags, "
                       "labels, xpos)")  # fmt: skip
    group.add_argument("--label-names", metavar="A,B,...",
                       help="tag names by id, comma-separated, for integer tags without ClassLabel names")
    group.add_argument("--hf-cache-dir", metavar="DIR",
                       help="where converted and encoded Arrow files go (default: HF_DATASETS_CACHE)")
    group.add_argument("--num-proc", type=int, default=None, help="processes that encode the data (default: 1)")


def _hf_columns(args: argparse.Namespace) -> dict:
    names = args.label_names.split(",") if args.label_names else None
    return {"tokens_column": args.tokens_column, "tags_column": args.tags_column, "label_names": names}


def _hf_data(args: argparse.Namespace, config: TaggerConfig, tc: TrainConfig, vocabs=None):
    """``--hf-dataset``: the train and dev splits, encoded into memory-mapped Arrow datasets."""
    from . import hf  # imports datasets: only when asked for

    splits = hf.load_splits(args.hf_dataset, args.hf_config, cache_dir=args.hf_cache_dir)
    train_split = hf.pick_split(splits, args.train_split, args.hf_dataset)
    dev_name = args.dev_split or ("validation" if "validation" in splits else None)
    dev_split = hf.pick_split(splits, dev_name, args.hf_dataset) if dev_name else None
    columns = _hf_columns(args)
    if vocabs is None:
        extra = read_vectors(tc.vectors, tc.vectors_max_words)[0] if tc.vectors else ()
        vocabs = hf.build_vocabs(train_split, config.lowercase, tc.min_freq, extra_words=extra, **columns)
    encode = dict(num_proc=args.num_proc, cache_dir=args.hf_cache_dir, **columns)
    train_set = hf.ArrowTaggingDataset(train_split, vocabs, config, **encode)
    dev_set = hf.ArrowTaggingDataset(dev_split, vocabs, config, **encode) if dev_split is not None else None
    return train_set, dev_set


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqtag", description="Neural sequence tagging on PyTorch.")
    parser.add_argument("--version", action="version", version=f"seqtag {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a tagger on CoNLL or CoNLL-U files or a Hugging Face dataset")
    p.add_argument("--train", metavar="FILE", help="training data (required unless --resume or --hf-dataset)")
    p.add_argument("--dev", metavar="FILE", help="dev data, evaluated after each epoch to pick the best model")
    p.add_argument("--output-dir", metavar="DIR", help="where the model is saved (required unless --resume)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR (or from a checkpoint file in "
                   "DIR/checkpoints) with its saved settings; --epochs N trains up to N epochs in all")
    p.add_argument("--overwrite", action="store_true", help="replace the model or run already in --output-dir")
    p.add_argument("--threads", type=int, default=0, help="intra-op CPU threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    p.add_argument("--dist-backend", choices=BACKENDS, default=None,
                   help="under torchrun: the torch.distributed backend (default: nccl on CUDA, else gloo)")
    _add_data_options(p)
    _add_hf_options(p, {
        "--train-split": ("train", "training split (default: train)"),
        "--dev-split": (None, "dev split (default: validation, when there is one)"),
    })  # fmt: skip
    _add_config_options(p, TaggerConfig, "model")
    _add_config_options(p, TrainConfig, "training")

    p = sub.add_parser("evaluate", help="score a trained tagger on gold-tagged data")
    p.add_argument("model", metavar="DIR", help="model directory written by 'seqtag train'")
    p.add_argument("--data", metavar="FILE", help="gold-tagged data (or --hf-dataset)")
    p.add_argument("--unknown-tags", choices=("error", "map-to-O"), default="error",
                   help="gold tags the model does not know: an error (default), or scored as O")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda, cuda:N or mps (default: cpu)")
    p.add_argument("--batch-size", type=int, default=256, help="sentences per batch (default: 256)")
    _add_data_options(p, tag_default="the one the model was trained on with seqtag train, else upos / last")
    _add_hf_options(p, {"--split": (None, "split to score (default: test, or the only split)")})

    p = sub.add_parser("export", help="export a trained tagger as TorchScript (strings in, tags out) or torch.export")
    p.add_argument("model", metavar="DIR", help="model directory written by 'seqtag train'")
    p.add_argument("--output", required=True, metavar="PATH",
                   help="torchscript: the file to write (e.g. tagger.pt); torch-export: a new directory")
    p.add_argument("--format", choices=("torchscript", "torch-export"), default="torchscript",
                   help="torchscript: one self-contained file, any sentence length, loads in C++ (default); "
                   "torch-export: id tensors in, one program per sentence-length bucket (see docs/export.md)")
    p.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH, metavar="N",
                   help=f"torch-export: the longest sentence covered (default: {DEFAULT_MAX_LENGTH})")

    p = sub.add_parser("predict", help="tag whitespace-tokenized sentences, one per line")
    p.add_argument("model", metavar="MODEL", help="model directory written by 'seqtag train', or a TorchScript "
                   "file or torch.export directory written by 'seqtag export'")
    p.add_argument("--input", metavar="FILE", help="input file (default: standard input)")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda, cuda:N or mps (default: cpu)")
    p.add_argument("--batch-size", type=int, default=256, help="sentences per batch (default: 256)")

    sub.add_parser("demo", help="train the tutorial's tagger and a batched BiLSTM-CRF on the tutorial corpus")

    p = sub.add_parser("plot", help="draw a run's learning curve from its metrics.jsonl (needs matplotlib)")
    p.add_argument("run", metavar="DIR", help="output directory of 'seqtag train'")
    p.add_argument("--out", metavar="FILE", help="PNG file to write (default: DIR/learning_curve.png)")

    p = sub.add_parser("bench", help="measure training and inference tokens/s against the device's matmul rate")
    p.add_argument("--corpus", default="synthetic", metavar="FILE", help="a corpus file, or 'synthetic' (default)")
    p.add_argument("--batch-size", type=int, nargs="+", default=None, metavar="N",
                   help=f"batch sizes to time (default: {TrainConfig.batch_size})")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="autocast precision (default: fp32)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.add_argument("--threads", type=int, default=0, help="intra-op CPU threads (default: torch's choice)")
    p.add_argument("--steps", type=int, default=20, help="steps per timed segment (default: 20)")
    p.add_argument("--repeats", type=int, default=5, help="timed segments; the median is reported (default: 5)")
    p.add_argument("--baseline", action="store_true", help="also time the tutorial's one-sentence-per-step loop")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_data_options(p)
    _add_config_options(p, TaggerConfig, "model")
    return parser


DATA_FILE = "data.json"  # the data files and columns of a run started here, for --resume


def _data_settings(args: argparse.Namespace) -> dict:
    if args.hf_dataset:
        local = Path(args.hf_dataset).expanduser()
        return {
            "hf_dataset": str(local.resolve()) if local.exists() else args.hf_dataset,
            **{k: getattr(args, k) for k in ("hf_config", "train_split", "dev_split", "tokens_column",
                                             "tags_column", "label_names", "hf_cache_dir", "num_proc")},
        }  # fmt: skip
    return {
        "train_file": str(Path(args.train).resolve()),
        "validation_file": str(Path(args.dev).resolve()) if args.dev else None,
        "format": args.format,
        "tag_column": args.tag_column,
        "token_column": args.token_column,
    }


def _cmd_train(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.resume:
        _resume_training(args)
        return
    if not (args.train or args.hf_dataset) or not args.output_dir:
        raise SeqtagError("train needs --train FILE (or --hf-dataset) and --output-dir DIR (or --resume DIR)")
    if args.train and args.hf_dataset:
        raise SeqtagError("train takes --train FILE or --hf-dataset, not both")
    model_config = _config_from_args(TaggerConfig, args)
    train_config = _config_from_args(TrainConfig, args)
    out = Path(args.output_dir)
    check_output_dir(out, args.overwrite)  # before reading the data; train() checks again
    if args.hf_dataset:
        train_data, dev_data = _hf_data(args, model_config, train_config)
    else:
        train_data = _read(args.train, args)
        dev_data = _read(args.dev, args) if args.dev else None
    out.mkdir(parents=True, exist_ok=True)
    if is_main_process():  # under torchrun, rank 0 writes
        atomic_write_text(out / DATA_FILE, json.dumps(_data_settings(args), indent=2) + "\n")
    train(train_data, dev_data, model_config, train_config, output_dir=out, quiet=args.quiet,
          dist_backend=args.dist_backend, overwrite=args.overwrite)  # fmt: skip
    if is_main_process():
        print(f"model saved in {out}", file=sys.stderr)


def _resume_training(args: argparse.Namespace) -> None:
    """``seqtag train --resume DIR``: the saved settings, with the changes resuming allows."""
    target = Path(args.resume)
    out = target.parent.parent if target.is_file() else target
    source = find_checkpoint(out, target if target.is_file() else True)
    saved = read_checkpoint(source)
    given = [f.name for f in dataclasses.fields(TaggerConfig) if getattr(args, f.name) is not None]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise SeqtagError(f"--resume continues the run with its saved model settings; drop {flags}")
    if args.output_dir and Path(args.output_dir).resolve() != out.resolve():
        raise SeqtagError(f"--resume continues the run in {out}; drop --output-dir")
    train_config = _config_from_args(TrainConfig, args, base=TrainConfig.from_dict(saved["train_config"]))
    if args.train or args.hf_dataset:
        data = _data_settings(args)
    else:
        try:
            data = json.loads((out / DATA_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise SeqtagError(
                f"{out / DATA_FILE} is missing or unreadable, so the run's data files are unknown: pass "
                f"--train (and --dev, --format, --tag-column) as when the run started"
            ) from None
    if "hf_dataset" in data:
        config = TaggerConfig.from_dict(saved["model_config"])
        vocabs = Vocabularies.from_dict(saved["vocab"])
        train_data, dev_data = _hf_data(argparse.Namespace(**data), config, train_config, vocabs)
    else:
        columns = argparse.Namespace(format=data["format"], tag_column=data["tag_column"], token_column=data["token_column"])
        train_data = _read(data["train_file"], columns)
        dev_data = _read(data["validation_file"], columns) if data["validation_file"] else None
    train(train_data, dev_data, None, train_config, output_dir=out, quiet=args.quiet, resume=source,
          dist_backend=args.dist_backend)  # fmt: skip
    if is_main_process():
        print(f"model saved in {out}", file=sys.stderr)


def _trained_tag_column(model: Path) -> str | None:
    """The ``--tag-column`` the model directory's run was started with (its data.json), if any."""
    try:
        return json.loads((model / DATA_FILE).read_text(encoding="utf-8")).get("tag_column")
    except (OSError, ValueError, AttributeError):
        return None


def _cmd_evaluate(args: argparse.Namespace) -> None:
    if bool(args.data) == bool(args.hf_dataset):
        raise SeqtagError("evaluate takes --data FILE or --hf-dataset NAME_OR_PATH (one of them)")
    tagger = Tagger.load(args.model, device=args.device)
    if args.hf_dataset:
        from . import hf  # imports datasets: only when asked for

        splits = hf.load_splits(args.hf_dataset, args.hf_config, cache_dir=args.hf_cache_dir)
        split = args.split or ("test" if "test" in splits else None)
        data = hf.sentences(hf.pick_split(splits, split, args.hf_dataset), **_hf_columns(args))
    else:
        if args.tag_column is None:
            args.tag_column = _trained_tag_column(Path(args.model))
        data = _read(args.data, args)
    result = evaluate(tagger, data, batch_size=args.batch_size, unknown_tags=args.unknown_tags)
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


def _predictor(model: str, device: str, batch_size: int) -> tuple[Callable[[list[list[str]]], list[list[str]]], int]:
    """``sentences -> tags`` for a model directory, a TorchScript file or a torch.export directory,
    and the longest sentence it takes (0: any)."""
    path = Path(model)
    if path.is_file():
        module = load_torchscript(path, map_location=resolve_device(device))
        module.batch_size = batch_size
        return module, 0
    if (path / METADATA_FILE).is_file():
        exported = load_torch_export(path)  # CPU programs
        return (lambda sentences: exported.predict(sentences, batch_size=batch_size)), exported.max_length
    tagger = Tagger.load(path, device=device)
    return (lambda sentences: tagger.predict(sentences, batch_size=batch_size)), 0


def _cmd_export(args: argparse.Namespace) -> None:
    if args.format == "torchscript":
        path = to_torchscript(args.model, args.output)
    else:
        path = to_torch_export(args.model, args.output, max_length=args.max_length)
    print(f"exported {args.model} ({args.format}) to {path}", file=sys.stderr)


def _cmd_predict(args: argparse.Namespace) -> None:
    predict, max_length = _predictor(args.model, args.device, args.batch_size)
    if args.input:
        try:
            text = Path(args.input).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise SeqtagError(f"{args.input}: cannot read ({e})") from None
    else:
        text = sys.stdin.read()
    lines = [(number, line.split()) for number, line in enumerate(text.splitlines(), 1)]
    for number, tokens in lines:
        if max_length and len(tokens) > max_length:
            raise SeqtagError(
                f"{args.input or '<stdin>'}:{number}: {len(tokens)} tokens, more than the {max_length} that "
                f"the torch.export directory {args.model} covers: export with a larger --max-length, or use "
                f"the TorchScript format"
            )
    sentences = [tokens for _, tokens in lines if tokens]  # blank lines are skipped
    tags = predict(sentences)
    out = sys.stdout
    for tokens, labels in zip(sentences, tags):
        out.write("".join(f"{tok}\t{tag}\n" for tok, tag in zip(tokens, labels)) + "\n")


def _cmd_demo(args: argparse.Namespace) -> None:
    demo()


def _cmd_plot(args: argparse.Namespace) -> None:
    print(plot_learning_curve(args.run, args.out))


def _cmd_bench(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    config = _config_from_args(TaggerConfig, args)
    sentences = synthetic_corpus() if args.corpus == "synthetic" else _read(args.corpus, args)
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
        "predict": _cmd_predict,
        "demo": _cmd_demo,
        "bench": _cmd_bench,
        "export": _cmd_export,
        "plot": _cmd_plot,
    }
    try:
        command[args.command](args)
    except SeqtagError as e:
        print(f"seqtag: error: {e}", file=sys.stderr)
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
