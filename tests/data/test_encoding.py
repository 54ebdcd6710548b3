"""seqtag.data.encoding: the torch-free string encoder and batch planner, in Python and TorchScript.

The encoder's oracle (the ids of ``seqtag.data.dataset.encode_tokens``) is in tests/data/test_dataset.py and
tests/serving/test_onnx.py; here: code points, the printable-ASCII test that picks the encoder's fast
path, the lowercasing table, the plan against a brute-force sort, and that the module imports
in a process that cannot import torch.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import seqtag
from seqtag.data.encoding import code_points, lowercase_table, plan_batches, printable_ascii

SEQTAG_DIR = Path(seqtag.__file__).resolve().parent
# printable ASCII (TorchScript's one-step split), then control characters and non-ASCII (byte by byte)
TOKENS = ["", "dog", "Dog's, e.g. 5-7 (a b)~", "naïve", "日本", "🙂", "👍🏽", "e\u0301", "¢5", "ÉCOLE",
          "\u0080\u00bf", "tab\tx", "\x7f", "\x00a", "a\x1b[0m", "aé", "éa"]


SCRIPTING = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


@SCRIPTING
@pytest.mark.parametrize("scripted", [False, True], ids=["python", "torchscript"])
def test_code_points_are_the_characters_of_the_string(scripted):
    split = torch.jit.script(code_points) if scripted else code_points
    assert [split(t) for t in TOKENS] == [list(t) for t in TOKENS]


@SCRIPTING
@pytest.mark.parametrize("scripted", [False, True], ids=["python", "torchscript"])
def test_printable_ascii_means_ascii_and_printable(scripted):
    check = torch.jit.script(printable_ascii) if scripted else printable_ascii
    strings = [chr(i) for i in range(0x400)] + TOKENS + ["".join(chr(i) for i in range(32, 127)), "a" * 300]
    assert [check(s) for s in strings] == [s.isascii() and s.isprintable() for s in strings]


def test_lowercase_table_adds_ascii_and_keeps_the_vocabulary_entries():
    table = lowercase_table({"Ü": "ü"})
    assert table["Ü"] == "ü" and table["A"] == "a" and table["Z"] == "z" and "a" not in table


def _check_plan(plan, lengths, batch_size, max_tokens):
    flat = [i for b in plan for i in b]
    assert flat == sorted((i for i, n in enumerate(lengths) if n > 0), key=lambda i: lengths[i])  # stable
    for b in plan:
        assert 1 <= len(b) <= batch_size
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= max_tokens


@SCRIPTING
@pytest.mark.parametrize("batch_size, max_tokens", [(1, None), (3, None), (32, None), (8, 20), (256, 1)])
def test_plan_batches_sorts_caps_and_skips_empty_sentences(batch_size, max_tokens):
    lengths = np.random.default_rng(batch_size).integers(0, 40, size=200).tolist()
    lengths[5] = 10_000
    plan = plan_batches(lengths, batch_size, max_tokens)
    _check_plan(plan, lengths, batch_size, max_tokens or batch_size * 128)
    assert [5] in plan
    assert torch.jit.script(plan_batches)(lengths, batch_size, max_tokens) == plan
    # ordinary batches stay full under the default cap
    if max_tokens is None:
        assert sum(len(b) == batch_size for b in plan) >= len(plan) - 2
    assert plan_batches([], batch_size, max_tokens) == [] and plan_batches([0, 0], batch_size) == []


@SCRIPTING
@pytest.mark.parametrize("args, message", [((0,), "batch_size >= 1, got 0"), ((-1,), "batch_size >= 1"),
                                           ((4, 0), "max_tokens >= 1, got 0")])
def test_plan_batches_refuses_bad_sizes(args, message):
    with pytest.raises(ValueError, match=message):
        plan_batches([1, 2], *args)
    with pytest.raises(torch.jit.Error, match=message):
        torch.jit.script(plan_batches)([1, 2], *args)


@SCRIPTING
@pytest.mark.parametrize("batch_size, max_tokens", [(1, None), (4, None), (8, 20), (64, 1)])
def test_plan_keeps_the_input_order_of_equal_lengths(batch_size, max_tokens):
    lengths = np.random.default_rng(batch_size).integers(0, 6, size=300).tolist()  # many ties
    plan = plan_batches(lengths, batch_size, max_tokens)
    _check_plan(plan, lengths, batch_size, max_tokens or batch_size * 128)
    assert torch.jit.script(plan_batches)(lengths, batch_size, max_tokens) == plan


def test_imports_in_a_process_that_cannot_import_torch(tmp_path):
    code = (
        "import sys, types, json\n"
        "sys.modules['torch'] = None\n"
        "package = types.ModuleType('seqtag')\n"
        f"package.__path__ = [{str(SEQTAG_DIR)!r}]\n"
        "sys.modules['seqtag'] = package\n"
        "from seqtag.data.encoding import code_points, plan_batches\n"
        "print(json.dumps([plan_batches([3, 0, 1, 3, 2], 2), code_points('naïve'),\n"
        "                  sorted(m for m in sys.modules if m.startswith('seqtag.'))]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(SEQTAG_DIR.parent)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [[[2, 4], [0, 3]], list("naïve"), ["seqtag.data", "seqtag.data.encoding", "seqtag.lazy"]]


@pytest.mark.parametrize("bad, message", [
    ("The dog ate", "got a str"), (b"The dog", "got a bytes"), ({"a": 1}, "got a dict"), (None, "got a NoneType"),
    (5, "got a int"), (["The", "dog"], "sentence 0 as a sequence of token strings, got a str"),
    ([["The", None]], "token 1 of sentence 0 as a str, got a NoneType"), ([["a"], [1]], "token 0 of sentence 1"),
    ([[b"x"]], "got a bytes"), ([None], "sentence 0 as a sequence of token strings, got a NoneType"),
])  # fmt: skip
def test_check_sentences_refuses_what_is_not_token_lists(bad, message):
    from seqtag.data.encoding import check_sentences

    with pytest.raises(TypeError, match=message):
        check_sentences(bad)


def test_check_sentences_takes_any_sequences_of_strings():
    from seqtag.data.encoding import check_sentences

    assert check_sentences(iter([("a", "b"), [], ["c"]])) == [["a", "b"], [], ["c"]]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "32", None])
def test_check_batch_size_refuses_what_is_not_a_positive_int(bad):
    from seqtag.data.encoding import check_batch_size

    with pytest.raises(ValueError, match=r"expected batch_size (an integer|>= 1), got"):
        check_batch_size(bad)


def test_check_sentences_refuses_a_lone_surrogate_that_no_format_can_carry():
    """TorchScript fails on it deep inside, and no UTF-8 output can hold it: one line, naming the token."""
    from seqtag.data.encoding import check_sentences

    assert check_sentences([["\U0001f642", "a"]]) == [["\U0001f642", "a"]]  # a pair is one character
    with pytest.raises(ValueError, match=r"expected token 1 of sentence 1 as text UTF-8 can carry, got 'b\\udc80' \(a lone surrogate\)"):
        check_sentences([["a"], ["a", "b\udc80"]])
