"""A hostile user's campaign against seqtag: damaged files, API misuse, bad data, bad options.

Every case runs in its own process (the command line as a subprocess, the Python API in a child
interpreter) with a timeout, and is classified automatically:

- an error case HOLDS when the command exits non-zero with one ``seqtag: error: ...`` line on
  stderr (or argparse's usage and ``seqtag CMD: error: ...``, exit status 2), or the API raises a
  ``TypeError``, ``ValueError`` or ``SeqtagError`` with a one-line message; no traceback, and no
  output file written or earlier good output changed;
- a case that should succeed HOLDS when it exits 0 and its output equals an oracle (the eager
  tagger's tags on the same tokens, the plain file's scores, the input's tokens read back);
- a case that may go either way (a token an output format may or may not be able to carry)
  holds with either outcome;
- anything else FAILS: a traceback, exit 0 on an error, a signal, a timeout, a wrong result, a
  half-written file.

Tiny models are trained at the start (generated BIO data, 200 UD English-EWT sentences from
``$SEQTAG_CORPORA/ud_english_ewt``) and exported to every format; everything lives in one
temporary directory, removed at the end unless ``--keep``.

The ``serve`` families (``serve:onnx``, ``serve:dir``) send hostile HTTP requests to a running
``seqtag serve`` of the ONNX file and of the model directory (see :func:`serve_cases`).

    python benchmarks/campaign.py
    python benchmarks/campaign.py --family options --jobs 2 --json campaign.json
    python benchmarks/campaign.py --only predict-bs --keep
    python benchmarks/campaign.py --family serve --json serve.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checks read outputs back with this checkout's readers
PY = sys.executable
CORPORA = Path(os.environ.get("SEQTAG_CORPORA", ROOT.parent / "shared" / "corpora"))
EWT = CORPORA / "ud_english_ewt"
TINY = ["--embedding-dim", "16", "--hidden-dim", "16", "--char-embedding-dim", "8", "--char-filters", "8",
        "--batch-size", "16", "--quiet", "--device", "cpu", "--seed", "3"]  # fmt: skip
API_ERRORS = ("TypeError", "ValueError", "SeqtagError", "CorpusError")

# -- cases ----------------------------------------------------------------------------------


@dataclass
class Case:
    """One thing a hostile user tries.

    Attributes:
        family: the table row it counts in.
        name: unique, short.
        argv: ``seqtag`` arguments (CLI), or None for an API case.
        code: Python run in a child interpreter (API); it prints ``json.dumps(result)`` when it
            should succeed.
        expect: ``error``, ``ok`` or ``either``.
        check: for ``ok``/``either`` cases that exit 0: ``(case, stdout) -> problem or None``.
        prepare: ``(case) -> None``, run just before (builds the damaged files under ``case.dir``).
        http: instead of ``argv`` or ``code``, requests to a running ``seqtag serve`` (:class:`HttpCase`).
        stdin: bytes fed to the command.
        absent: paths that must not exist after an error.
        unchanged: paths whose bytes must be the same after the case as before.
        timeout: seconds.
    """

    family: str
    name: str
    argv: list[str] | None = None
    code: str | None = None
    expect: str = "error"
    check: Callable[[Case, str], str | None] | None = None
    prepare: Callable[[Case], None] | None = None
    stdin: bytes | None = None
    absent: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    timeout: float = 60.0
    dir: Path = Path()
    http: HttpCase | None = None


@dataclass
class Result:
    family: str
    name: str
    status: str  # HELD or FAILED
    why: str
    rc: int | None
    seconds: float
    stdout: str
    stderr: str
    command: str


def snapshot(paths: list[Path]) -> dict[str, bytes | None]:
    out = {}
    for p in paths:
        if p.is_file():
            out[str(p)] = p.read_bytes()
        elif p.is_dir():
            out[str(p)] = b"".join(
                f.name.encode() + f.read_bytes() for f in sorted(p.rglob("*")) if f.is_file()
            )
        else:
            out[str(p)] = None
    return out


API_WRAPPER = textwrap.dedent(
    """
    import json, sys, traceback
    try:
        exec(compile(sys.argv[1], "<case>", "exec"), {"__name__": "__case__"})
    except BaseException as e:
        names = [c.__name__ for c in type(e).__mro__]
        if type(e).__name__ in @ERRORS@ or "SeqtagError" in names:
            print("API-ERROR " + type(e).__name__ + ": " + str(e), file=sys.stderr)
            sys.exit(3)
        traceback.print_exc()
        sys.exit(4)
""".replace("@ERRORS@", repr(API_ERRORS))
)


# An API case runs in a child forked from a warm interpreter that has imported torch, seqtag and
# onnxruntime (and run nothing), so that a case costs its own work, not 3 s of imports; each
# child has its own stdout, stderr and working directory, and is killed at its timeout.
ZYGOTE = textwrap.dedent(
    """
    import json, os, signal, sys, time
    import numpy, torch, onnxruntime, seqtag
    import seqtag.model.tagger, seqtag.training.loop, seqtag.training.evaluation, seqtag.serving.predictor
    import seqtag.serving.onnx_runner, seqtag.serving.torchscript, seqtag.serving.torch_export
    WRAPPER = sys.argv[1]
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                os.chdir(job["cwd"])
                for fd, name in ((1, "stdout"), (2, "stderr")):
                    f = os.open(job[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                    os.dup2(f, fd)
                sys.argv = ["-c", job["code"]]
                exec(compile(WRAPPER, "<wrapper>", "exec"), {"__name__": "__main__"})
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        deadline = time.monotonic() + job["timeout"]
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                rc = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                rc = None
                break
            time.sleep(0.02)
        print(json.dumps({"rc": rc}), flush=True)
"""
)
_local = threading.local()


def zygote(env: dict) -> subprocess.Popen:
    if getattr(_local, "zygote", None) is None:
        _local.zygote = subprocess.Popen(["nice", "-n", "5", PY, "-c", ZYGOTE, API_WRAPPER], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, env=env, text=True)  # fmt: skip
        ZYGOTES.append(_local.zygote)
    return _local.zygote


ZYGOTES: list[subprocess.Popen] = []


def run_api(case: Case, env: dict) -> tuple[int | None, str, str]:
    z = zygote(env)
    out, err = case.dir / ".stdout", case.dir / ".stderr"
    job = {
        "code": case.code,
        "cwd": str(case.dir),
        "stdout": str(out),
        "stderr": str(err),
        "timeout": case.timeout,
    }
    z.stdin.write(json.dumps(job) + "\n")
    z.stdin.flush()
    rc = json.loads(z.stdout.readline())["rc"]
    read = lambda p: p.read_bytes().decode("utf-8", "replace") if p.is_file() else ""  # noqa: E731
    return rc, read(out), read(err)


def run_case(case: Case, env: dict) -> Result:
    if case.http is not None:
        return run_http(case)
    case.dir.mkdir(parents=True, exist_ok=True)
    case.absent = [case.dir / p for p in case.absent]  # relative paths: in the case's directory
    case.unchanged = [case.dir / p for p in case.unchanged]
    if case.prepare:
        case.prepare(case)
    before = snapshot(case.unchanged)
    if case.argv is not None:
        cmd = ["nice", "-n", "5", PY, "-m", "seqtag", *case.argv]
        shown = "seqtag " + " ".join(_short(a) for a in case.argv)
    else:
        cmd = ["nice", "-n", "5", PY, "-c", API_WRAPPER, case.code]
        shown = "python: " + case.code.strip().replace("\n", "; ")
    start = time.perf_counter()
    if case.argv is None:
        rc, out, err = run_api(case, env)
        seconds = time.perf_counter() - start
        status, why = classify(case, rc, out, err, before)
        return Result(
            case.family,
            case.name,
            status,
            why,
            rc,
            round(seconds, 2),
            out[-3000:],
            err[-3000:],
            shown,
        )
    try:
        p = subprocess.run(cmd, input=case.stdin or b"", capture_output=True, cwd=case.dir, env=env,
                           timeout=case.timeout)  # fmt: skip
        rc, out, err = (
            p.returncode,
            p.stdout.decode("utf-8", "replace"),
            p.stderr.decode("utf-8", "replace"),
        )
    except subprocess.TimeoutExpired as e:
        rc, out, err = (
            None,
            (e.stdout or b"").decode("utf-8", "replace"),
            (e.stderr or b"").decode("utf-8", "replace"),
        )
    seconds = time.perf_counter() - start
    status, why = classify(case, rc, out, err, before)
    return Result(
        case.family, case.name, status, why, rc, round(seconds, 2), out[-3000:], err[-3000:], shown
    )


def _short(arg: str) -> str:
    return arg if len(arg) <= 60 else arg[:57] + "..."


def one_line_error(case: Case, rc: int, err: str) -> str | None:
    """None when stderr is the one-line refusal the project promises, else what is wrong."""
    lines = [line for line in err.splitlines() if line.strip()]
    if case.argv is None:
        if rc != 3:
            return f"exit {rc}, not a {'/'.join(API_ERRORS)}"
        if len(lines) != 1:
            return f"an API error of {len(lines)} lines"
        return None
    if (
        rc == 2
        and lines
        and lines[0].startswith("usage:")
        and lines[-1].startswith("seqtag")
        and ": error: " in lines[-1]
    ):
        return None  # argparse: usage, then one error line
    if rc in (0, None) or rc < 0:
        return f"exit {rc}"
    if len(lines) != 1 or not lines[0].startswith("seqtag: error: "):
        return f"exit {rc} with {len(lines)} stderr line(s), not one 'seqtag: error: ...'"
    return None


def classify(case: Case, rc: int | None, out: str, err: str, before: dict) -> tuple[str, str]:
    if rc is None:
        return "FAILED", f"timeout after {case.timeout:.0f}s"
    if rc < 0:
        return "FAILED", f"killed by signal {-rc}"
    if "Traceback" in err or "Traceback" in out:
        return "FAILED", "traceback"
    after = snapshot(case.unchanged)
    changed = [p for p in before if before[p] != after[p]]
    if changed:
        return "FAILED", f"changed: {', '.join(changed)}"
    if rc == 0:
        if case.expect == "error":
            return "FAILED", "exit 0 on an error"
        problem = case.check(case, out) if case.check else None
        return (
            ("FAILED", f"wrong result: {problem}")
            if problem
            else ("HELD", "ok, equal to the oracle")
        )
    if case.expect == "ok":
        return "FAILED", f"exit {rc} on a valid request: {err.strip()[-300:]}"
    problem = one_line_error(case, rc, err)
    if problem:
        return "FAILED", problem
    left = [str(p) for p in case.absent if p.exists()]
    if left:
        return "FAILED", f"left behind: {', '.join(left)}"
    return "HELD", err.strip().splitlines()[-1][:200]


# -- the models and data every case starts from ---------------------------------------------

HOSTILE_TOKENS = {
    "tab": "a\tb", "newline": "a\nb", "cr": "a\rb", "linesep": "a\u2028b", "nel": "a\u0085b", "nul": "a\x00b",
    "space": "a b", "surrogate": "a\ud800b", "long": "x" * 100_000, "empty": "", "hash": "#", "nbsp": "a\u00a0b",
}  # fmt: skip
SENTENCES = {
    "plain": [
        ["The", "dog", "ate", "the", "apple", "."],
        ["Smith", "went", "to", "Paris", "yesterday", "."],
    ],
    "unicode": [["Über", "東京タワー", "🙂", "e\u0301", "İstanbul"], ["ß", "x" * 45]],
    **{f"token-{k}": [["The", t, "ran", "."]] for k, t in HOSTILE_TOKENS.items()},
}


def conll_blocks(path: Path) -> list[str]:
    return [b for b in path.read_text(encoding="utf-8").split("\n\n") if b.strip()]


def upos(block: str) -> set[str]:
    return {line.split("\t")[3] for line in block.splitlines() if line and line[0].isdigit()}


def generated_bio(n: int, seed: int) -> list[list[tuple[str, str]]]:
    rng = random.Random(seed)
    words = [
        "the",
        "a",
        "went",
        "to",
        "saw",
        "with",
        "and",
        "big",
        "house",
        "river",
        "on",
        "said",
        ".",
    ]
    names = {
        "PER": ["Smith", "Anna", "Jones", "Li", "Maria"],
        "LOC": ["Paris", "Rome", "Oslo", "Lima", "Kyoto"],
    }
    out = []
    for _ in range(n):
        sent = []
        for _ in range(rng.randint(3, 12)):
            if rng.random() < 0.25:
                kind = rng.choice(sorted(names))
                for j in range(rng.randint(1, 2)):
                    sent.append((rng.choice(names[kind]), ("B-" if j == 0 else "I-") + kind))
            else:
                sent.append((rng.choice(words), "O"))
        out.append(sent)
    return out


def write_conll(path: Path, sents: list[list[tuple[str, str]]]) -> None:
    path.write_text(
        "".join("".join(f"{w}\t{t}\n" for w, t in s) + "\n" for s in sents), encoding="utf-8"
    )


class World:
    """The paths every case uses, built once by :meth:`build`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.models = root / "models"
        self.cases = root / "cases"
        self.ewt = self.models / "ewt"  # a model directory: UPOS, no span scheme
        self.ner = self.models / "ner"  # BIO, CRF with constraints
        self.ner2 = self.models / "ner2"  # another run on the same data
        self.ts = self.models / "ewt.pt"
        self.ner_ts = self.models / "ner.pt"
        self.onnx = self.models / "ewt.onnx"
        self.ner_onnx = self.models / "ner.onnx"
        self.te = self.models / "ewt_te"
        self.ewt_train = self.data / "ewt.conllu"
        self.ewt_dev = self.data / "ewt_dev.conllu"
        self.ner_train = self.data / "ner.conll"
        self.ner_dev = self.data / "ner_dev.conll"
        self.hf = self.data / "hf_ner"
        self.oracle: dict = {}
        self.scores: dict = {}

    def run(self, argv: list[str], env: dict) -> None:
        p = subprocess.run(
            ["nice", "-n", "5", PY, *argv], capture_output=True, env=env, cwd=self.root
        )
        if p.returncode != 0:
            raise SystemExit(f"setup failed: {' '.join(argv)}\n{p.stderr.decode()[-3000:]}")

    def build(self, env: dict, jobs: int, serve_only: bool = False) -> None:
        """Train and export every model and compute the oracle; ``serve_only``: only what the
        ``serve`` family needs (the EWT model directory and its ONNX file)."""
        for d in (self.data, self.models, self.cases):
            d.mkdir(parents=True)
        blocks = conll_blocks(EWT / "en_ewt-ud-train.conllu")[:200]
        self.ewt_train.write_text("\n\n".join(blocks) + "\n\n", encoding="utf-8")
        known = {t for b in blocks for t in upos(b)}
        blocks = [b for b in conll_blocks(EWT / "en_ewt-ud-dev.conllu") if upos(b) <= known][:40]
        self.ewt_dev.write_text("\n\n".join(blocks) + "\n\n", encoding="utf-8")
        write_conll(self.ner_train, generated_bio(150, 1))
        write_conll(self.ner_dev, generated_bio(30, 2))
        seqtag = ["-m", "seqtag"]
        trainings = [
            [*seqtag, "train", "--train", str(self.ewt_train), "--dev", str(self.ewt_dev), "--output-dir", str(self.ewt),
             "--epochs", "2", *TINY],
            [*seqtag, "train", "--train", str(self.ner_train), "--dev", str(self.ner_dev), "--output-dir", str(self.ner),
             "--epochs", "3", "--lr", "0.01", *TINY],
            [*seqtag, "train", "--train", str(self.ner_train), "--output-dir", str(self.ner2), "--epochs", "1", *TINY],
        ]  # fmt: skip
        if serve_only:
            self.run(trainings[0], env)
            self.run(
                [*seqtag, "export", str(self.ewt), "--format", "onnx", "--output", str(self.onnx)],
                env,
            )
            return
        with ThreadPoolExecutor(jobs) as pool:
            list(pool.map(lambda a: self.run(a, env), trainings))
        exports = [
            [*seqtag, "export", str(self.ewt), "--output", str(self.ts)],
            [*seqtag, "export", str(self.ner), "--output", str(self.ner_ts)],
            [*seqtag, "export", str(self.ewt), "--format", "onnx", "--output", str(self.onnx)],
            [*seqtag, "export", str(self.ner), "--format", "onnx", "--output", str(self.ner_onnx)],
            [*seqtag, "export", str(self.ewt), "--format", "torch-export", "--output", str(self.te), "--max-length", "24"],
            ["-c", ORACLE_CODE, str(self.root)],
        ]  # fmt: skip
        with ThreadPoolExecutor(jobs) as pool:
            list(pool.map(lambda a: self.run(a, env), exports))
        self.oracle = json.loads((self.root / "oracle.json").read_text())
        self.scores = self.oracle.pop("scores")


ORACLE_CODE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import seqtag
    from seqtag.data.corpus import read_corpus
    sys.path.insert(0, @HERE@)
    from campaign import SENTENCES, World, generated_bio
    w = World(Path(sys.argv[1]))

    def attempt(method, *args):
        try:
            return method(*args)
        except (TypeError, ValueError) as e:
            return {"error": str(e)}

    out = {"scores": {}}
    for name, path in (("ewt", w.ewt), ("ner", w.ner)):
        tagger = seqtag.load(path)
        out[name] = {k: attempt(tagger.predict, v) for k, v in SENTENCES.items()}
        out[name + "-nbest"] = {k: attempt(tagger.nbest, v, 3) for k, v in SENTENCES.items()}
    ewt = seqtag.load(w.ewt)
    out["scores"]["ewt-dev"] = seqtag.evaluate(ewt, read_corpus(w.ewt_dev, tag_column="upos"))
    ner = seqtag.load(w.ner)
    out["scores"]["ner-dev"] = seqtag.evaluate(ner, read_corpus(w.ner_dev))
    import datasets
    rows = generated_bio(40, 5)
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names))})
    ds = datasets.Dataset.from_dict({"tokens": [[t for t, _ in r] for r in rows],
                                     "ner_tags": [[names.index(g) for _, g in r] for r in rows]}, features=features)
    datasets.DatasetDict({"train": ds, "test": ds}).save_to_disk(str(w.hf))
    Path(sys.argv[1], "oracle.json").write_text(json.dumps(out))
""".replace("@HERE@", repr(str(Path(__file__).resolve().parent)))
)


# -- checks: each compares an output with the oracle -----------------------------------------


def parse_output(text: str, fmt: str) -> list[tuple[list[str], list[str]]]:
    """(tokens, tags) per sentence of ``seqtag predict``'s output in ``fmt``, read back as seqtag
    reads such files: JSON lines split at ``\\n`` only; columns (text and conll: token, tag[,
    confidence]) by seqtag's own CoNLL and CoNLL-U readers, so an output that reads back as other
    tokens is caught."""
    if fmt == "jsonl":
        return [(o["tokens"], o["tags"]) for o in map(json.loads, filter(None, text.split("\n")))]
    from seqtag.data.corpus import read_conll, read_conllu

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"out.{fmt}"
        path.write_bytes(text.encode("utf-8"))
        sentences = read_conllu(path, "upos") if fmt == "conllu" else read_conll(path, tag_column=1)
    return [(s.tokens, s.tags) for s in sentences]


def output_of(case: Case, stdout: str, output: str | None) -> str:
    if output is None:
        return stdout
    return (case.dir / output).read_bytes().decode("utf-8")


def tags_equal(
    world: World, model: str, key: str, fmt: str, output: str | None = None, tokens: bool = True
):
    """A check: the output's tags (and tokens) are the eager tagger's on ``SENTENCES[key]``."""

    def check(case: Case, stdout: str) -> str | None:
        want = world.oracle[model][key]
        if isinstance(want, dict):
            return f"eager refused these tokens ({want['error']}) but this call tagged them"
        try:
            got = parse_output(output_of(case, stdout, output), fmt)
        except (
            ValueError,
            KeyError,
            IndexError,
            UnicodeDecodeError,
        ) as e:  # CorpusError is a ValueError
            return f"unreadable {fmt} output ({e})"
        if [t for _, t in got] != want:
            return f"tags {[t for _, t in got]!r:.300} != eager {want!r:.300}"
        if tokens and [k for k, _ in got] != SENTENCES[key]:
            return f"tokens read back {[k for k, _ in got]!r:.200} != input {SENTENCES[key]!r:.200}"
        return None

    return check


def json_equal(want: object, places: int = 6) -> Callable[[Case, str], str | None]:
    def check(case: Case, stdout: str) -> str | None:
        try:
            got = json.loads(stdout.strip().splitlines()[-1])
        except (ValueError, IndexError) as e:
            return f"no JSON on stdout ({e})"
        if isinstance(got, dict) and isinstance(want, dict):  # the command line adds unknown_tags
            got = {k: v for k, v in got.items() if k in want}
        if round_all(got, places) != round_all(want, places):
            return f"{got!r:.300} != {want!r:.300}"
        return None

    return check


def round_all(x: object, places: int) -> object:
    if isinstance(x, float):
        return round(x, places)
    if isinstance(x, dict):
        return {k: round_all(v, places) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [round_all(v, places) for v in x]
    return x


def file_check(
    name: str, test: Callable[[bytes], bool], what: str
) -> Callable[[Case, str], str | None]:
    def check(case: Case, stdout: str) -> str | None:
        path = case.dir / name
        return None if path.is_file() and test(path.read_bytes()) else f"{name}: {what}"

    return check


# -- helpers that build damaged files ----------------------------------------------------------


def copy_model(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".seqtag.lock"))
    else:
        shutil.copy(src, dst)


def edit_json(path: Path, edit: Callable[[object], object]) -> None:
    obj = json.loads(path.read_text())
    new = edit(obj)
    path.write_text(json.dumps(obj if new is None else new))


def set_path(obj: dict, keys: str, value: object) -> None:
    *head, last = keys.split(".")
    for k in head:
        obj = obj[k]
    if value is DELETE:
        del obj[last]
    else:
        obj[last] = value


DELETE = object()


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def junk(n: int = 4096, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def edit_weights(path: Path, edit: Callable[[dict], None]) -> None:
    import torch

    state = torch.load(path, weights_only=True)
    edit(state)
    torch.save(state, path)


def first_float(state: dict) -> str:
    return next(
        k for k, v in state.items() if hasattr(v, "is_floating_point") and v.is_floating_point()
    )


def edit_onnx(path: Path, edit: Callable[[object], None]) -> None:
    import onnx

    model = onnx.load(str(path))
    edit(model)
    onnx.save(model, str(path))


def onnx_meta(model: object) -> dict:
    return json.loads(next(p.value for p in model.metadata_props if p.key == "seqtag.json"))


def set_onnx_meta(model: object, value: str | None) -> None:
    props = [(p.key, p.value) for p in model.metadata_props if p.key != "seqtag.json"]
    del model.metadata_props[:]
    for k, v in props + ([("seqtag.json", value)] if value is not None else []):
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v


def edit_ts_meta(
    src: Path, dst: Path, edit: Callable[[dict], object], module_of: Path | None = None
) -> None:
    """Rewrite a TorchScript file's seqtag.json (``module_of``: take the module from that file)."""
    import torch

    extra = {"seqtag.json": ""}
    torch.jit.load(str(src), _extra_files=extra)
    meta = json.loads(extra["seqtag.json"])
    new = edit(meta)
    module = torch.jit.load(str(module_of or src))
    text = new if isinstance(new, str) else json.dumps(meta if new is None else new)
    torch.jit.save(module, str(dst), _extra_files={"seqtag.json": text} if text else {})


def conllu_bom_crlf(path: Path) -> bytes:
    return b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n")


def sentence_lines(key: str, fmt: str) -> bytes:
    sents = SENTENCES[key]
    if fmt == "jsonl":
        return "".join(json.dumps({"tokens": s}) + "\n" for s in sents).encode(
            "utf-8", "surrogatepass"
        )
    if fmt == "text":
        return "".join(" ".join(s) + "\n" for s in sents).encode()
    if fmt == "conll":
        return "".join("".join(f"{t}\n" for t in s) + "\n" for s in sents).encode()
    return "".join("".join(f"{i}\t{t}\t_\t_\t_\t_\t_\t_\t_\t_\n" for i, t in enumerate(s, 1)) + "\n"
                   for s in sents).encode()  # fmt: skip


def writer(name: str, data: bytes | Callable[[Case], bytes]) -> Callable[[Case], None]:
    def prepare(case: Case) -> None:
        (case.dir / name).write_bytes(data(case) if callable(data) else data)

    return prepare


def both(*steps: Callable[[Case], None]) -> Callable[[Case], None]:
    def prepare(case: Case) -> None:
        for step in steps:
            step(case)

    return prepare


# -- the cases ---------------------------------------------------------------------------------


def all_cases(w: World) -> list[Case]:
    return [*directory_cases(w), *exported_cases(w), *checkpoint_cases(w), *api_cases(w), *data_cases(w),
            *option_cases(w), *write_cases(w), *serve_cases(w)]  # fmt: skip


PLAIN_TEXT = sentence_lines("plain", "text")


def directory_cases(w: World) -> list[Case]:
    """A copy of the EWT model directory, one file edited, then predict (a few: evaluate, export)."""
    fam = "files:directory"
    edits: dict[str, Callable[[Path], None]] = {
        "config-empty": lambda d: (d / "config.json").write_text(""),
        "config-not-json": lambda d: (d / "config.json").write_text('{"model": {'),
        "config-list": lambda d: (d / "config.json").write_text("[]"),
        "config-no-model": lambda d: edit_json(
            d / "config.json", lambda c: set_path(c, "model", DELETE)
        ),
        "config-hidden-32": lambda d: edit_json(
            d / "config.json", lambda c: set_path(c, "model.hidden_dim", 32)
        ),
        "config-hidden-str": lambda d: edit_json(
            d / "config.json", lambda c: set_path(c, "model.hidden_dim", "16")
        ),
        "config-hidden-neg": lambda d: edit_json(
            d / "config.json", lambda c: set_path(c, "model.hidden_dim", -1)
        ),
        "config-hidden-float": lambda d: edit_json(
            d / "config.json", lambda c: set_path(c, "model.hidden_dim", 16.0)
        ),
        "config-crf-str": lambda d: edit_json(
            d / "config.json", lambda c: set_path(c, "model.crf", "yes")
        ),
        "config-scheme-xyz": lambda d: edit_json(
            d / "config.json", lambda c: set_path(c, "model.tag_scheme", "xyz")
        ),
        "config-scheme-bio": lambda d: edit_json(
            d / "config.json", lambda c: set_path(c, "model.tag_scheme", "bio")
        ),
        "config-version-99": lambda d: edit_json(
            d / "config.json", lambda c: set_path(c, "seqtag_version", "99.0")
        ),
        "config-unknown-key": lambda d: edit_json(
            d / "config.json", lambda c: set_path(c, "model.foo", 1)
        ),
        "config-no-chars": lambda d: edit_json(
            d / "config.json", lambda c: set_path(c, "model.char_filters", 0)
        ),
        "config-batch-float": lambda d: edit_json(
            d / "config.json", lambda c: set_path(c, "training.batch_size", 2.5)
        ),
        "config-data-int": lambda d: edit_json(d / "config.json", lambda c: set_path(c, "data", 5)),
        "config-nan": lambda d: (d / "config.json").write_text(
            (d / "config.json").read_text().replace('"dropout": 0.33', '"dropout": NaN')
        ),
        "config-missing": lambda d: (d / "config.json").unlink(),
        "config-is-dir": lambda d: ((d / "config.json").unlink(), (d / "config.json").mkdir()),
        "vocab-empty": lambda d: (d / "vocab.json").write_text(""),
        "vocab-truncated": lambda d: truncate(d / "vocab.json"),
        "vocab-tag-int": lambda d: edit_json(
            d / "vocab.json", lambda v: v["tags"]["itos"].__setitem__(2, 5)
        ),
        "vocab-tags-short": lambda d: edit_json(
            d / "vocab.json", lambda v: v["tags"]["itos"].pop()
        ),
        "vocab-tag-dup": lambda d: edit_json(
            d / "vocab.json", lambda v: v["tags"]["itos"].__setitem__(2, v["tags"]["itos"][3])
        ),
        "vocab-no-words": lambda d: edit_json(
            d / "vocab.json", lambda v: set_path(v, "words", DELETE)
        ),
        "vocab-lower-list": lambda d: edit_json(
            d / "vocab.json", lambda v: set_path(v, "lower_map", [])
        ),
        "vocab-counts-str": lambda d: edit_json(
            d / "vocab.json", lambda v: set_path(v, "word_counts", ["a"] * len(v["word_counts"]))
        ),
        "vocab-word-null": lambda d: edit_json(
            d / "vocab.json", lambda v: v["words"]["itos"].__setitem__(5, None)
        ),
        "vocab-chars-extra": lambda d: edit_json(
            d / "vocab.json", lambda v: v["chars"]["itos"].append("\u2603")
        ),
        "vocab-missing": lambda d: (d / "vocab.json").unlink(),
        "weights-empty": lambda d: (d / "weights.pt").write_bytes(b""),
        "weights-truncated": lambda d: truncate(d / "weights.pt"),
        "weights-junk": lambda d: (d / "weights.pt").write_bytes(junk()),
        "weights-nan": lambda d: edit_weights(
            d / "weights.pt", lambda s: s[first_float(s)].view(-1).__setitem__(0, math.nan)
        ),
        "weights-inf": lambda d: edit_weights(
            d / "weights.pt", lambda s: s[sorted(s)[-1]].view(-1).__setitem__(0, math.inf)
        ),
        "weights-missing-tensor": lambda d: edit_weights(
            d / "weights.pt", lambda s: s.pop(sorted(s)[0])
        ),
        "weights-extra-tensor": lambda d: edit_weights(
            d / "weights.pt", lambda s: s.__setitem__("foo", s[sorted(s)[0]])
        ),
        "weights-wrong-shape": lambda d: edit_weights(
            d / "weights.pt", lambda s: s.__setitem__(first_float(s), s[first_float(s)][:2])
        ),
        "weights-int-tensor": lambda d: edit_weights(
            d / "weights.pt", lambda s: s.__setitem__(first_float(s), s[first_float(s)].long())
        ),
        "weights-pickle-code": lambda d: (d / "weights.pt").write_bytes(
            b"\x80\x04\x95\x1f\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x8c\x06system\x93\x8c\x07echo hi\x85R."
        ),
        "weights-other-model": lambda d: shutil.copy(w.ner / "weights.pt", d / "weights.pt"),
        "weights-missing": lambda d: (d / "weights.pt").unlink(),
        "dir-empty": lambda d: [p.unlink() for p in d.iterdir() if p.is_file()],
    }
    cases = []
    for name, edit in edits.items():

        def prepare(case: Case, edit=edit) -> None:
            copy_model(w.ewt, case.dir / "m")
            edit(case.dir / "m")
            (case.dir / "in.txt").write_bytes(PLAIN_TEXT)

        # config.json's seqtag_version is a record, not a format version: a directory is read by its fields
        expect, check = (
            ("either", tags_equal(w, "ewt", "plain", "text", "out.txt"))
            if name == "config-version-99"
            else ("error", None)
        )
        cases.append(Case(fam, f"dir-{name}", ["predict", "m", "--input", "in.txt", "--output", "out.txt"],
                          prepare=prepare, absent=[Path("out.txt")], expect=expect, check=check))  # fmt: skip
    for name in ("weights-nan", "vocab-tag-int"):
        for cmd in ("evaluate", "export"):

            def prepare(case: Case, edit=edits[name]) -> None:
                copy_model(w.ewt, case.dir / "m")
                edit(case.dir / "m")

            argv = (
                ["evaluate", "m", "--data", str(w.ewt_dev)]
                if cmd == "evaluate"
                else ["export", "m", "--output", "m.pt"]
            )
            cases.append(
                Case(fam, f"dir-{name}-{cmd}", argv, prepare=prepare, absent=[Path("m.pt")])
            )
    cases.append(Case(fam, "dir-text-file-as-model", ["predict", "notes.txt"], stdin=PLAIN_TEXT,
                      prepare=writer("notes.txt", b"not a model\n")))  # fmt: skip
    return cases


def exported_cases(w: World) -> list[Case]:
    """Damaged TorchScript files, torch.export directories and ONNX files, given to predict."""
    cases = []

    def add(fam: str, name: str, src: Path, model: str, edit: Callable[[Path], None]) -> None:
        def prepare(case: Case) -> None:
            copy_model(src, case.dir / model)
            edit(case.dir / model)
            (case.dir / "in.txt").write_bytes(PLAIN_TEXT)

        cases.append(Case(fam, name, ["predict", model, "--input", "in.txt", "--output", "out.txt"], prepare=prepare,
                          absent=[Path("out.txt")]))  # fmt: skip

    fam = "files:torchscript"
    ts_edits: dict[str, Callable[[Path], None]] = {
        "empty": lambda p: p.write_bytes(b""),
        "truncated": lambda p: truncate(p),
        "junk": lambda p: p.write_bytes(junk()),
        "onnx-renamed": lambda p: shutil.copy(w.onnx, p),
        "state-dict": lambda p: shutil.copy(w.ewt / "weights.pt", p),
        "zip-junk": lambda p: _zip(p, {"archive/data.pkl": b"junk", "archive/version": b"3"}),
        "other-module": lambda p: edit_ts_meta(w.ts, p, lambda m: None, module_of=w.ner_ts),
        "meta-removed": lambda p: edit_ts_meta(w.ts, p, lambda m: ""),
        "meta-version-99": lambda p: edit_ts_meta(
            w.ts, p, lambda m: m.__setitem__("format_version", 99)
        ),
        "meta-tags-short": lambda p: edit_ts_meta(w.ts, p, lambda m: m["tags"].pop()),
        "meta-not-json": lambda p: edit_ts_meta(w.ts, p, lambda m: "{tags"),
        "meta-list": lambda p: edit_ts_meta(w.ts, p, lambda m: []),
        "meta-tags-null": lambda p: edit_ts_meta(w.ts, p, lambda m: m.__setitem__("tags", None)),
    }
    for name, edit in ts_edits.items():
        add(fam, f"ts-{name}", w.ts, "m.pt", edit)

    fam = "files:torch-export"
    te_edits: dict[str, Callable[[Path], None]] = {
        "manifest-missing": lambda d: (d / "seqtag.json").unlink(),
        "manifest-not-json": lambda d: (d / "seqtag.json").write_text("{"),
        "manifest-tags-short": lambda d: edit_json(d / "seqtag.json", lambda m: m["tags"].pop()),
        "manifest-version-99": lambda d: edit_json(
            d / "seqtag.json", lambda m: set_path(m, "format_version", 99)
        ),
        "manifest-bucket-missing-file": lambda d: edit_json(
            d / "seqtag.json", lambda m: set_path(m, "buckets.8", "nope.pt2")
        ),
        "manifest-bucket-escape": lambda d: edit_json(
            d / "seqtag.json", lambda m: set_path(m, "buckets.8", "../../../etc/passwd")
        ),
        "manifest-max-length-str": lambda d: edit_json(
            d / "seqtag.json", lambda m: set_path(m, "max_length", "24")
        ),
        "manifest-buckets-list": lambda d: edit_json(
            d / "seqtag.json", lambda m: set_path(m, "buckets", [8, 16])
        ),
        "program-truncated": lambda d: truncate(d / "bucket_8.pt2"),
        "program-empty": lambda d: (d / "bucket_8.pt2").write_bytes(b""),
        "programs-swapped": lambda d: _swap(d / "bucket_8.pt2", d / "bucket_16.pt2"),
        "vocab-tag-int": lambda d: edit_json(
            d / "vocab.json", lambda v: v["tags"]["itos"].__setitem__(0, 1)
        ),
        "vocab-missing": lambda d: (d / "vocab.json").unlink(),
        "vocab-words-short": lambda d: edit_json(
            d / "vocab.json", lambda v: v["words"]["itos"].pop()
        ),
    }
    for name, edit in te_edits.items():
        add(fam, f"te-{name}", w.te, "m", edit)

    fam = "files:onnx"
    onnx_edits: dict[str, Callable[[Path], None]] = {
        "empty": lambda p: p.write_bytes(b""),
        "truncated": lambda p: truncate(p),
        "junk": lambda p: p.write_bytes(junk()),
        "text": lambda p: p.write_text("hello\n"),
        "meta-tags-short": lambda p: edit_onnx(
            p,
            lambda m: set_onnx_meta(
                m, json.dumps({**onnx_meta(m), "tags": onnx_meta(m)["tags"][:-1]})
            ),
        ),
        "meta-of-other-model": lambda p: edit_onnx(
            p, lambda m: set_onnx_meta(m, _onnx_meta_of(w.ner_onnx))
        ),
        "meta-no-tags": lambda p: edit_onnx(
            p,
            lambda m: set_onnx_meta(
                m, json.dumps({k: v for k, v in onnx_meta(m).items() if k != "tags"})
            ),
        ),
        "meta-tags-str": lambda p: edit_onnx(
            p, lambda m: set_onnx_meta(m, json.dumps({**onnx_meta(m), "tags": "NOUN"}))
        ),
        "meta-version-99": lambda p: edit_onnx(
            p, lambda m: set_onnx_meta(m, json.dumps({**onnx_meta(m), "format_version": 99}))
        ),
        "meta-not-json": lambda p: edit_onnx(p, lambda m: set_onnx_meta(m, "{")),
        "meta-removed": lambda p: edit_onnx(p, lambda m: set_onnx_meta(m, None)),
        "meta-words-int": lambda p: edit_onnx(
            p, lambda m: set_onnx_meta(m, json.dumps(_words_int(onnx_meta(m))))
        ),
        "input-renamed": lambda p: edit_onnx(p, _rename_input),
        "output-dropped": lambda p: edit_onnx(p, lambda m: m.graph.output.pop()),
        "other-graph": lambda p: edit_onnx(p, lambda m: _graph_of(m, w.ner_onnx)),
    }
    for name, edit in onnx_edits.items():
        add(fam, f"onnx-{name}", w.onnx, "m.onnx", edit)
    return cases


def _zip(path: Path, files: dict[str, bytes]) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)


def _swap(a: Path, b: Path) -> None:
    tmp = a.with_suffix(".tmp")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)


def _onnx_meta_of(path: Path) -> str:
    import onnx

    return json.dumps(onnx_meta(onnx.load(str(path))))


def _words_int(meta: dict) -> dict:
    meta["encoding"]["words"][3] = 7
    return meta


def _rename_input(model: object) -> None:
    old = model.graph.input[0].name
    model.graph.input[0].name = "renamed"
    for node in model.graph.node:
        node.input[:] = ["renamed" if i == old else i for i in node.input]


def _graph_of(model: object, other: Path) -> None:
    import onnx

    model.graph.CopyFrom(onnx.load(str(other)).graph)


def checkpoint_cases(w: World) -> list[Case]:
    """A copy of the NER run, its checkpoint damaged or replaced, then --resume."""
    fam = "files:checkpoint"
    last = Path("checkpoints/last.pt")

    def edit_ckpt(edit: Callable[[dict], None]) -> Callable[[Path], None]:
        def apply(run: Path) -> None:
            import torch

            state = torch.load(run / last, weights_only=True)
            edit(state)
            torch.save(state, run / last)

        return apply

    def nan_model(state: dict) -> None:
        state["model"][first_float(state["model"])].view(-1)[0] = math.nan

    def other_id(state: dict) -> None:
        state["run_id"] = "0" * 32

    edits: dict[str, Callable[[Path], None]] = {
        "from-other-run": lambda r: shutil.copy(w.ner2 / last, r / last),
        "truncated": lambda r: truncate(r / last),
        "empty": lambda r: (r / last).write_bytes(b""),
        "junk": lambda r: (r / last).write_bytes(junk()),
        "nan-weights": edit_ckpt(nan_model),
        "no-train-config": edit_ckpt(lambda s: s.pop("train_config")),
        "crf-mask-nan": edit_ckpt(
            lambda s: s["model"].__setitem__(
                "head.crf.transitions", s["model"]["head.crf.transitions"] * math.nan
            )
        ),
        "wrong-vocab": edit_ckpt(lambda s: s["vocab"]["tags"]["itos"].pop()),
        "other-run-id": edit_ckpt(other_id),
        "list": lambda r: __import__("torch").save([1, 2], r / last),
        "run-json-junk": lambda r: (r / "run.json").write_text("{"),
        "run-json-other": lambda r: shutil.copy(w.ner2 / "run.json", r / "run.json"),
        "no-checkpoints": lambda r: shutil.rmtree(r / "checkpoints"),
    }
    cases = []
    guarded = [Path("run/weights.pt"), Path("run/metrics.jsonl"), Path("run/config.json")]
    for name, edit in edits.items():

        def prepare(case: Case, edit=edit) -> None:
            copy_model(w.ner, case.dir / "run")
            edit(case.dir / "run")

        cases.append(Case(fam, f"ckpt-{name}", ["train", "--resume", "run", "--epochs", "5", "--quiet"],
                          prepare=prepare, unchanged=guarded))  # fmt: skip
    for name, extra in {"batch-float": ["--batch-size", "2.5"], "missing-dir": ["--resume", "nope"],
                        "hidden-dim": ["--hidden-dim", "32"], "lr-nan": ["--lr", "nan"]}.items():  # fmt: skip
        argv = ["train", "--resume", "run", "--epochs", "5", "--quiet", *extra]
        cases.append(Case(fam, f"ckpt-resume-{name}", argv, prepare=lambda c: copy_model(w.ner, c.dir / "run"),
                          unchanged=guarded))  # fmt: skip

    def resumed(case: Case, stdout: str) -> str | None:
        lines = (case.dir / "run" / "metrics.jsonl").read_text().splitlines()
        epochs = [json.loads(line).get("epoch") for line in lines if line.strip()]
        return (
            None
            if epochs and max(e for e in epochs if e is not None) == 4
            else f"epochs in metrics.jsonl: {epochs}"
        )

    cases.append(Case(fam, "ckpt-resume-ok", ["train", "--resume", "run", "--epochs", "4", "--quiet"], expect="ok",
                      prepare=lambda c: copy_model(w.ner, c.dir / "run"), check=resumed))  # fmt: skip
    return cases


BAD_SENTENCES = {
    "str": '"The dog ate"', "list-of-str": '["The", "dog"]', "dict": '{"a": ["b"]}', "none": "None",
    "bytes": 'b"The dog"', "int-token": '[["The", 5]]', "none-token": '[["The", None]]', "bytes-token": '[[b"The"]]',
    "path": "Path(M)",
}  # fmt: skip
BAD_COUNTS = {
    "float": "2.5",
    "zero": "0",
    "negative": "-1",
    "bool": "True",
    "str": '"8"',
    "none": "None",
    "nan": 'float("nan")',
}


def api_cases(w: World) -> list[Case]:
    """The Python API given what it cannot tag, in a child interpreter per call."""
    cases = []
    plain = repr(
        SENTENCES["plain"]
    )  # Python literals: JSON would write U+1F642 as a surrogate pair
    unicode = repr(SENTENCES["unicode"])

    def add(fam: str, name: str, code: str, expect: str = "error", check=None) -> None:
        cases.append(Case(fam, name, code=prelude + code, expect=expect, check=check))

    def equal(want: object) -> Callable[[Case, str], str | None]:
        return json_equal(want, 4)

    # eager Tagger
    fam, prelude = (
        "api:Tagger",
        f"import json, seqtag\nfrom pathlib import Path\nM = {str(w.ewt)!r}\nT = seqtag.load(M)\n",
    )
    for name, value in BAD_SENTENCES.items():
        add(fam, f"tagger-predict-{name}", f"T.predict({value})")
    for name in ("str", "int-token"):
        add(fam, f"tagger-confidence-{name}", f"T.predict_with_confidence({BAD_SENTENCES[name]})")
        add(fam, f"tagger-marginals-{name}", f"T.marginals({BAD_SENTENCES[name]})")
        add(fam, f"tagger-nbest-{name}", f"T.nbest({BAD_SENTENCES[name]}, 2)")
    for name, value in BAD_COUNTS.items():
        add(fam, f"tagger-predict-bs-{name}", f"T.predict([['a']], batch_size={value})")
        if name in ("float", "zero", "bool"):
            add(fam, f"tagger-nbest-k-{name}", f"T.nbest([['a']], {value})")
    add(fam, "tagger-marginals-bs-bool", "T.marginals([['a']], batch_size=True)")
    add(fam, "tagger-predict-precision-bad", "T.predict([['a']], precision='fp8')")
    add(fam, "tagger-predict-precision-fp16", "T.predict([['a']], precision='fp16')")
    add(fam, "tagger-load-none", "seqtag.load(None)")
    add(fam, "tagger-load-int", "seqtag.load(5)")
    add(fam, "tagger-load-missing", "seqtag.load(M + '-nope')")
    add(fam, "tagger-load-file", "seqtag.load(Path(M) / 'config.json')")
    add(fam, "tagger-load-cuda", "seqtag.load(M, device='cuda:9')")
    add(
        fam,
        "tagger-predict-plain",
        f"print(json.dumps(T.predict({plain})))",
        "ok",
        equal(w.oracle["ewt"]["plain"]),
    )
    add(fam, "tagger-predict-tuples", f"print(json.dumps(T.predict([tuple(s) for s in {plain}])))", "ok",
        equal(w.oracle["ewt"]["plain"]))  # fmt: skip
    add(
        fam,
        "tagger-predict-empty",
        "print(json.dumps([T.predict([]), T.predict([[]])]))",
        "ok",
        equal([[], [[]]]),
    )

    # OnnxTagger
    fam = "api:OnnxTagger"
    prelude = f"import json\nfrom pathlib import Path\nfrom seqtag.serving.onnx_runner import OnnxTagger\nM = {str(w.onnx)!r}\nO = OnnxTagger(M)\n"
    for name in ("str", "list-of-str", "dict", "none", "bytes", "int-token"):
        add(fam, f"onnx-predict-{name}", f"O.predict({BAD_SENTENCES[name]})")
    for name in ("float", "zero", "bool", "nan"):
        add(fam, f"onnx-predict-bs-{name}", f"O.predict([['a']], batch_size={BAD_COUNTS[name]})")
        add(fam, f"onnx-nbest-k-{name}", f"O.nbest([['a']], {BAD_COUNTS[name]})")
    add(fam, "onnx-confidence-str", 'O.predict_with_confidence("The dog")')
    add(fam, "onnx-marginals-str", 'O.marginals("The dog")')
    prelude_bare = "from seqtag.serving.onnx_runner import OnnxTagger\n"
    for name, arg in {"none": "None", "int": "5", "missing": repr(str(w.onnx) + ".nope"), "dir": repr(str(w.ewt)),
                      "threads-neg": f"{str(w.onnx)!r}, intra_op_num_threads=-1",
                      "threads-float": f"{str(w.onnx)!r}, intra_op_num_threads=2.5"}.items():  # fmt: skip
        cases.append(Case(fam, f"onnx-init-{name}", code=prelude_bare + f"OnnxTagger({arg})"))
    for key in ("plain", "unicode"):
        add(fam, f"onnx-predict-{key}-equals-eager", f"print(json.dumps(O.predict({SENTENCES[key]!r})))", "ok",
            equal(w.oracle["ewt"][key]))  # fmt: skip
    add(fam, "onnx-confidence-tags-equal-eager", f"print(json.dumps([t for t, _ in O.predict_with_confidence({plain})]))",
        "ok", equal(w.oracle["ewt"]["plain"]))  # fmt: skip

    # the loaded TorchScript tagger
    fam = "api:torchscript"
    prelude = f"import json\nfrom pathlib import Path\nfrom seqtag.serving.torchscript import load_torchscript\nM = {str(w.ts)!r}\nL = load_torchscript(M)\n"
    for name in ("str", "list-of-str", "dict", "none", "bytes", "int-token", "path"):
        add(fam, f"ts-call-{name}", f"L({BAD_SENTENCES[name]})")
    for name in ("zero", "float", "bool"):
        add(fam, f"ts-nbest-k-{name}", f"L.nbest([['a']], {BAD_COUNTS[name]})")
        add(fam, f"ts-batch-size-{name}", f"L.batch_size = {BAD_COUNTS[name]}")
    add(fam, "ts-confidence-str", 'L.predict_with_confidence("The dog")')
    add(fam, "ts-load-missing", "load_torchscript(M + '.nope')")
    add(fam, "ts-load-dir", f"load_torchscript({str(w.ewt)!r})")
    add(
        fam,
        "ts-equals-eager",
        f"print(json.dumps(L({unicode})))",
        "ok",
        equal(w.oracle["ewt"]["unicode"]),
    )

    # torch.export
    fam = "api:torch-export"
    prelude = f"import json\nfrom pathlib import Path\nfrom seqtag.serving.torch_export import load_torch_export\nM = {str(w.te)!r}\nE = load_torch_export(M)\n"
    for name in ("str", "list-of-str", "none", "int-token"):
        add(fam, f"te-predict-{name}", f"E.predict({BAD_SENTENCES[name]})")
    for name in ("zero", "float"):
        add(fam, f"te-predict-bs-{name}", f"E.predict([['a']], batch_size={BAD_COUNTS[name]})")
    add(fam, "te-nbest-k-zero", "E.nbest([['a']], 0)")
    add(
        fam,
        "te-equals-eager",
        f"print(json.dumps(E.predict({plain})))",
        "ok",
        equal(w.oracle["ewt"]["plain"]),
    )
    add(fam, "te-too-long", "E.predict([['a'] * 40])")

    # load_predictor
    fam = "api:load_predictor"
    prelude = "from seqtag.config import PredictConfig\nfrom seqtag.serving.predictor import load_predictor\n"
    for name, arg in {"none": "None", "int": "5", "missing": "'nope.onnx'",
                      "bs-zero": f"{str(w.onnx)!r}, PredictConfig(batch_size=0)",
                      "cuda-onnx": f"{str(w.onnx)!r}, PredictConfig(device='cuda')",
                      "config-dict": f"{str(w.onnx)!r}, {{'batch_size': 8}}"}.items():  # fmt: skip
        add(fam, f"predictor-{name}", f"load_predictor({arg})")
    add(fam, "predictor-onnx-str", f"load_predictor({str(w.onnx)!r}).predict('The dog')")
    add(fam, "predictor-dir-str", f"load_predictor({str(w.ewt)!r}).predict('The dog')")
    add(fam, "predictor-nbest-k-zero", f"load_predictor({str(w.onnx)!r}).nbest([['a']], 0)")
    add(
        fam,
        "predictor-bs-set-float",
        "c = PredictConfig(); c.batch_size = 2.5\n" + f"load_predictor({str(w.onnx)!r}, c)",
    )

    # seqtag.train and seqtag.evaluate
    fam = "api:train-evaluate"
    prelude = (f"import json, seqtag\nfrom pathlib import Path\nfrom seqtag import Sentence, TaggerConfig, TrainConfig\n"
               f"D = {str(w.ner_train)!r}\nS = seqtag.read_conll(D)[:20]\nTC = TrainConfig(epochs=1, device='cpu')\n")  # fmt: skip
    for name, arg in {"path-str": "D", "tokens": '[["a", "b"]]', "none": "None", "dict": "{}", "empty": "[]",
                      "untagged": "[s.tokens for s in S]", "str": '"The dog"'}.items():  # fmt: skip
        add(fam, f"train-data-{name}", f"seqtag.train({arg}, train_config=TC, quiet=True)")
    add(fam, "train-config-str", "seqtag.train(S, config='big', train_config=TC, quiet=True)")
    add(
        fam,
        "train-bs-set-float",
        "TC.batch_size = 2.5\nseqtag.train(S, train_config=TC, quiet=True)",
    )
    add(
        fam,
        "train-lr-set-nan",
        "TC.lr = float('nan')\nseqtag.train(S, train_config=TC, quiet=True)",
    )
    add(fam, "train-output-int", "seqtag.train(S, train_config=TC, output_dir=5, quiet=True)")
    add(fam, "train-dev-str", "seqtag.train(S, dev='dev.conll', train_config=TC, quiet=True)")
    add(
        fam,
        "train-i-after-o",
        "seqtag.train([Sentence(['a', 'b'], ['B-PER', 'I-PER']), Sentence(['a', 'b'], ['O', 'I-PER'])], train_config=TC, quiet=True)",
    )
    prelude += f"T = seqtag.load({str(w.ner)!r})\nDEV = seqtag.read_conll({str(w.ner_dev)!r})\n"
    for name, arg in {"empty": "T, []", "none": "T, None", "str": "T, 'dev.conll'", "tagger-str": f"{str(w.ner)!r}, DEV",
                      "untagged": "T, [s.tokens for s in DEV]", "bs-zero": "T, DEV, batch_size=0",
                      "bs-float": "T, DEV, batch_size=2.5", "unknown-tags": "T, DEV, unknown_tags='drop'"}.items():  # fmt: skip
        add(fam, f"evaluate-{name}", f"seqtag.evaluate({arg})")
    add(
        fam,
        "evaluate-equals-cli",
        "print(json.dumps(seqtag.evaluate(T, DEV)))",
        "ok",
        equal(w.scores["ner-dev"]),
    )
    return cases


def data_cases(w: World) -> list[Case]:
    """Bad data for each reader: gold CoNLL and CoNLL-U (evaluate, train), predict's streams, datasets."""
    cases = []
    ner_dev = w.ner_dev.read_bytes()
    ewt_dev = w.ewt_dev.read_bytes()
    i_after_o = b"the\tO\nSmith\tI-PER\n\n" + ner_dev
    mixed = ner_dev + b"the\tO\nAnna\tS-PER\nLi\tB-LOC\nRome\tE-LOC\n\n"
    bioes = ner_dev.replace(b"B-PER\n\n", b"S-PER\n\n")
    bioes = b"Anna\tS-PER\nsaw\tO\nLi\tB-LOC\nRome\tE-LOC\n\n" * 20
    bad = {
        "empty": b"", "junk": junk(3000, 1), "invalid-utf8": b"the\tO\nbad\xff\xfe\tO\n\n", "missing-column": b"the\tO\nSmith\n\n",
        "extra-column": b"the\tO\nSmith\tB-PER\tX\n\n", "empty-token": b"the\tO\n\tO\n\n", "comments-only": b"# hi\n# there\n",
"i-after-o": i_after_o, "mixed-schemes": mixed, "nbsp-in-tab-file": "the\tO\nNew\u00a0York\n\n".encode(),
    }  # fmt: skip
    for name, data in bad.items():
        # --unknown-tags error: by default a span model scores unknown gold tags (S-PER) as O, with a note
        cases.append(Case("data:conll", f"conll-evaluate-{name}", ["evaluate", str(w.ner), "--data", "d.conll",
                          "--unknown-tags", "error"],
                          prepare=writer("d.conll", data)))  # fmt: skip
    ok = {"bom-crlf": b"\xef\xbb\xbf" + ner_dev.replace(b"\n", b"\r\n"), "trailing-ws": ner_dev.replace(b"\n", b" \t \n"),
          "no-final-newline": ner_dev.rstrip(b"\n"), "blank-lines": b"\n\n\n" + ner_dev.replace(b"\n\n", b"\n\n\n\n")}  # fmt: skip
    for name, data in ok.items():
        cases.append(Case("data:conll", f"conll-evaluate-{name}", ["evaluate", str(w.ner), "--data", "d.conll", "--json"],
                          expect="ok", check=json_equal(w.scores["ner-dev"]), prepare=writer("d.conll", data)))  # fmt: skip
    cases.append(Case("data:conll", "conll-evaluate-repair", ["evaluate", str(w.ner), "--data", "d.conll", "--repair-tags",
                      "--json"], expect="ok", prepare=writer("d.conll", i_after_o),
                      check=lambda c, out: None if json.loads(out.splitlines()[-1])["sentences"] == 31 else out[-300:]))  # fmt: skip
    out = Path("run")
    train_bad = {"i-after-o": (i_after_o, []), "mixed": (mixed, []), "junk": (junk(3000, 2), []),
                 "bio-forced-bioes": (ner_dev, ["--tag-scheme", "bioes"]), "bioes-forced-bio": (bioes, ["--tag-scheme", "bio"]),
                 "bio-forced-iob1": (ner_dev, ["--tag-scheme", "iob1"]), "empty": (b"", []),
                 "dev-missing": (ner_dev, ["--dev", "nope.conll"])}  # fmt: skip
    for name, (data, extra) in train_bad.items():
        cases.append(Case("data:conll", f"conll-train-{name}", ["train", "--train", "t.conll", "--output-dir", "run",
                          "--epochs", "1", *TINY, *extra], prepare=writer("t.conll", data),
                          absent=[out / "weights.pt", out / "metrics.jsonl", out / "run.json"]))  # fmt: skip

    conllu_bad = {
        "empty": b"", "junk": junk(3000, 3), "invalid-utf8": b"1\tThe\tthe\tDET\t_\t_\t_\t_\t_\t_\n2\t\xff\t_\tNOUN\t_\t_\t_\t_\t_\t_\n\n",
        "nine-fields": b"1\tThe\tthe\tDET\t_\t_\t_\t_\t_\n\n", "id-not-number": b"x\tThe\tthe\tDET\t_\t_\t_\t_\t_\t_\n\n",
        "comments-only": b"# sent_id = 1\n# text = x\n\n", "upos-empty": b"1\tThe\tthe\t\t_\t_\t_\t_\t_\t_\n\n",
        "unknown-tag-x": b"1\tThe\tthe\tXYZ\t_\t_\t_\t_\t_\t_\n\n",
    }  # fmt: skip
    for name, data in conllu_bad.items():
        cases.append(Case("data:conllu", f"conllu-evaluate-{name}", ["evaluate", str(w.ewt), "--data", "d.conllu"],
                          prepare=writer("d.conllu", data)))  # fmt: skip
    conllu_ok = {"bom-crlf": conllu_bom_crlf(w.ewt_dev),
                 "multiword-and-empty-nodes": ewt_dev.replace(b"\n1\t", b"\n1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n1\t", 1)
                 .replace(b"\n2\t", b"\n1.1\tx\t_\tNOUN\t_\t_\t_\t_\t_\t_\n2\t", 1)}  # fmt: skip
    for name, data in conllu_ok.items():
        cases.append(Case("data:conllu", f"conllu-evaluate-{name}", ["evaluate", str(w.ewt), "--data", "d.conllu", "--json"],
                          expect="ok", check=json_equal(w.scores["ewt-dev"]), prepare=writer("d.conllu", data)))  # fmt: skip
    cases.append(Case("data:conllu", "conllu-train-xpos-empty", ["train", "--train", "t.conllu", "--tag-column", "xpos",
                      "--output-dir", "run", "--epochs", "1", *TINY], prepare=writer("t.conllu", conllu_bad["nine-fields"][:0] +
                      b"1\tThe\tthe\tDET\t_\t_\t_\t_\t_\t_\n\n"), absent=[out / "weights.pt"]))  # fmt: skip

    # predict's streams
    text_cases = {"invalid-utf8": (b"The dog\nbad \xff\n", "error"), "junk": (junk(3000, 4), "error"),
                  "bom-crlf": (b"\xef\xbb\xbf" + PLAIN_TEXT.replace(b"\n", b"\r\n"), "ok"),
                  "blank-and-tabs": (b"\n  \t\n" + PLAIN_TEXT.replace(b" ", b" \t "), "ok"),
                  "empty": (b"", "ok")}  # fmt: skip
    for name, (data, expect) in text_cases.items():
        check = (
            tags_equal(w, "ewt", "plain", "text")
            if name not in ("empty",)
            else (lambda c, o: None if o == "" else o[:200])
        )
        cases.append(Case("data:text", f"text-predict-{name}", ["predict", str(w.ewt), "--format", "text"], stdin=data,
                          expect=expect, check=check))  # fmt: skip
    huge = b"word " * 200_000 + b"\n"
    cases.append(Case("data:text", "text-predict-huge-line", ["predict", str(w.onnx), "--format", "text"], stdin=huge,
                      expect="either", timeout=120,
                      check=lambda c, o: None if o.count("\n") >= 200_000 else f"{o.count(chr(10))} lines out"))  # fmt: skip
    cases.append(Case("data:text", "text-predict-huge-token", ["predict", str(w.onnx), "--format", "text"],
                      stdin=b"The " + b"x" * 2_000_000 + b" ran\n", expect="either",
                      check=lambda c, o: None if [len(t) for t, _ in parse_output(o, "text")] == [3] and len(o) > 2_000_000
                      else o[:200]))  # fmt: skip
    jsonl_bad = {"not-json": b'{"tokens": ["a"]}\n{tokens\n', "tokens-str": b'{"tokens": "The dog"}\n',
                 "tokens-int": b'{"tokens": ["a", 1]}\n', "no-tokens": b'{"words": ["a"]}\n', "array": b'["a", "b"]\n',
                 "tokens-null": b'{"tokens": null}\n', "invalid-utf8": b'{"tokens": ["\xff"]}\n', "nan": b'{"tokens": NaN}\n'}  # fmt: skip
    for name, data in jsonl_bad.items():
        cases.append(
            Case(
                "data:jsonl",
                f"jsonl-predict-{name}",
                ["predict", str(w.ewt), "--format", "jsonl"],
                stdin=data,
            )
        )
    cases.append(Case("data:jsonl", "jsonl-predict-bom-crlf", ["predict", str(w.ewt), "--format", "jsonl"], expect="ok",
                      stdin=b"\xef\xbb\xbf" + sentence_lines("plain", "jsonl").replace(b"\n", b"\r\n"),
                      check=tags_equal(w, "ewt", "plain", "jsonl")))  # fmt: skip
    cases.append(Case("data:conll", "conll-predict-token-column-past", ["predict", str(w.ewt), "--format", "conll",
                      "--token-column", "3"], stdin=b"The\tx\ndog\tx\n\n"))  # fmt: skip
    cases.append(Case("data:conllu", "conllu-predict-nine-fields", ["predict", str(w.ewt), "--format", "conllu"],
                      stdin=conllu_bad["nine-fields"]))  # fmt: skip
    cases.append(Case("data:conllu", "conllu-predict-bom-crlf", ["predict", str(w.ewt), "--format", "conllu"], expect="ok",
                      stdin=b"\xef\xbb\xbf" + sentence_lines("plain", "conllu").replace(b"\n", b"\r\n"),
                      check=lambda c, o: tags_equal(w, "ewt", "plain", "conllu")(c, o.replace("\r\n", "\n"))))  # fmt: skip

    # Hugging Face datasets saved to disk
    fam, hf = "data:hf", str(w.hf)
    cases += [
        Case(fam, "hf-evaluate-ok", ["evaluate", str(w.ner), "--hf-dataset", hf, "--split", "test", "--json"], expect="ok",
             check=lambda c, o: None if json.loads(o.splitlines()[-1])["sentences"] == 40 else o[-200:]),
        Case(fam, "hf-evaluate-missing-split", ["evaluate", str(w.ner), "--hf-dataset", hf, "--split", "dev"]),
        Case(fam, "hf-evaluate-no-such-dir", ["evaluate", str(w.ner), "--hf-dataset", "nope_dir/"]),
        Case(fam, "hf-evaluate-junk-dir", ["evaluate", str(w.ner), "--hf-dataset", "junk"],
             prepare=lambda c: ((c.dir / "junk").mkdir(), (c.dir / "junk" / "dataset_dict.json").write_text("{"))),
        Case(fam, "hf-evaluate-tag-column", ["evaluate", str(w.ner), "--hf-dataset", hf, "--split", "test", "--tag-column",
             "tokens", "--unknown-tags", "error"]),
        Case(fam, "hf-evaluate-jsonl-i-after-o", ["evaluate", str(w.ner), "--hf-dataset", "d.jsonl"],
             prepare=writer("d.jsonl", b'{"tokens": ["the", "Smith"], "tags": ["O", "I-PER"]}\n')),
        Case(fam, "hf-evaluate-jsonl-lengths", ["evaluate", str(w.ner), "--hf-dataset", "d.jsonl"],
             prepare=writer("d.jsonl", b'{"tokens": ["the", "Smith"], "tags": ["O"]}\n')),
        Case(fam, "hf-evaluate-jsonl-int-tokens", ["evaluate", str(w.ner), "--hf-dataset", "d.jsonl"],
             prepare=writer("d.jsonl", b'{"tokens": [1, 2], "tags": ["O", "O"]}\n')),
        Case(fam, "hf-evaluate-jsonl-empty", ["evaluate", str(w.ner), "--hf-dataset", "d.jsonl"], prepare=writer("d.jsonl", b"")),
        Case(fam, "hf-train-jsonl-i-after-o", ["train", "--hf-dataset", "d.jsonl", "--output-dir", "run", "--epochs", "1", *TINY],
             prepare=writer("d.jsonl", b'{"tokens": ["Anna", "Li"], "tags": ["B-PER", "I-PER"]}\n'
                                 b'{"tokens": ["the", "Smith"], "tags": ["O", "I-PER"]}\n'), absent=[out / "weights.pt"]),
        Case(fam, "hf-predict-ok", ["predict", str(w.ner), "--hf-dataset", hf, "--output", "tagged"], expect="ok",
             check=lambda c, o: None if (c.dir / "tagged" / "dataset_dict.json").is_file() else "no dataset written"),
        Case(fam, "hf-predict-output-exists", ["predict", str(w.ner), "--hf-dataset", hf, "--output", "tagged"],
             prepare=lambda c: copy_model(w.hf, c.dir / "tagged"), unchanged=[Path("tagged")]),
        Case(fam, "hf-predict-no-output", ["predict", str(w.ner), "--hf-dataset", hf]),
    ]  # fmt: skip
    return cases


def option_cases(w: World) -> list[Case]:
    """Every subcommand given out-of-range, malformed, conflicting or impossible options."""
    cases = []
    run = Path("run")
    train = ["train", "--train", str(w.ner_train), "--output-dir", "run", "--epochs", "1", *TINY]
    train_bad = {
        "epochs-neg": ["--epochs", "-1"], "epochs-float": ["--epochs", "2.5"],
        "bs-zero": ["--batch-size", "0"], "bs-float": ["--batch-size", "2.5"],
        "hidden-zero": ["--hidden-dim", "0"], "hidden-huge": ["--hidden-dim", "1000000000000"],
        "embedding-neg": ["--embedding-dim", "-1"],
        "dropout-nan": ["--dropout", "nan"], "dropout-1.5": ["--dropout", "1.5"],
        "lr-nan": ["--lr", "nan"], "lr-neg": ["--lr", "-1"],
        "threads-huge": ["--threads", "100000"], "threads-neg": ["--threads", "-1"],
        "workers-huge": ["--num-workers", "100000"], "keep-neg": ["--keep", "-1"],
        "kernel-even": ["--char-kernel-size", "2"],
        "patience-neg": ["--patience", "-1"],
        "warmup-1.5": ["--warmup", "1.5"], "warmup-both": ["--warmup", "0.1", "--warmup-steps", "5"],
        "seed-huge": ["--seed", str(2**70)], "vectors-missing": ["--vectors", "nope.txt"],

        "precision-fp16": ["--precision", "fp16"], "device-cuda": ["--device", "cuda"], "device-tpu": ["--device", "tpu"],
        "eval-bs-zero": ["--eval-batch-size", "0"],
        "encoder-missing": ["--encoder", "nope-encoder"], "encoder-window-3": ["--encoder-window", "3"],
        "num-proc-huge": ["--num-proc", "100000"],
        "resume-and-overwrite": ["--resume", "run", "--overwrite"], "train-missing": ["--train", "nope.conll"],
        "train-dir": ["--train", "."], "output-under-file": ["--output-dir", "f/run"], "token-column-past": ["--token-column", "7"],
        "tag-column-str": ["--tag-column", "upos"], "select-f1-upos": ["--train", str(w.ewt_train), "--select", "f1"],
        "scheme-bio-upos": ["--train", str(w.ewt_train), "--tag-scheme", "bio"],
    }  # fmt: skip
    for name, extra in train_bad.items():
        cases.append(Case("options:train", f"train-{name}", [*train, *extra], prepare=writer("f", b"a file\n"),
                          absent=[run / "weights.pt", run / "metrics.jsonl", run / "run.json"]))  # fmt: skip
    cases.append(Case("options:train", "train-output-is-model", [*train[:4], str(w.ewt), *train[5:]],
                      unchanged=[w.ewt / "weights.pt", w.ewt / "metrics.jsonl"]))  # fmt: skip

    predict = ["predict", str(w.ewt), "--input", "in.txt"]
    predict_bad = {
        "bs-zero": ["--batch-size", "0"], "bs-neg": ["--batch-size", "-1"], "bs-float": ["--batch-size", "2.5"],
        "bs-nan": ["--batch-size", "nan"], "threads-huge": ["--threads", "100000"], "threads-neg": ["--threads", "-1"],
        "threads-float": ["--threads", "2.5"], "workers-zero": ["--workers", "0"], "workers-huge": ["--workers", "100000"],
        "chunk-zero": ["--chunk-size", "0"], "chunk-neg": ["--chunk-size", "-1"], "nbest-zero": ["--nbest", "0", "--output-format", "jsonl"],
        "nbest-float": ["--nbest", "2.5", "--output-format", "jsonl"], "nbest-text": ["--nbest", "3"],
        "nbest-huge": ["--nbest", "100000000000", "--output-format", "jsonl"],
        "input-missing": ["--input", "nope.txt"], "input-dir": ["--input", "."], "output-under-file": ["--output", "f/out.txt"],
        "output-dir": ["--output", "."], "device-cuda": ["--device", "cuda"], "precision-fp16": ["--precision", "fp16"],
        "format-bogus": ["--format", "xml"], "token-column-past": ["--format", "conll", "--token-column", "9"],
        "tag-column-past": ["--format", "conllu", "--tag-column", "99"], "hf-and-input": ["--hf-dataset", str(w.hf)],
        "model-missing": ["nope_model"],
    }  # fmt: skip
    for name, extra in predict_bad.items():
        argv = (
            [*predict, *extra]
            if name != "model-missing"
            else ["predict", "nope_model", "--input", "in.txt"]
        )
        cases.append(Case("options:predict", f"predict-{name}", argv, prepare=both(writer("in.txt", PLAIN_TEXT),
                          writer("f", b"a file\n")), absent=[Path("f/out.txt")]))  # fmt: skip
    for model, name in ((w.onnx, "onnx"), (w.ts, "torchscript"), (w.te, "torch-export")):
        cases.append(Case("options:predict", f"predict-bf16-{name}", ["predict", str(model), "--input", "in.txt",
                          "--precision", "bf16"], prepare=writer("in.txt", PLAIN_TEXT)))  # fmt: skip
    cases.append(Case("options:predict", "predict-bf16-directory", [*predict, "--precision", "bf16"], expect="either",
                      prepare=writer("in.txt", PLAIN_TEXT),
                      check=lambda c, o: None if [len(t) for _, t in parse_output(o, "text")] == [6, 6] else o[:300]))  # fmt: skip
    cases.append(Case("options:predict", "predict-workers-2-equal", [*predict, "--workers", "2", "--chunk-size", "1"],
                      expect="ok", prepare=writer("in.txt", PLAIN_TEXT), check=tags_equal(w, "ewt", "plain", "text")))  # fmt: skip

    evaluate = ["evaluate", str(w.ner), "--data", str(w.ner_dev)]
    evaluate_bad = {
        "bs-zero": ["--batch-size", "0"], "bs-float": ["--batch-size", "2.5"], "threads-huge": ["--threads", "100000"],
        "threads-neg": ["--threads", "-1"], "data-missing": ["--data", "nope.conll"], "precision-fp16": ["--precision", "fp16"],
        "device-cuda": ["--device", "cuda:3"], "unknown-tags-bad": ["--unknown-tags", "drop"], "tag-column-past": ["--tag-column", "9"],
        "token-column-str": ["--token-column", "x"], "split-on-file": ["--split", "test"], "model-missing": ["--data", str(w.ner_dev), "nope"],
        "no-data": None,
    }  # fmt: skip
    for name, extra in evaluate_bad.items():
        argv = ["evaluate", str(w.ner)] if extra is None else [*evaluate, *extra]
        if name == "model-missing":
            argv = ["evaluate", "nope", "--data", str(w.ner_dev)]
        cases.append(Case("options:evaluate", f"cli-evaluate-{name}", argv))
    cases.append(Case("options:evaluate", "evaluate-threads-1-equal", [*evaluate, "--threads", "1", "--json"], expect="ok",
                      check=json_equal(w.scores["ner-dev"])))  # fmt: skip

    export = ["export", str(w.ewt)]
    export_bad = {
        "max-length-zero": ["--format", "torch-export", "--max-length", "0", "--output", "o"],
        "max-length-neg": ["--format", "torch-export", "--max-length", "-1", "--output", "o"],
        "max-length-huge": ["--format", "torch-export", "--max-length", "1000000000", "--output", "o"],
        "max-length-float": ["--format", "torch-export", "--max-length", "2.5", "--output", "o"],
        "output-under-file": ["--output", "f/m.pt"], "output-is-dir": ["--output", "."],
        "int8-torchscript": ["--quantize", "int8", "--output", "m.pt"], "threads-huge": ["--threads", "100000", "--output", "m.pt"],
        "format-bogus": ["--format", "tflite", "--output", "m.pt"], "no-output": [],
        "torch-export-over-file": ["--format", "torch-export", "--output", "f"],
        "max-length-torchscript": ["--max-length", "16", "--output", "m.pt"],
    }  # fmt: skip
    for name, extra in export_bad.items():
        cases.append(Case("options:export", f"export-{name}", [*export, *extra], prepare=writer("f", b"a file\n"),
                          unchanged=[Path("f")], absent=[Path("o"), Path("m.pt")]))  # fmt: skip
    cases.append(
        Case(
            "options:export",
            "export-model-is-onnx",
            ["export", str(w.onnx), "--output", "m.pt"],
            absent=[Path("m.pt")],
        )
    )

    def keep_old(case: Case) -> None:
        copy_model(w.ewt, case.dir / "m")
        (case.dir / "m" / "weights.pt").write_bytes(junk())
        shutil.copy(w.onnx, case.dir / "old.onnx")

    cases.append(Case("options:export", "export-failure-keeps-old-output", ["export", "m", "--format", "onnx", "--output",
                      "old.onnx"], prepare=keep_old, unchanged=[Path("old.onnx")]))  # fmt: skip

    serve = ["serve", str(w.onnx)]
    serve_bad = {
        "port-neg": ["--port", "-1"], "port-huge": ["--port", "70000"],
        "workers-zero": ["--workers", "0"], "workers-huge": ["--workers", "100000"], "threads-huge": ["--threads", "100000"],
        "threads-neg": ["--threads", "-1"], "max-batch-zero": ["--max-batch-size", "0"], "max-wait-neg": ["--max-wait-ms", "-1"],
        "timeout-zero": ["--timeout-s", "0"], "timeout-nan": ["--timeout-s", "nan"],
        "body-zero": ["--max-body-bytes", "0"], "nbest-zero": ["--max-nbest", "0"],
        "precision-fp16": ["--precision", "fp16"],
        "device-cuda": ["--device", "cuda"], "host-bad": ["--host", "999.1.1.1", "--port", "0"],
        "model-missing": None, "model-junk": None,

    }  # fmt: skip
    for name, extra in serve_bad.items():
        argv = (
            [*serve, *extra]
            if extra is not None
            else ["serve", "nope.onnx" if name == "model-missing" else "j.onnx"]
        )
        cases.append(
            Case(
                "options:serve", f"serve-{name}", argv, timeout=40, prepare=writer("j.onnx", junk())
            )
        )

    bench = [
        "bench",
        "--device",
        "cpu",
        "--steps",
        "1",
        "--repeats",
        "1",
        "--hidden-dim",
        "8",
        "--embedding-dim",
        "8",
    ]
    bench_bad = {
        "steps-zero": ["--steps", "0"], "steps-neg": ["--steps", "-1"], "repeats-zero": ["--repeats", "0"],
        "bs-zero": ["--batch-size", "0"], "bs-float": ["--batch-size", "2.5"], "threads-huge": ["--threads", "100000"],
        "corpus-missing": ["--corpus", "nope.conll"], "corpus-junk": ["--corpus", "j.conll"], "precision-fp16": ["--precision", "fp16"],
        "device-cuda": ["--device", "cuda"], "hidden-zero": ["--hidden-dim", "0"], "repeats-float": ["--repeats", "2.5"],
    }  # fmt: skip
    for name, extra in bench_bad.items():
        cases.append(Case("options:bench", f"bench-{name}", [*bench, *extra], prepare=writer("j.conll", junk(2000, 5)),
                          timeout=60))  # fmt: skip

    def metrics(data: bytes) -> Callable[[Case], None]:
        def prepare(case: Case) -> None:
            (case.dir / "run").mkdir()
            (case.dir / "run" / "metrics.jsonl").write_bytes(data)

        return prepare

    cases += [
        Case("options:plot", "plot-missing-dir", ["plot", "nope"]),
        Case("options:plot", "plot-no-metrics", ["plot", "run"], prepare=lambda c: (c.dir / "run").mkdir()),
        Case("options:plot", "plot-junk-metrics", ["plot", "run"], prepare=metrics(junk(500, 6))),
        Case("options:plot", "plot-empty-metrics", ["plot", "run"], prepare=metrics(b"")),
        Case("options:plot", "plot-metrics-no-epochs", ["plot", "run"], prepare=metrics(b'{"a": 1}\n[1]\n')),
        Case("options:plot", "plot-metrics-nan", ["plot", "run", "--out", "c.png"],
             prepare=metrics(b'{"epoch": 1, "train_loss": NaN, "dev_accuracy": "x"}\n'), expect="either",
             check=file_check("c.png", lambda b: b.startswith(b"\x89PNG"), "not a PNG")),
        Case("options:plot", "plot-out-under-file", ["plot", "run", "--out", "f/c.png"],
             prepare=lambda c: (copy_model(w.ner, c.dir / "run"), (c.dir / "f").write_text("x"))),
        Case("options:plot", "plot-out-is-dir", ["plot", "run", "--out", "run"], prepare=lambda c: copy_model(w.ner, c.dir / "run")),
        Case("options:plot", "plot-ok", ["plot", "run", "--out", "c.png"], expect="ok", prepare=lambda c: copy_model(w.ner, c.dir / "run"),
             check=file_check("c.png", lambda b: b.startswith(b"\x89PNG"), "not a PNG")),
        Case("options:demo", "demo-extra-arg", ["demo", "extra"]),
        Case("options:demo", "demo-unknown-flag", ["demo", "--epochs", "3"]),
        Case("options:app", "no-subcommand", []),
        Case("options:app", "unknown-subcommand", ["tag"]),
    ]  # fmt: skip
    return cases


def write_cases(w: World) -> list[Case]:
    """Tokens every output format must carry (or refuse in one line), and earlier outputs kept."""
    cases = []
    for key in (
        "token-tab",
        "token-newline",
        "token-cr",
        "token-linesep",
        "token-nul",
        "token-surrogate",
        "token-long",
        "token-empty",
    ):
        for fmt in (
            ("jsonl", "text", "conll", "conllu")
            if key == "token-tab"
            else ("jsonl", "text", "conll")
        ):
            # a lone surrogate cannot be written as UTF-8: refused where it is read
            expect = "error" if key == "token-surrogate" else "ok" if fmt == "jsonl" else "either"
            cases.append(Case("writes", f"write-{key[6:]}-{fmt}", ["predict", str(w.ewt), "--format", "jsonl",
                              "--output-format", fmt, "--output", "out"], stdin=sentence_lines(key, "jsonl"), expect=expect,
                              check=tags_equal(w, "ewt", key, fmt, output="out"), absent=[Path("out")]))  # fmt: skip
    for key in ("token-long", "token-tab", "token-surrogate"):
        cases.append(Case("writes", f"write-{key[6:]}-onnx-jsonl", ["predict", str(w.onnx), "--format", "jsonl"],
                          stdin=sentence_lines(key, "jsonl"), expect="error" if key == "token-surrogate" else "ok",
                          check=tags_equal(w, "ewt", key, "jsonl")))  # fmt: skip

    def nbest_first(case: Case, stdout: str) -> str | None:
        got = [
            o["nbest"][0]["tags"] if isinstance(o["nbest"][0], dict) else o["nbest"][0][0]
            for o in map(json.loads, stdout.splitlines())
        ]
        return (
            None if got == w.oracle["ewt"]["unicode"] else f"{got} != {w.oracle['ewt']['unicode']}"
        )

    cases.append(Case("writes", "write-nbest-unicode", ["predict", str(w.ewt), "--format", "jsonl", "--nbest", "3"],
                      stdin=sentence_lines("unicode", "jsonl"), expect="ok", check=nbest_first))  # fmt: skip
    cases.append(Case("writes", "write-confidence-unicode-conll", ["predict", str(w.ewt), "--format", "conll",
                      "--confidence"], stdin=sentence_lines("unicode", "conll"), expect="ok",
                      check=tags_equal(w, "ewt", "unicode", "conll")))  # fmt: skip
    good = PLAIN_TEXT * 3
    for name, data, extra in (("text-late-bad-utf8", good + b"bad \xff\n", []),
                              ("text-late-bad-utf8-workers", good * 3 + b"bad \xff\n", ["--workers", "2", "--chunk-size", "2"]),
                              ("jsonl-late-bad", sentence_lines("plain", "jsonl") * 3 + b"{oops\n", ["--format", "jsonl"])):  # fmt: skip
        cases.append(Case("writes", f"write-keeps-old-{name}", ["predict", str(w.ewt), "--input", "in", "--output", "old.txt",
                          *extra], prepare=both(writer("in", data), writer("old.txt", b"earlier good output\n")),
                          unchanged=[Path("old.txt")]))  # fmt: skip
    return cases


# -- serve: hostile HTTP requests against a running `seqtag serve` ---------------------------
#
# One server per model kind (the ONNX file and the model directory), started when the family's
# first case needs it and stopped at the end; each case sends raw bytes over its own connection
# (so that HTTP/1.0, a lying Content-Length or a chunked body go out exactly as written) and is
# classified by classify_http: an error HOLDS when the answer is a 4xx whose body is one JSON
# error with that status, a one-line message and the field the case names; a success HOLDS when
# it is a 200 whose tokens are the ones sent and whose tags (confidences, n-best lists) are
# `seqtag predict --output-format jsonl`'s for the same tokens. In both, the server's log gains
# no traceback, the process is still running and /ready answers 200 afterwards.

SERVE_LIMITS = {"max_tokens": 2048, "max_sentences": 64, "max_nbest": 4, "max_body_bytes": 1 << 20, "timeout_s": 20}
SERVE_ARGS = [
    "--threads",
    "1",
    *(a for k, v in SERVE_LIMITS.items() for a in (f"--{k.replace('_', '-')}", str(v))),
]
SERVE_KINDS = ("onnx", "dir")
ORACLE_NBEST = SERVE_LIMITS["max_nbest"]


@dataclass
class Reply:
    """One HTTP answer as it came: status None when the connection closed without one."""

    status: int | None
    headers: dict[str, str]
    body: bytes


@dataclass
class Want:
    """What one answer must be. An error: ``status`` (None: any 4xx), naming the field ``names``
    (None: no field needed); ``json`` False for a refusal of the HTTP framing itself, which the HTTP
    parser answers before the app sees a request; ``silent`` when closing without an answer is
    also right (the client never finished its request). A success: ``sentences`` sent, with
    ``options``."""

    status: int | None = None
    names: str | None = None
    sentences: list[list[str]] | None = None
    options: dict = field(default_factory=dict)
    json: bool = True
    silent: bool = False
    either: bool = False
    """A success that may also be refused (as an error with ``json``)."""


@dataclass
class HttpCase:
    """``send(port)`` talks to the server of ``kind`` and returns the answers, one per ``wants``."""

    kind: str
    send: Callable[[int], list[Reply]]
    wants: list[Want]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeRig:
    """The family's servers (started on first use) and the oracle of every sentence it sends."""

    def __init__(self, world: World, env: dict) -> None:
        self.world, self.env = world, env
        self.models = {"onnx": world.onnx, "dir": world.ewt}
        self.servers: dict[str, tuple[subprocess.Popen, int, Path]] = {}
        self.oracle: dict[str, dict[str, dict]] = {}
        self.lock = threading.Lock()

    def build_oracle(self, cases: list[Case]) -> None:
        """``seqtag predict MODEL --confidence --nbest 4`` on every sentence a success case sends,
        once per model kind: ``{kind: {json.dumps(tokens): the JSON line}}``."""
        sentences = {
            json.dumps(s): s
            for c in cases
            if c.http
            for w in c.http.wants
            if w.sentences
            for s in w.sentences
        }
        path = self.world.root / "serve-oracle.jsonl"
        path.write_text("".join(json.dumps({"tokens": s}, ensure_ascii=False) + "\n" for s in sentences.values()),
                        encoding="utf-8")  # fmt: skip

        def predict(kind: str) -> None:
            argv = ["-m", "seqtag", "predict", str(self.models[kind]), "--input", str(path), "--format", "jsonl",
                    "--output-format", "jsonl", "--workers", "1", "--confidence", "--nbest", str(ORACLE_NBEST)]  # fmt: skip
            p = subprocess.run(["nice", "-n", "5", PY, *argv], capture_output=True, env=self.env)
            if p.returncode != 0:
                raise SystemExit(
                    f"serve oracle failed: {' '.join(argv)}\n{p.stderr.decode()[-3000:]}"
                )
            lines = [json.loads(line) for line in p.stdout.decode("utf-8").split("\n") if line]
            self.oracle[kind] = dict(zip(sentences, lines, strict=True))

        with ThreadPoolExecutor(len(SERVE_KINDS)) as pool:
            list(pool.map(predict, SERVE_KINDS))

    def server(self, kind: str) -> tuple[subprocess.Popen, int, Path]:
        with self.lock:
            if kind not in self.servers:
                port, log = free_port(), self.world.root / f"serve-{kind}.log"
                process = subprocess.Popen(
                    ["nice", "-n", "5", PY, "-m", "seqtag", "serve", str(self.models[kind]), "--port", str(port),
                     *SERVE_ARGS], stdout=log.open("wb"), stderr=subprocess.STDOUT, env=self.env, cwd=self.world.root,
                )  # fmt: skip
                deadline = time.monotonic() + 180
                while process.poll() is None and time.monotonic() < deadline and ready(port) != 200:
                    time.sleep(0.2)
                if ready(port) != 200:
                    process.kill()
                    raise SystemExit(
                        f"seqtag serve {kind} did not get ready:\n{log.read_text()[-3000:]}"
                    )
                self.servers[kind] = (process, port, log)
            return self.servers[kind]

    def stop(self) -> dict[str, int | None]:
        """SIGTERM each server; its exit status (0 expected)."""
        codes = {}
        for kind, (process, _, _) in self.servers.items():
            process.terminate()
            try:
                codes[kind] = process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[kind] = None
        return codes


RIG: ServeRig | None = None


def http_bytes(
    body: bytes | None = b"",
    method: str = "POST",
    path: str = "/v1/tag",
    version: str = "HTTP/1.1",
    headers: dict[str, str | None] | None = None,
    chunked: list[bytes] | None = None,
) -> bytes:
    """A raw request: ``Connection: close``, a JSON content type and the body's true
    ``Content-Length`` unless ``headers`` say otherwise (a value of None drops the header);
    ``chunked``: the body in these chunks, with ``Transfer-Encoding: chunked``."""
    fields: dict[str, str | None] = {
        "Host": "127.0.0.1",
        "Connection": "close",
        "Content-Type": "application/json",
    }
    if chunked is not None:
        fields["Transfer-Encoding"] = "chunked"
        body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunked) + b"0\r\n\r\n"
    elif body is not None:
        fields["Content-Length"] = str(len(body))
    fields.update(headers or {})
    head = f"{method} {path} {version}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in fields.items() if v is not None
    )
    return head.encode("latin-1") + b"\r\n" + (body or b"")


def exchange(port: int, data: bytes, timeout: float = 60.0) -> Reply:
    """Send ``data`` on a new connection (from a thread, so that an answer sent before the body
    is all out is still read) and read until the server closes or ``timeout``."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:

        def send() -> None:
            try:
                s.sendall(data)
            except OSError:
                pass  # the server answered and closed early: its answer is what counts

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except OSError:  # a timeout or a reset: what arrived is the answer
            pass
        sender.join(5)
    return parse_reply(b"".join(chunks))


def parse_reply(raw: bytes) -> Reply:
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        return Reply(None, {}, raw)
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return Reply(None, {}, raw)
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
    }
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size.split(b";")[0] or b"0", 16)
            if n == 0:
                break
            body, rest = body + rest[:n], rest[n + 2 :]
    else:
        body = rest[: int(headers["content-length"])] if "content-length" in headers else rest
    return Reply(status, headers, body)


def ready(port: int) -> int | None:
    """The status of ``GET /ready``; None when nothing listens or answers."""
    try:
        return exchange(port, http_bytes(None, "GET", "/ready"), timeout=10).status
    except OSError:
        return None


def check_error(reply: Reply, want: Want) -> str | None:
    if reply.status is None:
        return None if want.silent else "no answer"
    if b"Traceback" in reply.body:
        return f"a traceback in the answer: {reply.body[:200]!r}"
    if not 400 <= reply.status < 500 or (want.status is not None and reply.status != want.status):
        return f"status {reply.status}, expected {want.status or '4xx'}: {reply.body[:200]!r}"
    if not want.json:
        return None
    if not reply.headers.get("content-type", "").startswith("application/json"):
        return f"content-type {reply.headers.get('content-type')!r}, not JSON: {reply.body[:200]!r}"
    try:
        error = json.loads(reply.body)["error"]
    except (ValueError, KeyError, TypeError):
        return f"not a JSON error: {reply.body[:200]!r}"
    message = error.get("message")
    if (
        error.get("status") != reply.status
        or not isinstance(message, str)
        or not message
        or "\n" in message
    ):
        return f"a JSON error without its status and a one-line message: {error!r:.200}"
    if want.names is not None and error.get("field") != want.names:
        return f"field {error.get('field')!r}, expected {want.names!r} ({message[:150]})"
    return None


def check_tagged(reply: Reply, want: Want, oracle: dict[str, dict]) -> str | None:
    if reply.status != 200:
        return f"status {reply.status} on a valid request: {reply.body[:300]!r}"
    try:
        got = json.loads(reply.body.decode("utf-8"))["sentences"]
    except (ValueError, KeyError, TypeError) as e:
        return f"not the JSON answer ({e}): {reply.body[:200]!r}"
    if len(got) != len(want.sentences):
        return f"{len(got)} sentences answered for {len(want.sentences)}"
    k = want.options.get("nbest", 0)
    for i, (g, tokens) in enumerate(zip(got, want.sentences)):
        expected = oracle[json.dumps(tokens)]
        if g.get("tokens") != tokens:
            return (
                f"sentence {i}: tokens {str(g.get('tokens'))[:120]!r} != sent {str(tokens)[:120]!r}"
            )
        if g.get("tags") != expected["tags"]:
            return (
                f"sentence {i}: tags {g.get('tags')!r:.150} != predict's {expected['tags']!r:.150}"
            )
        if want.options.get("confidence"):
            conf = g.get("confidence")
            if (
                not isinstance(conf, list)
                or len(conf) != len(tokens)
                or any(abs(a - b) > 1e-4 for a, b in zip(conf, expected["confidence"]))
            ):
                return f"sentence {i}: confidence {conf!r:.150} != predict's {expected['confidence']!r:.150}"
        elif "confidence" in g:
            return f"sentence {i}: a confidence nobody asked for"
        if k:
            paths = [p["tags"] for p in g.get("nbest", [])]
            if paths != [p["tags"] for p in expected["nbest"][:k]]:
                return f"sentence {i}: n-best {paths!r:.150} != predict's"
        elif "nbest" in g:
            return f"sentence {i}: an n-best list nobody asked for"
    return None


def run_http(case: Case) -> Result:
    start = time.perf_counter()
    process, port, log = RIG.server(case.http.kind)
    before = log.stat().st_size
    try:
        replies = case.http.send(port)
    except OSError as e:
        replies = [Reply(None, {}, repr(e).encode())] * len(case.http.wants)
    problems = []
    for i, (reply, want) in enumerate(zip(replies, case.http.wants, strict=True)):
        if want.either and reply.status != 200:
            problem = check_error(reply, want)
        elif want.sentences is not None:
            problem = check_tagged(reply, want, RIG.oracle[case.http.kind])
        else:
            problem = check_error(reply, want)
        if problem:
            problems.append(f"answer {i}: {problem}" if len(replies) > 1 else problem)
    alive = process.poll() is None
    status = ready(port) if alive else None
    with log.open("rb") as f:  # another case on this server at the same time can write here too
        f.seek(before)
        logged = f.read().decode("utf-8", "replace")
    if not alive:
        problems.insert(0, f"the server exited ({process.returncode})")
    elif status != 200:
        problems.insert(0, f"/ready answered {status} afterwards")
    if "Traceback" in logged:
        problems.insert(0, "a traceback in the server's log")
    seconds = round(time.perf_counter() - start, 2)
    shown = f"{case.http.kind}: " + " | ".join(repr(r.body[:80]) for r in replies[:2])
    if problems:
        return Result(case.family, case.name, "FAILED", "; ".join(problems)[:600], None, seconds, "", logged[-3000:],
                      shown)  # fmt: skip
    first = replies[0]
    why = (
        "ok, equal to predict"
        if case.http.wants[0].sentences is not None
        else f"{first.status} {first.body[:150]!r}"
    )
    return Result(case.family, case.name, "HELD", why, first.status, seconds, "", "", shown)


def post(body: bytes, **kw) -> Callable[[int], list[Reply]]:
    """One request: ``http_bytes(body, **kw)`` (``timeout``: how long to wait for the answer)."""
    timeout = kw.pop("timeout", 60.0)
    return lambda port: [exchange(port, http_bytes(body, **kw), timeout)]


def raw(data: bytes, timeout: float = 60.0) -> Callable[[int], list[Reply]]:
    return lambda port: [exchange(port, data, timeout)]


def jbody(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


SERVE_TOKENS = {
    "tab": "a\tb", "newline": "a\nb", "crlf": "a\r\nb", "nul": "a\x00b", "escape": "a\x1bb", "del": "a\x7fb",
    "zero-width": "a\u200bb", "zwj-emoji": "\U0001f468\u200d\U0001f469\u200d\U0001f467", "rtl": "\u05e9\u05dc\u05d5\u05dd",
    "rtl-override": "a\u202eb", "arabic": "\u0645\u0631\u062d\u0628\u0627", "emoji": "\U0001f642", "combining": "e\u0301\u0301",
    "linesep": "a\u2028b", "nel": "a\u0085b", "bom-char": "\ufeffa", "nonchar": "a\uffffb", "max-code-point": "\U0010ffff",
    "private-use": "\ue000", "replacement": "\ufffd", "nbsp": "a\u00a0b", "space": "a b", "only-space": " ",
    "empty": "", "quote-backslash": 'a"\\b', "html": "<script>alert(1)</script>", "long": "x" * 100_000,
}  # fmt: skip


def serve_cases(w: World) -> list[Case]:
    """The ``serve`` family: each case against the ONNX file's server and the model directory's."""
    lim = SERVE_LIMITS
    ok_sentences = [
        ["The", "dog", "ate", "the", "apple", "."],
        ["Smith", "went", "to", "Paris", "yesterday", "."],
    ]
    specs: dict[str, tuple[Callable[[int], list[Reply]], list[Want]]] = {}

    def case(name: str, send: Callable[[int], list[Reply]], *wants: Want) -> None:
        specs[name] = (send, list(wants))

    def bad(name: str, body: bytes, status: int | None, field: str | None = None, **kw) -> None:
        case(name, post(body, **kw), Want(status, field))

    def good(name: str, sentences: list[list[str]], **options) -> None:
        case(
            name,
            post(jbody({"sentences": sentences, **options})),
            Want(sentences=sentences, options=options),
        )

    # not JSON, or not the object of the API
    bad("json-malformed", b"{not json", 400)
    bad("json-truncated", b'{"sentences": [["a"]', 400)
    bad("json-trailing-garbage", b'{"sentences": [["a"]]} x', 400)
    bad("json-two-objects", b'{"sentences": [["a"]]}{"sentences": [["b"]]}', 400)
    bad("body-empty", b"", 400)
    bad("body-whitespace", b" \r\n\t ", 400)
    bad("json-null", b"null", 422)
    bad("json-string", b'"The dog"', 422)
    bad("json-number", b"42", 422)
    bad("json-list", b'[["a"]]', 422)
    bad("json-nan-literal", b"NaN", None)
    bad("json-object-empty", b"{}", 422, "sentences")
    bad("json-unknown-field", b'{"sentences": [["a"]], "lang": "en"}', 422, "lang")
    bad("json-both-inputs", b'{"sentences": [["a"]], "text": "a"}', 422, "sentences")
    bad(
        "json-duplicate-sentences",
        b'{"sentences": [["a"]], "sentences": [["b", "c"]]}',
        422,
        "sentences",
    )
    bad("json-duplicate-nbest", b'{"sentences": [["a"]], "nbest": 1, "nbest": 2}', 422, "nbest")
    bad("json-deep-nesting", b"[" * 100_000 + b"]" * 100_000, 400)
    bad("json-deep-in-sentences", b'{"sentences": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", None)
    # the sentences field, wrong at every level
    for name, value, field_name in [
        ("sentences-string", '"The dog"', "sentences"), ("sentences-dict", '{"0": ["a"]}', "sentences"),
        ("sentences-null", "null", "sentences"), ("sentences-number", "3", "sentences"),
        ("sentences-bool", "true", "sentences"), ("sentences-nan", "NaN", "sentences"),
        ("sentence-string", '["The dog"]', "sentences[0]"), ("sentence-dict", '[{"tokens": ["a"]}]', "sentences[0]"),
        ("sentence-null", "[null]", "sentences[0]"), ("sentence-number", "[7]", "sentences[0]"),
        ("sentence-empty", "[[]]", "sentences[0]"), ("sentence-second-empty", '[["a"], []]', "sentences[1]"),
        ("token-number", '[["a", 1]]', "sentences[0][1]"), ("token-float", '[["a", 1.5]]', "sentences[0][1]"),
        ("token-null", '[["a", null]]', "sentences[0][1]"), ("token-bool", '[["a", false]]', "sentences[0][1]"),
        ("token-list", '[["a", ["b"]]]', "sentences[0][1]"), ("token-dict", '[["a", {"t": "b"}]]', "sentences[0][1]"),
        ("token-nan", '[["a", NaN]]', "sentences[0][1]"), ("token-infinity", '[["a", -Infinity]]', "sentences[0][1]"),
        ("token-huge-number", '[["a", 1e999]]', "sentences[0][1]"),
        ("token-lone-high-surrogate", r'[["a", "b\ud800"]]', "sentences[0][1]"),
        ("token-lone-low-surrogate", r'[["\udc00"]]', "sentences[0][0]"),
        ("token-reversed-pair", r'[["a", "\udc00\ud800"]]', "sentences[0][1]"),
    ]:  # fmt: skip
        bad(name, b'{"sentences": ' + value.encode() + b"}", 422, field_name)
    # the options
    for name, value in [("string", '"3"'), ("negative", "-1"), ("over-limit", str(lim["max_nbest"] + 1)),
                        ("float", "2.5"), ("float-integral", "2.0"), ("bool", "true"), ("null", "null"),
                        ("nan", "NaN"), ("infinity", "Infinity"), ("huge", "1e999"), ("bigint", "9" * 30),
                        ("list", "[2]")]:  # fmt: skip
        bad(
            f"nbest-{name}",
            b'{"sentences": [["a"]], "nbest": ' + value.encode() + b"}",
            422,
            "nbest",
        )
    for name, value in [
        ("string", '"true"'),
        ("number", "1"),
        ("null", "null"),
        ("list", "[true]"),
    ]:
        bad(
            f"confidence-{name}",
            b'{"sentences": [["a"]], "confidence": ' + value.encode() + b"}",
            422,
            "confidence",
        )
    bad("text-number", b'{"text": 3}', 422, "text")
    bad("text-lone-surrogate", b'{"text": "The \\ud800 dog"}', 422, "text")
    # bytes that are not UTF-8 JSON
    bad("bytes-latin1", '{"sentences": [["café"]]}'.encode("latin-1"), 400)
    bad("bytes-invalid-utf8", b'{"sentences": [["\xff\xfe"]]}', 400)
    bad("bytes-overlong-utf8", b'{"sentences": [["\xc0\xaf"]]}', 400)
    bad("bytes-utf8-surrogate", b'{"sentences": [["\xed\xa0\x80"]]}', None)
    bad("bytes-utf16", '{"sentences": [["a"]]}'.encode("utf-16"), 400)
    bad("bytes-utf32", '{"sentences": [["a"]]}'.encode("utf-32"), 400)
    bad("bytes-nul", b"\x00" * 64, 400)
    # limits
    big = b'{"sentences": [["' + b"x" * lim["max_body_bytes"] + b'"]]}'
    bad("limit-body", big, 413, "body")
    case("limit-body-chunked", lambda port: [exchange(port, http_bytes(chunked=[big[i : i + 65536] for i in range(0, len(big), 65536)]))],
         Want(413, "body"))  # fmt: skip
    bad("limit-body-declared", b'{"sentences": [["a"]]}', 413, "body", headers={"Content-Length": str(10 * lim["max_body_bytes"])},
        timeout=20)  # fmt: skip
    bad(
        "limit-sentences",
        jbody({"sentences": [["a"]] * (lim["max_sentences"] + 1)}),
        413,
        "sentences",
    )
    bad("limit-text-lines", jbody({"text": "a\n" * (lim["max_sentences"] + 1)}), 413, "text")
    bad(
        "limit-tokens",
        jbody({"sentences": [["a"], ["w"] * (lim["max_tokens"] + 1)]}),
        422,
        "sentences[1]",
    )
    bad("limit-text-tokens", jbody({"text": "a " * (lim["max_tokens"] + 1)}), 422, "text")
    long_sentence = [
        ["The", "dog", "barked", ".", "Smith", "went", "to", "Paris"][i % 8] + str(i % 13)
        for i in range(2000)
    ]
    good("long-sentence-2000", [long_sentence])
    good("most-sentences", [[f"w{i}", "ran", "."] for i in range(lim["max_sentences"])])
    good("most-tokens", [["a"] * lim["max_tokens"]])
    good("long-sentence-confidence-nbest", [long_sentence], confidence=True, nbest=2)
    good(
        "long-and-short",
        [long_sentence[: 1 + (i * 397) % lim["max_tokens"]] for i in range(lim["max_sentences"])],
    )
    # hostile tokens: tagged, and back byte for byte
    for name, token in SERVE_TOKENS.items():
        good(f"token-{name}", [["The", token, "ran", "."]])
    good("token-all-at-once", [list(SERVE_TOKENS.values())[:-1]])
    good("sentences-empty", [])
    good("plain", ok_sentences)
    good("confidence", ok_sentences, confidence=True)
    good("nbest", ok_sentences, nbest=3)
    good("nbest-max-confidence", ok_sentences, nbest=lim["max_nbest"], confidence=True)
    good("nbest-zero-confidence-false", ok_sentences, nbest=0, confidence=False)
    # HTTP: content types, methods, paths, versions, framing
    plain = jbody({"sentences": ok_sentences})
    case(
        "content-type-text-plain",
        post(plain, headers={"Content-Type": "text/plain"}),
        Want(sentences=ok_sentences),
    )
    case(
        "content-type-none",
        post(plain, headers={"Content-Type": None}),
        Want(sentences=ok_sentences),
    )
    case("content-type-utf8-bom", post(b"\xef\xbb\xbf" + plain), Want(sentences=ok_sentences))
    bad(
        "content-type-form",
        b"sentences=The+dog",
        400,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    bad("method-get-tag", None, 405, method="GET")
    bad("method-put-tag", plain, 405, method="PUT")
    bad("method-delete-tag", None, 405, method="DELETE")
    bad("method-post-ready", plain, 405, path="/ready")
    bad("method-post-health", plain, 405, path="/health")
    bad("method-post-model", plain, 405, path="/v1/model")
    bad("path-unknown", None, 404, method="GET", path="/nope")
    bad("path-v2", plain, 404, path="/v2/tag")
    bad("path-case", plain, 404, path="/V1/TAG")
    bad("path-traversal", None, 404, method="GET", path="/../../etc/passwd")
    bad("path-newline-escape", None, 404, method="GET", path="/a%0Ab%00")
    case(
        "http10",
        post(plain, version="HTTP/1.0", headers={"Connection": None}),
        Want(sentences=ok_sentences),
    )
    bad("http10-no-length", None, 400, version="HTTP/1.0", headers={"Connection": None})
    case("chunked", lambda port: [exchange(port, http_bytes(chunked=[plain[:7], plain[7:20], plain[20:]]))],
         Want(sentences=ok_sentences))  # fmt: skip
    bad("length-short", plain, 400, headers={"Content-Length": str(len(plain) - 5)})
    case(
        "length-long",
        post(plain, headers={"Content-Length": str(len(plain) + 100)}, timeout=40),
        Want(status=408, names="body"),  # the body never arrives: refused after --timeout-s
    )
    case(
        "length-not-a-number",
        post(plain, headers={"Content-Length": "12abc"}),
        Want(json=False, silent=True),
    )
    case(
        "length-negative",
        post(plain, headers={"Content-Length": "-5"}),
        Want(json=False, silent=True),
    )
    case(
        "length-and-chunked",  # the framing of request smuggling: refused (RFC 9112, 6.1)
        raw(http_bytes(chunked=[plain], headers={"Content-Length": "3"})),
        Want(400, "body"),
    )
    case("chunk-size-garbage", raw(http_bytes(None, headers={"Transfer-Encoding": "chunked"}) + b"zz\r\nabc\r\n0\r\n\r\n", 10),
         Want(json=False, silent=True))  # fmt: skip
    case("not-http", raw(b"\x00\x01garbage\r\n\r\n", 10), Want(json=False, silent=True))
    # a head that arrives whole is parsed whatever its size (h11 caps only an incomplete one, at
    # 16 KiB): tagged, or refused by the HTTP parser
    case(
        "header-huge",
        post(plain, headers={"X-Pad": "a" * 70_000}, timeout=10),
        Want(sentences=ok_sentences, json=False, either=True),
    )

    def keep_alive(port: int) -> list[Reply]:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        replies = []
        for body in (b"{oops", plain, b'{"sentences": [[]]}', plain):
            conn.request("POST", "/v1/tag", body=body, headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            replies.append(Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()))
        conn.close()
        return replies

    case("keep-alive-bad-then-good", keep_alive, Want(400), Want(sentences=ok_sentences), Want(422, "sentences[0]"),
         Want(sentences=ok_sentences))  # fmt: skip

    mixed: list[tuple[bytes, Want]] = []
    for i in range(40):
        if i % 3 == 2:
            body, want = [(b"{", Want(400)), (b'{"sentences": [["a", 5]]}', Want(422, "sentences[0][1]")),
                          (b'{"sentences": [["a"]], "nbest": 99}', Want(422, "nbest"))][i % 9 // 3]  # fmt: skip
        else:
            sentences = [
                [f"w{i}", "went", "to", "Paris", "."][: 2 + i % 4],
                ["The", SERVE_TOKENS["zwj-emoji"], str(i)],
            ]
            options = {"confidence": True} if i % 4 == 0 else {}
            body, want = (
                jbody({"sentences": sentences, **options}),
                Want(sentences=sentences, options=options),
            )
        mixed.append((body, want))

    def concurrent(port: int) -> list[Reply]:
        with ThreadPoolExecutor(16) as pool:
            return list(pool.map(lambda bw: exchange(port, http_bytes(bw[0])), mixed))

    case("concurrent-mixed-40", concurrent, *(want for _, want in mixed))

    return [Case(f"serve:{kind}", f"serve-{kind}-{name}", http=HttpCase(kind, send, wants), timeout=120)
            for kind in SERVE_KINDS for name, (send, wants) in specs.items()]  # fmt: skip


# -- the run ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="cases run side by side (default: 2)")
    parser.add_argument(
        "--family",
        action="append",
        help="run only this family, or the families FAMILY:* "
        "(repeatable; serve alone builds only the two models it serves)",
    )
    parser.add_argument("--only", help="run only cases whose name contains this")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="seqtag-campaign-"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "PYTHONWARNINGS": "ignore::FutureWarning", "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(root / "hf-cache"), "TMPDIR": str(root / "tmp")}  # fmt: skip
    (root / "tmp").mkdir()
    try:
        start = time.perf_counter()
        world = World(root)
        serve_only = bool(args.family) and all(f.startswith("serve") for f in args.family)
        world.build(env, args.jobs, serve_only)
        setup_s = time.perf_counter() - start
        print(f"setup: models trained and exported in {setup_s:.0f} s under {root}", flush=True)
        cases = serve_cases(world) if serve_only else all_cases(world)
        names = [c.name for c in cases]
        assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
        if args.family:
            cases = [
                c for c in cases if c.family in args.family or c.family.split(":")[0] in args.family
            ]
        if args.only:
            cases = [c for c in cases if args.only in c.name]
        for c in cases:
            c.dir = world.cases / c.name
        global RIG
        if any(c.http for c in cases):
            RIG = ServeRig(world, env)
            RIG.build_oracle(cases)
        with ThreadPoolExecutor(args.jobs) as pool:
            results = []
            for r in pool.map(lambda c: run_case(c, env), cases):
                results.append(r)
                if r.status != "HELD":
                    print(f"  FAILED {r.family}/{r.name}: {r.why}", flush=True)
        for z in ZYGOTES:
            z.stdin.close()
            z.wait()
        if RIG is not None:
            for kind, code in RIG.stop().items():
                if code != 0:
                    results.append(Result(f"serve:{kind}", f"serve-{kind}-sigterm-exit", "FAILED",
                                          f"exit {code} after SIGTERM", code, 0.0, "", "", "kill -TERM"))  # fmt: skip
        total_s = time.perf_counter() - start
        report(results, total_s)
        if args.json:
            args.json.write_text(json.dumps({
                "setup_s": round(setup_s, 1), "total_s": round(total_s, 1),
                "families": summary(results), "cases": [r.__dict__ for r in results],
            }, indent=1) + "\n")  # fmt: skip
        return 1 if any(r.status != "HELD" for r in results) else 0
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def summary(results: list[Result]) -> dict:
    out: dict = {}
    for r in results:
        row = out.setdefault(r.family, {"tried": 0, "held": 0, "failed": 0})
        row["tried"] += 1
        row["held" if r.status == "HELD" else "failed"] += 1
    return out


def report(results: list[Result], total_s: float) -> None:
    rows = summary(results)
    print(f"\n{'family':<18} {'tried':>6} {'held':>6} {'failed':>7}")
    for family, row in rows.items():
        print(f"{family:<18} {row['tried']:>6} {row['held']:>6} {row['failed']:>7}")
    tried, held = len(results), sum(r.status == "HELD" for r in results)
    print(f"{'all':<18} {tried:>6} {held:>6} {tried - held:>7}   ({total_s:.0f} s)")
    for r in results:
        if r.status != "HELD":
            print(
                f"\nFAILED {r.family}/{r.name} ({r.why}; exit {r.rc}, {r.seconds} s)\n  {r.command}"
            )
            for text in (r.stderr.strip()[-1500:], r.stdout.strip()[-500:]):
                if text:
                    print(textwrap.indent(text, "    "))


if __name__ == "__main__":
    sys.exit(main())
