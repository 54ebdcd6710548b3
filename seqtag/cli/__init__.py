"""The ``seqtag`` command: :mod:`seqtag.cli.app` builds the parser from one module per
subcommand (each with ``add_parser`` and ``run``) and runs it."""

from seqtag.lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {"app": ["build_parser", "main"]})
