"""seqtag.encoding: the torch-free string encoder and batch planner, in Python and TorchScript.

The encoder's oracle (the ids of ``seqtag.data.encode_tokens``) is in tests/test_data.py and
tests/test_onnx.py; here: code points, the lowercasing table, the plan against a brute-force
sort, and that the module imports in a process that cannot import torch.
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
from seqtag.encoding import code_points, lowercase_table, plan_batches

SEQTAG_DIR = Path(seqtag.__file__).resolve().parent
TOKENS = ["", "dog", "naïve", "日本", "🙂", "👍🏽", "e\u0301", "¢5", "ÉCOLE", "\u0080\u00bf"]


SCRIPTING = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


@SCRIPTING
@pytest.mark.parametrize("scripted", [False, True], ids=["python", "torchscript"])
def test_code_points_are_the_characters_of_the_string(scripted):
    split = torch.jit.script(code_points) if scripted else code_points
    assert [split(t) for t in TOKENS] == [list(t) for t in TOKENS]


def test_lowercase_table_adds_ascii_and_keeps_the_vocabulary_entries():
    table = lowercase_table({"Ü": "ü"})
    assert table["Ü"] == "ü" and table["A"] == "a" and table["Z"] == "z" and "a" not in table


@SCRIPTING
@pytest.mark.parametrize("batch_size, max_tokens", [(1, None), (4, None), (8, 20), (64, 1)])
def test_plan_is_a_stable_sort_by_length_cut_by_count_and_tokens(batch_size, max_tokens):
    lengths = np.random.default_rng(batch_size).integers(0, 6, size=300).tolist()  # many ties
    plan = plan_batches(lengths, batch_size, max_tokens)
    cap = max_tokens or batch_size * 128
    assert [i for b in plan for i in b] == sorted((i for i, n in enumerate(lengths) if n), key=lambda i: lengths[i])
    for b in plan:
        assert 1 <= len(b) <= batch_size and (len(b) == 1 or len(b) * max(lengths[i] for i in b) <= cap)
    assert torch.jit.script(plan_batches)(lengths, batch_size, max_tokens) == plan


def test_imports_in_a_process_that_cannot_import_torch(tmp_path):
    code = (
        "import sys, types, json\n"
        "sys.modules['torch'] = None\n"
        "package = types.ModuleType('seqtag')\n"
        f"package.__path__ = [{str(SEQTAG_DIR)!r}]\n"
        "sys.modules['seqtag'] = package\n"
        "from seqtag.encoding import code_points, plan_batches\n"
        "print(json.dumps([plan_batches([3, 0, 1, 3, 2], 2), code_points('naïve'),\n"
        "                  sorted(m for m in sys.modules if m.startswith('seqtag.'))]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(SEQTAG_DIR.parent)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [[[2, 4], [0, 3]], list("naïve"), ["seqtag.encoding"]]
