"""An ablation option's own small search: the answer should compare a tuned option with the tuned centre, not an
option run with hyperparameters tuned for something else (a lookahead option with the outer weights tuned for a
same-loss centre, say).

For an option with a ``retune`` section (``retune: {budget: N, space: {...}}``) that runs at the centre (not the
same as it, not inapplicable: ``study.ablation_options.option_status``), once the ablated arm's confirmation runs have
ended: ``budget`` runs of the centre's configuration (``study.confirmed``) with the
option's overrides and values of ``space`` drawn at random (Optuna's ``RandomSampler``, seeded by the spec's
``sampler_seed`` and the option's label), each on the centre's search seed, trained to the last epoch. The
ablation phase (``study.phases.ablate``) then runs the option on its seeds with the drawn values of the retune run
that the ranking rule puts first (``study.protocol.ranking.ranking_score`` of its final record; ties in name order).
A run is named ``t<slot>``; its ``overrides`` are the option's with the drawn values.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import optuna

from ..ablation_options import RUNS, option_status
from ..confirmed import confirmed_configuration, source_search_trial
from ..optuna_space import SearchSpace
from ..protocol.plan import ablate_seeds, ablated_arms, retune_name
from ..protocol.schema import StudySpec
from ..trialdir import CONFIRM
from .base import OPTION_KEYS, Phase, Place, Planned, TrialRequest


def draws(spec: StudySpec, label: str) -> list[dict]:
    """The values of the option's retune space for each of its runs (the same for the same spec)."""
    _, _, axis, option = next(a for a in ablated_arms(spec) if a[0] == label)
    retune = spec.ablate.retune(axis, option)
    seed = (spec.sampler_seed + zlib.crc32(label.encode("utf-8"))) % 2**31
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    space = SearchSpace(retune.space)
    return [space(study.ask()) for _ in range(retune.budget)]


class RetunePhase(Phase):
    name = "retune"
    record_keys = OPTION_KEYS

    def places(self, spec: StudySpec) -> list[Place]:
        """Every ablation option with a ``retune`` section, after the ablated arm's confirmation."""
        return [Place(self.name, label, arm, ((CONFIRM, arm),)) for label, arm, axis, option in ablated_arms(spec)
                if spec.ablate.retune(axis, option) is not None]

    def bound(self, spec: StudySpec, place: Place) -> int:
        _, _, axis, option = next(a for a in ablated_arms(spec) if a[0] == place.label)
        return spec.ablate.retune(axis, option).budget

    def plan(self, spec: StudySpec, study_dir: Path, place: Place) -> Planned:
        """An option's retune runs, once the ablated arm's confirmation runs have ended."""
        label = place.label
        _, arm, axis, option = next(a for a in ablated_arms(spec) if a[0] == label)
        found = confirmed_configuration(spec, study_dir, arm)
        source = source_search_trial(study_dir, arm, found[0]) if found is not None else None
        if source is None:
            return Planned([], [f"retune {label}: {arm} has no confirmed configuration; nothing to retune"])
        overrides = spec.ablate.overrides(axis, option)
        status, reason = option_status(spec, arm, dict(source.info.params), ablate_seeds(spec)[0], overrides)
        if status != RUNS:  # the ablation says why
            return Planned([], [f"retune {label}: nothing to retune ({status})"])
        return Planned([TrialRequest(phase=self.name, arm=label, name=retune_name(slot), params=source.info.params,
                                     seed=source.info.seed, source_trial=source.trial_id, source_arm=arm,
                                     ablate_axis=axis, ablate_option=option, overrides={**overrides, **drawn})
                        for slot, drawn in enumerate(draws(spec, label))])


PHASE = RetunePhase()
