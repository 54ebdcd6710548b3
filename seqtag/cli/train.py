"""``seqtag train``: a new run, or ``--resume`` of one."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from pathlib import Path

from seqtag.cli.options import (
    add_config_options,
    add_threads_option,
    config_from_args,
    refuse_dataset_options_without_dataset,
    set_threads,
)
from seqtag.config import DataConfig, TaggerConfig, TrainConfig, for_encoder
from seqtag.data import sources
from seqtag.data.vocab import Vocabularies
from seqtag.errors import SeqtagError
from seqtag.fileio import hold_directory
from seqtag.training.checkpoint import find_checkpoint, read_checkpoint
from seqtag.training.distributed import BACKENDS, is_main_process
from seqtag.training.loop import train
from seqtag.training.runs import check_output_dir, resumed_config


def add_parser(subparsers) -> None:
    """Add ``train`` to ``seqtag``'s subparsers."""
    p = subparsers.add_parser("train", help="train a tagger on CoNLL or CoNLL-U files or a Hugging Face dataset")
    p.add_argument("--output-dir", metavar="DIR", help="where the model is saved (required unless --resume)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR (or from a checkpoint file in "
                   "DIR/checkpoints) with its saved settings, data included; --epochs N trains up to N epochs in all")
    p.add_argument("--overwrite", action="store_true", help="replace the model or run already in --output-dir")
    add_threads_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    p.add_argument("--dist-backend", choices=BACKENDS, default=None,
                   help="under torchrun: the torch.distributed backend (default: nccl on CUDA, else gloo)")
    add_config_options(p, DataConfig, "data (files, or a Hugging Face dataset with --hf-dataset)", command="train")
    add_config_options(p, TaggerConfig, "model")
    add_config_options(p, TrainConfig, "training")


def _hold(out: Path):
    """The run's hold on its directory (rank 0 under torchrun; the others wait in train())."""
    return hold_directory(out) if is_main_process() else contextlib.nullcontext()


def run(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    if args.resume:
        _resume_training(args)
        return
    data = config_from_args(DataConfig, args)  # each value in its range first
    refuse_dataset_options_without_dataset(args)  # a resumed run takes them from its checkpoint
    if not (data.train_file or data.hf_dataset) or not args.output_dir:
        raise SeqtagError("train needs --train FILE (or --hf-dataset) and --output-dir DIR (or --resume DIR)")
    if data.train_file and data.hf_dataset:
        raise SeqtagError("train takes --train FILE or --hf-dataset, not both")
    base_model, base_train = TaggerConfig(), TrainConfig()
    if args.encoder and Path(args.encoder).expanduser().is_dir():  # absolute, as the data's paths: a run resumes anywhere
        args.encoder = str(Path(args.encoder).expanduser().resolve())
    if args.encoder:  # an encoder model starts from the measured recipe (config.ENCODER_RECIPE); flags override it
        base_model, base_train = for_encoder(TaggerConfig(encoder=args.encoder)), for_encoder(TrainConfig())
    model_config = config_from_args(TaggerConfig, args, base=base_model)
    train_config = config_from_args(TrainConfig, args, base=base_train)
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
        train_config = config_from_args(TrainConfig, args, base=TrainConfig.from_dict(saved["train_config"]))
        data = sources.absolute_paths(config_from_args(DataConfig, args, base=DataConfig.from_dict(saved["data_config"])))
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
