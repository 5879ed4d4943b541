"""The disk space a study still needs against the free space of its storage disk: the warning line of
``diffctl study status`` (read from the study directory, without Ray).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from diffctl.config import config_from_dict
from diffctl.model import DualVAE, param_count

from .protocol.configs import trial_config
from .phases.registry import PhasePlaces, phases
from .protocol.schema import StudySpec
from .trialdir import FINISHED, OK, TRAINER_FILE, TrialSummary, read_trials

# A Trainer state holds the model's float32 parameters and AdamW's two moments of each (the arm's few
# parameters, the records and the generator state are small beside them).
STATE_BYTES_PER_PARAM = 3 * 4


def directory_bytes(path: Path) -> int:
    """Total size of the files under ``path`` (files that vanish meanwhile count 0)."""
    total = 0
    for item in path.rglob("*"):
        try:
            if item.is_file():
                total += item.stat().st_size
        except FileNotFoundError:
            pass
    return total


def model_state_bytes(spec: StudySpec) -> int:
    """Estimated size of one trial's ``trainer.pt``: the largest of the arms' models, with AdamW's moments."""
    dims = {config_from_dict(trial_config(spec, arm, {})).model.latent_dim for arm in spec.arms}
    return max(param_count(DualVAE(dim)) for dim in dims) * STATE_BYTES_PER_PARAM


def format_bytes(size: float) -> str:
    """A size in decimal units: ``1.5 MB``."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


@dataclass
class DiskNeed:
    """The bytes a study is projected to write from now on (see :func:`projected_need`)."""

    trials_left: int
    trial_bytes: int  # one trial's directory once it ended
    shared_bytes: int  # one trial's share of the files outside trial directories (Ray's, Optuna's)
    state_bytes: int  # one running trial's trainer.pt
    concurrent: int  # trials running at once, each with a trainer.pt

    @property
    def total(self) -> int:
        return self.trials_left * (self.trial_bytes + self.shared_bytes) + self.concurrent * self.state_bytes


def projected_need(study_dir: Path, spec: StudySpec) -> DiskNeed:
    """What the rest of the study will write, estimated from what it wrote so far.

    - trials left = the spec's total (every arm's budget plus its top_k x seeds confirmation runs, an upper
      bound) minus the trials with a final status; running trials count as left;
    - per trial: the mean size of the trial directories that ended ``ok`` (full runs; else of every ended
      trial), plus the trial's share of everything else in the study directory (Ray's experiment files —
      per-trial results and the experiment snapshots, which grow with the trial count — and the Optuna
      journal): its bytes divided by the trials started so far. Before any trial ended, a trial directory is
      reckoned as large as a ``trainer.pt``, a generous stand-in;
    - plus ``trainer.pt`` once per trial that can run at once (``max_concurrent``, or fewer when fewer trials
      are left): each running trial keeps one, removed when it ends. Its size is the largest ``trainer.pt``
      seen in the study directory, else estimated from the model's parameter count.
    """
    places = PhasePlaces(phases(), spec)
    trials: list[TrialSummary] = [t for p in places.places() for t in read_trials(study_dir / p.phase / p.label)]
    sizes = {t.dir: directory_bytes(t.dir) for t in trials}
    ended = [t for t in trials if t.status in FINISHED]
    states = [(t.dir / TRAINER_FILE).stat().st_size for t in trials if (t.dir / TRAINER_FILE).is_file()]
    state_bytes = max(states, default=0) or model_state_bytes(spec)
    measured = [sizes[t.dir] for t in ended if t.status == OK] or [sizes[t.dir] for t in ended]
    trial_bytes = round(sum(measured) / len(measured)) if measured else state_bytes
    shared = directory_bytes(study_dir) - sum(sizes.values())
    trials_left = max(places.total() - len(ended), 0)
    return DiskNeed(
        trials_left=trials_left,
        trial_bytes=trial_bytes,
        shared_bytes=round(shared / len(trials)) if trials else 0,
        state_bytes=state_bytes,
        concurrent=min(spec.max_concurrent, trials_left),
    )


def disk_warning(study_dir: Path, spec: StudySpec) -> str | None:
    """One line starting with ``warning:`` when the disk holding ``study_dir`` has less free space than the
    study is projected to need (:func:`projected_need`); None when it has enough."""
    need = projected_need(study_dir, spec)
    free = shutil.disk_usage(study_dir).free
    if free >= need.total:
        return None
    per_trial = format_bytes(need.trial_bytes + need.shared_bytes)
    return (
        f"warning: {format_bytes(free)} free on the disk of {study_dir}, less than the {format_bytes(need.total)} "
        f"the study is projected to write ({need.trials_left} trials left x {per_trial} + {need.concurrent} "
        f"running x {format_bytes(need.state_bytes)} trainer.pt)"
    )
