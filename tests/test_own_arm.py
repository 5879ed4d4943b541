"""An arm of your own, defined in this file and registered at run time (``diffctl.arm_registry.register_arm``): a
ramp of the ranking weight, trained by ``diffctl.train.train`` and run through a tiny study in-process (the study's
own spec checks, trial configs, search, confirmation and distilled baselines; ``tests/study_fixture``), then
compared with the fixed-λ arm by the analysis. README "An arm of your own" walks the same steps.
"""

from __future__ import annotations

from typing import Literal
from unittest import mock

import pytest
import torch
from pydantic import Field

import study_fixture
from analysis.compare import paired_vs_fixed
from analysis.load import build_tables
from diffctl.arm_registry import register_arm, unregister_arm
from diffctl.arms import ARM_CLASSES, Arm, Control, StepInputs
from diffctl.arms.base import const
from diffctl.cli import main
from diffctl.config import config_from_dict
from diffctl.errors import InputError
from diffctl.schema import Section
from diffctl.train import train
from study.protocol import load_spec, trial_config
from study.check import checked_spec
from study.phases.registry import phase_places
from tiny_specs import TINY, spec_variant, write_spec

pytestmark = pytest.mark.slow


class RampOptions(Section):
    """The options of the ramp arm: every field has a description (``diffctl config show`` prints it)."""

    kind: Literal["ramp"] = "ramp"
    rho: float = Field(0.1, ge=0.0, le=1.0, description="rho, held constant")
    w_rank_start: float = Field(0.1, ge=0.0, le=100.0, description="w_rank at the first step")
    w_rank_end: float = Field(1.0, ge=0.0, le=100.0, description="w_rank from the end of the ramp on")
    ramp_epochs: int = Field(2, ge=1, le=10_000, description="epochs over which w_rank moves from start to end")


class RampArm(Arm):
    """A ramp of the ranking weight, linear in steps; the other weights at the fixed arm's defaults. Stateless
    (its control is a function of the step), so a resumed run needs no extra state."""

    kind = "ramp"
    Options = RampOptions

    def control(self, inputs: StepInputs) -> Control:
        o = self.options
        progress = min(1.0, (inputs.epoch + inputs.step_in_epoch / inputs.steps_per_epoch) / o.ramp_epochs)
        w_rank = o.w_rank_start + (o.w_rank_end - o.w_rank_start) * progress
        return Control(rho=const(o.rho), w_recon=const(1.0), w_kl=const(0.1), w_rank=torch.tensor(w_rank),
                       w_ent=const(0.1))


EVAL = {"prior_samples": 200, "triplet_indices": 500, "triplets": 2000}
RAMP = {"budget": 2, "config": {"arm": {"kind": "ramp", "w_rank_start": 0.1}},
        "space": {"arm.w_rank_end": {"type": "float", "low": 0.5, "high": 2.0}}}
SPEC = spec_variant(name="own", arms={"fixed": TINY["arms"]["fixed"], "ramp": RAMP},
                    confirm={"top_k": 1, "seeds": [1001, 1002], "distill": ["final"]})
PARAMS = {"fixed": [{"arm.w_kl": 0.1}, {"arm.w_kl": 0.5}], "ramp": [{"arm.w_rank_end": 1.0}, {"arm.w_rank_end": 2.0}]}


@pytest.fixture(scope="module", autouse=True)
def ramp_registered():
    register_arm(RampArm)
    yield
    unregister_arm("ramp")


def test_registration_makes_a_config_kind(capsys):
    assert ARM_CLASSES["ramp"] is RampArm
    config = config_from_dict({"arm": {"kind": "ramp", "w_rank_end": 2.0}})
    assert config.arm == RampOptions(w_rank_end=2.0)
    assert main(["config", "show", "--arm", "ramp"]) == 0
    assert "arm.ramp_epochs" in capsys.readouterr().out
    with pytest.raises(ValueError, match="'ramp' is taken"):
        register_arm(RampArm)


def test_train_records_the_ramp():
    config = config_from_dict({"arm": {"kind": "ramp", "w_rank_start": 0.1, "w_rank_end": 1.0, "ramp_epochs": 2},
                               "optim": {"epochs": 3}, "eval": EVAL})
    records = list(train(config))
    assert [r["status"] for r in records] == ["ok"] * 3
    means = [r["w_rank_mean"] for r in records]  # the trainer records every arm's control as epoch means
    assert 0.1 < means[0] < 0.55 < means[1] < 1.0 and means[2] == pytest.approx(1.0)
    assert all(r["rho_mean"] == pytest.approx(0.1) and r["w_kl_mean"] == pytest.approx(0.1) for r in records)


def test_a_tiny_study_runs_and_compares_the_arm(tmp_path_factory):
    root = tmp_path_factory.mktemp("own-arm")
    spec = checked_spec(write_spec(root, SPEC))  # every check of a study run, the probe epoch of kind ramp included
    assert spec.reference_arm() == "fixed"
    assert ("distill", "ramp.distilled_final") in phase_places(spec)  # its weights move: distilled like any arm
    assert config_from_dict(trial_config(spec, "ramp", {"arm.w_rank_end": 2.0}, seed=1001)).arm.w_rank_end == 2.0
    study_dir = root / SPEC["name"]
    with mock.patch.object(study_fixture, "SPEC", SPEC), mock.patch.object(study_fixture, "SEARCH_PARAMS", PARAMS):
        study_fixture.build_direct_study(study_dir)
    tables = build_tables(study_dir)
    trials = tables.trials
    confirm = trials[(trials["phase"] == "confirm") & (trials["arm"] == "ramp")]
    assert len(confirm) == 2 and confirm["usable"].all() and set(confirm["arm.kind"]) == {"ramp"}
    distilled = trials[trials["arm"] == "ramp.distilled_final"]
    assert len(distilled) == 2 and distilled["usable"].all() and set(distilled["arm.kind"]) == {"fixed"}
    paired = paired_vs_fixed(tables)
    assert set(paired["arm"]) == {"ramp"} and set(paired["reference"]) == {"fixed"}


def test_a_study_spec_names_an_unknown_kind_until_it_is_registered(tmp_path):
    unregister_arm("ramp")
    try:
        with pytest.raises(InputError, match=r"^arms.ramp.config: arm.kind: unknown arm kind 'ramp'"):
            load_spec(write_spec(tmp_path, SPEC))
    finally:
        register_arm(RampArm)
    assert load_spec(write_spec(tmp_path, SPEC)).arm_kind("ramp") == "ramp"
