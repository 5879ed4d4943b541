"""The study directory's driver lock: ``<study>/driver.lock``, flock-ed by the process that runs or resumes the
study (``study.runner``) for as long as it runs, with its pid written in it.

The kernel frees a flock when its holder dies, killed or not, so the lock says whether a driver is alive without
trusting a pid file: ``study status`` reads it (a trial between sessions while its driver is alive — a PBT member
waiting for its population, a trial Ray restarts — is the driver's to continue, not the user's to resume), and a
second ``run``/``resume`` of the same directory is refused while it is held. The file stays when its driver
ends (removing a lock file races with the next holder); only the flock counts.

The descriptor is opened close-on-exec (Python's default), so the Ray processes the driver starts do not inherit
the lock and outlive it holding it.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from diffctl.errors import InputError
from diffctl.files import lock_held

DRIVER_LOCK = "driver.lock"
# `study status` holds a shared lock for an instant while it looks; a driver starting in that instant tries again.
_TRIES, _PAUSE_S = 20, 0.05


@contextmanager
def driver_lock(study_dir: Path) -> Iterator[None]:
    """Hold the study's driver lock for the block; refuse (:class:`InputError`) while another process holds it."""
    path = study_dir / DRIVER_LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise InputError(f"{path}: cannot be opened ({exc.strerror})") from None
    try:
        for attempt in range(_TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == _TRIES - 1:
                    pid = _pid(path)
                    raise InputError(f"{study_dir}: a driver{f' (pid {pid})' if pid else ''} is running this study; "
                                     f"`diffctl study status {study_dir}` shows its progress") from None
                time.sleep(_PAUSE_S)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the flock


def driver_pid(study_dir: Path) -> int | None:
    """The pid of the driver running the study now (0 when its pid is unreadable), None when no process holds the
    driver lock (no driver, or it was interrupted or killed)."""
    path = study_dir / DRIVER_LOCK
    return (_pid(path) or 0) if lock_held(path) else None


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
