"""Every file seqtag writes goes through here: a temporary file in the same directory, fsync,
rename (so a crash or a full disk leaves the old file or the new one, never a torn one), and
every ``OSError`` becomes one line, ``cannot write PATH: REASON`` (:class:`WriteError`).

A run's output directory is held by one process at a time (:func:`hold_directory`: an OS lock,
released by the kernel when the holder dies).

>>> import tempfile, os
>>> d = tempfile.mkdtemp()
>>> atomic_write_text(os.path.join(d, "a.txt"), "hello\\n")
>>> from pathlib import Path
>>> Path(d, "a.txt").read_text()
'hello\\n'
"""

from __future__ import annotations

import contextlib
import inspect
import os
import re
from collections.abc import Iterator
from pathlib import Path

from seqtag.errors import SeqtagError

LOCK_FILE = ".seqtag.lock"
# Temporary files of atomic writes: ".NAME.tmpPID" beside NAME.
_TEMP = re.compile(r"^\..+\.tmp\d+$")


class WriteError(SeqtagError, OSError):
    """A write failed: ``cannot write PATH: REASON``. Also an ``OSError``, so that code which
    catches those keeps working."""

    def __init__(self, path: str | os.PathLike, error: OSError | str) -> None:
        reason = error if isinstance(error, str) else (error.strerror or str(error))
        self.path, self.reason = Path(path), reason
        super().__init__(f"cannot write {path}: {reason}")

    def __str__(self) -> str:
        return str(self.args[0])


def make_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and its parents) if needed; :class:`WriteError` if it cannot be."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise WriteError(path, "it exists and is not a directory") from None
    except OSError as e:
        raise WriteError(path, e) from None
    if not path.is_dir():
        raise WriteError(path, "it exists and is not a directory")
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old file or the new one, never a mix.

    Raises:
        WriteError: if the directory is missing or read-only, the disk is full, ...; the old
            file (if any) is then unchanged and no temporary file is left.
    """
    path = Path(path)
    if not path.name or path.is_dir():  # ".", "/": no name to put a temporary file beside
        raise WriteError(path, "Is a directory")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise WriteError(path, e) from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that writes killed before their rename left in ``directory``
    (not below it). Call it only while holding the directory (:func:`hold_directory`).
    Returns what was removed."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for p in directory.iterdir():
        if _TEMP.match(p.name) and p.is_file():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
            removed.append(p)
    return removed


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- holding a directory ----------------------------------------------------------------------

_held: dict[Path, int] = {}  # directories this process holds, and how many nested holds


@contextlib.contextmanager
def hold_directory(directory: str | os.PathLike, what: str = "a run") -> Iterator[Path]:
    """Hold ``directory`` exclusively for the ``with`` block: an OS lock (``flock``, through
    ``filelock``) on ``DIRECTORY/.seqtag.lock``, which also records the holder's pid. The kernel
    releases it when the holder exits or dies, so a killed run never leaves a stale lock.
    Nested holds of one directory in one process are one hold. The directory is created if
    needed (and removed again if it was created here and is left empty but for the lock).

    Raises:
        SeqtagError: at once, if another process holds the directory (naming it and its pid).
        WriteError: if the directory or its lock file cannot be created.
    """
    from filelock import FileLock, Timeout  # imported here: only training needs it

    directory = Path(directory)
    key = directory.resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield directory
        finally:
            _held[key] -= 1
        return
    created = not directory.exists()
    make_dir(directory)
    path = directory / LOCK_FILE
    # filelock >= 4 removes the lock file on release unless asked to keep it; older ones keep it.
    keep = {"preserve_lock_file": True} if "preserve_lock_file" in inspect.signature(FileLock).parameters else {}
    lock = FileLock(path, **keep)
    try:
        lock.acquire(timeout=0)  # at once: never wait for another run
        _record_pid(path)
    except Timeout:
        holder = _holder(path)
        raise SeqtagError(
            f"{directory} is in use by another seqtag run ({holder}, lock {path}): wait for it to finish, "
            f"stop it, or choose another output directory"
        ) from None
    except OSError as e:
        raise WriteError(path, e) from None
    _held[key] = 1
    try:
        yield directory
    finally:
        del _held[key]
        if created and [p.name for p in directory.iterdir()] == [LOCK_FILE]:
            with contextlib.suppress(OSError):  # nothing was written: leave no trace
                path.unlink()
                directory.rmdir()
        lock.release()


def holds_directory(directory: str | os.PathLike) -> bool:
    """Whether this process holds ``directory`` (:func:`hold_directory`)."""
    return Path(directory).resolve() in _held


def _record_pid(path: Path) -> None:
    """Write this process's pid into the lock file it holds (the OS lock is on the open file,
    not on its content), for the message a second run gives."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)


def _holder(path: Path) -> str:
    try:
        pid = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        pid = ""
    return f"pid {pid}" if pid.isdigit() else "pid unknown"
