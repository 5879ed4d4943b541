"""The study directory's ``state.json``: which phase of which arm is running or done (``study resume`` and
``study status`` read it), the study's name and creation time, and whether every trial has its final status.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from diffctl.errors import InputError
from diffctl.files import atomic_write_text

from .protocol import SPEC_FILE
from .protocol.plan import CONFIRM, SEARCH
from .trialdir import TRIAL_FILE

STATE_FILE = "state.json"
PHASE_RUNNING, PHASE_DONE = "running", "done"
# The layout of the study directory this version writes (study/LAYOUT.md): trials named by the spec (2). A study of
# another layout is resumed by the version that started it; this one only redoes its analysis once it is done.
LAYOUT_VERSION = 2


def new_state(name: str, address: str | None) -> dict[str, Any]:
    return {
        "name": name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "phases": {SEARCH: {}, CONFIRM: {}},
        "ray_address": address,
        "layout": LAYOUT_VERSION,
    }


def read_state(study_dir: Path) -> dict[str, Any]:
    path = study_dir / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{study_dir}: not a study directory (no {STATE_FILE})") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable ({exc})") from None
    phases = state.get("phases") if isinstance(state, dict) else None
    if not (isinstance(phases, dict) and all(isinstance(phases.get(p), dict) for p in (SEARCH, CONFIRM))
            and isinstance(state.get("name"), str) and isinstance(state.get("created"), str)):
        raise InputError(f"{path}: not a study state (an object with name, created, phases.search, phases.confirm)")
    return state


def write_state(study_dir: Path, state: dict[str, Any]) -> None:
    atomic_write_text(study_dir / STATE_FILE, json.dumps(state, indent=1) + "\n")


def set_phase(study_dir: Path, phase: str, arm: str, value: str) -> None:
    state = read_state(study_dir)
    state["phases"].setdefault(phase, {})[arm] = value
    write_state(study_dir, state)


def is_published(path: Path) -> bool:
    """A published study (what ``results/<name>/`` commits): its spec and ``trials.parquet`` (``analysis.load``
    writes it), without a state.json or any trial directory (``<phase>/<arm>/<name>/trial.json``). ``analysis``
    reads it from its tables."""
    return (not (path / STATE_FILE).exists() and (path / "trials.parquet").is_file() and (path / SPEC_FILE).is_file()
            and next(path.glob(f"*/*/*/{TRIAL_FILE}"), None) is None)
