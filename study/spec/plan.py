"""The plan of a study, read off its spec: its phases, the arm labels each phase runs (the *places*: phase x
label), what each place waits for, the most trials each place can run, and the names its trials get. A place's
runs are planned by its phase (``study.phases``) once the place it waits for has ended; here only what the spec
alone decides.

Phases: ``search`` (each arm's Optuna search, or a PBT arm's population, ``search_replicates`` times), ``front``
(the fixed-λ front of the spec's ``front`` arm: a grid of constant settings on the front's seeds, waiting for
nothing), then the planned phases, each waiting for the places it is made from:

- ``confirm``: each arm's selected configurations on the confirmation seeds, after the arm's search (and, for the
  front's arm, after its front: its grid points compete for its pick);
- ``audit``: the pruning audit of an arm (``audit``), after its search;
- ``distill``: an adaptive arm's distilled baselines, one label per variant (``<arm>.distilled_<variant>``),
  after the arm's confirmation;
- ``retune``: an ablation option's own small search (``<arm>.ablate.<axis>.<option>``), after the ablated arm's
  confirmation;
- ``ablate``: an ablation option on the ablation seeds (the same label), after its retune if it has one, else
  after the ablated arm's confirmation.

Trial names (the directory ``<study>/<phase>/<label>/<name>/``) are the same in every run of the same spec:
``r<replicate>-<slot>`` for a search trial (``r0-0007``), ``r<replicate>-m<member>`` for a PBT member,
``g<point>-s<seed>`` for a front run (``g07-s0``), ``<source>-<seed>`` for a confirmation run (``r0-0007-1001``;
``r0-g07-s0-1001`` when replicate 0 picked a front point), the name of the run it is made from for a
distilled or audited run, ``t<slot>`` for a retune run and ``s<seed>`` for an ablation run.

Example::

    phase_places(spec)[:2]                  # [("search", "fixed"), ("search", "barrier")]
    place_bound(spec, "confirm", "fixed")   # top_k x seeds x replicates
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .configs import arm_kind
from .reference import front_points
from .schema import StudySpec

SEARCH, FRONT, CONFIRM, AUDIT, DISTILL, RETUNE, ABLATE = (
    "search", "front", "confirm", "audit", "distill", "retune", "ablate")
PHASES = (SEARCH, FRONT, CONFIRM, AUDIT, DISTILL, RETUNE, ABLATE)
# The phases whose runs a reader quotes: they also evaluate the held-out test split (``eval.test_split``). Search,
# audit and retune runs stand for search decisions and never do.
TEST_SPLIT_PHASES = (FRONT, CONFIRM, DISTILL, ABLATE)
STILL_KINDS = ("fixed",)  # arm kinds whose weights and rho never move: nothing to distill


@dataclass
class Planned:
    """What a planned phase (``study.phases``: front, confirm, audit, distill, retune, ablate) makes of one place once
    the place it waits for has ended: the Ray configs of its runs (``{"phase", "arm", "name", "params", "seed",
    ...}``, see ``study.searcher``) and one line for each thing worth saying about the plan (an arm with nothing
    to confirm, an ablation option that runs nothing)."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Place:
    """One phase of one arm label: the arm it is made from (``source``) and the places it waits for (``after``)."""

    phase: str
    label: str
    source: str
    after: tuple[tuple[str, str], ...]  # (): waits for nothing


def search_name(replicate: int, slot: int) -> str:
    return f"r{replicate}-{slot:04d}"


def member_name(replicate: int, member: int) -> str:
    return f"r{replicate}-m{member:02d}"


def confirm_name(source: str, seed: int, replicate: int | None = None) -> str:
    """``<source>-<seed>``; a source that is not a search trial of ``replicate`` (a front point) is prefixed with
    it, so that every replicate's runs have names of their own."""
    prefix = "" if replicate is None or source.startswith(f"r{replicate}-") else f"r{replicate}-"
    return f"{prefix}{source}-{seed}"


def retune_name(slot: int) -> str:
    return f"t{slot:04d}"


def ablate_name(seed: int) -> str:
    return f"s{seed}"


def replicate_of(name: str) -> int:
    """The search replicate a search, PBT member or confirmation run belongs to (its name's ``r<k>-`` prefix)."""
    return int(name[1:name.index("-")])


def pbt_arms(spec: StudySpec) -> list[str]:
    """The arms searched by population based training, in spec order."""
    return [label for label, arm in spec.arms.items() if arm.is_pbt]


def optuna_arms(spec: StudySpec) -> list[str]:
    """The arms searched by Optuna, in spec order."""
    return [label for label, arm in spec.arms.items() if not arm.is_pbt]


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


def audited_arms(spec: StudySpec) -> list[str]:
    """The arms the pruning audit covers: every Optuna arm, when the spec has an audit and early stopping."""
    return optuna_arms(spec) if spec.audit is not None and spec.asha is not None else []


def planned_places(spec: StudySpec) -> list[Place]:
    """Every place a planned phase runs, in the order the searcher asks for them."""
    front = [Place(FRONT, spec.front.arm, spec.front.arm, ())] if spec.front is not None else []
    places = front + [Place(CONFIRM, arm, arm, ((SEARCH, arm), *((FRONT, arm) for p in front if p.label == arm)))
                      for arm in spec.arms]
    places += [Place(AUDIT, arm, arm, ((SEARCH, arm),)) for arm in audited_arms(spec)]
    places += [Place(DISTILL, label, source, ((CONFIRM, source),)) for label, source, _ in distilled_arms(spec)]
    for label, arm, axis, option in ablated_arms(spec):
        retunes = spec.ablate.retune(axis, option) is not None
        if retunes:
            places.append(Place(RETUNE, label, arm, ((CONFIRM, arm),)))
        places.append(Place(ABLATE, label, arm, ((RETUNE, label),) if retunes else ((CONFIRM, arm),)))
    return places


def phase_places(spec: StudySpec) -> list[tuple[str, str]]:
    """(phase, arm label) of every phase of every arm the study runs, in the order they run."""
    return [(SEARCH, arm) for arm in spec.arms] + [(p.phase, p.label) for p in planned_places(spec)]


def confirm_runs_per_arm(spec: StudySpec, arm: str) -> int:
    """Upper bound of an arm's confirmation runs: top_k x seeds per replicate (fewer when fewer search trials
    qualify); a PBT arm confirms its best member's schedule only, once per seed and replicate."""
    top = 1 if spec.arms[arm].is_pbt else spec.confirm.top_k
    return top * len(spec.confirm.seeds) * spec.search_replicates


def place_bound(spec: StudySpec, phase: str, label: str) -> int:
    """The most trials one phase of one arm label can run."""
    if phase == SEARCH:
        return spec.arms[label].budget * spec.search_replicates
    if phase == CONFIRM:
        return confirm_runs_per_arm(spec, label)
    if phase == AUDIT:
        return spec.audit.per_arm * spec.search_replicates
    if phase == FRONT:
        return len(front_points(spec)) * len(spec.front.seeds)
    if phase == ABLATE:
        return len(ablate_seeds(spec))
    place = next(p for p in planned_places(spec) if (p.phase, p.label) == (phase, label))
    if phase == RETUNE:
        _, _, axis, option = next(a for a in ablated_arms(spec) if a[0] == label)
        return spec.ablate.retune(axis, option).budget
    return confirm_runs_per_arm(spec, place.source)  # a distilled baseline: one run per confirmation run


def total_trials(spec: StudySpec) -> int:
    """The most trials the whole study can run."""
    return sum(place_bound(spec, phase, label) for phase, label in phase_places(spec))
