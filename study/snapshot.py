"""Tune's experiment snapshot, made safe against a driver killed while writing it.

Tune (2.60) writes the snapshot (``experiment_state-<session>.json``, the searcher state and the callbacks' state)
to a staging directory and then copies it into the experiment directory with ``pyarrow.fs.copy_files``, which
truncates each file and writes it in place. With a snapshot every 2 s (see ``study.runner``), a SIGKILL during
that copy is a matter of time: it left an empty ``experiment_state-*.json``, and ``Tuner.restore`` then logged
"Failed to restore the run state", started the experiment afresh and ended at once with the study
half-done and exit status 0 (seen in CI: an ablation phase resumed without its runs).

:func:`atomic_snapshots` makes each copied file appear whole or not at all (written beside it, then renamed) on
a local or shared POSIX filesystem — the storage this project supports; other filesystems keep Tune's copy.
:func:`check_snapshot` refuses, with one line naming the file, to resume from a snapshot that is damaged anyway
(one written by an earlier version, or by hand), instead of letting Tune start over.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pyarrow.fs
from ray.train._internal import storage as ray_storage

from diffctl.errors import InputError
from diffctl.files import atomic_write_bytes

STATE_GLOB = "experiment_state-*.json"


def upload_atomically(local_path: str, fs: pyarrow.fs.FileSystem, fs_path: str, exclude: list[str] | None = None) -> None:
    """Copy a file, or every file under a directory, from ``local_path`` to ``fs_path`` on a local filesystem,
    each through a temporary file renamed over its destination."""
    source = Path(local_path)
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    for path in files:
        target = Path(fs_path) if source.is_file() else Path(fs_path) / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, path.read_bytes())


def _sync_up_command(original: Callable) -> Callable:
    def command(self, local_path: str, uri: str, exclude: list | None = None) -> tuple[Callable, dict[str, Any]]:
        fn, kwargs = original(self, local_path, uri, exclude=exclude)
        if fn is ray_storage._upload_to_fs_path and not exclude and isinstance(kwargs["fs"], pyarrow.fs.LocalFileSystem):
            return upload_atomically, kwargs
        return fn, kwargs

    command.atomic = True
    return command


def atomic_snapshots() -> None:
    """Have Tune's syncer copy the experiment snapshot with :func:`upload_atomically` (idempotent)."""
    syncer = ray_storage._FilesystemSyncer
    if not getattr(syncer._sync_up_command, "atomic", False):
        syncer._sync_up_command = _sync_up_command(syncer._sync_up_command)


def check_snapshot(experiment_dir: Path) -> None:
    """The newest experiment snapshot must be whole JSON (what ``Tuner.restore`` reads first); else
    :class:`InputError` naming it."""
    snapshots = sorted(experiment_dir.glob(STATE_GLOB))
    if not snapshots:
        return
    newest = snapshots[-1]
    try:
        json.loads(newest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(
            f"{newest}: damaged experiment snapshot ({type(exc).__name__}); the study cannot resume from it"
        ) from None
