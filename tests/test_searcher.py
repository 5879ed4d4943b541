"""study/searcher.py's journal lock: it excludes a second writer while held, and a holder killed with SIGKILL
(a driver killed while appending to the Optuna journal) leaves it free at once."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time

import optuna

from study.searcher import JOURNAL_FILE, JournalFlock, journal_storage

HOLD = """
import sys, time
from pathlib import Path
from study.searcher import JournalFlock
JournalFlock(Path(sys.argv[1])).acquire()
print("held", flush=True)
time.sleep(60)
"""


def _locked(path) -> bool:
    """Whether another process holds the flock on ``path``."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def test_lock_of_a_killed_holder_is_free_at_once(tmp_path):
    path = tmp_path / "journal.flock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        assert _locked(path)
    finally:
        holder.kill()
        holder.wait()
    lock = JournalFlock(path)
    start = time.perf_counter()
    assert lock.acquire()
    assert time.perf_counter() - start < 1.0  # Optuna's own lock files wait 30 s for a dead holder
    lock.release()
    assert not _locked(path)


def test_journal_storage_writes_under_it(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="fixed", storage=journal_storage(tmp_path))
    study.optimize(lambda trial: trial.suggest_float("w", 0.0, 1.0), n_trials=3)
    assert len(optuna.load_study(study_name="fixed", storage=journal_storage(tmp_path)).trials) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [JOURNAL_FILE, f"{JOURNAL_FILE}.flock"]  # no .lock
