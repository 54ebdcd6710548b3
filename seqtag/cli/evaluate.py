"""``seqtag evaluate``: score a model directory on gold-tagged data."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from seqtag.cli.options import (
    add_config_options,
    add_threads_option,
    checked_type,
    config_from_args,
    refuse_dataset_options_without_dataset,
    set_threads,
)
from seqtag.config import INFERENCE_PRECISION, PRECISIONS, DataConfig, TrainConfig
from seqtag.data import sources
from seqtag.device import check_precision
from seqtag.errors import SeqtagError
from seqtag.model.directory import trained_data_config
from seqtag.model.tagger import Tagger
from seqtag.training.evaluation import evaluate


def add_parser(subparsers) -> None:
    """Add ``evaluate`` to ``seqtag``'s subparsers."""
    p = subparsers.add_parser("evaluate", help="score a trained tagger on gold-tagged data")
    p.add_argument("model", metavar="DIR", help="model directory written by 'seqtag train'")
    p.add_argument("--data", metavar="FILE", help="gold-tagged data (or --hf-dataset)")
    add_threads_option(p)
    p.add_argument("--split", metavar="SPLIT", help="--hf-dataset: the split to score (default: test, or the only split)")
    p.add_argument("--unknown-tags", choices=("error", "map-to-O"), default=None,
                   help="gold tags the model does not know: scored as O (the default for span tag sets such as "
                   "BIO: conlleval counts such a chunk as missed; a note on stderr says what was mapped), "
                   "or an error (the default for other tag sets)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--device", default="cpu", metavar="DEVICE", help="auto, cpu, cuda, cuda:N or mps (default: cpu)")
    p.add_argument("--batch-size", type=checked_type(int, "batch_size", min=1), default=TrainConfig.eval_batch_size,
                   metavar="N", help=f"sentences per batch (default: {TrainConfig.eval_batch_size})")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help=f"{INFERENCE_PRECISION} (default: fp32)")
    add_config_options(p, DataConfig, "data (default: the columns the model was trained on)", command="evaluate")


def _data_settings(args: argparse.Namespace, model: Path) -> DataConfig:
    """How to read the gold data to score: the options given, else as the model's run read its data."""
    trained = trained_data_config(model)
    given = config_from_args(DataConfig, args)
    if trained is not None and bool(trained.hf_dataset) == bool(args.hf_dataset):  # the same kind of input
        inherited = {f.name: getattr(trained, f.name) for f in dataclasses.fields(DataConfig) if f.metadata.get("from_model")}
        given = config_from_args(DataConfig, args, base=DataConfig(**inherited))
    return given


def run(args: argparse.Namespace) -> None:
    if bool(args.data) == bool(args.hf_dataset):
        raise SeqtagError("evaluate takes --data FILE or --hf-dataset NAME_OR_PATH (one of them)")
    refuse_dataset_options_without_dataset(args)
    set_threads(args.threads)
    tagger = Tagger.load(args.model, device=args.device)
    check_precision(tagger.output.weight.device, args.precision)  # before the data is read
    settings = _data_settings(args, Path(args.model))
    data = sources.evaluation_data(settings, args.data, args.split, tagger.tag_scheme)
    # Span tag sets: a gold tag the model lacks is scored as O by default, as conlleval would
    # (the chunk is missed), e.g. CoNLL-2000's I-LST, which its training data lacks.
    unknown_tags = args.unknown_tags or ("map-to-O" if tagger.tag_scheme != "none" else "error")
    result = evaluate(tagger, data, batch_size=args.batch_size, unknown_tags=unknown_tags, precision=args.precision)
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
