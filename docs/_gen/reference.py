"""Generated parts of the docs site, and the MkDocs hook that puts them in (``hooks:`` in mkdocs.yml).

A page asks for generated text with a marker line, replaced when the site is built:

- ``<!-- gen:config seqtag.config.TaggerConfig -->``: a table of the dataclass's fields (name,
  command-line flag, type, default, help), read from ``dataclasses.fields`` and the fields'
  ``metadata["help"]``, with each flag looked up in the real parser;
- ``<!-- gen:cli -->``: the ``--help`` of ``seqtag`` and of each subcommand, from
  ``seqtag.cli.app.build_parser()``.

So neither the option list nor the CLI text is kept by hand in a second place. The hook also
writes the stylesheet (Pygments colours, as code is highlighted at build time and nothing is
fetched by the browser; a few layout fixes).

tests/test_docs.py imports this file to check the generated tables against the parser.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import html
import importlib
import os
import re
from collections.abc import Iterator

MARKER = re.compile(r"^<!-- gen:(?P<kind>[a-z-]+)(?: (?P<arg>[\w.]+))? -->[ \t]*$", re.MULTILINE)
HELP_WIDTH = 100  # columns of the generated --help text, whatever the terminal building the site

# Layout fixes for the readthedocs theme, appended to the Pygments rules.
SITE_CSS = """
/* wider pages, and table cells that wrap instead of scrolling sideways */
.wy-nav-content { max-width: 1100px; }
.wy-table-responsive table td, .wy-table-responsive table th { white-space: normal; }
/* one frame around a highlighted code block, not a frame inside a frame */
.rst-content div.highlight pre { padding: 0; }
.rst-content div.highlight pre code { border: none; background: transparent; padding: 12px; }
"""

# -- what is generated ----------------------------------------------------------------------


def _import(dotted: str):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommand parsers of ``parser``, in the order ``seqtag --help`` lists them."""
    for action in parser._actions:  # argparse has no public accessor for subparsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def config_options(parser: argparse.ArgumentParser, cls: type) -> dict[str, list[str]]:
    """``{field name: flags}`` of the argument group that ``parser`` generated from ``cls``
    (the group whose options are exactly the dataclass's fields), or ``{}`` when it has none.

    Matching on the whole group, not on single names, keeps out options that share a field's
    name but not its meaning, such as ``evaluate --batch-size``.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    for group in parser._action_groups:
        # Hidden spellings (help=SUPPRESS, e.g. --tags-column for --tag-column) are left out.
        actions = [a for a in group._group_actions if a.option_strings and a.help != argparse.SUPPRESS]
        if actions and {a.dest for a in actions} == names:
            return {a.dest: list(a.option_strings) for a in actions}
    return {}


def _cell(text: str) -> str:
    """Text for a Markdown table cell: HTML-escaped (``<unk>``), no pipes."""
    return html.escape(text, quote=False).replace("|", "&#124;")


def _default(value) -> str:
    return f"`{value!r}`" if isinstance(value, str) else f"`{value}`"


def config_table(cls: type, parser: argparse.ArgumentParser | None = None) -> str:
    """A Markdown table of the dataclass ``cls``, one row per field in declaration order, after
    a line naming the subcommands that take these fields as options.

    The flag is the one the ``seqtag`` parser really accepts for the field (``—`` for a field
    the command line does not expose).
    """
    if parser is None:
        from seqtag.cli.app import build_parser

        parser = build_parser()
    options = {name: config_options(sub, cls) for name, sub in subcommands(parser).items()}
    options = {name: found for name, found in options.items() if found}
    commands = " and ".join(f"`seqtag {name}`" for name in options) or "no subcommand"
    rows = [
        f"Options of {commands}; in Python, keyword arguments of `{cls.__name__}`.",
        "",
        "| field | command-line flag | type | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for f in dataclasses.fields(cls):
        where = [name for name, found in options.items() if f.name in found]
        flags = options[where[0]][f.name] if where else []
        flag = "<br>".join(f"`{x}`" for x in flags) if flags else "—"
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        choices = f.metadata.get("choices")
        if choices:
            kind += ": " + ", ".join(f"`{c}`" for c in choices)
        rows.append(
            f"| `{f.name}` | {flag} | {kind} | {_default(f.default)} | {_cell(f.metadata.get('help', ''))} |"
        )
    return "\n".join(rows)


@contextlib.contextmanager
def _help_width(columns: int) -> Iterator[None]:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(columns)  # argparse sizes its help from shutil.get_terminal_size
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def help_text(parser: argparse.ArgumentParser) -> str:
    """``parser.format_help()`` at a fixed width and without colour (Python 3.14 colours help)."""
    if hasattr(parser, "color"):
        parser.color = False
    with _help_width(HELP_WIDTH):
        return parser.format_help().rstrip()


def cli_reference(parser: argparse.ArgumentParser | None = None) -> str:
    """Markdown: ``seqtag --help``, then a section with the ``--help`` of each subcommand."""
    if parser is None:
        from seqtag.cli.app import build_parser

        parser = build_parser()
    parts = ["```text", "$ seqtag --help", help_text(parser), "```"]
    for name, sub in subcommands(parser).items():
        parts += ["", f"## seqtag {name}", "", "```text", f"$ seqtag {name} --help", help_text(sub), "```"]
    return "\n".join(parts)


def render(markdown: str) -> str:
    """``markdown`` with each marker line replaced by what it asks for."""

    def replace(match: re.Match) -> str:
        kind, arg = match["kind"], match["arg"]
        if kind == "config" and arg:
            return config_table(_import(arg))
        if kind == "cli" and not arg:
            return cli_reference()
        raise ValueError(f"unknown generator marker: {match[0]!r}")

    return MARKER.sub(replace, markdown)


# -- MkDocs hook events -----------------------------------------------------------------------


def on_files(files, config):
    from mkdocs.structure.files import File
    from pygments.formatters import HtmlFormatter

    css = HtmlFormatter(style="default").get_style_defs(".highlight") + "\n" + SITE_CSS
    files.append(File.generated(config, "css/site.css", content=css))
    return files


def on_page_markdown(markdown, page, config, files):
    return render(markdown)
