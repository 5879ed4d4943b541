import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from analysis import load
from analysis.cli import analyze, analyze_command
from analysis.collapse import collapse_table
from analysis.compare import (
    NO_DIFFERENCE,
    confirm_summary,
    epochs_to_target,
    paired_difference,
    paired_vs_fixed,
    pareto_mask,
    search_table,
    t_interval,
    winner,
)
from analysis.load import StudyTables, build_tables
from analysis.questions import answer_axis, param_importances
from analysis.spec import Objective, holds, read_spec
from diffctl.cli import main
from diffctl.errors import InputError
from study_fixture import SPEC, make_tiny_study

CONFIRMED_ARMS = ["fixed", "controller"]  # the third arm, "unstable", diverges and has nothing to confirm


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    return make_tiny_study(tmp_path_factory.mktemp("analysis"))


@pytest.fixture(scope="module")
def analysed(tmp_path_factory) -> Path:
    directory = make_tiny_study(tmp_path_factory.mktemp("analysed"))
    analyze(directory)
    return directory


# --- statistics checked against cases computed by hand ----------------------------------------------------------
def test_t_interval_matches_a_hand_computed_case():
    # [1, 2, 3, 4]: mean 2.5, s = sqrt(5/3), t(0.975, df=3) = 3.182446 (table) -> half-width 2.054260.
    ci = t_interval([1.0, 2.0, 3.0, 4.0])
    assert ci["n"] == 4 and ci["mean"] == 2.5
    assert ci["std"] == pytest.approx(math.sqrt(5 / 3))
    assert ci["ci_low"] == pytest.approx(2.5 - 2.054260, abs=1e-5)
    assert ci["ci_high"] == pytest.approx(2.5 + 2.054260, abs=1e-5)
    one = t_interval([3.0, float("nan")])
    assert one["n"] == 1 and one["mean"] == 3.0 and math.isnan(one["ci_low"])


def test_paired_difference_matches_a_hand_computed_case():
    # d = [0.5, 1.0, 0.8]: mean 0.76667, s = 0.25166, t = 5.2765 with 2 df; for 2 df the two-sided
    # p = 1 - t / sqrt(2 + t^2) = 0.03408, and t(0.975, 2) = 4.302653 gives the interval.
    a, b = np.array([1.0, 2.0, 3.0]), np.array([0.5, 1.0, 2.2])
    out = paired_difference(a, b, "max")
    s = math.sqrt(((0.5 - 0.766667) ** 2 + (1.0 - 0.766667) ** 2 + (0.8 - 0.766667) ** 2) / 2)
    t = 0.766667 / (s / math.sqrt(3))
    assert out["mean_diff"] == pytest.approx(0.766667, abs=1e-6)
    assert out["p_value"] == pytest.approx(1 - t / math.sqrt(2 + t * t), abs=1e-4)
    assert out["ci_low"] == pytest.approx(0.766667 - 4.302653 * s / math.sqrt(3), abs=1e-5)
    assert out["verdict"] == "better"
    assert paired_difference(a, b, "min")["verdict"] == "worse"  # higher is worse when minimising
    noisy = paired_difference(np.array([1.0, 2.0, 3.0]), np.array([1.1, 1.8, 3.05]), "max")
    assert noisy["p_value"] > 0.05 and noisy["verdict"] == NO_DIFFERENCE


def test_pareto_mask_by_hand():
    objectives = [Objective("loss", "min"), Objective("r", "max")]
    points = pd.DataFrame({"final_loss": [1.0, 2.0, 1.5, 3.0, float("nan")],
                           "final_r": [0.5, 0.9, 0.5, 0.8, 1.0]})
    # (1.5, 0.5) is dominated by (1.0, 0.5); (3.0, 0.8) by (2.0, 0.9); a NaN row is never on the front.
    assert pareto_mask(points, objectives).to_list() == [True, True, False, False, False]


def test_feasibility_is_judged_on_the_spec_constraints(tmp_path):
    spec = dict(SPEC, constraints=["val_exact_match_B >= 0.9", "val_loss_unweighted < 30"])
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    ge, lt = read_spec(tmp_path).constraints
    assert holds(ge, 0.9) and not holds(ge, 0.89) and not holds(ge, float("nan")) and not holds(ge, None)
    assert holds(lt, 29.9) and not holds(lt, 30.0)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(dict(SPEC, epochs=0)))
    with pytest.raises(InputError, match="spec.yaml: epochs"):
        read_spec(tmp_path)


def test_answer_axis_names_an_option_only_when_the_data_separate_them():
    p, text = answer_axis({"batch": [0.60, 0.61, 0.62, 0.63], "sample": [0.70, 0.71, 0.72, 0.73]}, "r", "max")
    assert p < 0.05 and text.startswith("`sample` is best")
    p, text = answer_axis({"batch": [0.60, 0.70, 0.65], "sample": [0.61, 0.69, 0.66]}, "r", "max")
    assert p > 0.05 and text.startswith(NO_DIFFERENCE)
    p, text = answer_axis({"none": [0.5], "log_barrier": [0.7]}, "r", "max")
    assert math.isnan(p) and "too few trials" in text


def test_collapse_rule_on_floor_fractions():
    floors = {  # w_recon, w_kl, w_rank, w_ent at floor
        "all": (1.0, 1.0, 1.0, 1.0),
        "barrier": (1.0, 1.0, 0.0, 0.0),
        "three": (0.2, 0.95, 0.92, 0.99),
        "almost": (0.2, 0.95, 0.85, 0.99),
    }
    trials = pd.DataFrame([
        {"arm": "c", "phase": "search", "trial_id": name, "seed": 0, "status": "ok",
         **{f"final_{w}_at_floor": v for w, v in zip(("w_recon", "w_kl", "w_rank", "w_ent"), values)}}
        for name, values in floors.items()
    ] + [{"arm": "fixed", "phase": "search", "trial_id": "f", "seed": 0, "status": "ok"}])
    table = collapse_table(StudyTables(Path("."), None, trials, pd.DataFrame())).set_index("trial_id")
    assert "f" not in table.index  # no floor instruments: not a controller
    assert table["weights_at_floor"].to_dict() == {"all": 4, "barrier": 2, "three": 3, "almost": 2}
    assert table["collapsed"].to_dict() == {"all": True, "barrier": False, "three": True, "almost": False}


# --- the tiny study -------------------------------------------------------------------------------------------
def _diverged_on_disk(study: Path) -> set[str]:
    """Trial ids whose last record says diverged, read straight from the files."""
    return {json.loads((p.parent / "trial.json").read_text())["trial_id"] for p in study.rglob("metrics.jsonl")
            if json.loads(p.read_text().splitlines()[-1])["status"] == "diverged"}


@pytest.mark.slow
def test_tables_have_one_row_per_trial_and_per_trial_epoch(study):
    tables = load(study)
    n_search = sum(arm["budget"] for arm in SPEC["arms"].values())
    n_confirm = len(CONFIRMED_ARMS) * len(SPEC["confirm"]["seeds"])
    assert len(tables.trials) == n_search + n_confirm == len(list(study.rglob("trial.json")))
    assert (tables.trials["phase"] == "confirm").sum() == n_confirm
    assert not tables.trials.duplicated(["arm", "phase", "trial_id"]).any()
    lines = sum(len(p.read_text().splitlines()) for p in study.rglob("metrics.jsonl"))
    assert len(tables.epochs) == lines
    for name, frame in (("trials.parquet", tables.trials), ("epochs.parquet", tables.epochs)):
        back = pd.read_parquet(study / name)
        assert back.shape == frame.shape and list(back.columns) == list(frame.columns)
    assert {"optim.lr", "arm.kind", "final_triplet_r_A", "best_val_loss_unweighted"} <= set(tables.trials.columns)
    trials, epochs = tables  # unpacks
    assert epochs["epoch"].max() == SPEC["epochs"]
    assert (trials.loc[trials["usable"], "best_triplet_r_A"] >= trials.loc[trials["usable"], "final_triplet_r_A"]).all()


@pytest.mark.slow
def test_a_diverged_trial_is_kept_and_flagged(study):
    tables = build_tables(study)
    diverged = _diverged_on_disk(study)
    assert diverged and set(tables.trials.loc[tables.trials["diverged"], "trial_id"]) == diverged
    rows = tables.trials[tables.trials["diverged"]]
    assert set(rows["arm"]) == {"unstable"} and rows["reason"].str.contains("non-finite").all()
    assert not rows["usable"].any() and not rows["feasible"].any()
    search = search_table(tables)
    assert not search[search["status"] == "diverged"][["selected", "pareto", "pareto_feasible"]].any().any()
    # The selection rule, as the study applies it: best triplet_r_A among feasible full-length trials, else
    # among full-length ones; one pick per arm that has a finished trial.
    selected = search[search["selected"]]
    assert sorted(selected["arm"]) == sorted(CONFIRMED_ARMS)
    for _, pick in selected.iterrows():
        mine = search[(search["arm"] == pick["arm"]) & (search["status"] == "ok")]
        pool = mine[mine["feasible"]] if mine["feasible"].any() else mine
        assert pick["final_triplet_r_A"] == pool["final_triplet_r_A"].max()


@pytest.mark.slow
def test_confirmation_summary_and_targets_match_the_records(study):
    tables = build_tables(study)
    summary = confirm_summary(tables).set_index(["arm", "metric"])
    for arm in CONFIRMED_ARMS:
        finals = [json.loads(p.read_text().splitlines()[-1])["val_exact_match_B"]
                  for p in sorted((study / "confirm" / arm).rglob("metrics.jsonl"))]
        row = summary.loc[(arm, "val_exact_match_B")]
        assert row["n"] == len(SPEC["confirm"]["seeds"]) and row["mean"] == pytest.approx(np.mean(finals))
        assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    reached = epochs_to_target(tables, ("recon_coverage_B",), target=0.0).set_index("arm")
    assert reached.loc["unstable", "runs"] == 0 and math.isnan(reached.loc["unstable", "mean_epochs"])
    confirmed = reached.loc[CONFIRMED_ARMS]
    assert (confirmed["runs"] == len(SPEC["confirm"]["seeds"])).all()
    assert (confirmed["reached"] == confirmed["runs"]).all() and (confirmed["mean_epochs"] == 1).all()
    never = epochs_to_target(tables, ("recon_coverage_B",), target=2.0)
    assert (never["reached"] == 0).all() and never["mean_epochs"].isna().all()


@pytest.mark.slow
def test_a_clear_improvement_is_named_the_winner(study):
    tables = build_tables(study)
    paired = paired_vs_fixed(tables)
    name, sentence = winner(tables, paired)
    detected = paired[(paired["metric"] == "triplet_r_A") & (paired["verdict"] == "better")]
    assert (name is None) == detected.empty
    # Raise the controller's confirmation triplet_r_A by a consistent margin: it must now win.
    runs = (tables.trials["arm"] == "controller") & (tables.trials["phase"] == "confirm")
    fixed = tables.trials[(tables.trials["arm"] == "fixed") & (tables.trials["phase"] == "confirm")]
    by_seed = dict(zip(fixed["seed"], fixed["final_triplet_r_A"]))
    bump = {seed: by_seed[seed] + 0.05 + 0.001 * i for i, seed in enumerate(sorted(by_seed))}
    tables.trials.loc[runs, "final_triplet_r_A"] = tables.trials.loc[runs, "seed"].map(bump)
    name, sentence = winner(tables, paired_vs_fixed(tables))
    assert name == "controller" and sentence.startswith("Winner: `controller`") and "+0.05" in sentence


@pytest.mark.slow
def test_importances_come_from_the_optuna_journal(study, tmp_path):
    tables = build_tables(study)
    importances, notes = param_importances(tables)
    for arm in CONFIRMED_ARMS:
        mine = importances[importances["arm"] == arm]
        assert set(mine["param"]) == set(SPEC["arms"][arm]["space"])
        assert mine["importance"].sum() == pytest.approx(1.0)
    assert set(notes) == {"unstable"} and "too few complete trials" in notes["unstable"]
    copy = tmp_path / "copy"
    shutil.copytree(study, copy)
    (copy / "optuna.journal").unlink()
    empty, notes = param_importances(build_tables(copy))
    assert empty.empty and "no optuna.journal" in notes["*"]


@pytest.mark.slow
def test_report_tables_and_plots(analysed):
    report = (analysed / "report.md").read_text()
    tables = build_tables(analysed)
    name, sentence = winner(tables, paired_vs_fixed(tables))
    assert sentence in report
    assert ("Winner: `" in report) != ("No winner detected" in report)
    for trial_id in _diverged_on_disk(analysed):
        assert f"`unstable` search `{trial_id}`: **diverged**" in report
    for link in re.findall(r"\]\(([^)]+)\)", report):
        assert (analysed / link).is_file(), link
    plots = sorted((analysed / "plots").glob("*.png"))
    assert len(plots) == 4
    for path in plots:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 100 and image.size[1] > 100
    questions = pd.read_csv(analysed / "tables" / "questions.csv")
    regularizer = questions[questions["key"] == "arm.regularizer"].iloc[0]
    search = tables.trials[tables.trials["phase"] == "search"]
    if search["arm.regularizer"].nunique() > 1:  # always with the direct fixture; TPE may draw one option twice
        assert regularizer["arm"] == "controller" and regularizer["answer"].startswith(NO_DIFFERENCE)
    else:
        assert regularizer["answer"].startswith("not studied")
    collapse = pd.read_csv(analysed / "tables" / "collapse.csv")
    n_controller = (tables.trials["arm"] == "controller").sum()
    assert set(collapse["arm"]) == {"controller"} and len(collapse) == n_controller
    cost = pd.read_csv(analysed / "tables" / "cost.csv")
    assert cost["trials"].sum() == len(tables.trials)
    assert cost["cpu_hours"].sum() == pytest.approx(tables.trials["wall_time_s"].sum() / 3600)


def test_bad_study_directories_are_input_errors(tmp_path, capsys):
    with pytest.raises(InputError, match="no such study directory"):
        analyze_command(str(tmp_path / "missing"))
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(InputError, match="a-file: not a directory"):
        analyze_command(str(tmp_path / "a-file"))
    (tmp_path / "a-file").unlink()
    with pytest.raises(InputError, match="no spec.yaml"):
        analyze_command(str(tmp_path))
    (tmp_path / "spec.yaml").write_text("epochs: [\n")
    assert main(["analyze", str(tmp_path)]) == 2
    assert "invalid YAML" in capsys.readouterr().err
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    assert main(["analyze", str(tmp_path)]) == 2
    assert "no trials yet" in capsys.readouterr().err
    assert not (tmp_path / "report.md").exists() and not (tmp_path / "trials.parquet").exists()


def test_the_analysis_layer_needs_no_ray():
    code = "import sys, analysis.cli, analysis.export; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
