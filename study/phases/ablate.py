"""The ablation phase: the causal answer to the study's open questions.

The search answers "does option X help?" only observationally (TPE moved every other parameter with it). The
ablation changes one thing from a fixed centre: the ``ablate.arm``'s confirmed configuration (the one rule of
``study.spec.ranking.rank_sources`` over its confirmation runs, as the analysis picks it). For every question
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
from pathlib import Path
from typing import Any, Literal

import pydantic

from diffctl.config import ConfigError, config_from_dict, first_error
from diffctl.config import format_validation_error as format_config_error
from diffctl.errors import InputError
from diffctl.files import atomic_write_text
from diffctl.schema import Section

from ..spec.configs import trial_config
from ..spec.errors import SpecError
from ..spec.plan import Planned, ablate_seeds, ablated_arms
from ..spec.ranking import ConfirmedRun, is_feasible, rank_sources
from ..spec.constraints import is_finite_number
from ..spec.schema import StudySpec
from ..trialdir import ABLATE, CONFIRM, NO_FILE, OK, TrialSummary, read_json, read_trials

PLAN_FILE = "ablate.json"
RUNS, SAME, NOT_APPLICABLE = "runs", "same as the centre", "not applicable"


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
    runs = [t for t in read_trials(study_dir / CONFIRM / arm) if not t.abandoned]
    confirmed = []
    for run in runs:
        finished = run.status == OK and run.last.get("status") == OK
        value = run.last.get(spec.selection.metric)
        confirmed.append(ConfirmedRun(str(run.info.source_trial), run.info.seed, finished,
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
    centre = config_from_dict(trial_config(spec, arm, params, seed)).to_dict()
    try:
        option = config_from_dict(trial_config(spec, arm, params, seed, overrides)).to_dict()
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
        params = dict(found[1][0].info.params)
        by_seed: dict[int, str] = {}
        for run in found[1]:
            by_seed.setdefault(run.info.seed, run.trial_id)
        runs = [CentreRun(seed=s, trial_id=by_seed[s]) for s in seeds if s in by_seed]
    for label, _, axis, option in ablated_arms(spec):
        overrides = spec.ablate.axes[axis][option]
        status, reason = (NOT_APPLICABLE, f"{arm} has no confirmed configuration") if found is None else \
            option_status(spec, arm, params, seeds[0], overrides)
        options.append(PlannedOption(axis=axis, option=option, label=label, overrides=overrides, status=status,
                                     reason=reason))
    return AblationPlan(arm=arm, centre=found and found[0], params=params, seeds=seeds, runs=runs, options=options)


def plan(spec: StudySpec, study_dir: Path, arm: str) -> Planned:
    """The Ray configs of the ablation runs around ``arm`` (none unless it is ``ablate.arm``) and a note for every
    option that runs nothing; writes ``ablate.json``."""
    if spec.ablate is None or arm != spec.ablate.arm:
        return Planned()
    ablation = plan_ablation(spec, study_dir, arm)
    atomic_write_text(study_dir / PLAN_FILE, json.dumps(ablation.model_dump(mode="json"), indent=1) + "\n")
    feasible = {t.trial_id: t.info.source_feasible is not False for t in read_trials(study_dir / CONFIRM / arm)}
    runs = [
        {"phase": ABLATE, "arm": o.label, "params": dict(ablation.params), "seed": run.seed,
         "source_trial": run.trial_id, "source_feasible": feasible.get(run.trial_id, True), "source_arm": arm,
         "ablate_axis": o.axis, "ablate_option": o.option, "overrides": dict(o.overrides)}
        for o in ablation.options if o.status == RUNS for run in ablation.runs
    ]
    notes = [f"{ABLATE} {o.label}: {option_text(o)}; no runs" for o in ablation.options if o.status != RUNS]
    return Planned(runs, notes)


def option_text(option: PlannedOption) -> str:
    return option.status + (f": {option.reason}" if option.reason else "")


def read_plan(study_dir: Path) -> AblationPlan | None:
    """``<study>/ablate.json`` (None when the ablation was not planned yet, or the spec has none); a damaged
    file raises :class:`InputError` naming it and the key."""
    path = study_dir / PLAN_FILE
    data = read_json(path)
    if data is NO_FILE:
        return None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    try:
        return AblationPlan.model_validate(data)
    except pydantic.ValidationError as exc:
        raise InputError(f"{path}: {format_config_error(first_error(exc.errors()), model=AblationPlan)}") from None
