"""One run per distinct configuration in the ablation (study/phases/ablate.py, analysis/ablation.py).

A tiny study built in-process (tests/study_fixture.py's ``build_direct_study`` with the spec below): a controller
arm whose centre reads the default statistics from ``pre_decode``, and an ablation with two pairs of options that
resolve to one configuration each — across two questions, the published study's pair (``stats`` = the
encoder-side set, and ``stats_source: encoder`` with its default statistics, which are that set: the source then
changes nothing), and within one question two spellings of the same override. Each pair runs once: the first
option in spec order; the second is "same as <its label>" in ``ablate.json``, has no runs, and the analysis
answers it once, naming both options.
"""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest

import study_fixture
from analysis.ablation import answer_lines, answers, paired_vs_centre
from analysis.load import build_tables
from diffctl.arms.statistics import ENCODER_STATS
from diffctl.config import config_from_dict, load_config
from study.phases.ablate import (
    NOT_APPLICABLE,
    RUNS,
    SAME,
    SAME_AS,
    PlannedOption,
    effective_config,
    read_plan,
)
from study.protocol import spec_from_dict, trial_config
from study.protocol.plan import ABLATE, ablate_label
from study.phases.registry import phase, place_of
from tiny_specs import spec_variant

pytestmark = pytest.mark.slow

SEED = 1001
AXES = {
    "statistics": {"encoder side": {"arm.stats": list(ENCODER_STATS)},
                   "entropies": {"arm.stats": ["H_A", "H_B", "H_gap"]}},
    "statistics source": {"pre-decode": {"arm.stats_source": "pre_decode"},
                          "encoder": {"arm.stats_source": "encoder", "arm.stats": None}},
    "rho granularity": {"sample": {"arm.rho_granularity": "sample"},
                        "per sample": {"arm.rho_granularity": "sample", "arm.detach_stats": True}},
}
SPEC = spec_variant(
    name="dedup",
    arms={"controller": {"budget": 1,
                         "config": {"arm": {"kind": "controller", "stats_source": "pre_decode", "detach_stats": True}},
                         "space": {"arm.controller_lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}}},
    ablate={"arm": "controller", "seeds": [SEED], "axes": AXES},
)
SEARCH_PARAMS = {"controller": [{"arm.controller_lr": 0.005}]}
ENCODER_SIDE = ablate_label("controller", "statistics", "encoder side")
SAMPLE = ablate_label("controller", "rho granularity", "sample")
EXPECTED = {("statistics", "encoder side"): RUNS, ("statistics", "entropies"): RUNS,
            ("statistics source", "pre-decode"): SAME, ("statistics source", "encoder"): SAME_AS + ENCODER_SIDE,
            ("rho granularity", "sample"): RUNS, ("rho granularity", "per sample"): SAME_AS + SAMPLE}
RUNNING = [ablate_label("controller", axis, option) for (axis, option), s in EXPECTED.items() if s == RUNS]


@pytest.fixture(scope="module")
def dedup_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dedup") / SPEC["name"]
    with mock.patch.object(study_fixture, "SPEC", SPEC), mock.patch.object(study_fixture, "SEARCH_PARAMS",
                                                                           SEARCH_PARAMS):
        return study_fixture.build_direct_study(root)


def test_options_with_one_configuration_run_once_and_the_plan_names_both(dedup_study):
    plan = read_plan(dedup_study)
    assert plan.centre is not None and [r.seed for r in plan.runs] == [SEED]
    assert {(o.axis, o.option): o.status for o in plan.options} == EXPECTED
    same_as = {o.label: o.same_as for o in plan.options if o.same_as}
    assert same_as == {ablate_label("controller", "statistics source", "encoder"): ENCODER_SIDE,
                       ablate_label("controller", "rho granularity", "per sample"): SAMPLE}
    # One set of runs per configuration: the first option's; the other option has no directory at all.
    ran = {d.name: sorted(q.name for q in d.iterdir()) for d in (dedup_study / "ablate").iterdir()}
    assert ran == {label: [f"s{SEED}"] for label in RUNNING}
    for label in same_as:
        spec = spec_from_dict(SPEC)
        planned = phase(ABLATE).plan(spec, dedup_study, place_of(spec, ABLATE, label))
        assert planned.runs == [] and planned.notes == [f"{ABLATE} {label}: {SAME_AS}{same_as[label]}; no runs"]
    # What ran is the configuration both options name: the encoder-side statistics, pre_decode or encoder alike.
    ran_config = load_config(dedup_study / "ablate" / ENCODER_SIDE / f"s{SEED}" / "config.yaml").to_dict()
    twin = config_from_dict(trial_config(spec_from_dict(SPEC), "controller", plan.params, SEED,
                                         {"arm.stats_source": "encoder", "arm.stats": None})).to_dict()
    assert ran_config["arm"]["stats"] == list(ENCODER_STATS) and ran_config["arm"]["stats_source"] == "pre_decode"
    assert twin["arm"]["stats"] is None and twin["arm"]["stats_source"] == "encoder"
    assert effective_config({**ran_config, "eval": twin["eval"]}) == effective_config(twin)


def test_the_analysis_answers_one_configuration_once_naming_both_options(dedup_study):
    tables = build_tables(dedup_study)
    plan = read_plan(dedup_study)
    paired = paired_vs_centre(tables, plan)
    assert set(paired["label"]) == set(RUNNING)  # compared once: the twin is no member of any Holm family
    table = answers(tables, plan, paired).set_index("label")
    assert table.loc[ablate_label("controller", "statistics source", "encoder"), "answer"] == (
        "same configuration as statistics `encoder side` (run once, answered there)")
    assert table.loc[ENCODER_SIDE, "answer"].endswith(" (one configuration with statistics source `encoder`)")
    assert table.loc[SAMPLE, "answer"].endswith(" (one configuration with rho granularity `per sample`)")
    lines = "\n".join(answer_lines(tables, plan, answers(tables, plan, paired)))
    assert lines.count("`encoder side`") == 2 and "`encoder` same configuration as statistics `encoder side`" in lines


def test_a_damaged_status_is_refused():
    base = dict(axis="a", option="o", label="x.ablate.a.o", overrides={"arm.rho": 0.1})
    assert PlannedOption(**base, status=NOT_APPLICABLE).same_as is None
    assert PlannedOption(**base, status=SAME_AS + "y", same_as="y").status == "same as y"
    for bad in (dict(status="same as y"), dict(status="same as z", same_as="y"), dict(status="maybe")):
        with pytest.raises(ValueError):
            PlannedOption(**base, **bad)
