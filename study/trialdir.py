"""The files of one trial directory — ``config.yaml``, ``metrics.jsonl``, ``trial.json`` (see ``LAYOUT.md``) —
written atomically by the trainable every epoch and read back by selection, progress and ``study status``.

Trial directories are named by the Ray trial id (``trial_dirname``), so that the trainable, the driver and
``analysis`` find a trial's files from its id alone: ``<study>/<phase>/<arm>/<trial_id>/``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from diffctl.config import Config, dump_config
from diffctl.errors import InputError
from diffctl.files import atomic_write_jsonl, atomic_write_text, read_jsonl

CONFIG_FILE, METRICS_FILE, TRIAL_FILE = "config.yaml", "metrics.jsonl", "trial.json"
STATE_FILE = "trainer.pt"  # Trainer.state_dict() after the last epoch, while the trial runs
LOCK_FILE = ".lock"  # held (flock) by the process training the trial
SCHEDULE_FILE = "schedule.yaml"  # search/<arm>/schedule.yaml: a PBT arm's best member's schedule (study.pbt)
RUNNING, OK, DIVERGED, ERROR, STOPPED = "running", "ok", "diverged", "error", "stopped"
FINISHED = (OK, DIVERGED, ERROR, STOPPED)
# The reason given to a trial that a killed driver started after its last experiment snapshot: the resumed
# experiment does not know it and runs a new trial in its place.
ABANDONED = "abandoned: started after the last experiment snapshot of a killed driver, replaced by a new trial"
SEARCH, CONFIRM = "search", "confirm"
DISTILL, ABLATE = "distill", "ablate"  # the phases made from an arm's confirmation runs (study.distill, study.ablate)


def trial_dirname(trial: Any) -> str:
    """Ray's ``trial_dirname_creator``: a trial's directory is its id."""
    return trial.trial_id


def one_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@dataclass
class TrialInfo:
    """The content of ``trial.json``."""

    arm: str
    phase: str
    trial_id: str
    params: dict[str, Any]
    seed: int
    status: str = RUNNING
    reason: str | None = None
    epochs_done: int = 0
    wall_time_s: float = 0.0
    restarts: int = 0  # sessions this trial continued from its trainer.pt (a worker died, a driver was killed)
    # One {"node_id", "hostname"} per session, in order: the Ray node each session of the trial trained on.
    nodes: list[dict[str, str]] = field(default_factory=list)
    source_trial: str | None = None
    source_feasible: bool | None = None
    sampling: str | None = None  # search only: "random" (TPE start-up) or "model" (TPE's model)
    # distill only (study.distill): the arm it distils, the variant, and the arm section it trains with
    source_arm: str | None = None
    distill: str | None = None
    distilled: dict[str, Any] | None = None
    # ablate only (study.ablate): the question, the option, and the flat overrides applied to the centre's config
    ablate_axis: str | None = None
    ablate_option: str | None = None
    overrides: dict[str, Any] | None = None
    # PBT members only (study.members): each time the member continued from another member's state
    exploits: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        drop = {"source_trial", "source_feasible"} if self.phase == SEARCH else {"sampling"}
        if self.phase != DISTILL:
            drop |= {"distill", "distilled"}
        if self.phase != ABLATE:
            drop |= {"ablate_axis", "ablate_option", "overrides"}
        if self.phase not in (DISTILL, ABLATE):
            drop.add("source_arm")
        if self.exploits is None:
            drop.add("exploits")
        return {k: v for k, v in data.items() if k not in drop}


def write_config(trial_dir: Path, config: Config) -> None:
    atomic_write_text(trial_dir / CONFIG_FILE, dump_config(config))


def write_metrics(trial_dir: Path, records: list[dict[str, Any]]) -> None:
    atomic_write_jsonl(trial_dir / METRICS_FILE, records)


def write_info(trial_dir: Path, info: TrialInfo) -> None:
    atomic_write_text(trial_dir / TRIAL_FILE, json.dumps(info.to_dict(), indent=1, allow_nan=False) + "\n")


def read_json(path: Path) -> Any:
    """A JSON file's content, or None when there is no such file; an unreadable one raises :class:`InputError`
    naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable ({type(exc).__name__})") from None


def read_info(trial_dir: Path) -> dict[str, Any] | None:
    """trial.json, or None when there is none yet; a damaged one raises :class:`InputError` naming it."""
    path = trial_dir / TRIAL_FILE
    info = read_json(path)
    if info is None:
        return None
    if not (isinstance(info, dict) and isinstance(info.get("trial_id"), str) and isinstance(info.get("status"), str)):
        raise InputError(f"{path}: not a trial record (an object with trial_id and status)")
    return info


def read_metrics(trial_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl ([] when there is none yet); a damaged one raises :class:`InputError` naming it."""
    path = trial_dir / METRICS_FILE
    try:
        records = read_jsonl(path)
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable ({type(exc).__name__})") from None
    if not all(isinstance(record, dict) for record in records):
        raise InputError(f"{path}: a record is not a JSON object")
    return records


@dataclass
class TrialSummary:
    """A trial as read back from its directory: ``trial.json`` and the last record of ``metrics.jsonl``."""

    dir: Path
    info: dict[str, Any]
    last: dict[str, Any]

    @property
    def trial_id(self) -> str:
        return self.info["trial_id"]

    @property
    def status(self) -> str:
        return self.info["status"]

    @property
    def abandoned(self) -> bool:
        """Started by a killed driver after its last snapshot, and replaced by a new trial on resume."""
        return self.info.get("reason") == ABANDONED


def read_trials(experiment_dir: Path) -> list[TrialSummary]:
    """Every trial directory (with a ``trial.json``) of one Ray experiment, in trial-id order."""
    out = []
    if experiment_dir.is_dir():
        for trial_dir in sorted(p for p in experiment_dir.iterdir() if p.is_dir()):
            info = read_info(trial_dir)
            if info is not None:
                records = read_metrics(trial_dir)
                out.append(TrialSummary(trial_dir, info, records[-1] if records else {}))
    return out


def mark_finished(trial_dir: Path, status: str, reason: str | None) -> None:
    """Set the final status of a trial that Ray ended without its trainable saying so (ASHA stop, a crash, a
    trial abandoned by a killed driver). Such a trial will not continue: its saved state goes."""
    info = read_info(trial_dir)
    if info is not None and info["status"] == RUNNING:
        info.update(status=status, reason=reason)
        atomic_write_text(trial_dir / TRIAL_FILE, json.dumps(info, indent=1, allow_nan=False) + "\n")
    if info is not None and info["status"] != RUNNING:
        (trial_dir / STATE_FILE).unlink(missing_ok=True)
