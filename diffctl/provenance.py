"""Which code produced a result: the git commit of the project's sources, whether the checkout had local changes
(a dirty tree: no commit holds the code that ran), and then a hash of those changes, so that two results from the
same dirty tree can be told apart from two from different ones.

Example::

    code_version()   # {"commit": "1e35b66...", "dirty": False, "diff_sha256": None}, or None outside git
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from pathlib import Path
from typing import Any

SOURCES = Path(__file__).resolve().parent.parent  # the project's root (diffctl/, study/, analysis/)
# What decides a result: the code and its pinned dependencies (a results/ directory the analysis rewrites is not).
CODE = ("diffctl", "study", "analysis", "configs", "pyproject.toml", "constraints.txt")


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(SOURCES), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, Any] | None:
    """The commit of the sources, whether the tracked files of :data:`CODE` differ from it (``dirty``) and the
    SHA-256 of that difference (``git diff HEAD -- CODE``; None when clean); None when the sources are not a git
    checkout. Read once per
    process: a study's driver records it for every trial it runs."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return None
    diff = _git("diff", "HEAD", "--no-ext-diff", "--binary", "--", *CODE) or ""
    return {"commit": commit.strip(), "dirty": bool(diff),
            "diff_sha256": hashlib.sha256(diff.encode("utf-8")).hexdigest() if diff else None}


def describe(code: dict[str, Any] | None) -> str:
    """A code version in words: ``commit 1e35b66`` or ``commit 1e35b66 with local changes (diff 3fa2c1…)``."""
    if not code:
        return "code version unknown (not a git checkout)"
    text = f"commit {code['commit'][:12]}"
    return text + (f" with local changes (diff {code['diff_sha256'][:12]})" if code.get("dirty") else "")
