"""The ``seqtag`` command: its parser, built from one module per subcommand, and ``main``, which
turns every expected failure into one line and an exit status."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from seqtag import __version__
from seqtag.cli import bench, demo, evaluate, export, plot, predict, serve, train
from seqtag.errors import SeqtagError
from seqtag.training.distributed import is_main_process
from seqtag.training.interrupts import TrainingInterrupted

# each module has add_parser(subparsers) and run(args); --help lists them in this order
COMMANDS = {
    "train": train, "evaluate": evaluate, "export": export, "predict": predict, "serve": serve, "demo": demo,
    "plot": plot, "bench": bench,
}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqtag", description="Neural sequence tagging on PyTorch.")
    parser.add_argument("--version", action="version", version=f"seqtag {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not sys.stderr.isatty():  # datasets draws its bars on any stderr: in a log they bury a one-line error
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    if sys.stdout is None:  # started with standard output closed (`>&-`)
        print("seqtag: error: standard output is closed: redirect it to a file or /dev/null", file=sys.stderr)
        return 1
    try:
        COMMANDS[args.command].run(args)
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
    except (MemoryError, RuntimeError) as e:
        reason = out_of_memory(e)
        if reason is None:
            raise
        # sizes no configuration range can bound (--hidden-dim 10**12, a huge batch): nothing is written yet
        print(f"seqtag: error: out of memory ({reason}): choose smaller sizes or batches", file=sys.stderr)
        return 1
    return 0


def out_of_memory(error: BaseException) -> str | None:
    """The allocator's one line when ``error`` is an allocation that failed (torch's CPU allocator
    raises a plain ``RuntimeError``, CUDA ``torch.OutOfMemoryError``, Python ``MemoryError``), else None."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return first[:200]
    if "can't allocate memory" in text or "out of memory" in text.lower():
        return text[text.find("you tried"):].split(". ")[0][:200] if "you tried" in text else first[:200]
    return None


if __name__ == "__main__":
    sys.exit(main())
