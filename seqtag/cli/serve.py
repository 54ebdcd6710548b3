"""``seqtag serve``: a model behind the HTTP service of :mod:`seqtag.serving.server`.

The command checks its options, the ``serve`` extra and the model path, then replaces itself
(``exec``: the same process id) with ``python -m seqtag.serving.server MODEL CONFIG_JSON``: the
modules of the command line import torch, and an ONNX model is served without it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from seqtag.cli.options import add_config_options, config_from_args
from seqtag.config import ServeConfig
from seqtag.serving.predictor import check_model_precision, model_kind
from seqtag.serving.server import require_extra


def add_parser(subparsers) -> None:
    """Add the ``serve`` subcommand to ``seqtag``'s subparsers."""
    p = subparsers.add_parser("serve", help="serve a model over HTTP (JSON API, dynamic batching, metrics; "
                              "needs the serve extra)")  # fmt: skip
    p.add_argument("model", metavar="MODEL", help="an .onnx file (recommended: no torch in the server), a model "
                   "directory, a TorchScript file or a torch.export directory")  # fmt: skip
    add_config_options(p, ServeConfig, "serving")


def run(args: argparse.Namespace) -> None:
    """``seqtag serve``: check the options, the extra and the model, then become
    ``python -m seqtag.serving.server`` (the same process, without the command line's imports)."""
    config = config_from_args(ServeConfig, args)
    require_extra()
    check_model_precision(model_kind(args.model), config.precision, config.device)
    sys.stdout.flush()
    sys.stderr.flush()
    argv = [sys.executable, "-m", "seqtag.serving.server", str(args.model), json.dumps(config.to_dict())]
    os.execv(sys.executable, argv)
