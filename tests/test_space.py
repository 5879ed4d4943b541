"""The define-by-run Optuna space: conditional keys appear exactly when their condition holds, values stay in
their ranges, list choices reach the config as lists, and a seeded sampler replays the same trials."""

import json
import math
import pickle
import warnings

import optuna
import pytest

from study.phases.search import SearchSpace, arm_sampler_seed, tpe_sampler
from study.protocol import ArmSpec, spec_from_dict
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
        first = _sample(spec, tpe_sampler(spec, "ctl"), 14)
        second = _sample(spec, tpe_sampler(spec, "ctl"), 14)
        other = _sample(spec, tpe_sampler(spec.model_copy(update={"sampler_seed": 1}), "ctl"), 14)
    assert first == second  # the start-up trials, then the ones modelled by TPE
    assert first != other


def test_arms_draw_apart_and_size_their_start_up_to_their_budget(spec):
    """Two arms with the same key and range no longer draw the same values (one sampler seed for every arm made
    the fixed arm's rho and the uncertainty arm's rho both 0.30138...); the start-up is a third of the budget."""
    twin = spec.model_copy(update={"arms": {"ctl": spec.arms["ctl"], "b": spec.arms["ctl"]}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = _sample(twin, tpe_sampler(twin, "ctl"), 3)  # both sample the same space
        b = _sample(twin, tpe_sampler(twin, "b"), 3)
    assert a != b and arm_sampler_seed(twin, "ctl") != arm_sampler_seed(twin, "b")
    assert tpe_sampler(twin, "ctl")._n_startup_trials == twin.arms["ctl"].startup() == 10
    sizes = {budget: ArmSpec(budget=budget).startup() for budget in (2, 6, 30, 64, 320)}
    assert sizes == {2: 2, 6: 2, 30: 10, 64: 10, 320: 10}
    assert ArmSpec(budget=6, startup_trials=4).startup() == 4


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


def test_an_enqueued_default_of_a_mixed_categorical_is_suggested_back():
    """A categorical key whose choices mix ``None`` (a source's default statistics) with lists reaches Optuna as
    JSON text for every choice: the arm's defaults, enqueued as the first trial of its search, must be encoded the
    same way, ``None`` included (a search starting at ``arm.stats: null`` once failed with "'None' not in
    ('null', ...)")."""
    dist = {"type": "categorical", "choices": [None, ["H_A", "H_B"], ["KL_A", "KL_B", "rank"]]}
    arm = ArmSpec.model_validate({"budget": 2, "config": {}, "space": {"arm.stats": dist, "arm.rho": {
        "type": "categorical", "choices": [None, 0.1]}}})
    space = SearchSpace(arm.space)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for default in (None, ["KL_A", "KL_B", "rank"]):
        study = optuna.create_study()
        encoded = space.encoded({"arm.stats": default, "arm.rho": None})
        assert encoded["arm.stats"] == json.dumps(default) and encoded["arm.rho"] is None  # scalar choices: as is
        study.enqueue_trial(encoded)
        assert space(study.ask()) == {"arm.stats": default, "arm.rho": None}
