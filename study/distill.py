"""The distilled baselines of an adaptive arm: trajectory or destination?

After an arm's confirmation runs, each finished run is re-trained on its own seed with its weights and rho taken
from its records instead of from the arm: held constant from step 0 at the last epoch's means (``final``) or the
whole run's means (``mean``) with the fixed arm, or replayed open loop, epoch by epoch, with the piecewise arm
(``replay``: the same schedule, no feedback; it replays the learning rate too where the source's moved).
Everything else — model, data, optimiser, evaluation, the source's other sampled keys, the seed — is the
source run's. If a constant baseline matches the arm, the arm only found a destination; if the replay matches
it but the constants do not, its schedule did the work; if it beats its own replay, its feedback did.

Each variant is an arm label of its own, ``<arm>.distilled_<variant>``, in the phase ``distill``
(``<study>/distill/<label>/<trial_id>/``). Distilled are the arms whose weights or rho can move: every arm kind
but ``fixed``, and a PBT arm (``study.pbt``: its confirmation runs replay a schedule; ``replay`` would repeat them,
so it has ``final`` and ``mean`` only, with its best member's last learning rate). ``confirm.distill`` lists the
variants; an empty list turns the phase off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffctl.arms.piecewise import CONTROL_KEYS, constant_from_records, schedule_from_records

from .ablate import ablate_seeds, ablated_arms
from .spec import StudySpec
from .trialdir import ABLATE, CONFIRM, DISTILL, OK, SEARCH, TrialSummary, read_metrics, read_trials

VARIANTS = ("final", "mean", "replay")
STILL_KINDS = ("fixed",)  # arm kinds whose weights and rho never move: nothing to distill


def distilled_label(arm: str, variant: str) -> str:
    return f"{arm}.distilled_{variant}"


def distilled_arms(spec: StudySpec) -> list[tuple[str, str, str]]:
    """(label, source arm, variant) of every distilled baseline the spec asks for, in spec order."""
    found = []
    for arm, arm_spec in spec.arms.items():
        kind = spec.trial_config(arm, {}).get("arm", {}).get("kind", "fixed")
        if arm_spec.is_pbt:  # its confirmation runs are the replay
            found += [(distilled_label(arm, v), arm, v) for v in spec.confirm.distill if v != "replay"]
        elif kind not in STILL_KINDS:
            found += [(distilled_label(arm, variant), arm, variant) for variant in spec.confirm.distill]
    return found


def derived_places(spec: StudySpec) -> list[tuple[str, str, str]]:
    """(phase, label, source arm) of every arm made from another arm's ended confirmation runs: the distilled
    baselines (this module) and the ablation options (``study.ablate``), in the order they run."""
    return ([(DISTILL, label, source) for label, source, _ in distilled_arms(spec)]
            + [(ABLATE, label, source) for label, source, _, _ in ablated_arms(spec)])


def phase_places(spec: StudySpec) -> list[tuple[str, str]]:
    """(phase, arm label) of every phase of every arm the study runs, in the order they run."""
    return ([(SEARCH, arm) for arm in spec.arms] + [(CONFIRM, arm) for arm in spec.arms]
            + [(phase, label) for phase, label, _ in derived_places(spec)])


def place_bound(spec: StudySpec, phase: str, arm: str) -> int:
    """The most trials one phase of one arm label can run (an ablation option: one per ablation seed)."""
    if phase == SEARCH:
        return spec.arms[arm].budget
    if phase == ABLATE:
        return len(ablate_seeds(spec))
    source = next((s for p, label, s in derived_places(spec) if (p, label) == (phase, arm)), arm)
    return spec.confirm_runs_per_arm(source)  # a distilled baseline: one run per confirmation run of its arm


def _moves(records: list[dict[str, Any]], key: str) -> bool:
    values = {r.get(key) for r in records if r.get("status") == OK}
    return len(values) > 1


def distilled_arm_config(records: list[dict[str, Any]], variant: str) -> dict[str, Any]:
    """The ``arm`` section of a distilled run of a source run with these records."""
    if variant == "replay":
        keys = (*CONTROL_KEYS, *(("lr",) if _moves(records, "lr") else ()))
        return {"kind": "piecewise", "segments": schedule_from_records(records, keys)}
    return constant_from_records(records, variant)


def distill_runs(spec: StudySpec, study_dir: Path, arm: str) -> list[dict[str, Any]]:
    """The Ray configs of the distilled runs of an arm: every variant of every confirmation run that finished."""
    variants = [(label, variant) for label, source, variant in distilled_arms(spec) if source == arm]
    runs: list[TrialSummary] = [t for t in read_trials(study_dir / CONFIRM / arm) if t.status == OK]
    plans = []
    for run in runs:
        records = read_metrics(run.dir)
        for label, variant in variants:
            plans.append({
                "phase": DISTILL, "arm": label, "params": dict(run.info["params"]), "seed": int(run.info["seed"]),
                "source_trial": run.trial_id, "source_feasible": bool(run.info.get("source_feasible", True)),
                "source_arm": arm, "distill": variant, "arm_config": distilled_arm_config(records, variant),
            })
    return plans


def distilled_trial_config(spec: StudySpec, config: dict[str, Any], seed: int) -> dict[str, Any]:
    """The diffctl config (as a dict) of a distilled run: its source arm's trial config, the source's params and
    seed, with the arm section replaced by the distilled one."""
    data = spec.trial_config(config["source_arm"], config["params"], seed)
    data["arm"] = dict(config["arm_config"])
    return data
