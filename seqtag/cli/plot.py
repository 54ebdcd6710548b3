"""``seqtag plot``: a run's learning curve."""

from __future__ import annotations

import argparse

from seqtag.training.plot import plot_learning_curve


def add_parser(subparsers) -> None:
    """Add ``plot`` to ``seqtag``'s subparsers."""
    p = subparsers.add_parser("plot", help="draw a run's learning curve from its metrics.jsonl (needs matplotlib)")
    p.add_argument("run", metavar="DIR", help="output directory of 'seqtag train'")
    p.add_argument("--out", metavar="FILE", help="PNG file to write (default: DIR/learning_curve.png)")


def run(args: argparse.Namespace) -> None:
    print(plot_learning_curve(args.run, args.out))
