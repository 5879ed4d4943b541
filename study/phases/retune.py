"""An ablation option's own small search: the answer should compare a tuned option with the tuned centre, not an
option run with hyperparameters tuned for something else (a lookahead option with the outer weights tuned for a
same-loss centre, say).

For an option with a ``retune`` section (``retune: {budget: N, space: {...}}``) that runs at the centre (not the
same as it, not inapplicable: ``study.confirmed.option_status``), once the ablated arm's confirmation runs have
ended: ``budget`` runs of the centre's configuration (``study.confirmed``) with the
option's overrides and values of ``space`` drawn at random (Optuna's ``RandomSampler``, seeded by the spec's
``sampler_seed`` and the option's label), each on the centre's search seed, trained to the last epoch. The
ablation phase (``study.phases.ablate``) then runs the option on its seeds with the drawn values of the retune run
that the ranking rule puts first (``study.spec.ranking.ranking_score`` of its final record; ties in name order).
A run is named ``t<slot>``; its ``overrides`` are the option's with the drawn values.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import optuna

from ..confirmed import RUNS, confirmed_configuration, option_status, source_search_trial
from ..space import SearchSpace
from ..spec.plan import Planned, ablate_seeds, ablated_arms, retune_name
from ..spec.schema import StudySpec
from ..trialdir import RETUNE


def draws(spec: StudySpec, label: str) -> list[dict]:
    """The values of the option's retune space for each of its runs (the same for the same spec)."""
    _, _, axis, option = next(a for a in ablated_arms(spec) if a[0] == label)
    retune = spec.ablate.retune(axis, option)
    seed = (spec.sampler_seed + zlib.crc32(label.encode("utf-8"))) % 2**31
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    space = SearchSpace(retune.space)
    return [space(study.ask()) for _ in range(retune.budget)]


def plan(spec: StudySpec, study_dir: Path, label: str) -> Planned:
    """The Ray configs of an option's retune runs, once the ablated arm's confirmation runs have ended."""
    _, arm, axis, option = next(a for a in ablated_arms(spec) if a[0] == label)
    found = confirmed_configuration(spec, study_dir, arm)
    source = source_search_trial(study_dir, arm, found[0]) if found is not None else None
    if source is None:
        return Planned([], [f"retune {label}: {arm} has no confirmed configuration; nothing to retune"])
    overrides = spec.ablate.overrides(axis, option)
    status, reason = option_status(spec, arm, dict(source.info.params), ablate_seeds(spec)[0], overrides)
    if status != RUNS:  # the ablation says why
        return Planned([], [f"retune {label}: nothing to retune ({status})"])
    return Planned([{"phase": RETUNE, "arm": label, "name": retune_name(slot), "params": dict(source.info.params),
                     "seed": source.info.seed, "source_trial": source.trial_id, "source_feasible": None,
                     "source_arm": arm, "ablate_axis": axis, "ablate_option": option,
                     "overrides": {**overrides, **drawn}}
                    for slot, drawn in enumerate(draws(spec, label))])
