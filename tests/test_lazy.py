"""Package ``__init__`` files hand names on lazily, and 0.2.0's module paths still import."""

import importlib
import json
import os
import subprocess
import sys

import pytest

import seqtag
from seqtag.lazy import MovedModules

# What the 0.2.0 docs imported (old path, name, where it lives now).
OLD_PATHS = [
    ("seqtag.onnx_tagger", "OnnxTagger", "seqtag.serving.onnx_runner"),
    ("seqtag.export", "to_torchscript", "seqtag.serving.torchscript"),
    ("seqtag.export", "to_torch_export", "seqtag.serving.torch_export"),
    ("seqtag.export", "load_torchscript", "seqtag.serving.torchscript"),
    ("seqtag.onnx_export", "to_onnx", "seqtag.serving.onnx_export"),
    ("seqtag.predict", "tag_dataset", "seqtag.serving.hf_tagging"),
    ("seqtag.predict", "load_predictor", "seqtag.serving.predictor"),
    ("seqtag.predict", "PredictConfig", "seqtag.config"),
    ("seqtag.hf", "load_splits", "seqtag.data.hf"),
    ("seqtag.hf", "ArrowTaggingDataset", "seqtag.data.arrow"),
    ("seqtag.crf", "CRF", "seqtag.model.crf"),
    ("seqtag.corpus", "read_conllu", "seqtag.data.corpus"),
    ("seqtag.encoding", "plan_batches", "seqtag.data.encoding"),
    ("seqtag.calibration", "expected_calibration_error", "seqtag.serving.calibration"),
    ("seqtag.checkpoint", "read_checkpoint", "seqtag.training.checkpoint"),
    ("seqtag.vectors", "read_vectors", "seqtag.data.vectors"),
    ("seqtag.tutorial", "TUTORIAL_MODEL", "seqtag.data.tutorial"),
    ("seqtag.tutorial", "demo", "seqtag.cli.demo"),
    # modules that became packages hand on their former names without a warning
    ("seqtag.data", "collate", "seqtag.data.dataset"),
    ("seqtag.data", "plan_batches", "seqtag.data.encoding"),
    ("seqtag.model", "Tagger", "seqtag.model.tagger"),
    ("seqtag.training", "train_step", "seqtag.training.step"),
    ("seqtag.training", "TrainingInterrupted", "seqtag.training.interrupts"),
    ("seqtag.cli", "main", "seqtag.cli.app"),
]


@pytest.mark.parametrize("old, name, home", OLD_PATHS)
def test_a_0_2_0_import_path_gives_the_same_object(old, name, home):
    moved = old not in ("seqtag.data", "seqtag.model", "seqtag.training", "seqtag.cli")
    sys.modules.pop(old, None) if moved else None
    if moved:
        with pytest.warns(FutureWarning, match=rf"{old} is now .*{home}.*goes in seqtag 0\.4\.0"):
            module = importlib.import_module(old)
    else:
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(home), name)


def test_a_moved_module_is_the_same_module_and_keeps_its_own_spec():
    import seqtag.serving.onnx_runner as runner

    sys.modules.pop("seqtag.onnx_tagger", None)
    with pytest.warns(FutureWarning):
        import seqtag.onnx_tagger as old
    assert old is runner and runner.__spec__.name == "seqtag.serving.onnx_runner"
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        sys.modules.pop("seqtag.predictors", None)
        with pytest.warns(FutureWarning):
            importlib.import_module("seqtag.predictors").nothing  # noqa: B018


def test_unknown_names_and_modules_are_errors():
    with pytest.raises(AttributeError, match="module 'seqtag' has no attribute 'nothing'"):
        seqtag.nothing  # noqa: B018
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("seqtag.nothing")
    assert MovedModules({"a.b": "c"}, until="9").find_spec("a.c") is None


def test_the_facade_offers_what_0_2_0_offered():
    offered = ["CorpusError", "DataConfig", "SeqtagError", "Sentence", "Tagger", "TaggerConfig", "TrainConfig",
               "Vocab", "Vocabularies", "evaluate", "load", "read_conll", "read_conllu", "read_corpus",
               "resolve_device", "sonnet_corpus", "train", "tutorial_corpus", "write_conll", "write_conllu"]  # fmt: skip
    assert seqtag.__all__ == sorted(offered)
    assert set(offered) <= set(dir(seqtag))
    assert seqtag.load == seqtag.Tagger.load
    for name in offered:
        assert getattr(seqtag, name) is not None


@pytest.mark.parametrize("package", ["seqtag", "seqtag.data", "seqtag.model", "seqtag.training", "seqtag.serving",
                                     "seqtag.cli"])  # fmt: skip
def test_importing_a_package_imports_none_of_its_modules(package):
    code = (f"import sys, json; import {package}\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('seqtag')), ))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(seqtag.__file__))})  # fmt: skip
    assert done.returncode == 0, done.stderr
    parents = {"seqtag", package, "seqtag.lazy"}
    assert set(json.loads(done.stdout)) == parents
