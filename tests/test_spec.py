"""The study spec: resolution, config assembly, and bad specs that fail before anything starts (one line, the
key named, exit 2, no study directory)."""

import os
from pathlib import Path

import pytest
import yaml

from diffctl.cli import main
from diffctl.config import config_from_dict
from diffctl.errors import InputError
from study.protocol import check_resources, dump_spec, load_spec, spec_from_dict
from study.protocol import trial_config
from study.check import checked_spec
from study.phases.registry import phase_places, place_bound, total_trials
from tiny_specs import TINY, spec_variant, write_spec


def _arms(**changes):
    """TINY's arms with the fixed arm's entries replaced."""
    arms = spec_variant()["arms"]
    arms["fixed"].update(changes)
    return arms


def test_spec_resolves_and_assembles_trial_configs(tmp_path):
    spec = load_spec(write_spec(tmp_path, spec_variant(name=None, selection=None)), max_concurrent=3)
    assert spec.name == "spec"  # the file's stem when the spec names none
    assert spec.selection.metric == "val_loss_unweighted" and spec.selection.mode == "min"
    assert spec.max_concurrent == 3
    assert total_trials(spec) == 4 + 2 * 1 * 2
    data = trial_config(spec, "lr", {"optim.lr": 0.001, "arm.w_rank": 0.25}, seed=1001)
    config = config_from_dict(data)
    assert (config.seed, config.optim.lr, config.arm.w_rank, config.optim.epochs) == (1001, 0.001, 0.25, 2)
    assert config.eval.prior_samples == 200 and config.optim.threads == 1


def test_arm_section_of_another_kind_replaces_the_base_one(tmp_path):
    raw = spec_variant(base={"arm": {"kind": "fixed", "w_kl": 0.3}, "eval": TINY["base"]["eval"]})
    raw["arms"]["lr"]["config"] = {"arm": {"kind": "scheduled"}}
    spec = load_spec(write_spec(tmp_path, raw))
    assert trial_config(spec, "fixed", {})["arm"] == {"kind": "fixed", "w_kl": 0.3}  # merged
    assert trial_config(spec, "lr", {})["arm"] == {"kind": "scheduled"}  # replaced


def test_resolved_spec_round_trips(tmp_path):
    spec = load_spec(write_spec(tmp_path, TINY), name="other")
    again = spec_from_dict(yaml.safe_load(dump_spec(spec)))
    assert again == spec and again.name == "other"


BAD_SPECS = [
    ("unknown arm kind", {"arms": _arms(config={"arm": {"kind": "nope"}})}, "arms.fixed.config: arm.kind: unknown arm kind 'nope'"),
    ("empty space", {"arms": _arms(space={})}, "arms.fixed.space: empty"),
    ("budget 0", {"arms": _arms(budget=0)}, "arms.fixed.budget: input should be greater than or equal to 1"),
    (
        "unknown objective metric",
        {"objectives": [{"metric": "triplet_r_Z", "mode": "max"}]},
        "objectives[0].metric: unknown metric 'triplet_r_Z'",
    ),
    ("unknown constraint metric", {"constraints": ["exact_A >= 0.9"]}, "constraints[0]: unknown metric 'exact_A'"),
    ("non-numeric metric", {"selection": {"metric": "status", "mode": "max"}}, "selection.metric: 'status' is not a numeric"),
    ("bad constraint", {"constraints": ["val_exact_match_A ~ 1"]}, "constraints[0]: 'val_exact_match_A ~ 1' is not"),
    ("unknown base key", {"base": {"optim": {"lrx": 1.0}}}, "base: optim.lrx: unknown key"),
    ("unknown arm config key", {"arms": _arms(config={"arm": {"kind": "fixed", "w_foo": 1.0}})}, "arms.fixed.config: arm.w_foo: unknown key"),
    (
        "unknown space key",
        {"arms": _arms(space={"arm.w_foo": {"type": "float", "low": 0.1, "high": 0.2}})},
        "arms.fixed.space: arm.w_foo: unknown key",
    ),
    (
        "range outside the config's bounds",
        {"arms": _arms(space={"arm.w_kl": {"type": "float", "low": 0.1, "high": 2000.0}})},
        "arms.fixed.space: arm.w_kl: input should be less than or equal to 1000",
    ),
    ("reserved key in base", {"base": {"optim": {"epochs": 5}}}, "base.optim.epochs: set by the spec's epochs"),
    ("seed searched", {"arms": _arms(space={"seed": {"type": "int", "low": 0, "high": 9}})}, "arms.fixed.space.seed: not searchable"),
    (
        "condition on an unknown key",
        {"arms": _arms(space={"arm.w_kl": {"type": "float", "low": 0.1, "high": 0.2, "when": {"arm.rho": [0.1]}}})},
        "arms.fixed.space.arm.w_kl.when.arm.rho: not another key of this space",
    ),
    (
        "conditions in a cycle",
        {
            "arms": _arms(
                space={
                    "arm.rho": {"type": "categorical", "choices": [0.1, 0.2], "when": {"arm.w_kl": [0.1]}},
                    "arm.w_kl": {"type": "categorical", "choices": [0.1, 0.2], "when": {"arm.rho": [0.1]}},
                }
            )
        },
        "arms.fixed.space: the 'when' conditions of arm.rho, arm.w_kl form a cycle",
    ),
    ("empty range", {"arms": _arms(space={"arm.w_kl": {"type": "float", "low": 0.5, "high": 0.5}})}, "arms.fixed.space.arm.w_kl: low (0.5) must be below high (0.5)"),
    ("log from zero", {"arms": _arms(space={"arm.w_kl": {"type": "float", "low": 0.0, "high": 1.0, "log": True}})}, "arms.fixed.space.arm.w_kl.low: must be positive"),
    ("unknown distribution", {"arms": _arms(space={"arm.w_kl": {"type": "gauss"}})}, "arms.fixed.space.arm.w_kl.type: unknown distribution type 'gauss'"),
    ("confirm seed = search seed", {"confirm": {"top_k": 1, "seeds": [0, 5]}}, "confirm.seeds: 0 is the search seed of arm fixed"),
    ("unknown top-level key", {"objectivs": []}, "objectivs: unknown key"),
    ("no arms", {"arms": {}}, "arms: dictionary should have at least 1 item"),
    ("ablate: unknown arm", {"ablate": {"arm": "nope", "axes": {"rho": {"zero": {"arm.rho": 0.0}}}}},
     "ablate.arm: unknown arm 'nope' (arms: fixed, lr)"),
    ("ablate: unknown key", {"ablate": {"arm": "fixed", "axes": {"warm-up": {"hold 5": {"arm.warmp": 1}}}}},
     "ablate.axes.warm-up.hold 5.arm.warmp: unknown key"),
    ("ablate: unknown nested key", {"ablate": {"arm": "fixed", "axes": {"x": {"y": {"optim": {"lrx": 1}}}}}},
     "ablate.axes.x.y.optim.lrx: unknown key"),
    ("ablate: label with a slash", {"ablate": {"arm": "fixed", "axes": {"rho": {"a/b": {"arm.rho": 0.0}}}}},
     "ablate.axes.rho.a/b: a label uses letters, digits, spaces"),
    ("ablate: label of 65 characters", {"ablate": {"arm": "fixed", "axes": {"x" * 65: {"a": {"arm.rho": 0.0}}}}},
     f"ablate.axes.{'x' * 65}: a label uses"),
    ("ablate: too many axes", {"ablate": {"arm": "fixed", "axes": {f"q{i}": {"a": {"arm.rho": 0.0}} for i in range(21)}}},
     "ablate.axes: dictionary should have at most 20 items"),
    ("ablate: too many options", {"ablate": {"arm": "fixed", "axes": {"q": {f"o{i}": {"arm.rho": 0.0} for i in range(11)}}}},
     "ablate.axes.q: dictionary should have at most 10 items"),
    ("ablate: labels that collide", {"ablate": {"arm": "fixed", "axes": {"q": {"a b": {"arm.rho": 0.0}, "a_b": {"arm.rho": 0.2}}}}},
     "ablate.axes.q.a_b: its arm label 'fixed.ablate.q.a_b' is also that of ablate.axes.q.a b"),
    ("ablate: a key below a value", {"ablate": {"arm": "fixed", "axes": {"q": {"a": {"arm.rho.x": 0.0}}}}},
     "ablate.axes.q.a.arm.rho.x: unknown key (arm.rho is not a section)"),
    ("ablate: the seed", {"ablate": {"arm": "fixed", "axes": {"q": {"a": {"seed": 3}}}}},
     "ablate.axes.q.a.seed: not ablatable, set by ablate.seeds"),
    ("ablate: the arm kind", {"ablate": {"arm": "fixed", "axes": {"q": {"a": {"arm.kind": "dwa"}}}}},
     "ablate.axes.q.a.arm.kind: not ablatable"),
    ("ablate: the epochs", {"ablate": {"arm": "fixed", "axes": {"q": {"a": {"optim.epochs": 3}}}}},
     "ablate.axes.q.a.optim.epochs: not ablatable, set by the spec's epochs"),
    ("ablate: no overrides", {"ablate": {"arm": "fixed", "axes": {"q": {"a": {}}}}},
     "ablate.axes.q.a: dictionary should have at least 1 item"),
    ("ablate: not a confirmation seed", {"ablate": {"arm": "fixed", "seeds": [7], "axes": {"q": {"a": {"arm.rho": 0.0}}}}},
     "ablate.seeds: 7 is not a confirmation seed"),
    ("ablate: repeated seed", {"ablate": {"arm": "fixed", "seeds": [1001, 1001], "axes": {"q": {"a": {"arm.rho": 0.0}}}}},
     "ablate.seeds: repeated seed"),
    ("ablate: unknown section key", {"ablate": {"arm": "fixed", "axis": {}}},
     "ablate.axis: unknown key (did you mean ablate.axes?)"),
]


@pytest.mark.parametrize("case, changes, message", BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_bad_spec_names_the_key(tmp_path, case, changes, message):
    with pytest.raises(InputError) as info:
        checked_spec(write_spec(tmp_path, spec_variant(**changes)))
    text = str(info.value)
    assert text.startswith(message), text
    assert "\n" not in text


def test_missing_objectives_is_named(tmp_path):
    raw = spec_variant()
    del raw["objectives"]
    with pytest.raises(InputError, match=r"^objectives: missing$"):
        load_spec(write_spec(tmp_path, raw))


def test_an_ablation_resolves_and_judges_each_option_against_a_centre(tmp_path):
    from study.ablation_options import NOT_APPLICABLE, RUNS, SAME, option_status
    from study.protocol.plan import ablated_arms

    axes = {"rho": {"zero": {"arm.rho": 0.0}, "as centre": {"arm.rho": 0.3}},
            "kl": {"huge": {"arm.w_kl": 5000.0}}}  # out of the arm's range: no centre takes it
    with pytest.raises(InputError, match=r"^ablate.axes.kl.huge.arm.w_kl: input should be less than or equal to 1000"):
        load_spec(write_spec(tmp_path, spec_variant(ablate={"arm": "fixed", "seeds": [1002], "axes": axes})))
    loaded = {"rho": axes["rho"], "kl": {"huge": {"arm.w_kl": 500.0}}}
    spec = load_spec(write_spec(tmp_path, spec_variant(ablate={"arm": "fixed", "seeds": [1002], "axes": loaded})))
    assert spec_from_dict(yaml.safe_load(dump_spec(spec))) == spec
    assert [label for label, *_ in ablated_arms(spec)] == [
        "fixed.ablate.rho.zero", "fixed.ablate.rho.as_centre", "fixed.ablate.kl.huge"]
    assert total_trials(spec) == 4 + 2 * 1 * 2 + 3 * 1  # three options on one seed
    data = trial_config(spec, "fixed", {"arm.w_kl": 0.2}, seed=1002, overrides={"arm.rho": 0.0})
    assert (data["arm"], data["seed"]) == ({"kind": "fixed", "w_kl": 0.2, "rho": 0.0}, 1002)
    centre = {"arm.w_kl": 0.2, "arm.rho": 0.3}
    assert option_status(spec, "fixed", centre, 1002, axes["rho"]["zero"]) == (RUNS, None)
    assert option_status(spec, "fixed", centre, 1002, axes["rho"]["as centre"]) == (SAME, None)
    status, reason = option_status(spec, "fixed", centre, 1002, axes["kl"]["huge"])
    assert status == NOT_APPLICABLE and reason.startswith("arm.w_kl: input should be less than or equal to 1000")


CLI_CASES = [
    ("ablate: unknown key", {"ablate": {"arm": "fixed", "axes": {"q": {"a": {"arm.w_foo": 1.0}}}}},
     "ablate.axes.q.a.arm.w_foo: unknown key"),
    ("unknown arm kind", {"arms": _arms(config={"arm": {"kind": "nope"}})}, "unknown arm kind"),
    ("empty space", {"arms": _arms(space={})}, "arms.fixed.space: empty"),
    ("budget 0", {"arms": _arms(budget=0)}, "arms.fixed.budget"),
    ("unknown metric", {"objectives": [{"metric": "nelbo", "mode": "min"}]}, "unknown metric 'nelbo'"),
    ("more CPUs than the machine", {"cpus_per_trial": (os.cpu_count() or 1) + 1}, "cpus_per_trial: "),
]


@pytest.mark.parametrize("case, changes, message", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_spec_fails_before_anything_starts(tmp_path, capsys, case, changes, message):
    spec_path = write_spec(tmp_path, spec_variant(**changes))
    storage = tmp_path / "results"
    code = main(["study", "run", str(spec_path), "--storage", str(storage)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("diffctl: error: ") and message in err, err
    assert not (storage / "tiny").exists()


def test_cpu_request_is_checked_against_the_node():
    spec = spec_from_dict(spec_variant(cpus_per_trial=4))
    check_resources(spec, 4, "this machine")
    with pytest.raises(InputError, match=r"^cpus_per_trial: 4 is more than the cluster has \(2 CPUs\)$"):
        check_resources(spec, 2, "the cluster")


def test_existing_study_directory_is_refused(tmp_path, capsys):
    spec_path = write_spec(tmp_path, TINY)
    (tmp_path / "results" / "tiny").mkdir(parents=True)
    assert main(["study", "run", str(spec_path), "--storage", str(tmp_path / "results")]) == 2
    assert "exists (resume it with: diffctl study resume" in capsys.readouterr().err


def test_a_thinned_full_evaluation_keeps_every_asha_rung_full(tmp_path):
    """With eval.full_every > 1 every trial config lists ASHA's rung epochs in eval.full_epochs (merged with the
    ones the spec lists); with full_every 1 the config is left as written; without ASHA there are no rungs."""
    from study.protocol.configs import full_eval_epochs

    base = {"eval": dict(TINY["base"]["eval"], full_every=4, full_epochs=[5])}
    spec = load_spec(write_spec(tmp_path, spec_variant(epochs=12, base=base,
                                                       asha={"grace_period": 1, "reduction_factor": 3})))
    listed = full_eval_epochs(spec)
    assert {1, 3, 9} <= set(listed) <= set(range(1, 13))  # the rungs (and whatever else the study reads)
    config = config_from_dict(trial_config(spec, "lr", {"optim.lr": 0.001, "arm.w_rank": 0.5}, seed=1001))
    assert config.eval.full_epochs == sorted({5, *listed})
    assert {e for e in range(1, 13) if config.eval.full_at(e, 12)} == {1, 3, 4, 5, 8, 9, 12, *listed}
    every = dict(base["eval"], full_every=1)
    plain = spec_from_dict(spec_variant(epochs=12, base={"eval": every}, asha={"grace_period": 2}))
    assert trial_config(plain, "fixed", {})["eval"]["full_epochs"] == [5]
    no_asha = spec_from_dict(spec_variant(epochs=12, base=base, asha=None))
    assert not {1, 9} & set(full_eval_epochs(no_asha))


@pytest.mark.parametrize("grace, factor, epochs", [(1, 3.0, 12), (2, 2.5, 40), (10, 3.0, 40), (3, 1.5, 30), (1, 2, 1)])
def test_rung_epochs_are_the_schedulers_rungs(grace, factor, epochs):
    """study.protocol.configs.rung_epochs are the milestones of Ray's ASHA with the same grace period and reduction
    factor (first epoch >= milestone), below the last epoch; SearchPruner judges there."""
    import math

    from ray.tune.schedulers import ASHAScheduler

    from study.phases.search.pruner import SearchPruner
    from study.protocol.configs import rung_epochs

    spec = spec_from_dict(spec_variant(epochs=epochs, asha={"grace_period": grace, "reduction_factor": factor}))
    ray_asha = ASHAScheduler(time_attr="epoch", metric="x", mode="max", max_t=epochs, grace_period=grace,
                             reduction_factor=factor)
    theirs = sorted(math.ceil(m) for m, _ in ray_asha._brackets[0]._rungs if m < epochs)
    assert [e for e in rung_epochs(spec.asha, epochs) if e < epochs] == theirs == SearchPruner(spec, Path(".")).rungs
    assert theirs or epochs == 1


def _controller_arm(**config) -> dict:
    return {"budget": 2, "config": {"arm": {"kind": "controller", **config}},
            "space": {"arm.warmup_epochs": {"type": "int", "low": 1, "high": 3}}}


def test_a_grace_period_not_longer_than_a_warm_up_is_refused(tmp_path):
    """A rung must not judge a trial during its hold or blend warm-up: the spec check refuses a grace period that is
    not longer than the longest warm-up an arm can have (here 3 epochs of hold), naming both."""
    arms = {"ctl": _controller_arm(warmup="hold")}
    refused = spec_variant(epochs=6, arms=arms, reference="ctl", asha={"grace_period": 3, "reduction_factor": 2})
    with pytest.raises(InputError, match=r"^asha.grace_period: 3 is not longer than the 3-epoch warm-up arm ctl"):
        load_spec(write_spec(tmp_path, refused))
    for fine in ({"grace_period": 4, "reduction_factor": 2}, None):  # a longer grace, or no early stopping
        load_spec(write_spec(tmp_path, spec_variant(epochs=6, arms=arms, reference="ctl", asha=fine)))
    # a warm-up that does not hold the controller back (init at the defaults) leaves any grace period free
    free = spec_variant(epochs=6, arms={"ctl": _controller_arm(warmup="init_at_defaults")}, reference="ctl",
                        asha={"grace_period": 1, "reduction_factor": 2})
    load_spec(write_spec(tmp_path, free))


def test_an_audit_needs_early_stopping(tmp_path):
    with pytest.raises(InputError, match=r"^audit: no early stopping to audit"):
        load_spec(write_spec(tmp_path, spec_variant(audit={"per_arm": 1}, asha=None)))
    spec = load_spec(write_spec(tmp_path, spec_variant(audit={"per_arm": 2}, epochs=4,
                                                       asha={"grace_period": 1, "reduction_factor": 2})))
    assert place_bound(spec, "audit", "fixed") == 2 and ("audit", "lr") in phase_places(spec)


def test_an_option_that_changes_only_inert_keys_is_not_applicable(tmp_path):
    """Under a same-loss controller the lookahead cadence and outer data change nothing: the option is not
    applicable (reported before anything runs), not a run that repeats the centre."""
    from study.ablation_options import NOT_APPLICABLE, RUNS, option_status

    arms = {"ctl": _controller_arm(objective="same_loss")}
    spec = load_spec(write_spec(tmp_path, spec_variant(arms=arms, reference="ctl")))
    status, reason = option_status(spec, "ctl", {"arm.warmup_epochs": 1}, 1001, {"arm.lookahead_every": 4})
    assert status == NOT_APPLICABLE
    assert reason == "arm.lookahead_every has no effect under arm.objective: same_loss"
    assert option_status(spec, "ctl", {"arm.warmup_epochs": 1}, 1001,
                         {"arm.objective": "lookahead", "arm.lookahead_every": 4}) == (RUNS, None)


def test_a_retuned_option_is_checked_and_runs_its_own_search(tmp_path):
    from study.phases.retune import draws

    lookahead = {"arm.objective": "lookahead",
                 "retune": {"budget": 3, "space": {"arm.virtual_lr": {"type": "float", "low": 1e-4, "high": 1e-2,
                                                                      "log": True}}}}
    axes = {"objective": {"lookahead": lookahead}}
    spec = load_spec(write_spec(tmp_path, spec_variant(arms={"ctl": _controller_arm()}, reference="ctl",
                                                       ablate={"arm": "ctl", "axes": axes})))
    label = "ctl.ablate.objective.lookahead"
    assert [(p, lab) for p, lab in phase_places(spec) if lab == label] == [("retune", label), ("ablate", label)]
    assert place_bound(spec, "retune", label) == 3 and spec.ablate.overrides("objective", "lookahead") == {
        "arm.objective": "lookahead"}
    values = draws(spec, label)
    assert len(values) == 3 and values == draws(spec, label) and len({v["arm.virtual_lr"] for v in values}) == 3
    bad = {"objective": {"lookahead": {**lookahead, "retune": {"budget": 2, "space": {
        "arm.virtual_lr": {"type": "float", "low": 1e-4, "high": 100.0}}}}}}
    with pytest.raises(InputError, match=r"^ablate.axes.objective.lookahead.retune.space: arm.virtual_lr"):
        load_spec(write_spec(tmp_path, spec_variant(arms={"ctl": _controller_arm()}, reference="ctl",
                                                    ablate={"arm": "ctl", "axes": bad})))
