"""``seqtag export``: a model directory as TorchScript, ONNX or torch.export."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seqtag.cli.options import add_threads_option, checked_type, set_threads
from seqtag.errors import SeqtagError
from seqtag.serving.torch_export import DEFAULT_MAX_LENGTH, MAX_LENGTH, to_torch_export
from seqtag.serving.torchscript import to_torchscript


def add_parser(subparsers) -> None:
    """Add ``export`` to ``seqtag``'s subparsers."""
    p = subparsers.add_parser("export", help="export a trained tagger as TorchScript (strings in, tags out), ONNX or "
                       "torch.export")
    p.add_argument("model", metavar="DIR", help="model directory written by 'seqtag train'")
    add_threads_option(p)
    p.add_argument("--output", required=True, metavar="PATH",
                   help="torchscript: the file to write (e.g. tagger.pt); onnx: the file to write (e.g. "
                   "tagger.onnx); torch-export: a new directory")
    p.add_argument("--format", choices=("torchscript", "onnx", "torch-export"), default="torchscript",
                   help="torchscript: one self-contained file, any sentence length, loads in C++ (default); "
                   "onnx: one ONNX graph for ONNX Runtime, any batch and sentence length, vocabularies in its "
                   "metadata (needs the onnx extra; see docs/serving.md); "
                   "torch-export: id tensors in, one program per sentence-length bucket (see docs/export.md)")
    p.add_argument("--quantize", choices=("none", "int8"), default="none",
                   help="onnx: int8 weights (dynamic quantization), refused when dev accuracy drops by more than "
                   "0.5 points (default: none)")
    p.add_argument("--max-length", type=checked_type(int, "max_length", min=1, max=MAX_LENGTH), default=None, metavar="N",
                   help=f"torch-export: the longest sentence covered, at most {MAX_LENGTH} (default: {DEFAULT_MAX_LENGTH})")


def run(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    if args.quantize != "none" and args.format != "onnx":
        raise SeqtagError(f"--quantize {args.quantize} is for --format onnx")
    if args.max_length is not None and args.format != "torch-export":
        raise SeqtagError(f"--max-length is for --format torch-export ({args.format} takes sentences of any length)")
    if args.format == "torchscript":
        path = to_torchscript(args.model, args.output)
    elif args.format == "onnx":
        try:
            from seqtag.serving.onnx_export import to_onnx
        except ImportError as e:
            raise SeqtagError(f"--format onnx needs the onnx package ({e}): pip install 'seqtag[onnx]'") from None
        path = to_onnx(args.model, args.output) if args.quantize == "none" else _export_int8(args)
    else:
        path = to_torch_export(args.model, args.output, max_length=args.max_length or DEFAULT_MAX_LENGTH)
    print(f"exported {args.model} ({args.format}) to {path}", file=sys.stderr)


def _export_int8(args: argparse.Namespace) -> Path:
    from seqtag.serving.onnx_export import to_onnx_int8

    path, report = to_onnx_int8(args.model, args.output)
    size = f"{report['fp32_bytes'] / 1e6:.1f} MB -> {report['int8_bytes'] / 1e6:.1f} MB"
    if report["int8_accuracy"] is None:
        print(f"seqtag: warning: int8 accuracy not checked (the run names no dev file); {size}", file=sys.stderr)
    else:
        print(f"int8: dev accuracy {100 * report['fp32_accuracy']:.2f} -> {100 * report['int8_accuracy']:.2f} "
              f"({report['dev_tokens']} tokens); {size}", file=sys.stderr)
    return path
