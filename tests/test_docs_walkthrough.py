"""The walk-throughs in the docs run as a reader pastes them.

The quickstart (docs/quickstart.md), the README's examples and the command-line version of the
tutorial (docs/tutorial.md) are run here block by block, in a fresh directory, with nothing
changed but the data: the ``curl`` the quickstart uses to fetch
UD English-EWT is replaced (first on PATH) by a stand-in that checks the URL names a file of the
treebank's GitHub repository at a release tag and writes the first sentences of that file from
the local corpora folder instead, so that every command runs in seconds and without a network.
The install lines are what ``.ci/run`` itself runs; they are not repeated here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

import seqtag

from .test_docs import DOCS, ROOT, _blocks

# What the stand-in serves: the first sentences of each split (enough to train and check).
SLICE = {"train": 400, "dev": 100, "test": 100}
EWT_URL = r"https://raw\.githubusercontent\.com/UniversalDependencies/UD_English-EWT/r2\.\d+/en_ewt-ud-(train|dev|test)\.conllu"

CURL = '''#!{python}
"""curl -fsSL -o FILE URL, answered from the local copy of UD English-EWT."""
import re, sys
args = sys.argv[1:]
out, url = args[args.index("-o") + 1], args[-1]
match = re.fullmatch({pattern!r}, url)
if not match or "-f" not in "".join(a for a in args if a.startswith("-") and a != "-o"):
    sys.exit(f"curl stand-in: unexpected command line {{args}}")
with open({corpus!r} + f"/en_ewt-ud-{{match[1]}}.conllu", encoding="utf-8") as f:
    sentences = f.read().split("\\n\\n")
with open(out, "w", encoding="utf-8") as f:
    f.write("\\n\\n".join(sentences[: {slice!r}[match[1]]]) + "\\n\\n")
with open("curl.log", "a", encoding="utf-8") as log:
    log.write(url + "\\n")
'''


def _conllu_slice(src: Path, dst: Path, n: int) -> None:
    sentences = src.read_text(encoding="utf-8").split("\n\n")[:n]
    dst.write_text("\n\n".join(sentences) + "\n\n", encoding="utf-8")


def _shell(script: str, cwd: Path, bin_dir: Path | None = None) -> subprocess.CompletedProcess:
    """Run a bash block as a reader would, stopping at the first failing command."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # where pip puts the seqtag script: beside this Python, or in the user scheme's scripts folder
    scripts = [str(Path(sys.executable).parent), sysconfig.get_path("scripts"),
               sysconfig.get_path("scripts", f"{os.name}_user")]
    path = [*scripts, env.get("PATH", "")]
    env["PATH"] = os.pathsep.join(([str(bin_dir)] if bin_dir else []) + path)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"$ {script}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def _runnable(path: Path) -> list[str]:
    """The bash blocks of a page, but for the install lines."""
    return [b for b in _blocks(path, "bash") if "pip install" not in b]


def _tags(predict_output: str) -> list[list[str]]:
    return [[line.split("\t")[1] for line in block.splitlines()] for block in predict_output.strip().split("\n\n")]


def test_quickstart_runs_as_written(ewt_dir, tmp_path, monkeypatch, capsys):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    curl = bin_dir / "curl"
    curl.write_text(CURL.format(python=sys.executable, pattern=EWT_URL, corpus=str(ewt_dir), slice=SLICE))
    curl.chmod(curl.stat().st_mode | stat.S_IXUSR)
    work = tmp_path / "reader"
    work.mkdir()

    blocks = _runnable(DOCS / "quickstart.md")
    assert len(blocks) == 7, "the quickstart's steps changed: update this test with them"
    demo, fetch, train, resume, evaluate, predict, export = blocks

    assert "The/DET dog/NN ate/V the/DET apple/NN" in _shell(demo, work).stdout

    head = _shell(fetch, work, bin_dir).stdout
    fetched = (work / "curl.log").read_text().split()
    assert [re.fullmatch(EWT_URL, url)[1] for url in fetched] == ["train", "dev", "test"]
    assert head.startswith("# newdoc id") and len(head.splitlines()) == 12

    log = _shell(train, work).stderr.replace("\r", "\n")
    (sample,) = _blocks(DOCS / "quickstart.md", "text")  # the epoch line the page shows
    shape = re.sub(r"\d[\d,.]*", r"\\d[\\d,.]*", re.escape(sample.strip())).replace(r"\ \*", r"( \*)?")
    assert re.search(f"^{shape}$", log, re.MULTILINE), f"no line like {sample!r} in\n{log[-2000:]}"
    model = work / "runs" / "ewt"
    for name in ("config.json", "vocab.json", "weights.pt", "metrics.jsonl", "checkpoints/last.pt"):
        assert (model / name).is_file(), name
    config = json.loads((model / "config.json").read_text())
    assert config["model"]["crf"] and config["model"]["char_filters"] and config["training"]["epochs"] == 3
    epochs = [json.loads(line) for line in (model / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [1, 2, 3] and epochs[-1]["train_loss"] < epochs[0]["train_loss"]

    weights = (model / "weights.pt").read_bytes()
    assert "nothing to train: the run has 3 epochs of 3" in _shell(resume, work).stderr
    assert (model / "weights.pt").read_bytes() == weights  # resuming a finished run changes nothing

    printed, as_json = _shell(evaluate, work).stdout.strip().splitlines()
    report = json.loads(as_json)
    assert report["sentences"] == SLICE["test"] and report["accuracy"] > 0.6, report
    assert printed.split() == ["sentences", "100", "tokens", str(report["tokens"]),
                               "accuracy", f"{100 * report['accuracy']:.2f}"]

    one, both = _shell(predict, work).stdout.split("\n\n", 1)
    assert [line.split("\t")[0] for line in one.splitlines()] == "The dog ate the apple .".split()
    assert [len(s) for s in _tags(both)] == [5, 6]
    exported = _shell(export, work).stdout
    assert (work / "ewt_tagger.pt").is_file()
    assert _tags(exported) == _tags(both)  # the exported file tags as the model directory does

    # "The same in Python", in the same directory after the commands above.
    monkeypatch.chdir(work)
    (python_block,) = _blocks(DOCS / "quickstart.md", "python")
    exec(compile(python_block, "quickstart.md, python block", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    tags, accuracy = eval(printed[-2]), float(printed[-1])
    assert len(tags) == 1 and len(tags[0]) == 6 and 0.6 < accuracy <= 1.0
    assert (work / "runs" / "ewt-py" / "weights.pt").is_file() and (work / "ewt_tagger_py.pt").is_file()


def test_readme_examples_run(ewt_dir, tmp_path, monkeypatch, capsys):
    """The README's Python and command-line examples, on the file names they use."""
    for split, n in {"train": 300, "dev": 50, "test": 50}.items():
        _conllu_slice(ewt_dir / f"en_ewt-ud-{split}.conllu", tmp_path / f"en_ewt-ud-{split}.conllu", n)
        _conllu_slice(ewt_dir / f"en_ewt-ud-{split}.conllu", tmp_path / f"{split}.conllu", n)
    monkeypatch.chdir(tmp_path)

    (python_block,) = _blocks(ROOT / "README.md", "python")
    exec(compile(python_block, "README.md, python block", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    # the model beats tagging every token with the training slice's commonest tag by a wide margin
    train_tags = [t for s in seqtag.read_conllu(tmp_path / "en_ewt-ud-train.conllu") for t in s.tags]
    commonest = max(set(train_tags), key=train_tags.count)
    test_tags = [t for s in seqtag.read_conllu(tmp_path / "en_ewt-ud-test.conllu") for t in s.tags]
    baseline = test_tags.count(commonest) / len(test_tags)
    assert len(eval(printed[-2])[0]) == 6 and 2 * baseline < float(printed[-1]) <= 1.0, (baseline, printed[-1])

    (cli_block,) = [b for b in _runnable(ROOT / "README.md") if "seqtag train" in b]
    shutil.rmtree(tmp_path / "runs")  # the CLI example writes the same directory as the Python one
    (tmp_path / "sentences.txt").write_text("The dog ate the apple .\n", encoding="utf-8")
    out = _shell(cli_block, tmp_path).stdout
    report, *rest = out.splitlines()
    report = json.loads(report)
    assert report["sentences"] == 50 and 0.0 < report["accuracy"] <= 1.0
    eager, onnx = [block.splitlines() for block in "\n".join(rest).strip().split("\n\n")]
    assert [line.split("\t")[0] for line in eager] == "The dog ate the apple .".split()
    # the ONNX file tags as the model directory does, with a probability in a third column
    assert [line.split("\t")[:2] for line in onnx] == [line.split("\t") for line in eager]
    assert all(0.0 <= float(line.split("\t")[2]) <= 1.0 for line in onnx)
    # the streamed CoNLL-U file keeps every line of the input
    tagged = (tmp_path / "tagged.conllu").read_text(encoding="utf-8").splitlines()
    assert len(tagged) == len((tmp_path / "test.conllu").read_text(encoding="utf-8").splitlines())


def test_tutorial_command_line_runs(tmp_path):
    """docs/tutorial.md's command-line version of the tutorial tags the sentence as the tutorial does."""
    (block,) = _blocks(DOCS / "tutorial.md", "bash")
    resources = tmp_path / "seqtag" / "resources"  # the block runs from the repository root
    resources.mkdir(parents=True)
    shutil.copy(ROOT / "seqtag" / "resources" / "tutorial.conll", resources)
    out = _shell(block, tmp_path).stdout
    assert [line.split("\t")[1] for line in out.strip().splitlines()] == ["DET", "NN", "V", "DET", "NN"]
