"""What the subcommands share: options generated from the configuration dataclasses, and
checked option types."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence

import torch

from seqtag.config import MAX_PARALLEL, DataConfig, check_value, command_fields, field_kind
from seqtag.errors import SeqtagError


def add_config_options(
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


def config_from_args(cls: type, args: argparse.Namespace, base=None):
    """``base`` (default: ``cls()``) with the options given on the command line."""
    names = [f.name for f in dataclasses.fields(cls)]
    changes = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    try:
        return (base or cls()).replace(**changes)
    except ValueError as e:
        raise SeqtagError(str(e)) from None


# options that choose within a Hugging Face dataset: DataConfig's fields, and the subcommands' --split
DATASET_OPTIONS = ("hf_config", "train_split", "dev_split", "label_names", "cache_dir", "num_proc", "split")


def refuse_dataset_options_without_dataset(args: argparse.Namespace) -> None:
    """An option of :data:`DATASET_OPTIONS` given without ``--hf-dataset`` would be ignored: one
    line instead (``evaluate --data dev.conll --split test`` scored the whole file)."""
    if getattr(args, "hf_dataset", None):
        return
    flags = {f.name: f.metadata.get("flag", "--" + f.name.replace("_", "-")) for f in dataclasses.fields(DataConfig)}
    for name in DATASET_OPTIONS:
        if getattr(args, name, None) is not None:
            flag = flags.get(name, "--" + name.replace("_", "-"))
            raise SeqtagError(f"{flag} chooses within a Hugging Face dataset: it needs --hf-dataset")


def checked_type(kind: type, name: str, **bounds):
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


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads N``, the same for every subcommand that computes with torch (bounded by
    :data:`~seqtag.config.MAX_PARALLEL`); :func:`set_threads` applies it."""
    parser.add_argument("--threads", type=checked_type(int, "threads", min=0, max=MAX_PARALLEL), default=0,
                        metavar="N", help="intra-op CPU threads (default: torch's choice)")


def set_threads(threads: int) -> None:
    if threads:
        torch.set_num_threads(threads)
