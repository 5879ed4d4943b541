"""The define-by-run Optuna space: conditional keys appear exactly when their condition holds, values stay in
their ranges, list choices reach the config as lists, and a seeded sampler replays the same trials."""

import math
import pickle
import warnings

import optuna
import pytest

from study.searcher import tpe_sampler
from study.space import SearchSpace
from study.spec import spec_from_dict
from tiny_specs import spec_variant

SPACE = {
    "arm.warmup": {"type": "categorical", "choices": ["none", "hold", "blend"]},
    "arm.warmup_epochs": {"type": "int", "low": 1, "high": 5, "when": {"arm.warmup": ["hold", "blend"]}},
    "arm.regularizer_strength": {"type": "float", "low": 0.01, "high": 10.0, "log": True},
    "arm.stats": {"type": "categorical", "choices": [["H_A", "H_B"], ["KL_A", "KL_B", "rank"]]},
    "optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "step": 1e-4},
}


@pytest.fixture(scope="module")
def spec():
    return spec_from_dict(spec_variant(arms={"ctl": {"budget": 40, "config": {"arm": {"kind": "controller"}}, "space": SPACE}}))


def _sample(spec, sampler, n):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=sampler, direction="minimize")
    space = SearchSpace(spec.arms["ctl"].space)
    out = []
    for _ in range(n):
        trial = study.ask()
        params = space(trial)
        # A value depending on the params lets TPE model something after its start-up trials.
        study.tell(trial, params["arm.regularizer_strength"] + params.get("arm.warmup_epochs", 0))
        out.append(params)
    return out


def test_conditional_keys_follow_their_condition(spec):
    samples = _sample(spec, optuna.samplers.RandomSampler(seed=3), 60)
    with_epochs = [p for p in samples if "arm.warmup_epochs" in p]
    assert {p["arm.warmup"] for p in with_epochs} <= {"hold", "blend"}
    assert all("arm.warmup_epochs" in p for p in samples if p["arm.warmup"] != "none")
    assert 0 < len(with_epochs) < len(samples)  # both branches were drawn
    for p in samples:
        assert 1 <= p.get("arm.warmup_epochs", 1) <= 5 and isinstance(p.get("arm.warmup_epochs", 1), int)
        assert 0.01 <= p["arm.regularizer_strength"] <= 10.0
        assert math.isclose(round(p["optim.lr"] / 1e-4) * 1e-4, p["optim.lr"], rel_tol=1e-9)
        assert p["arm.stats"] in (["H_A", "H_B"], ["KL_A", "KL_B", "rank"])  # a list, not its JSON text


def test_seeded_tpe_replays_the_same_trials(spec):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = _sample(spec, tpe_sampler(spec), 14)
        second = _sample(spec, tpe_sampler(spec), 14)
        other = _sample(spec, tpe_sampler(spec.model_copy(update={"sampler_seed": 1})), 14)
    assert first == second  # 10 random start-up trials, then 4 modelled by TPE
    assert first != other


def test_key_order_in_the_file_does_not_matter(spec):
    """A tool that sorts keys puts arm.warmup_epochs before its condition arm.warmup; sampling still follows it."""
    space = dict(sorted(spec.arms["ctl"].space.items(), reverse=True))
    assert list(space).index("arm.warmup_epochs") < list(space).index("arm.warmup")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=5))
    samples = [SearchSpace(space)(study.ask()) for _ in range(30)]
    assert all(("arm.warmup_epochs" in p) == (p["arm.warmup"] in ("hold", "blend")) for p in samples)
    assert list(SearchSpace(space).space).index("arm.warmup") < list(SearchSpace(space).space).index("arm.warmup_epochs")


def test_space_survives_pickling(spec):
    """OptunaSearch pickles its space with the searcher state that a resumed study reloads."""
    space = pickle.loads(pickle.dumps(SearchSpace(spec.arms["ctl"].space)))
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    assert set(space(trial)) >= {"arm.warmup", "arm.regularizer_strength", "arm.stats", "optim.lr"}
