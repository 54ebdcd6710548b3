"""Configuration dataclasses: JSON round trips, ranges from field metadata, and the package
importing without torch."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_seqtag_imports_where_torch_cannot():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import seqtag, seqtag.config, seqtag.corpus\n"
        "print(seqtag.__version__, seqtag.TaggerConfig().hidden_dim, 'train' in seqtag.__all__)\n"
        "try:\n"
        "    seqtag.Tagger\n"
        "except ImportError:\n"
        "    print('no torch')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": ""})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0.2.0", "256", "True", "no", "torch"]


def test_lazy_names_are_the_modules_objects():
    import seqtag
    from seqtag.model import Tagger
    from seqtag.training import train

    assert seqtag.train is train and seqtag.load == Tagger.load
    assert set(seqtag.__all__) <= set(dir(seqtag))


def test_what_resume_may_change_is_declared_on_the_fields():
    from seqtag.config import TrainConfig, resumable_fields

    assert set(resumable_fields(TrainConfig)) == {
        "epochs", "patience", "lr", "clip", "device", "num_workers", "eval_batch_size", "checkpoint_every", "keep",
    }  # fmt: skip
