"""The ``seqtag`` command: train, evaluate, predict, demo.

Model and training options are generated from :class:`~seqtag.config.TaggerConfig` and
:class:`~seqtag.config.TrainConfig`, so their names, defaults and help live in one place.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from . import __version__
from .config import TaggerConfig, TrainConfig
from .corpus import Sentence, read_corpus
from .errors import SeqtagError
from .model import CONFIG_FILE, Tagger
from .train import evaluate, train
from .tutorial import demo


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
                metavar=None if f.metadata.get("choices") else f.name.split("_")[-1].upper(),
                help=f"{help_text} (default: {f.default})",
            )


def _config_from_args(cls: type, args: argparse.Namespace, base=None):
    changes = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name) is not None}
    try:
        return (base or cls()).replace(**changes)
    except ValueError as e:
        raise SeqtagError(str(e)) from None


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("conll", "conllu"), help="file format (default: from the suffix)")
    parser.add_argument(
        "--tag-column", help="tag column: a CoNLL-U name (upos, xpos, ...) or a column index (default: upos / last)"
    )
    parser.add_argument("--token-column", type=int, default=0, help="token column index of a CoNLL file (default: 0)")


def _read(path: str, args: argparse.Namespace) -> list[Sentence]:
    return read_corpus(path, format=args.format, tag_column=args.tag_column, token_column=args.token_column)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqtag", description="Neural sequence tagging on PyTorch.")
    parser.add_argument("--version", action="version", version=f"seqtag {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a tagger on a CoNLL or CoNLL-U file")
    p.add_argument("--train", required=True, metavar="FILE", help="training data")
    p.add_argument("--dev", metavar="FILE", help="dev data, evaluated after each epoch to pick the best model")
    p.add_argument("--output-dir", required=True, metavar="DIR", help="where the model is saved")
    p.add_argument("--threads", type=int, default=0, help="intra-op CPU threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    _add_data_options(p)
    _add_config_options(p, TaggerConfig, "model")
    _add_config_options(p, TrainConfig, "training")

    p = sub.add_parser("evaluate", help="score a trained tagger on gold-tagged data")
    p.add_argument("model", metavar="DIR", help="model directory written by 'seqtag train'")
    p.add_argument("--data", required=True, metavar="FILE", help="gold-tagged data")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda, cuda:N or mps (default: cpu)")
    p.add_argument("--batch-size", type=int, default=256, help="sentences per batch (default: 256)")
    _add_data_options(p)

    p = sub.add_parser("predict", help="tag whitespace-tokenized sentences, one per line")
    p.add_argument("model", metavar="DIR", help="model directory written by 'seqtag train'")
    p.add_argument("--input", metavar="FILE", help="input file (default: standard input)")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda, cuda:N or mps (default: cpu)")
    p.add_argument("--batch-size", type=int, default=256, help="sentences per batch (default: 256)")

    sub.add_parser("demo", help="train the tutorial's tagger and a batched BiLSTM-CRF on the tutorial corpus")
    return parser


def _cmd_train(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    model_config = _config_from_args(TaggerConfig, args)
    train_config = _config_from_args(TrainConfig, args)
    out = Path(args.output_dir)
    if (out / CONFIG_FILE).exists():
        raise SeqtagError(f"{out} already holds a model; choose another --output-dir")
    train_data = _read(args.train, args)
    dev_data = _read(args.dev, args) if args.dev else None
    train(train_data, dev_data, model_config, train_config, output_dir=out, quiet=args.quiet)
    print(f"model saved in {out}", file=sys.stderr)


def _cmd_evaluate(args: argparse.Namespace) -> None:
    tagger = Tagger.load(args.model, device=args.device)
    result = evaluate(tagger, _read(args.data, args), batch_size=args.batch_size)
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


def _cmd_predict(args: argparse.Namespace) -> None:
    tagger = Tagger.load(args.model, device=args.device)
    if args.input:
        try:
            text = Path(args.input).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise SeqtagError(f"{args.input}: cannot read ({e})") from None
    else:
        text = sys.stdin.read()
    sentences = [line.split() for line in text.splitlines()]
    sentences = [s for s in sentences if s]
    tags = tagger.predict(sentences, batch_size=args.batch_size)
    out = sys.stdout
    for tokens, labels in zip(sentences, tags):
        out.write("".join(f"{tok}\t{tag}\n" for tok, tag in zip(tokens, labels)) + "\n")


def _cmd_demo(args: argparse.Namespace) -> None:
    demo()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = {"train": _cmd_train, "evaluate": _cmd_evaluate, "predict": _cmd_predict, "demo": _cmd_demo}
    try:
        command[args.command](args)
    except SeqtagError as e:
        print(f"seqtag: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("seqtag: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
