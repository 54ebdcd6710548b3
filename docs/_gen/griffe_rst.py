"""Griffe extension for the API reference: reads seqtag's docstrings as the docs site shows them.

seqtag's docstrings are Google style with two reStructuredText habits that Markdown does not
know, so they are rewritten before mkdocstrings renders them (the source is left alone):

- Sphinx roles (``:class:`~seqtag.model.tagger.Tagger```, ``:func:`train```) become code spans
  (`` `Tagger` ``, `` `train` ``), with ``~`` keeping only the last name as Sphinx does;
- griffe reads doctests in an ``Examples:`` section as code, but takes ``Example:`` for an
  admonition whose body is Markdown: ``Example:`` is read as ``Examples:``;
- a paragraph that ends in ``::`` (reStructuredText's "literal block follows") ends in ``:``;
  the indented block after it is a code block in Markdown too;
- a doctest that stands at the left margin outside any section (``>>> ...`` lines and their
  output) becomes a ``pycon`` code block, where Markdown would read ``>>>`` as nested quotes.

And the configuration dataclasses declare each field as ``name: int = _f(default, "help")``
(seqtag/config.py); read statically, the signature would show ``_f(...)`` calls. A field
declared so gets the default as its value and the help text as its docstring, so the class
signature shows ``embedding_dim: int = 100`` and each field is documented.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj):`(~?)([^`]+)`")
EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)
LITERAL = re.compile(r"(?<=\S)::[ \t]*$", re.MULTILINE)


def _role(match: re.Match) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def _fence_doctests(text: str) -> str:
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith(">>>"):
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i])
                i += 1
            out += ["```pycon", *block, "```"]
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out)


def rewrite(text: str) -> str:
    """The docstring ``text`` with roles as code spans and margin doctests fenced."""
    text = LITERAL.sub(":", EXAMPLE.sub(r"\1Examples:", ROLE.sub(_role, text)))
    return _fence_doctests(text)


FIELD_HELPER = "_f"  # seqtag.config._f(default, help, **metadata)


class SeqtagDocstrings(griffe.Extension):
    def on_attribute_instance(self, *, node: Any, attr: griffe.Attribute, **kwargs: Any) -> None:
        value = getattr(node, "value", None)
        if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == FIELD_HELPER):
            return
        default, help_text = value.args[0], value.args[1]
        attr.value = ast.unparse(default)
        if isinstance(help_text, ast.Constant) and isinstance(help_text.value, str) and attr.docstring is None:
            attr.docstring = griffe.Docstring(help_text.value, parent=attr)

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self.on_object(obj=pkg)  # the package itself gets no on_object event

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
