"""The ablation phase end to end (study/ablate.py, analysis/ablation.py): the real tiny study of
tests/derived_study.py (the fixed arm and a controller arm reading encoder-side statistics), SIGKILLed during its
ablation phase and resumed; its ablation has two questions, the statistics and rho's granularity. Checked:
one run per (option, seed), each with the centre's config on its seed but for the overrides; the kill left
finished trials untouched and the resume reran none; ablate.json, status, tables and report say which option ran,
which is the centre's and which is not applicable and why; the verdicts are Holm-corrected over every option.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.ablation import answers, paired_vs_centre
from analysis.runs import confirmation_winner
from analysis.load import build_tables
from analysis.stats import VERDICTS, holm
from diffctl.config import load_config
from derived_study import AXES, EXPECTED, RUNNING, SEEDS
from study.phases.ablate import NOT_APPLICABLE, RUNS, SAME, read_plan
from study.protocol.plan import ablate_label
from study.trialdir import ABANDONED, ERROR
from study_kill import assert_nothing_reran
from tiny_specs import run_diffctl

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study(derived_study):  # killed once some ablation run is final, not all of them
    return derived_study["ablate"]


def _infos(study_dir: Path, label: str) -> list[tuple[Path, dict]]:
    """The option's trials, but those a killed driver started after its last snapshot (abandoned, replaced)."""
    infos = [(p.parent, json.loads(p.read_text())) for p in sorted(study_dir.glob(f"ablate/{label}/*/trial.json"))]
    return [(d, i) for d, i in infos if not (i["status"] == ERROR and (i["reason"] or "").startswith(ABANDONED))]


def test_killed_in_the_ablation_phase_and_resumed_without_rerunning(study):
    assert_nothing_reran(study, "ablate")
    study_dir = study[0]
    for (axis, option), status in EXPECTED.items():
        infos = [info for _, info in _infos(study_dir, ablate_label("controller", axis, option))]
        if status == RUNS:  # every seed once, none twice
            assert sorted(i["seed"] for i in infos if i["status"] == "ok") == SEEDS, (axis, option)
        else:
            assert infos == [], (axis, option)


def test_the_plan_names_the_centre_and_every_options_status(study):
    study_dir = study[0]
    plan = read_plan(study_dir)
    assert plan.arm == "controller" and plan.seeds == SEEDS
    assert {(o.axis, o.option): o.status for o in plan.options} == EXPECTED
    # The centre is the configuration the analysis confirms, by the same rule; its runs are its confirmation runs.
    assert plan.centre == confirmation_winner(build_tables(study_dir), "controller")
    confirm = {info["trial_id"]: info for info in (json.loads(p.read_text())
                                                   for p in study_dir.glob("confirm/controller/*/trial.json"))}
    assert sorted(r.seed for r in plan.runs) == SEEDS
    for run in plan.runs:
        assert confirm[run.trial_id]["source_trial"] == plan.centre and confirm[run.trial_id]["seed"] == run.seed
        assert confirm[run.trial_id]["params"] == plan.params
    reason = next(o.reason for o in plan.options if o.option == "entropies")
    assert reason.startswith("arm.stats:") and "'H_A' needs the decoder" in reason


def test_each_run_is_the_centres_run_on_its_seed_but_for_the_overrides(study):
    study_dir = study[0]
    plan = read_plan(study_dir)
    centre_run = {r.seed: r.trial_id for r in plan.runs}
    checked = 0
    for axis, option in RUNNING:
        overrides = AXES[axis][option]
        for trial_dir, info in _infos(study_dir, ablate_label("controller", axis, option)):
            assert info["source_trial"] == centre_run[info["seed"]] and info["source_arm"] == "controller"
            assert (info["ablate_axis"], info["ablate_option"], info["overrides"]) == (axis, option, overrides)
            assert info["params"] == plan.params
            mine = load_config(trial_dir / "config.yaml").to_dict()
            source = load_config(study_dir / "confirm" / "controller" / info["source_trial"] / "config.yaml").to_dict()
            assert mine["seed"] == source["seed"] == info["seed"]
            for key, value in overrides.items():  # the override applied, and it changed the centre's value
                section, leaf = key.split(".")
                assert mine[section][leaf] == value != source[section][leaf]
                mine[section][leaf] = source[section][leaf]
            assert mine == source  # everything else equal
            checked += 1
    assert checked == len(RUNNING) * len(SEEDS)


def test_status_lists_every_option(study):
    study_dir = study[0]
    lines = run_diffctl("study", "status", str(study_dir)).stdout.splitlines()
    for (axis, option), status in EXPECTED.items():
        row = next(line.split() for line in lines if ablate_label("controller", axis, option) in line)
        shown = {RUNS: "done", SAME: "same", NOT_APPLICABLE: "n/a"}[status]
        ok = str(len(SEEDS)) if status == RUNS else "0"
        assert row[0] == "ablate" and row[2] == shown and row[3] == ok and row[8] == ok, row
    assert any(line.strip().startswith("statistics: entropies: not applicable: arm.stats:") for line in lines)
    assert any(line.strip() == "rho granularity: batch: same as the centre" for line in lines)


def test_tables_and_report_give_the_verdict_of_every_option(study):
    study_dir = study[0]
    answers = pd.read_csv(study_dir / "tables" / "ablation_answers.csv")
    assert {(r.axis, r.option): r.status for r in answers.itertuples()} == EXPECTED
    ran = answers[answers["status"] == RUNS]
    assert set(ran["verdict"]) <= set(VERDICTS) and (ran["n_pairs"] == len(SEEDS)).all()
    assert (ran["metric"] == "triplet_r_A").all() and ran["mean_diff"].notna().all()
    compared = pd.read_csv(study_dir / "tables" / "ablation.csv")
    assert set(compared["metric"]) == {"val_loss_unweighted", "triplet_r_A"}
    assert (compared["reference"] == "controller").all() and (compared["n_pairs"] == len(SEEDS)).all()
    # One Holm family per table (issue 32): every option of every question at one budget on one metric.
    for _, family in compared.groupby(["budget", "metric"]):
        assert len(family) == len(RUNNING) and set(family["axis"]) == {axis for axis, _ in RUNNING}
        np.testing.assert_allclose(family["p_holm"], holm(family["p_value"]), equal_nan=True)
    report = (study_dir / "report.md").read_text()
    section = report[report.index("## Open questions"):report.index("### Observational evidence")]
    for axis in AXES:
        line = next(line for line in section.splitlines() if line.startswith(f"- {axis} (ablation around "
                                                                           "`controller`'s confirmed configuration"))
        assert f"{len(SEEDS)} seeds, on triplet_r_A" in line
        for r in answers[answers["axis"] == axis].itertuples():
            assert f"`{r.option}` {r.answer}" in line
            assert line in report[:report.index("## Cost")]  # also among the conclusions
    assert "`entropies` not applicable: arm.stats:" in section and "`batch` same as the centre" in section
    for r in ran.itertuples():
        assert f"{r.mean_diff:+.4g} (95% CI {r.ci_low:+.4g} to {r.ci_high:+.4g}" in r.answer


def test_a_better_option_that_missed_the_constraints_is_not_an_improvement(study):
    study_dir = study[0]
    tables, plan = build_tables(study_dir), read_plan(study_dir)
    paired = paired_vs_centre(tables, plan)
    label = ablate_label("controller", "rho granularity", "sample")
    assert answers(tables, plan, paired).set_index("label").loc[label, "feasible_seeds"] == f"{len(SEEDS)}/{len(SEEDS)}"
    # The same option made better on the selection metric, worse on the other objective, infeasible on one seed.
    whole = (paired["label"] == label) & (paired["budget"] == 1.0)
    paired.loc[whole & (paired["metric"] == "triplet_r_A"), "verdict"] = "better"
    paired.loc[whole & (paired["metric"] == "val_loss_unweighted"), "verdict"] = "worse"
    tables.trials.loc[(tables.trials["arm"] == label) & (tables.trials["seed"] == SEEDS[0]), "feasible"] = False
    row = answers(tables, plan, paired).set_index("label").loc[label]
    assert row["verdict"] == "better" and row["feasible_seeds"] == f"{len(SEEDS) - 1}/{len(SEEDS)}"
    assert row["answer"].endswith(f"better; not an improvement: feasible on {len(SEEDS) - 1}/{len(SEEDS)} runs "
                                  f"(the centre {len(SEEDS)}/{len(SEEDS)}); worse on val_loss_unweighted")
    # An option runs on the ablation's seeds, not the confirmation's: a further confirmation seed changes neither
    # its count nor the centre's.
    confirm = tables.spec.confirm.model_copy(update={"seeds": [*tables.spec.confirm.seeds, 9999]})
    ablate = tables.spec.ablate.model_copy(update={"seeds": list(SEEDS)})
    tables.spec = tables.spec.model_copy(update={"confirm": confirm, "ablate": ablate})
    row = answers(tables, plan, paired).set_index("label").loc[label]
    assert row["feasible_seeds"] == f"{len(SEEDS) - 1}/{len(SEEDS)}" and f"(the centre {len(SEEDS)}/{len(SEEDS)})" in row["answer"]
