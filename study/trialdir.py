"""The files of one trial directory — ``config.yaml``, ``metrics.jsonl``, ``trial.json`` (see ``LAYOUT.md``) —
written atomically by the trainable every epoch and read back by the phases, progress, ``study status`` and the
analysis. :class:`TrialInfo` is the one model of ``trial.json``: what the trainable writes, what every reader
validates.

A trial's directory is ``<study>/<phase>/<arm>/<name>/``, its name given by the searcher in its Ray config
(``study.protocol.plan``: the same in every run of the spec; ``trial_id`` in ``trial.json`` and the tables). Ray's
own trial directory (``ray/``, ``ray_pbt/``; its TensorBoard files) is named ``<phase>-<arm>-<name>-<Ray id>``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from diffctl.config import Config, dump_config
from diffctl.errors import InputError
from diffctl.files import NO_FILE, atomic_write_jsonl, atomic_write_text, lock_held, read_json, read_jsonl

from .protocol.errors import shown, validation_line
from .protocol.plan import ABLATE, AUDIT, CONFIRM, DISTILL, FRONT, PHASES, RETUNE, SEARCH, member_name

CONFIG_FILE, METRICS_FILE, TRIAL_FILE = "config.yaml", "metrics.jsonl", "trial.json"
TRAINER_FILE = "trainer.pt"  # Trainer.state_dict() after the last epoch, while the trial runs
LOCK_FILE = ".lock"  # held (flock) by the process training the trial
RUNNING, OK, DIVERGED, ERROR, STOPPED = "running", "ok", "diverged", "error", "stopped"
FINISHED = (OK, DIVERGED, ERROR, STOPPED)
# The reason given to a trial that a killed driver started after its last experiment snapshot: the resumed
# experiment does not know it and runs a new trial in its place.
ABANDONED = "abandoned: started after the last experiment snapshot of a killed driver, replaced by a new trial"

Int64 = Annotated[int, Field(ge=-(2**63), lt=2**63)]  # what Parquet stores
__all__ = ["ABLATE", "AUDIT", "CONFIRM", "DISTILL", "FRONT", "PHASES", "RETUNE", "SEARCH"]  # re-exported for the readers


def schedule_file(replicate: int) -> str:
    """``search/<arm>/schedule-r<k>.yaml``: the best member's schedule of a PBT arm's replicate (phases.pbt)."""
    return f"schedule-r{replicate}.yaml"


def trial_name(config: dict[str, Any]) -> str:
    """A trial's name, from its Ray config (a PBT member's from its replicate and index)."""
    return config["name"] if "name" in config else member_name(config.get("replicate", 0), config["member"])


def trial_dirname(trial: Any) -> str:
    """Ray's ``trial_dirname_creator``: its trial directory says the trial's phase, arm and name (and Ray's id)."""
    return f"{trial.config['phase']}-{trial.config['arm']}-{trial_name(trial.config)}-{trial.trial_id}"


def trial_place(config: dict[str, Any]) -> tuple[str, str]:
    """(phase, arm) of a trial, from its Ray config (see ``study.searcher``)."""
    return config["phase"], config["arm"]


# The keys of trial.json that only some phases record (the rest every trial has).
PHASE_KEYS = frozenset({"source_trial", "source_feasible", "sampling", "source_arm", "distill", "distilled",
                        "ablate_axis", "ablate_option", "overrides", "batch", "slot"})


class Session(BaseModel):
    """The Ray node one session of a trial trained on, and when the session started (Unix time; None in the
    files of a diffctl that did not record it)."""

    model_config = ConfigDict(strict=True, extra="forbid")
    node_id: str
    hostname: str
    started_at: float | None = None


class TrialInfo(BaseModel):
    """The content of ``trial.json`` (its keys and their meaning: ``LAYOUT.md``). Keys a later version adds are
    kept as they are (``extra``); a key of the wrong type is refused when read."""

    model_config = ConfigDict(strict=True, extra="allow")

    arm: str
    phase: str = Field(pattern=r"^[a-z][a-z_]*$")  # a phase of study.phases.registry
    trial_id: str  # its name (study.protocol.plan)
    params: dict[str, Any]
    seed: Int64
    status: str  # running, then ok, diverged, error or stopped
    reason: str | None = None
    epochs_done: Int64 = 0
    wall_time_s: float = 0.0
    restarts: Int64 = 0  # sessions this trial continued from its trainer.pt (a worker died, a driver was killed)
    nodes: list[Session] = []  # one per session, in order
    source_trial: str | None = None
    source_feasible: bool | None = None
    sampling: str | None = None  # search only: "random" (TPE start-up) or "model" (TPE's model)
    # distill only (phases.distill): the arm it distils, the variant, and the arm section it trains with
    source_arm: str | None = None
    distill: str | None = None
    distilled: dict[str, Any] | None = None
    # ablate only (phases.ablate): the question, the option, and the flat overrides applied to the centre's config
    ablate_axis: str | None = None
    ablate_option: str | None = None
    overrides: dict[str, Any] | None = None
    # PBT members only (phases.pbt): each time the member continued from another member's state
    exploits: list[dict[str, Any]] | None = None
    ray_trial_id: str | None = None  # the Ray trial of its last session
    # the code that ran it (diffctl.provenance: commit, dirty, diff_sha256) in its last session; mixed_code: an
    # earlier session ran other code
    code: dict[str, Any] | None = None
    mixed_code: bool = False
    replicate: Int64 | None = None  # search, confirm, audit and distill: the search replicate it belongs to
    batch: Int64 | None = None  # search only: its batch and slot in its replicate's search
    slot: Int64 | None = None

    def to_dict(self) -> dict[str, Any]:
        """What ``trial.json`` holds: every key but the phase-specific ones its phase did not record (set; a
        phase records its ``record_keys``, ``study.phases.base``), and no replicate or exploits when there are none."""
        drop = set(PHASE_KEYS - self.model_fields_set)
        if self.replicate is None:
            drop.add("replicate")
        if self.exploits is None:
            drop.add("exploits")
        return self.model_dump(mode="json", exclude=drop)


def write_config(trial_dir: Path, config: Config) -> None:
    atomic_write_text(trial_dir / CONFIG_FILE, dump_config(config))


def write_metrics(trial_dir: Path, records: list[dict[str, Any]]) -> None:
    atomic_write_jsonl(trial_dir / METRICS_FILE, records)


def write_info(trial_dir: Path, info: TrialInfo) -> None:
    atomic_write_text(trial_dir / TRIAL_FILE, json.dumps(info.to_dict(), indent=1, allow_nan=False) + "\n")


def parse_info(data: Any, path: Path) -> TrialInfo:
    """``trial.json``'s content as a :class:`TrialInfo`; a wrong one raises :class:`InputError` naming the file
    and the key."""
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object (got {shown(data)})")
    try:
        return TrialInfo.model_validate(data)
    except pydantic.ValidationError as exc:
        raise InputError(validation_line(exc, str(path))) from None


def read_info(trial_dir: Path) -> TrialInfo | None:
    """trial.json, or None when there is none yet; a damaged one raises :class:`InputError` naming it."""
    path = trial_dir / TRIAL_FILE
    data = read_json(path)
    return None if data is NO_FILE else parse_info(data, path)


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
    info: TrialInfo
    last: dict[str, Any]

    @property
    def trial_id(self) -> str:
        return self.info.trial_id

    @property
    def status(self) -> str:
        return self.info.status

    @property
    def abandoned(self) -> bool:
        """Started by a killed driver after its last snapshot, and replaced by a new trial on resume."""
        return self.info.reason == ABANDONED


def read_trials(experiment_dir: Path) -> list[TrialSummary]:
    """Every trial directory (with a ``trial.json``) of one phase and arm, in trial-id order."""
    out = []
    if experiment_dir.is_dir():
        for trial_dir in sorted(p for p in experiment_dir.iterdir() if p.is_dir()):
            info = read_info(trial_dir)
            if info is not None:
                records = read_metrics(trial_dir)
                out.append(TrialSummary(trial_dir, info, records[-1] if records else {}))
    return out


def in_training(trial_dir: Path) -> bool:
    """Whether a process trains the trial now: it holds the flock of the trial's ``.lock`` (a trial whose
    ``trial.json`` says running after an interrupt or a killed driver does not)."""
    return lock_held(trial_dir / LOCK_FILE)


def mark_finished(trial_dir: Path, status: str, reason: str | None) -> None:
    """Set the final status of a trial that Ray ended without its trainable saying so (ASHA stop, a crash, a
    trial abandoned by a killed driver). Such a trial will not continue: its saved state goes."""
    info = read_info(trial_dir)
    if info is not None and info.status == RUNNING:
        info.status, info.reason = status, reason
        write_info(trial_dir, info)
    if info is not None and info.status != RUNNING:
        (trial_dir / TRAINER_FILE).unlink(missing_ok=True)
