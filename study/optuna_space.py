"""An Optuna define-by-run search space built from a spec's distributions (an arm's ``space``, an ablation
option's ``retune.space``): a picklable callable of an Optuna ``trial`` that calls ``trial.suggest_*`` for every
key whose ``when`` conditions hold, in sampling order. It runs in the driver for every suggestion: it stays cheap.
"""

from __future__ import annotations

import json
from typing import Any

from .protocol.schema import CategoricalDistribution, Distribution, FloatDistribution
from .protocol.space import is_active, sampling_order


def _as_json(dist: Distribution | None) -> bool:
    """Whether Optuna holds a categorical key's choices as their JSON text: when any choice is a list or mapping
    (Optuna takes scalar choices only)."""
    return isinstance(dist, CategoricalDistribution) and not all(
        c is None or isinstance(c, (bool, int, float, str)) for c in dist.choices)


def suggest(trial: Any, key: str, dist: Distribution) -> Any:
    """Sample one key with the matching ``trial.suggest_*`` call."""
    if isinstance(dist, CategoricalDistribution):
        if not _as_json(dist):
            return trial.suggest_categorical(key, dist.choices)
        # Optuna takes scalar choices only: lists and mappings travel as their JSON text.
        encoded = [json.dumps(c, sort_keys=True) for c in dist.choices]
        return json.loads(trial.suggest_categorical(key, encoded))
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(key, dist.low, dist.high, log=dist.log, step=dist.step)
    return trial.suggest_int(key, dist.low, dist.high, log=dist.log, step=dist.step)


class SearchSpace:
    """An arm's search space in define-by-run form; calling it samples one flat parameter set (categorical choices
    that are lists or mappings reach Optuna as their JSON text and the config as the value itself).

    Example::

        space = SearchSpace(spec.arms["barrier"].space)
        params = space(optuna.create_study().ask())   # {'arm.warmup': 'hold', 'arm.warmup_epochs': 3}
    """

    def __init__(self, space: dict[str, Distribution]) -> None:
        self.space = {key: space[key] for key in sampling_order(space)}

    def encoded(self, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` as Optuna holds them (every choice of a categorical key with a list or mapping among its
        choices as its JSON text, ``None`` too: :func:`suggest`): what ``Study.enqueue_trial`` takes to make a trial
        that suggests exactly ``params``."""
        return {key: json.dumps(value, sort_keys=True) if _as_json(self.space.get(key)) else value
                for key, value in params.items()}

    def __call__(self, trial: Any) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for key, dist in self.space.items():
            if is_active(dist, params):
                params[key] = suggest(trial, key, dist)
        return params
