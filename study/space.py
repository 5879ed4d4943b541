"""The define-by-run Optuna search space of one arm, built from its spec: a picklable callable of an Optuna
``trial`` that calls ``trial.suggest_*`` for every key whose ``when`` conditions hold, in spec order (a key after
the keys its condition reads).

Categorical choices that are lists or mappings (a subset of controller statistics) reach Optuna as their JSON
text and the trial config as the value itself. Ray's OptunaSearch pickles its space with the searcher state
(resume reloads it), hence a class rather than a closure. It must stay cheap: it runs in the driver for every suggestion.

Example::

    space = SearchSpace(spec.arms["barrier"].space)
    study = optuna.create_study()
    trial = study.ask()
    params = space(trial)   # {'arm.warmup': 'hold', 'arm.warmup_epochs': 3}
"""

from __future__ import annotations

import json
from typing import Any

from .spec import CategoricalDistribution, Distribution, FloatDistribution, is_active, sampling_order


def suggest(trial: Any, key: str, dist: Distribution) -> Any:
    """Sample one key with the matching ``trial.suggest_*`` call."""
    if isinstance(dist, CategoricalDistribution):
        if all(c is None or isinstance(c, (bool, int, float, str)) for c in dist.choices):
            return trial.suggest_categorical(key, dist.choices)
        # Optuna takes scalar choices only: lists and mappings travel as their JSON text.
        encoded = [json.dumps(c, sort_keys=True) for c in dist.choices]
        return json.loads(trial.suggest_categorical(key, encoded))
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(key, dist.low, dist.high, log=dist.log, step=dist.step)
    return trial.suggest_int(key, dist.low, dist.high, log=dist.log, step=dist.step)


class SearchSpace:
    """An arm's search space in define-by-run form; calling it samples one flat parameter set."""

    def __init__(self, space: dict[str, Distribution]) -> None:
        self.space = {key: space[key] for key in sampling_order(space)}

    def __call__(self, trial: Any) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for key, dist in self.space.items():
            if is_active(dist, params):
                params[key] = suggest(trial, key, dist)
        return params
