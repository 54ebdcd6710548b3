"""Options shared by the subcommands: a dataset's options without --hf-dataset are refused, not ignored."""

import pytest

from seqtag import write_conll
from seqtag.cli.app import main

from ..helpers import random_sentences, small_tagger


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("options")
    sentences = random_sentences(6, seed=2)
    write_conll(sentences, root / "d.conll")
    (root / "in.txt").write_text("a b\n")
    small_tagger(sentences).save(root / "m")
    return root


@pytest.mark.parametrize("command", ["evaluate", "predict", "train"])
@pytest.mark.parametrize("option, flag", [(["--split", "test"], "--split"), (["--hf-config", "x"], "--hf-config"),
                                          (["--label-names", "A,B"], "--label-names"), (["--num-proc", "2"], "--num-proc"),
                                          (["--hf-cache-dir", "c"], "--hf-cache-dir")])  # fmt: skip
def test_a_dataset_option_without_a_dataset_is_one_line(files, capsys, tmp_path, command, option, flag):
    if (command, flag) == ("predict", "--num-proc"):
        pytest.skip("predict's --num-proc is the former spelling of --workers")
    argv = {
        "evaluate": ["evaluate", str(files / "m"), "--data", str(files / "d.conll")],
        "predict": ["predict", str(files / "m"), "--input", str(files / "in.txt")],
        "train": ["train", "--train", str(files / "d.conll"), "--output-dir", str(tmp_path / "run"), "--quiet"],
    }[command]
    try:
        code = main([*argv, *option])
    except SystemExit as e:  # an option this subcommand does not offer: argparse's usage error
        assert e.code == 2 and "unrecognized arguments" in capsys.readouterr().err
        return
    assert code == 1
    assert capsys.readouterr() == ("", f"seqtag: error: {flag} chooses within a Hugging Face dataset: it needs --hf-dataset\n")
    assert not (tmp_path / "run").exists()
