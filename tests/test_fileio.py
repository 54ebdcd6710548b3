"""The write layer: atomic writes, one-line errors, leftovers of killed writes, the directory lock."""

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seqtag import SeqtagError
from seqtag.fileio import (
    LOCK_FILE,
    WriteError,
    atomic_write_bytes,
    hold_directory,
    make_dir,
    remove_temp_files,
)

REPO = Path(__file__).resolve().parents[1]


def test_a_failed_write_keeps_the_old_file_leaves_no_temp_and_is_one_line(tmp_path, monkeypatch):
    path = tmp_path / "f.json"
    atomic_write_bytes(path, b"old")

    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(WriteError) as info:
        atomic_write_bytes(path, b"new")
    assert str(info.value) == f"cannot write {path}: No space left on device"
    assert isinstance(info.value, SeqtagError) and isinstance(info.value, OSError)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.json"]


def test_unwritable_places_are_one_line(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(WriteError, match=f"cannot write {a_file}: it exists and is not a directory"):
        make_dir(a_file)
    with pytest.raises(WriteError, match=f"cannot write {a_file / 'run'}: Not a directory"):
        make_dir(a_file / "run")
    with pytest.raises(WriteError, match=f"cannot write {tmp_path / 'no' / 'x'}: No such file or directory"):
        atomic_write_bytes(tmp_path / "no" / "x", b"")
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(WriteError, match=f"cannot write {ro / 'x'}: Permission denied"):
            atomic_write_bytes(ro / "x", b"")


def test_temp_files_of_killed_writes_are_removed(tmp_path):
    for name in (".weights.pt.tmp123", ".config.json.tmp9", "keep.tmp1", ".hidden", "weights.pt"):
        (tmp_path / name).write_text("x")
    removed = remove_temp_files(tmp_path)
    assert sorted(p.name for p in removed) == [".config.json.tmp9", ".weights.pt.tmp123"]
    assert sorted(os.listdir(tmp_path)) == [".hidden", "keep.tmp1", "weights.pt"]


def _hold_in_a_child(directory: Path, seconds: float) -> subprocess.Popen:
    code = (
        "import sys, time\n"
        "from seqtag.fileio import hold_directory\n"
        f"with hold_directory({str(directory)!r}):\n"
        "    print('held', flush=True)\n"
        f"    time.sleep({seconds})\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_held_directory_is_refused_at_once_naming_the_holder_and_freed_when_it_dies(tmp_path):
    run = tmp_path / "run"
    child = _hold_in_a_child(run, 60)
    try:
        start = time.perf_counter()
        with pytest.raises(SeqtagError) as info, hold_directory(run):
            pass
        assert time.perf_counter() - start < 1
        assert str(info.value).startswith(f"{run} is in use by another seqtag run (pid {child.pid}, lock {run / LOCK_FILE})")
    finally:
        child.kill()  # SIGKILL: no clean-up runs, the kernel drops the lock
        child.communicate()
    with hold_directory(run):
        with hold_directory(run):  # nested in one process: the same hold
            assert (run / LOCK_FILE).read_text().strip() == str(os.getpid())


def test_holding_a_new_directory_that_stays_empty_leaves_nothing(tmp_path):
    with hold_directory(tmp_path / "new"):
        assert (tmp_path / "new").is_dir()
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("where", [".", "dir", "/"])
def test_an_atomic_write_to_a_directory_is_one_line(tmp_path, monkeypatch, where):
    """"." has no name to put a temporary file beside: Path.with_name raised a ValueError."""
    from seqtag.fileio import atomic_write_bytes

    monkeypatch.chdir(tmp_path)
    (tmp_path / "dir").mkdir()
    with pytest.raises(SeqtagError, match=rf"^cannot write {where}: Is a directory$"):
        atomic_write_bytes(where, b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir"]
