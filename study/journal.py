"""The study's Optuna storage: one journal file, ``<study>/optuna.journal``, with one Optuna study per arm
(``study_name`` = the arm label), written by the driver's searcher and read by ``optuna.load_study``, the
analysis and optuna-dashboard (``study.dashboard``).

Example::

    study = optuna.load_study(study_name="fixed", storage=journal_storage(Path("results/quick")))
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

JOURNAL_FILE = "optuna.journal"


class JournalFlock:
    """The journal's write lock, held with flock(2) on ``optuna.journal.flock``: the kernel releases it when
    its holder dies. Optuna's own lock files outlive a driver killed while appending, and make the resumed
    driver wait out a 30 s grace period before taking them over (seen by tests/test_kill_anywhere.py)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the lock


def journal_storage(study_dir: Path) -> JournalStorage:
    """The study's Optuna storage (a journal file beside the Ray experiments)."""
    lock = JournalFlock(study_dir / f"{JOURNAL_FILE}.flock")
    return JournalStorage(JournalFileBackend(str(study_dir / JOURNAL_FILE), lock_obj=lock))
