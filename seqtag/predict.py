"""``seqtag predict``: tag sentences with a model directory or an exported model."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from .device import resolve_device
from .errors import SeqtagError
from .export import METADATA_FILE, load_torch_export, load_torchscript
from .model import Tagger


def add_parser(subparsers) -> None:
    """Add the ``predict`` subcommand to ``seqtag``'s subparsers."""
    p = subparsers.add_parser("predict", help="tag whitespace-tokenized sentences, one per line")
    p.add_argument("model", metavar="MODEL", help="model directory written by 'seqtag train', or a TorchScript "
                   "file or torch.export directory written by 'seqtag export'")
    p.add_argument("--input", metavar="FILE", help="input file (default: standard input)")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda, cuda:N or mps (default: cpu)")
    p.add_argument("--batch-size", type=int, default=256, help="sentences per batch (default: 256)")


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


def run(args: argparse.Namespace) -> None:
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
