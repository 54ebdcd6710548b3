"""Stopping a run cleanly: SIGINT and SIGTERM become a checkpoint at the next step boundary
and :class:`TrainingInterrupted`; under DDP every rank stops at the same step."""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from pathlib import Path

from seqtag.training.distributed import Distributed


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on SIGINT or SIGTERM after saving a checkpoint to resume from.

    Attributes:
        signal_number: the signal (``signal.SIGINT`` or ``signal.SIGTERM``).
        output_dir: the run directory; continue with ``train(..., output_dir=output_dir, resume=True)``
            or ``seqtag train --resume output_dir``.
        checkpoint: the checkpoint written.
        where: when, e.g. ``"at step 57 (epoch 3, batch 12 of 40)"``.
    """

    def __init__(self, signal_number: int, output_dir: Path, checkpoint: Path, where: str) -> None:
        self.signal_number, self.output_dir, self.checkpoint, self.where = signal_number, output_dir, checkpoint, where
        super().__init__(
            f"training interrupted by {signal.Signals(signal_number).name} {where}; checkpoint saved in "
            f"{checkpoint}; continue with seqtag.train(..., output_dir={str(output_dir)!r}, resume=True)"
        )


class StopSignals:
    """While active, SIGINT and SIGTERM only set :attr:`signal_number`, so that the loop can stop
    at the next step boundary with a checkpoint; a second signal interrupts at once. Inactive
    outside the main thread (Python delivers signals there only)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signal_number: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signal_number: int, frame: object) -> None:
        if self.signal_number is not None:
            raise KeyboardInterrupt
        self.signal_number = signal_number

    def __enter__(self) -> StopSignals:
        if self.enabled:
            for s in (signal.SIGINT, signal.SIGTERM):
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def agreed_signal(world: Distributed, stop: StopSignals) -> int | None:
    """The signal that stops every rank (SIGINT before SIGTERM), if any rank has had one."""
    sigint, sigterm = world.sum([stop.signal_number == signal.SIGINT, stop.signal_number == signal.SIGTERM])
    return signal.SIGINT if sigint else signal.SIGTERM if sigterm else None


def first_signal(agreed: Sequence[float]) -> int | None:
    """The signal that stops every rank (SIGINT before SIGTERM), from the summed signal flags."""
    if agreed and agreed[0]:
        return signal.SIGINT
    if agreed and agreed[1]:
        return signal.SIGTERM
    return None
