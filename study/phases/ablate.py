"""The ablation phase: the causal answer to the study's open questions.

The search answers "does option X help?" only observationally (TPE moved every other parameter with it). The
ablation changes one thing from a fixed centre: the ``ablate.arm``'s confirmed configuration
(``study.confirmed``, the rule the analysis uses). For every question (axis) of the spec's ``ablate`` section and
every option of it, the option's flat overrides are applied to the centre's configuration — same source
parameters, same seed, everything else equal — and the option runs once per ablation seed (``ablate.seeds``, a
subset of the confirmation seeds; null: all of them). Each run's reference is the centre's own confirmation run
on the same seed (its ``source_trial``), so the analysis pairs them by seed (``analysis.ablation``). An option
with a ``retune`` section runs with the values its own small search picked (``study.phases.retune``): a tuned
option against the tuned centre.

An option whose resolved config equals the centre's is "same as the centre" and runs nothing; one whose config
diffctl refuses for this centre (say a statistic its ``stats_source`` cannot provide), or that changes only keys
without effect under the rest of it (a lookahead cadence under a same-loss centre), is "not applicable" with the
reason, and runs nothing either. Two options (of one question or of two) that resolve to the same
configuration run once: the first in spec order runs, the other is "same as <the first's label>" (``same_as``
names it) and runs nothing. The same configuration is the same effective one (:func:`effective_config`): keys
without effect under the rest of it (diffctl's ``inert_keys``) left out, a controller's default statistics spelt
out, and its ``stats_source`` left out when it reads no decoder-side statistic (then no source changes a value) —
so ``stats`` = the encoder-side set and ``stats_source: encoder`` are one configuration. An option with a
``retune`` section runs what its own search picked and is never merged.

Each option is an arm label of its own, ``<arm>.ablate.<axis>.<option>`` (spaces written as ``_``), in the
phase ``ablate`` (``<study>/ablate/<label>/s<seed>/``); the plan — every option with its status, the centre and
its runs, and what each retuned option picked — is written to ``<study>/ablate.json`` whenever an option is
planned.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydantic
from pydantic import model_validator

from diffctl.arms.statistics import default_stats, needs_decoder
from diffctl.config import config_from_dict
from diffctl.errors import InputError
from diffctl.files import NO_FILE, atomic_write_text, read_json
from diffctl.schema import Section

from ..ablation_options import NOT_APPLICABLE, RUNS, SAME, option_status
from ..confirmed import confirmed_configuration
from ..protocol.configs import trial_config
from ..protocol.errors import validation_line
from ..protocol.plan import ablate_name, ablate_seeds, ablated_arms
from ..protocol.ranking import ranking_score
from ..protocol.schema import StudySpec
from ..trialdir import CONFIRM, OK, RETUNE, read_trials
from .base import OPTION_KEYS, Phase, Place, Planned, TrialRequest

PLAN_FILE = "ablate.json"
SAME_AS = "same as "  # the status of an option whose configuration another option runs: "same as <its label>"
__all__ = ["NOT_APPLICABLE", "RUNS", "SAME", "SAME_AS"]  # the option statuses, re-exported for the readers


class PlannedOption(Section):
    axis: str
    option: str
    label: str
    overrides: dict[str, Any]
    # runs | same as the centre | not applicable | same as <label> (the option that runs this configuration)
    status: str
    reason: str | None = None  # why not applicable
    same_as: str | None = None  # the label of the option that runs this option's configuration (its runs: none)
    # an option with a retune section: the retune run the ranking rule put first and the values it drew (null:
    # no retune, or none of its runs finished)
    retune_trial: str | None = None
    retuned: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _known_status(self) -> "PlannedOption":
        if self.same_as is not None and self.status != SAME_AS + self.same_as:
            raise ValueError(f"status: {self.status!r} is not {SAME_AS + self.same_as!r} (same_as {self.same_as!r})")
        if self.same_as is None and self.status not in (RUNS, SAME, NOT_APPLICABLE):
            raise ValueError(f"status: {self.status!r} is none of {RUNS!r}, {SAME!r}, {NOT_APPLICABLE!r}, "
                             f"'{SAME_AS}<label>' (with same_as)")
        return self


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


def retune_pick(spec: StudySpec, study_dir: Path, label: str) -> tuple[str, dict[str, Any]] | None:
    """The retune run of an option that the ranking rule puts first among those that ran every epoch (ties in
    name order) and the overrides it ran with; None when none did."""
    finished = [t for t in read_trials(study_dir / RETUNE / label)
                if t.status == OK and t.info.epochs_done == spec.epochs]
    if not finished:
        return None
    best = min(finished, key=lambda t: (-ranking_score(spec, t.last), t.trial_id))
    return best.trial_id, dict(best.info.overrides or {})


def effective_config(config: dict[str, Any]) -> dict[str, Any]:
    """A resolved trial config (``Config.to_dict()``) as it trains: two configs equal here give the same runs.

    The arm's keys without effect under the rest of it (``inert_keys``) are left out; a controller's ``stats``
    (null: the default of its source) are spelt out, and its ``stats_source`` is left out when none of them is
    decoder-side (the source only decides where decoder-side statistics come from, ``diffctl.arms.statistics``).
    """
    options = config_from_dict(config).arm
    arm = dict(config["arm"])
    for key in (options.inert_keys() if hasattr(options, "inert_keys") else {}):
        arm.pop(key, None)
    if "stats" in arm and "stats_source" in arm:
        stats = tuple(arm["stats"]) if arm["stats"] is not None else default_stats(arm["stats_source"])
        arm["stats"] = list(stats)
        if not needs_decoder(stats):
            del arm["stats_source"]
    return {**config, "arm": arm}


def _configuration(spec: StudySpec, arm: str, params: dict[str, Any], seed: int,
                   overrides: dict[str, Any]) -> dict[str, Any]:
    """The effective config an option runs on ``seed`` (an option that runs: diffctl accepts it)."""
    return effective_config(config_from_dict(trial_config(spec, arm, params, seed, overrides)).to_dict())


def plan_ablation(spec: StudySpec, study_dir: Path, arm: str) -> AblationPlan:
    """The ablation around the arm's confirmed configuration (its confirmation runs have all ended; the retunes
    of the options that have one, as far as they have run). An option that would run the configuration of an
    earlier one (spec order; neither with a retune section) is ``same as <its label>`` and runs nothing."""
    seeds = ablate_seeds(spec)
    found = confirmed_configuration(spec, study_dir, arm)
    options = []
    params: dict[str, Any] = {}
    runs: list[CentreRun] = []
    if found is not None:
        params = dict(found[1][0].info.params)
        by_seed: dict[int, str] = {}
        for run in found[1]:
            by_seed.setdefault(run.info.seed, run.trial_id)
        runs = [CentreRun(seed=s, trial_id=by_seed[s]) for s in seeds if s in by_seed]
    configurations: list[tuple[dict[str, Any], str]] = []  # (effective config, label) of each option that runs
    for label, _, axis, option in ablated_arms(spec):
        overrides = spec.ablate.overrides(axis, option)
        status, reason = (NOT_APPLICABLE, f"{arm} has no confirmed configuration") if found is None else \
            option_status(spec, arm, params, seeds[0], overrides)
        retunes = spec.ablate.retune(axis, option) is not None
        same_as = None
        if status == RUNS and not retunes:
            configuration = _configuration(spec, arm, params, seeds[0], overrides)
            same_as = next((first for config, first in configurations if config == configuration), None)
            if same_as is None:
                configurations.append((configuration, label))
            else:
                status = SAME_AS + same_as
        pick = retune_pick(spec, study_dir, label) if retunes else None
        options.append(PlannedOption(axis=axis, option=option, label=label, overrides=overrides, status=status,
                                     reason=reason, same_as=same_as, retune_trial=pick and pick[0],
                                     retuned=pick and pick[1]))
    return AblationPlan(arm=arm, centre=found and found[0], params=params, seeds=seeds, runs=runs, options=options)


class AblatePhase(Phase):
    name = "ablate"
    test_split = True
    record_keys = OPTION_KEYS

    def places(self, spec: StudySpec) -> list[Place]:
        """Every option, after its retune when it has one, else after the ablated arm's confirmation."""
        return [Place(self.name, label, arm, ((RETUNE, label),) if spec.ablate.retune(axis, option) is not None
                      else ((CONFIRM, arm),)) for label, arm, axis, option in ablated_arms(spec)]

    def bound(self, spec: StudySpec, place: Place) -> int:
        return len(ablate_seeds(spec))

    def plan(self, spec: StudySpec, study_dir: Path, place: Place) -> Planned:
        """One option's runs (one per ablation seed), and a note when it runs nothing; writes ``ablate.json``."""
        label, arm = place.label, place.source
        ablation = plan_ablation(spec, study_dir, arm)
        atomic_write_text(study_dir / PLAN_FILE, json.dumps(ablation.model_dump(mode="json"), indent=1) + "\n")
        option = next(o for o in ablation.options if o.label == label)
        if option.status != RUNS:
            return Planned([], [f"{self.name} {label}: {option_text(option)}; no runs"])
        feasible = {t.trial_id: t.info.source_feasible is not False for t in read_trials(study_dir / CONFIRM / arm)}
        overrides = option.retuned if option.retuned is not None else option.overrides
        return Planned([TrialRequest(phase=self.name, arm=label, name=ablate_name(run.seed), params=ablation.params,
                                     seed=run.seed, source_trial=run.trial_id,
                                     source_feasible=feasible.get(run.trial_id, True), source_arm=arm,
                                     ablate_axis=option.axis, ablate_option=option.option, overrides=overrides)
                        for run in ablation.runs])


PHASE = AblatePhase()


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
        raise InputError(validation_line(exc, str(path), AblationPlan)) from None
