"""The study spec: resolution, config assembly, and bad specs that fail before anything starts (one line, the
key named, exit 2, no study directory)."""

import os

import pytest
import yaml

from diffctl.cli import main
from diffctl.config import config_from_dict
from diffctl.errors import InputError
from study.spec import check_resources, dump_spec, load_spec, spec_from_dict
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
    assert spec.total_trials() == 4 + 2 * 1 * 2
    data = spec.trial_config("lr", {"optim.lr": 0.001, "arm.w_rank": 0.25}, seed=1001)
    config = config_from_dict(data)
    assert (config.seed, config.optim.lr, config.arm.w_rank, config.optim.epochs) == (1001, 0.001, 0.25, 2)
    assert config.eval.prior_samples == 200 and config.optim.threads == 1


def test_arm_section_of_another_kind_replaces_the_base_one(tmp_path):
    raw = spec_variant(base={"arm": {"kind": "fixed", "w_kl": 0.3}, "eval": TINY["base"]["eval"]})
    raw["arms"]["lr"]["config"] = {"arm": {"kind": "scheduled"}}
    spec = load_spec(write_spec(tmp_path, raw))
    assert spec.trial_config("fixed", {})["arm"] == {"kind": "fixed", "w_kl": 0.3}  # merged
    assert spec.trial_config("lr", {})["arm"] == {"kind": "scheduled"}  # replaced


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
]


@pytest.mark.parametrize("case, changes, message", BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_bad_spec_names_the_key(tmp_path, case, changes, message):
    with pytest.raises(InputError) as info:
        load_spec(write_spec(tmp_path, spec_variant(**changes)))
    text = str(info.value)
    assert text.startswith(message), text
    assert "\n" not in text


def test_missing_objectives_is_named(tmp_path):
    raw = spec_variant()
    del raw["objectives"]
    with pytest.raises(InputError, match=r"^objectives: missing$"):
        load_spec(write_spec(tmp_path, raw))


CLI_CASES = [
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
