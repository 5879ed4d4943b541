"""The ablation phase: the causal answer to the study's open questions.

The search answers "does option X help?" only observationally (TPE moved every other parameter with it). The
ablation changes one thing from a fixed centre: the ``ablate.arm``'s confirmed configuration (the one rule of
``study.objectives.rank_sources`` over its confirmation runs, as the analysis picks it). For every question
(axis) of the spec's ``ablate`` section and every option of it, the option's flat overrides are applied to the
centre's configuration — same source parameters, same seed, everything else equal — and the option runs once
per ablation seed (``ablate.seeds``, a subset of the confirmation seeds; null: all of them). Each run's
reference is the centre's own confirmation run on the same seed (its ``source_trial``), so the analysis pairs
them by seed (``analysis.ablation``).

An option whose resolved config equals the centre's is "same as the centre" and runs nothing; one whose config
diffctl refuses for this centre (say a statistic its ``stats_source`` cannot provide) is "not applicable" with
diffctl's one-line reason, and runs nothing either. Each option is an arm label of its own,
``<arm>.ablate.<axis>.<option>`` (spaces written as ``_``), in the phase ``ablate``
(``<study>/ablate/<label>/<trial_id>/``); the plan — every option with its status, the centre and its runs —
is written to ``<study>/ablate.json`` once the arm's confirmation runs have all ended.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pydantic
from pydantic import Field

from diffctl.arms import ARM_CLASSES
from diffctl.config import Config, ConfigError, config_from_dict
from diffctl.config import format_validation_error as format_config_error
from diffctl.errors import InputError
from diffctl.files import atomic_write_text
from diffctl.schema import Section

from .objectives import ConfirmedRun, is_feasible, is_finite_number, rank_sources
from .trialdir import ABLATE, CONFIRM, OK, TrialSummary, read_json, read_trials

if TYPE_CHECKING:
    from .spec import StudySpec

PLAN_FILE = "ablate.json"
RUNS, SAME, NOT_APPLICABLE = "runs", "same as the centre", "not applicable"
# Axis and option labels: letters, digits, spaces, '_', '.', '-'; 1-64 characters, no space at either end.
LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9 _.-]{0,62}[A-Za-z0-9_.-])?$")
# Keys an option may not override, and what sets them.
FIXED_KEYS = {"seed": "ablate.seeds", "arm": "the ablated arm", "arm.kind": "the ablated arm (an option keeps its kind)"}


def slug(label: str) -> str:
    return label.replace(" ", "_")


def ablate_label(arm: str, axis: str, option: str) -> str:
    """The arm label of one option's runs (a directory name: no spaces)."""
    return f"{arm}.ablate.{slug(axis)}.{slug(option)}"


def ablated_arms(spec: StudySpec) -> list[tuple[str, str, str, str]]:
    """(label, centre arm, axis, option) of every option of the spec's ablation, in spec order."""
    if spec.ablate is None:
        return []
    arm = spec.ablate.arm
    return [(ablate_label(arm, axis, option), arm, axis, option)
            for axis, options in spec.ablate.axes.items() for option in options]


def ablate_seeds(spec: StudySpec) -> list[int]:
    """The seeds every option runs on: ``ablate.seeds``, or the confirmation seeds when null."""
    if spec.ablate is None:
        return []
    return list(spec.ablate.seeds if spec.ablate.seeds is not None else spec.confirm.seeds)


def ablate_runs_bound(spec: StudySpec) -> int:
    """The most ablation runs the spec can ask for (every option runs on every seed)."""
    return len(ablated_arms(spec)) * len(ablate_seeds(spec))


# --- the spec section and its checks at load --------------------------------------------------------------------
class Ablate(Section):
    """The spec's ``ablate`` section: the ablation around one arm's confirmed configuration."""

    arm: str
    seeds: list[int] | None = Field(None, min_length=1)  # a subset of confirm.seeds; null: all of them
    # question -> option label -> flat config key -> value applied to the centre's configuration
    axes: dict[str, Annotated[dict[str, Annotated[dict[str, Any], Field(min_length=1, max_length=20)]],
                              Field(min_length=1, max_length=10)]] = Field(min_length=1, max_length=20)


def check_ablate(spec: StudySpec) -> None:
    """Every check of the ``ablate`` section beyond its schema; raises ``SpecError`` naming the key."""
    from .spec import RESERVED_KEYS, SpecError

    ablate = spec.ablate
    if ablate is None:
        return
    if ablate.arm not in spec.arms:
        raise SpecError(f"ablate.arm: unknown arm {ablate.arm!r} (arms: {', '.join(spec.arms)})")
    seeds = ablate.seeds or []
    if len(set(seeds)) != len(seeds):
        raise SpecError(f"ablate.seeds: repeated seed in {seeds}")
    if outside := [s for s in seeds if s not in spec.confirm.seeds]:
        raise SpecError(f"ablate.seeds: {outside[0]} is not a confirmation seed (each run's reference is the "
                        "centre's confirmation run on the same seed; null: every confirmation seed)")
    fixed = {**RESERVED_KEYS, **FIXED_KEYS}
    labels: dict[str, str] = {}
    for axis, options in ablate.axes.items():
        _check_label(f"ablate.axes.{axis}", axis)
        for option, overrides in options.items():
            where = f"ablate.axes.{axis}.{option}"
            _check_label(where, option)
            label = ablate_label(ablate.arm, axis, option)
            if label in labels or label in spec.arms:
                other = labels.get(label, f"arms.{label}")
                raise SpecError(f"{where}: its arm label {label!r} is also that of {other} (spaces become '_')")
            labels[label] = where
            for key in overrides:
                if key in fixed:
                    raise SpecError(f"{where}.{key}: not ablatable, set by {fixed[key]}")
            _check_keys(spec, ablate.arm, where, overrides)


def _check_label(where: str, label: str) -> None:
    from .spec import SpecError

    if not LABEL.match(label):
        raise SpecError(f"{where}: a label uses letters, digits, spaces, '_', '.', '-' (1-64 characters, "
                        "starting with a letter or digit)")


def _check_keys(spec: StudySpec, arm: str, where: str, overrides: dict[str, Any]) -> None:
    """Refuse a key that no config of the arm's kind has: one the schema does not know, or one that goes on below
    a value (``arm.rho.x``). A value the arm refuses is no load error: whether it applies depends on the centre
    (the option is then "not applicable" when planned)."""
    from .spec import SpecError

    base = spec.trial_config(arm, {})
    try:
        Config.model_validate(spec.trial_config(arm, {}, overrides=overrides))
    except SpecError as exc:
        raise SpecError(f"{where}.{exc}") from None
    except pydantic.ValidationError as exc:
        for error in exc.errors():
            if error["type"] == "extra_forbidden":
                raise SpecError(f"{where}.{format_config_error(error)}") from None
            loc = [p for i, p in enumerate(error["loc"]) if not (i == 1 and p in ARM_CLASSES)]
            for key in overrides:  # a mapping the dotted key made where the schema holds a value
                parts = key.split(".")
                if len(loc) < len(parts) and parts[:len(loc)] == loc and not _has_path(base, loc):
                    raise SpecError(f"{where}.{key}: unknown key ({'.'.join(loc)} is not a section)") from None


def _has_path(data: dict[str, Any], path: list[str]) -> bool:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


# --- the plan ---------------------------------------------------------------------------------------------------
class PlannedOption(Section):
    axis: str
    option: str
    label: str
    overrides: dict[str, Any]
    status: Literal["runs", "same as the centre", "not applicable"]
    reason: str | None = None  # why not applicable


class CentreRun(Section):
    seed: int
    trial_id: str  # the centre's confirmation run on this seed: the reference of every option's run on it


class AblationPlan(Section):
    """The content of ``ablate.json``."""

    arm: str
    centre: str | None  # the search trial whose configuration is the centre (null: the arm confirmed nothing)
    params: dict[str, Any]  # its sampled parameters
    seeds: list[int]  # the ablation seeds
    runs: list[CentreRun]  # the centre's confirmation run on each ablation seed that has one
    options: list[PlannedOption]


def centre_runs(spec: StudySpec, study_dir: Path, arm: str) -> tuple[str, list[TrialSummary]] | None:
    """The arm's confirmed configuration (its source search trial) and its confirmation runs, by the rule the
    analysis uses too (``rank_sources``); None when the arm has no confirmation run."""
    assert spec.selection is not None
    runs = [t for t in read_trials(study_dir / CONFIRM / arm) if not t.abandoned]
    confirmed = []
    for run in runs:
        finished = run.status == OK and run.last.get("status") == OK
        value = run.last.get(spec.selection.metric)
        confirmed.append(ConfirmedRun(str(run.info.get("source_trial")), int(run.info["seed"]), finished,
                                      finished and is_feasible(spec, run.last),
                                      float(value) if finished and is_finite_number(value) else math.nan))
    ranked = rank_sources(confirmed, spec.confirm.seeds, spec.selection.mode)
    if not ranked:
        return None
    source = ranked[0]["source"]
    return source, [run for run, c in zip(runs, confirmed) if c.source == source]


def option_status(spec: StudySpec, arm: str, params: dict[str, Any], seed: int,
                  overrides: dict[str, Any]) -> tuple[str, str | None]:
    """(status, reason) of one option around a centre: ``runs``, ``same as the centre`` (identical resolved
    config) or ``not applicable`` (diffctl refuses the config; the reason is its one-line error)."""
    from .spec import SpecError

    centre = config_from_dict(spec.trial_config(arm, params, seed)).to_dict()
    try:
        option = config_from_dict(spec.trial_config(arm, params, seed, overrides)).to_dict()
    except (ConfigError, SpecError) as exc:
        return NOT_APPLICABLE, str(exc)
    return (SAME, None) if option == centre else (RUNS, None)


def plan_ablation(spec: StudySpec, study_dir: Path, arm: str) -> AblationPlan:
    """The ablation around the arm's confirmed configuration (its confirmation runs have all ended)."""
    seeds = ablate_seeds(spec)
    found = centre_runs(spec, study_dir, arm)
    options = []
    params: dict[str, Any] = {}
    runs: list[CentreRun] = []
    if found is not None:
        params = dict(found[1][0].info["params"])
        by_seed: dict[int, str] = {}
        for run in found[1]:
            by_seed.setdefault(int(run.info["seed"]), run.trial_id)
        runs = [CentreRun(seed=s, trial_id=by_seed[s]) for s in seeds if s in by_seed]
    for label, _, axis, option in ablated_arms(spec):
        overrides = spec.ablate.axes[axis][option]
        status, reason = (NOT_APPLICABLE, f"{arm} has no confirmed configuration") if found is None else \
            option_status(spec, arm, params, seeds[0], overrides)
        options.append(PlannedOption(axis=axis, option=option, label=label, overrides=overrides, status=status,
                                     reason=reason))
    return AblationPlan(arm=arm, centre=found and found[0], params=params, seeds=seeds, runs=runs, options=options)


def ablate_runs(spec: StudySpec, study_dir: Path, arm: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The Ray configs of the ablation runs around ``arm`` (none unless it is ``ablate.arm``) and a line for
    every option that runs nothing; writes ``ablate.json``."""
    if spec.ablate is None or arm != spec.ablate.arm:
        return [], []
    plan = plan_ablation(spec, study_dir, arm)
    atomic_write_text(study_dir / PLAN_FILE, json.dumps(plan.model_dump(mode="json"), indent=1) + "\n")
    feasible = {t.trial_id: bool(t.info.get("source_feasible", True)) for t in read_trials(study_dir / CONFIRM / arm)}
    runs = [
        {"phase": ABLATE, "arm": o.label, "params": dict(plan.params), "seed": run.seed, "source_trial": run.trial_id,
         "source_feasible": feasible.get(run.trial_id, True), "source_arm": arm, "ablate_axis": o.axis,
         "ablate_option": o.option, "overrides": dict(o.overrides)}
        for o in plan.options if o.status == RUNS for run in plan.runs
    ]
    notes = [f"{ABLATE} {o.label}: {option_text(o)}; no runs" for o in plan.options if o.status != RUNS]
    return runs, notes


def option_text(option: PlannedOption) -> str:
    return option.status + (f": {option.reason}" if option.reason else "")


def read_plan(study_dir: Path) -> AblationPlan | None:
    """``<study>/ablate.json`` (None when the ablation was not planned yet, or the spec has none); a damaged
    file raises :class:`InputError` naming it and the key."""
    path = study_dir / PLAN_FILE
    data = read_json(path)
    if data is None:
        return None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    try:
        return AblationPlan.model_validate(data)
    except pydantic.ValidationError as exc:
        raise InputError(f"{path}: {format_config_error(exc.errors()[0])}") from None
