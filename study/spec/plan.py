"""The plan of a study, read off its spec: its phases, the arm labels each phase runs (the *places*: phase x
label), the most trials each place can run, and the study's trial count. A place's runs are planned by its
phase (``study.phases``) once the runs it is made from have ended; here only what the spec alone decides.

Phases, in the order they run: ``search`` (each arm's Optuna search, or a PBT arm's population), ``confirm``
(each arm's selected configuration on the confirmation seeds), then the phases made from an arm's ended
confirmation runs: ``distill`` (the distilled baselines of an adaptive arm, one arm label per variant,
``<arm>.distilled_<variant>``) and ``ablate`` (the options around the ablated arm's confirmed configuration, one
arm label per option, ``<arm>.ablate.<axis>.<option>``).

Example::

    phase_places(spec)[:2]        # [("search", "fixed"), ("search", "barrier")]
    place_bound(spec, "confirm", "fixed")   # top_k x seeds
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .configs import arm_kind
from .schema import StudySpec

SEARCH, CONFIRM, DISTILL, ABLATE = "search", "confirm", "distill", "ablate"
PHASES = (SEARCH, CONFIRM, DISTILL, ABLATE)
DERIVED = (DISTILL, ABLATE)  # the phases planned from an arm's ended confirmation runs, in this order
STILL_KINDS = ("fixed",)  # arm kinds whose weights and rho never move: nothing to distill


@dataclass
class Planned:
    """What a planned phase (``study.phases``: confirm, distill, ablate) makes of an arm whose runs it is made from
    have ended: the Ray configs of its runs (``{"phase", "arm", "params", "seed", "source_trial", ...}``, see
    ``study.searcher``) and one line for each thing worth saying about the plan (an arm with nothing to confirm,
    an ablation option that runs nothing)."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def pbt_arms(spec: StudySpec) -> list[str]:
    """The arms searched by population based training, in spec order."""
    return [label for label, arm in spec.arms.items() if arm.is_pbt]


def slug(label: str) -> str:
    return label.replace(" ", "_")


def distilled_label(arm: str, variant: str) -> str:
    return f"{arm}.distilled_{variant}"


def ablate_label(arm: str, axis: str, option: str) -> str:
    """The arm label of one ablation option's runs (a directory name: no spaces)."""
    return f"{arm}.ablate.{slug(axis)}.{slug(option)}"


def distilled_arms(spec: StudySpec) -> list[tuple[str, str, str]]:
    """(label, source arm, variant) of every distilled baseline the spec asks for, in spec order: every variant
    of ``confirm.distill`` for an arm whose weights or rho can move, a PBT arm's without ``replay`` (its
    confirmation runs are the replay)."""
    found = []
    for arm, arm_spec in spec.arms.items():
        if arm_spec.is_pbt:
            found += [(distilled_label(arm, v), arm, v) for v in spec.confirm.distill if v != "replay"]
        elif arm_kind(spec, arm) not in STILL_KINDS:
            found += [(distilled_label(arm, v), arm, v) for v in spec.confirm.distill]
    return found


def ablated_arms(spec: StudySpec) -> list[tuple[str, str, str, str]]:
    """(label, centre arm, axis, option) of every option of the spec's ablation, in spec order."""
    if spec.ablate is None:
        return []
    arm = spec.ablate.arm
    return [(ablate_label(arm, axis, option), arm, axis, option)
            for axis, options in spec.ablate.axes.items() for option in options]


def ablate_seeds(spec: StudySpec) -> list[int]:
    """The seeds every ablation option runs on: ``ablate.seeds``, or the confirmation seeds when null."""
    if spec.ablate is None:
        return []
    return list(spec.ablate.seeds if spec.ablate.seeds is not None else spec.confirm.seeds)


def derived_places(spec: StudySpec) -> list[tuple[str, str, str]]:
    """(phase, label, source arm) of every arm label made from another arm's ended confirmation runs, in the
    order they run."""
    return ([(DISTILL, label, source) for label, source, _ in distilled_arms(spec)]
            + [(ABLATE, label, source) for label, source, _, _ in ablated_arms(spec)])


def phase_places(spec: StudySpec) -> list[tuple[str, str]]:
    """(phase, arm label) of every phase of every arm the study runs, in the order they run."""
    return ([(SEARCH, arm) for arm in spec.arms] + [(CONFIRM, arm) for arm in spec.arms]
            + [(phase, label) for phase, label, _ in derived_places(spec)])


def confirm_runs_per_arm(spec: StudySpec, arm: str) -> int:
    """Upper bound of an arm's confirmation runs: top_k x seeds (fewer when fewer search trials qualify); a PBT
    arm confirms its best member's schedule only, once per seed."""
    return (1 if spec.arms[arm].is_pbt else spec.confirm.top_k) * len(spec.confirm.seeds)


def place_bound(spec: StudySpec, phase: str, label: str) -> int:
    """The most trials one phase of one arm label can run."""
    if phase == SEARCH:
        return spec.arms[label].budget
    if phase == ABLATE:
        return len(ablate_seeds(spec))
    if phase == CONFIRM:
        return confirm_runs_per_arm(spec, label)
    source = next(s for p, lab, s in derived_places(spec) if (p, lab) == (phase, label))
    return confirm_runs_per_arm(spec, source)  # a distilled baseline: one run per confirmation run of its arm


def total_trials(spec: StudySpec) -> int:
    """The most trials the whole study can run."""
    return sum(place_bound(spec, phase, label) for phase, label in phase_places(spec))
