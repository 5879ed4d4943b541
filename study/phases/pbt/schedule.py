"""After a population has trained: its best member, that member's schedule as a whole diffctl config, and the
removal of the population's checkpoints.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from diffctl.arms.piecewise import CONTROL_KEYS, schedule_from_records
from diffctl.config import config_from_dict, dump_config, load_config
from diffctl.files import atomic_write_text

from ...protocol.plan import replicate_of
from ...protocol.ranking import confirmation_sources
from ...protocol.schema import StudySpec
from ...trialdir import SEARCH, TrialSummary, read_metrics, read_trials, schedule_file
from .draws import CHECKPOINT_GLOB, STAGING_DIR


def remove_checkpoints(experiment_dir: Path) -> int:
    """Remove the Ray checkpoints of a finished PBT experiment (and a member's staging directory, see
    ``study.phases.pbt.members``); returns how many were removed."""
    found = [*experiment_dir.glob(f"*/{CHECKPOINT_GLOB}")]
    found += [p for p in experiment_dir.parent.parent.glob(f"{SEARCH}/*/*/{STAGING_DIR}")]
    for path in found:
        shutil.rmtree(path, ignore_errors=True)
    return len(found)


def best_member(spec: StudySpec, study_dir: Path, arm: str, replicate: int) -> tuple[TrialSummary, bool] | None:
    """The best member of one replicate of the arm by the selection rule on its final record (feasible first) and
    whether it is feasible; None when no member ran every epoch."""
    members = [t for t in read_trials(study_dir / SEARCH / arm) if replicate_of(t.trial_id) == replicate]
    ranked = confirmation_sources(spec, members, top_k=1)
    return ranked[0] if ranked else None


def schedule_arm(spec: StudySpec, arm: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``arm`` section replaying a member's records: rho and the weights per epoch, and the learning rate
    where PBT mutated it."""
    lr = ("lr",) if "optim.lr" in spec.arms[arm].pbt.mutations else ()
    return {"kind": "piecewise", "segments": schedule_from_records(records, (*CONTROL_KEYS, *lr))}


def write_schedule(spec: StudySpec, study_dir: Path, arm: str, replicate: int) -> Path | None:
    """Write ``search/<arm>/schedule-r<k>.yaml``: the best member's config with its schedule as a piecewise arm
    (the member's seed: ``diffctl train --config`` retrains the member). None when no member ran every epoch."""
    found = best_member(spec, study_dir, arm, replicate)
    if found is None:
        return None
    member = found[0]
    data = load_config(member.dir / "config.yaml").to_dict()
    data["arm"] = schedule_arm(spec, arm, read_metrics(member.dir))
    path = study_dir / SEARCH / arm / schedule_file(replicate)
    atomic_write_text(path, dump_config(config_from_dict(data)))
    return path
