"""Configuration dataclasses: JSON round trips, ranges from field metadata, and the package
importing without torch."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_seqtag_imports_where_torch_cannot():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import seqtag, seqtag.config, seqtag.data.corpus\n"
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
    from seqtag.model.tagger import Tagger
    from seqtag.training.loop import train

    assert seqtag.train is train and seqtag.load == Tagger.load
    assert set(seqtag.__all__) <= set(dir(seqtag))


def test_what_resume_may_change_is_declared_on_the_fields():
    from seqtag.config import TrainConfig, resumable_fields

    assert set(resumable_fields(TrainConfig)) == {
        "epochs", "patience", "lr", "clip", "device", "num_workers", "eval_batch_size", "checkpoint_every", "keep",
        "encoder_lr",
    }  # fmt: skip


@pytest.mark.parametrize(
    "cls, changes, message",
    [
        ("TaggerConfig", {"hidden_dim": 0}, "expected hidden_dim >= 1, got 0"),
        ("TaggerConfig", {"dropout": 1.0}, "expected dropout < 1.0, got 1.0"),
        ("TaggerConfig", {"char_kernel_size": 4}, "expected an odd char_kernel_size, got 4"),
        ("TaggerConfig", {"rnn_mode": "fast"}, "expected rnn_mode in ('auto', 'packed', 'padded'), got 'fast'"),
        ("TaggerConfig", {"hidden_dim": "8"}, "expected hidden_dim an integer, got '8'"),
        ("TaggerConfig", {"crf": 1}, "expected crf true or false, got 1"),
        ("TrainConfig", {"lr": 0}, "expected lr > 0.0, got 0.0"),
        ("TrainConfig", {"lr": float("inf")}, "expected lr a finite number, got inf"),
        ("TrainConfig", {"batch_size": 0}, "expected batch_size >= 1, got 0"),
        ("TrainConfig", {"eval_batch_size": -1}, "expected eval_batch_size >= 1, got -1"),
        ("TrainConfig", {"word_dropout": -0.1}, "expected word_dropout >= 0.0, got -0.1"),
        ("DataConfig", {"num_proc": 0}, "expected num_proc >= 1, got 0"),
        ("TaggerConfig", {"num_layers": 0}, "expected num_layers >= 1 without an encoder, got 0"),
        ("TaggerConfig", {"embedding_dim": 0}, "expected embedding_dim >= 1 without an encoder, got 0"),
        ("TaggerConfig", {"encoder": "m", "encoder_pooling": "max"}, "expected encoder_pooling in ('first', 'mean', 'last'), got 'max'"),
        ("TaggerConfig", {"encoder": "m", "encoder_window": 8, "encoder_stride": 9}, "expected encoder_stride <= encoder_window = 8, got 9"),
        ("TrainConfig", {"warmup": 1.0}, "expected warmup < 1.0, got 1.0"),
        ("TrainConfig", {"warmup": 0.1, "warmup_steps": 3}, "expected warmup or warmup_steps, not both"),
        ("DataConfig", {"format": "csv"}, "expected format in ('auto', 'conll', 'conllu'), got 'csv'"),
        ("TrainConfig", {"seed": 2**32}, "expected seed <= 4294967295, got 4294967296"),  # NumPy's seeds: a traceback
        ("TrainConfig", {"seed": -1}, "expected seed >= 0, got -1"),
        ("TaggerConfig", {"encoder_window": 3}, "expected encoder_window only with an encoder, got 3 without one"),
        ("TaggerConfig", {"encoder_pooling": "mean"}, "expected encoder_pooling only with an encoder, got 'mean' without one"),
    ],
)  # fmt: skip
def test_every_dataclass_checks_its_field_metadata_in_one_place(cls, changes, message):
    from seqtag import config

    with pytest.raises(ValueError, match=re.escape(message)):
        getattr(config, cls)(**changes)
    with pytest.raises(ValueError, match=re.escape(message)):  # from_dict and replace check alike
        getattr(config, cls).from_dict(changes)
    with pytest.raises(ValueError, match=re.escape(message)):
        getattr(config, cls)().replace(**changes)


@pytest.mark.parametrize("cls", ["TaggerConfig", "TrainConfig", "DataConfig"])
def test_json_round_trip_and_complete_files(cls):
    from seqtag import config

    kind = getattr(config, cls)
    assert kind.from_dict(kind().to_dict()) == kind()
    partial = dict(list(kind().to_dict().items())[1:])
    assert kind.from_dict(partial) == kind()
    with pytest.raises(ValueError, match=f"{cls} lacks "):
        kind.from_dict(partial, complete=True)
    with pytest.raises(ValueError, match="unknown keys"):
        kind.from_dict({**kind().to_dict(), "bogus": 1})


def test_a_field_added_after_a_release_takes_its_default_in_an_older_saved_file():
    """``since=`` fields are the only ones a saved (``complete``) file may lack."""
    import dataclasses

    from seqtag.config import JsonConfig, _f, required_fields

    @dataclasses.dataclass
    class Saved(JsonConfig):
        old: int = _f(1, "a field every saved file has", min=0)
        new: int = _f(2, "a field added later", min=0, since="0.2.1")

    assert required_fields(Saved) == ("old",)
    assert Saved.from_dict({"old": 5}, complete=True) == Saved(old=5, new=2)
    with pytest.raises(ValueError, match="Saved lacks old"):
        Saved.from_dict({"new": 3}, complete=True)


# The fields of the 0.2.0 release: files saved by it hold exactly these. Frozen here so that a
# field added later cannot be added without ``since=`` (which would make every model directory
# and checkpoint saved before it fail to load).
RELEASED_FIELDS = {
    "0.2.0": {
        "TaggerConfig": ("embedding_dim", "hidden_dim", "num_layers", "bidirectional", "dropout", "crf", "tag_scheme",
                         "constrain", "char_embedding_dim", "char_filters", "char_kernel_size", "max_word_length",
                         "lowercase", "case_embedding_dim", "rnn_mode"),
        "TrainConfig": ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "clip", "patience",
                        "select", "schedule", "warmup_steps", "lr_halving", "precision", "checkpoint_every", "keep",
                        "word_dropout", "min_freq", "vectors", "vectors_max_words", "freeze_vectors", "seed",
                        "device", "num_workers", "eval_batch_size"),
        "DataConfig": ("train_file", "validation_file", "format", "token_column", "tag_column", "hf_dataset",
                       "hf_config", "train_split", "dev_split", "label_names", "cache_dir", "num_proc"),
    },
}  # fmt: skip


def _release(version):
    return tuple(int(part) for part in version.split("."))


@pytest.mark.parametrize("cls", ["TaggerConfig", "TrainConfig", "DataConfig"])
def test_every_field_added_after_a_release_is_declared_since_a_later_one(cls):
    """A saved file holds the fields of the release that wrote it: every field that no release
    had is declared ``since=`` a release after the last one (the version the next release will
    carry), and no field of a release is dropped or declared ``since`` a later one."""
    import dataclasses

    from seqtag import __version__, config

    fields = {f.name: f.metadata.get("since") for f in dataclasses.fields(getattr(config, cls))}
    last = max(RELEASED_FIELDS, key=_release)
    for version, by_class in RELEASED_FIELDS.items():
        released = by_class[cls]
        assert set(released) <= set(fields), f"{cls} dropped fields of {version}: {set(released) - set(fields)}"
        late = [name for name in released if fields[name] and _release(fields[name]) > _release(version)]
        assert not late, f"{cls} fields of {version} declared since a later release: {late}"
    known = {name for released in RELEASED_FIELDS.values() for name in released[cls]}
    for name, since in fields.items():
        if name not in known:
            assert since, f"{cls}.{name} is new since {last}: declare it since= the next release"
            assert _release(since) > _release(last) and _release(since) > _release(__version__), (
                f"{cls}.{name}: since={since!r} is not after the last release ({last})"
            )


def test_a_saved_model_lacking_a_field_is_refused(tmp_path, crf_tagger):
    import json

    from seqtag import SeqtagError, Tagger

    crf_tagger.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    del config["model"]["hidden_dim"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(SeqtagError, match='bad "model": TaggerConfig lacks hidden_dim'):
        Tagger.load(tmp_path / "m")


def test_every_data_field_names_the_subcommands_that_offer_it():
    """A new DataConfig field must say where its flag appears (``commands``): a field offered
    everywhere by default would show up in ``seqtag evaluate`` or ``bench`` and do nothing."""
    import dataclasses

    from seqtag.cli.app import build_parser
    from seqtag.config import DataConfig, command_fields

    subcommands = build_parser()._subparsers._group_actions[0].choices
    for f in dataclasses.fields(DataConfig):
        assert f.metadata.get("commands"), f"DataConfig.{f.name} declares no commands="
        for command, parser in subcommands.items():
            dests = {a.dest for a in parser._actions}
            if command in f.metadata["commands"]:
                assert f.name in dests, f"{command} does not offer DataConfig.{f.name}"
            elif command in ("train", "evaluate", "bench", "predict"):
                # predict has a --format of its own (the input's format, with more choices)
                assert f.name not in dests or f.name == "format", f"{command} offers DataConfig.{f.name}"
    assert command_fields(DataConfig, "bench") == ("format", "token_column", "tag_column")
