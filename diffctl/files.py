"""Atomic file writes (a reader sees either the previous version of a file or the new one, never a torn one), and
the reads that go with them: a JSON file that may not exist yet, a lock another process may hold."""

from __future__ import annotations

import fcntl
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

import torch

from .errors import InputError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_line(record: dict[str, Any]) -> str:
    """One JSON line; non-finite floats become null so that every reader can parse it."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
    return json.dumps(clean, allow_nan=False) + "\n"


def atomic_write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json_line(r) for r in records))


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


NO_FILE = object()  # what read_json returns for a file that does not exist (a file may hold JSON's null)


def read_json(path: Path) -> Any:
    """A JSON file's content, or :data:`NO_FILE` when there is no such file; an unreadable one raises
    :class:`InputError` naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return NO_FILE
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable ({type(exc).__name__})") from None


def lock_held(path: Path) -> bool:
    """Whether some process holds an exclusive flock on ``path`` (the kernel frees it when that process dies)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
