"""The documentation is tested like code.

- Every ``>>>`` example in seqtag's docstrings runs (``doctest``), one test per docstring.
- Every ``seqtag ...`` command line in a ```bash block of docs/ and the README parses with
  ``build_parser()``, every ``python benchmarks/X.py ...`` line with that script's
  ``build_parser()``; every ```python block compiles; the tutorial page runs top to bottom
  (the quickstart and the README examples run in test_docs_walkthrough.py).
- The generated reference pages (docs/_gen/reference.py) cover every configuration field
  with a flag the parser accepts, and every subcommand.

Blocks that show a synopsis rather than a command (``[--json]``, ``NAME_OR_PATH``) are fenced
as ```text, so that what is fenced as ```bash can be pasted into a shell.
"""

from __future__ import annotations

import ast
import dataclasses
import doctest
import html
import importlib
import importlib.util
import inspect
import io
import pkgutil
import re
import shlex
import sys
from pathlib import Path

import pytest

import seqtag
from seqtag.cli.app import build_parser
from seqtag.config import TaggerConfig, TrainConfig

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "_gen" not in p.parts)
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _load_generator():
    spec = importlib.util.spec_from_file_location("seqtag_docs_reference", DOCS / "_gen" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- docstring examples ---------------------------------------------------------------------


# every module of the package, subpackages included
MODULES = ["seqtag"] + [m.name for m in pkgutil.walk_packages(seqtag.__path__, "seqtag.") if m.name != "seqtag.__main__"]


def _doctests() -> list:
    """One pytest parameter per docstring with examples, in every module of the package."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    params = []
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as e:  # an optional dependency that is not installed
            params.append(pytest.param(None, id=name, marks=pytest.mark.skip(reason=f"cannot import {name}: {e}")))
            continue
        for test in finder.find(module, name):
            if test.examples:
                params.append(pytest.param(test, id=test.name))
    return params


@pytest.mark.parametrize("test", _doctests())
def test_docstring_examples_run(test):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = io.StringIO()
    result = runner.run(test, out=report.write)
    assert result.failed == 0, report.getvalue()


def _tensor_callables() -> list:
    """Public functions and methods of seqtag whose signature takes or returns a Tensor."""
    params, seen = [], set()
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:  # an optional dependency that is not installed (skipped above)
            continue
        for attr, obj in vars(module).items():
            if attr.startswith("_") or getattr(obj, "__module__", None) != name:
                continue
            members = [(attr, obj, None)]
            if inspect.isclass(obj):
                members += [(f"{attr}.{k}", v, obj) for k, v in vars(obj).items()
                            if callable(v) and (not k.startswith("_") or k in ("__init__", "__call__"))]
            for qualname, member, owner in members:
                try:
                    signature = str(inspect.signature(member))
                except (TypeError, ValueError):
                    continue
                if "Tensor" in signature and id(member) not in seen:
                    seen.add(id(member))
                    params.append(pytest.param(member, owner, id=f"{name}.{qualname}"))
    return params


@pytest.mark.parametrize(("member", "owner"), _tensor_callables())
def test_public_tensor_docstrings_give_shapes(member, owner):
    """Every public callable that takes or returns tensors states their shapes in its docstring
    (or, for methods, in its class's docstring)."""
    text = (inspect.getdoc(member) or "") + (inspect.getdoc(owner) or "" if owner else "")
    assert re.search(r"\((batch|B|b|N|seq_len|num_tags|n)\b[^)]*\)|shape", text), text[:300]


# -- code blocks of the pages ---------------------------------------------------------------


def _blocks(path: Path, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(path.read_text(encoding="utf-8")) if lang == language]


def _commands(script: str) -> list[list[str]]:
    """The commands of a bash script as argument lists, split at pipes, ``&&``, ``||`` and
    ``;``; comments are dropped and continuation lines joined."""
    commands = []
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        command: list[str] = []
        for token in [*lexer, ";"]:
            if token in ("|", "||", "&&", ";", "&"):
                if command:
                    commands.append(command)
                command = []
            else:
                command.append(token)
    return commands


def _seqtag_commands(script: str) -> list[list[str]]:
    """The argument lists of the ``seqtag ...`` (or ``... -m seqtag ...``) commands in a bash script."""
    found = []
    for command in _commands(script):
        if command[0] == "seqtag":
            found.append(command[1:])
        elif "-m" in command and command[command.index("-m") + 1 :][:1] == ["seqtag"]:
            found.append(command[command.index("-m") + 2 :])
    return found


def _command_params() -> list:
    params = []
    for path in [*PAGES, ROOT / "README.md"]:
        for block in _blocks(path, "bash"):
            for argv in _seqtag_commands(block):
                name = f"{path.relative_to(ROOT)}: seqtag {' '.join(argv)}"
                params.append(pytest.param(argv, id=name[:120]))
    return params


def test_command_extraction():
    script = (
        "pip install -e . && seqtag demo        # install, run the demo\n"
        'echo "The dog ." | seqtag predict runs/x --input a.txt\n'
        "seqtag train --train a.conll \\\n    --epochs 3\n"
        "# seqtag not-a-command\n"
        "torchrun --nproc_per_node 2 -m seqtag train --train a.conll\n"
    )
    assert _seqtag_commands(script) == [
        ["demo"],
        ["predict", "runs/x", "--input", "a.txt"],
        ["train", "--train", "a.conll", "--epochs", "3"],
        ["train", "--train", "a.conll"],
    ]


def test_the_quickstart_shows_each_step():
    commands = [argv[0] for block in _blocks(DOCS / "quickstart.md", "bash") for argv in _seqtag_commands(block)]
    for step in ("demo", "train", "evaluate", "predict", "export"):
        assert step in commands, f"the quickstart has no 'seqtag {step}' command"


@pytest.mark.parametrize("argv", _command_params())
def test_commands_in_the_docs_parse(argv, capsys):
    try:
        build_parser().parse_args(argv)
    except SystemExit as e:  # argparse exits on a bad command line (and after --help)
        pytest.fail(f"seqtag {' '.join(argv)}: exit {e.code}\n{capsys.readouterr().err}")


def _benchmark_script_params() -> list:
    params = []
    for path in [*PAGES, ROOT / "README.md"]:
        for block in _blocks(path, "bash"):
            for command in _commands(block):
                if command[0] == "python" and command[1:2] and command[1].startswith("benchmarks/"):
                    name = f"{path.relative_to(ROOT)}: {' '.join(command)}"
                    params.append(pytest.param(command[1], command[2:], id=name[:120]))
    return params


@pytest.mark.parametrize(("script", "argv"), _benchmark_script_params())
def test_benchmark_commands_in_the_docs_parse(script, argv, capsys, monkeypatch):
    """``python benchmarks/X.py ...`` lines name a script that exists, with options its parser takes."""
    path = ROOT / script
    assert path.is_file(), f"{script} does not exist"
    spec = importlib.util.spec_from_file_location(f"seqtag_benchmark_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # a dataclass looks its module up there
    spec.loader.exec_module(module)
    try:
        module.build_parser().parse_args(argv)
    except SystemExit as e:
        pytest.fail(f"{script} {' '.join(argv)}: exit {e.code}\n{capsys.readouterr().err}")


@pytest.mark.parametrize("path", [*PAGES, ROOT / "README.md"], ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_compile_and_their_seqtag_imports_work(path):
    """Every block compiles, and every ``import seqtag...``/``from seqtag... import`` in it runs
    (without a warning: an old module path would warn), so the import paths the docs show work."""
    for i, block in enumerate(_blocks(path, "python")):
        tree = ast.parse(compile(block, f"{path.name}, python block {i + 1}", "exec", ast.PyCF_ONLY_AST))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            imported = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(m.split(".")[0] == "seqtag" for m in imported):
                exec(compile(ast.Module([node], []), f"{path.name}, python block {i + 1}", "exec"), {})


def test_the_tutorial_page_runs(capsys):
    """The code of docs/tutorial.md, block after block in one namespace, as a reader pastes it."""
    namespace: dict = {}
    for i, block in enumerate(_blocks(DOCS / "tutorial.md", "python")):
        exec(compile(block, f"tutorial.md, python block {i + 1}", "exec"), namespace)
    printed = capsys.readouterr().out
    assert printed.count("['DET', 'NN', 'V', 'DET', 'NN']") == 3, printed  # the tutorial, seqtag, the recipe
    assert namespace["batch"].words.shape == (2, 5)
    assert namespace["nll"].shape == (2,) and bool((namespace["nll"] >= 0).all())


# -- generated reference pages ---------------------------------------------------------------


@pytest.mark.parametrize("cls", [TaggerConfig, TrainConfig], ids=lambda c: c.__name__)
def test_config_table_has_every_field_with_a_working_flag(cls):
    generator = _load_generator()
    table = generator.config_table(cls)
    rows = {line.split("|")[1].strip(" `"): line for line in table.splitlines() if line.startswith("| `")}
    assert "`seqtag train`" in table.splitlines()[0]
    assert list(rows) == [f.name for f in dataclasses.fields(cls)]
    for f in dataclasses.fields(cls):
        assert html.escape(f.metadata["help"], quote=False) in rows[f.name]
        flags = re.findall(r"`(--[\w-]+)`", rows[f.name].split("|")[2])
        assert flags, f"{f.name} has no command-line flag"
        if f.type == "bool":
            assert flags == [f"--{f.name.replace('_', '-')}", f"--no-{f.name.replace('_', '-')}"]
            assert getattr(build_parser().parse_args(["train", flags[1]]), f.name) is False
            continue
        choices = f.metadata.get("choices")
        value = choices[-1] if choices else {"int": "3", "float": "0.5", "str": "x"}[f.type]
        parsed = getattr(build_parser().parse_args(["train", flags[0], value]), f.name)
        assert str(parsed) == value


def test_cli_reference_has_every_subcommand():
    generator = _load_generator()
    text = generator.cli_reference()
    subcommands = generator.subcommands(build_parser())
    assert set(subcommands) >= {"train", "evaluate", "predict", "export", "demo", "bench", "plot"}
    for name, parser in subcommands.items():
        assert f"## seqtag {name}\n" in text
        assert f"usage: seqtag {name}" in text
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in text, f"seqtag {name} {flag} is missing from the CLI reference"


def test_every_marker_in_the_pages_renders():
    generator = _load_generator()
    markers = 0
    for path in PAGES:
        text = path.read_text(encoding="utf-8")
        markers += len(generator.MARKER.findall(text))
        rendered = generator.render(text)
        assert "<!-- gen:" not in rendered, path
    assert markers >= 5  # configuration.md (2), cli.md (1), reference/config.md (2)
    with pytest.raises(ValueError, match="unknown generator marker"):
        generator.render("<!-- gen:nothing -->\n")
