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
from analysis.compare import confirm_summary, paired_vs_fixed, pareto_mask, search_table, winner
from analysis.quality import epochs_to_target, quality_frontier
from analysis import questions
from analysis.load import StudyTables, build_tables
from analysis.questions import NO_DIFFERENCE, answer_axis, grouped_table, param_importances
from study.protocol import Objective, saved_spec
from diffctl.cli import main
from study.protocol.schema import DISTILL_VARIANTS as VARIANTS
from diffctl.errors import InputError
from study_fixture import SPEC, copy_study

CONFIRMED_ARMS = ["fixed", "controller"]  # the third arm, "unstable", diverges and has nothing to confirm


@pytest.fixture(scope="module")
def study(tiny_study, tmp_path_factory) -> Path:
    return copy_study(tiny_study, tmp_path_factory.mktemp("analysis"))


@pytest.fixture(scope="module")
def analysed(tiny_study, tmp_path_factory) -> Path:
    directory = copy_study(tiny_study, tmp_path_factory.mktemp("analysed"))
    analyze(directory)
    return directory


# --- pieces checked against cases computed by hand ------------------------------------------------------------
def test_pareto_mask_by_hand():
    objectives = [Objective(metric="loss", mode="min"), Objective(metric="r", mode="max")]
    points = pd.DataFrame({"final_loss": [1.0, 2.0, 1.5, 3.0, float("nan")],
                           "final_r": [0.5, 0.9, 0.5, 0.8, 1.0]})
    # (1.5, 0.5) is dominated by (1.0, 0.5); (3.0, 0.8) by (2.0, 0.9); a NaN row is never on the front.
    assert pareto_mask(points, objectives).to_list() == [True, True, False, False, False]


def test_feasibility_is_judged_on_the_spec_constraints(tmp_path):
    spec = dict(SPEC, constraints=["val_exact_match_B >= 0.9", "val_loss_unweighted < 30"])
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    ge, lt = saved_spec(tmp_path).parsed_constraints()
    assert ge.holds(0.9) and not ge.holds(0.89) and not ge.holds(float("nan")) and not ge.holds(None)
    assert lt.holds(29.9) and not lt.holds(30.0)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(dict(SPEC, epochs=0)))
    with pytest.raises(InputError, match="spec.yaml: epochs"):
        saved_spec(tmp_path)


def test_answer_axis_names_an_option_only_when_the_data_separate_them():
    # 4 vs 4, perfectly separated: 2 of the C(8, 4) = 70 relabellings are as extreme (either side) -> p = 2/70.
    p, text = answer_axis({"batch": [0.60, 0.61, 0.62, 0.63], "sample": [0.70, 0.71, 0.72, 0.73]}, "r", "max")
    assert p == pytest.approx(2 / 70) and text.startswith("`sample` is best")
    # 3 vs 3, perfectly separated: exact p = 2/20 = 0.1 (the chi-square approximation says 0.0495).
    p, text = answer_axis({"batch": [0.60, 0.61, 0.62], "sample": [0.70, 0.71, 0.72]}, "r", "max")
    assert p == pytest.approx(0.1) and text.startswith(NO_DIFFERENCE)
    p, text = answer_axis({"batch": [0.60, 0.70, 0.65], "sample": [0.61, 0.69, 0.66]}, "r", "max")
    assert p > 0.05 and text.startswith(NO_DIFFERENCE)
    p, text = answer_axis({"none": [0.5, 0.6], "log_barrier": [0.7, 0.8]}, "r", "max")  # groups below 3
    assert math.isnan(p) and text.startswith("not tested")


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
    exact = {"all": 0.0, "barrier": 0.002, "three": 0.9, "almost": 0.9}  # barrier: reconstructs nothing
    trials = pd.DataFrame([dict(r, final_val_exact_match_A=exact.get(r["trial_id"], 1.0),
                                final_val_exact_match_B=1.0) for r in trials.to_dict("records")])
    table = collapse_table(StudyTables(Path("."), None, trials, pd.DataFrame())).set_index("trial_id")
    assert "f" not in table.index  # no floor instruments: not a controller
    assert table["weights_at_floor"].to_dict() == {"all": 4, "barrier": 2, "three": 3, "almost": 2}
    assert table["collapse"].to_dict() == {"all": "weights", "barrier": "reconstruction", "three": "weights",
                                           "almost": "none"}
    assert table["collapsed"].to_dict() == {"all": True, "barrier": True, "three": True, "almost": False}


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
    # The study distils the controller arm's confirmation runs (3 variants a seed).
    n_distill = int((tables.trials["phase"] == "distill").sum())
    assert n_distill == len(VARIANTS) * len(SPEC["confirm"]["seeds"])
    assert len(tables.trials) == n_search + n_confirm + n_distill == len(list(study.rglob("trial.json")))
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
    # Never reached: every run counts, censored at its length (epochs + 1), not left out of the mean.
    never = epochs_to_target(tables, ("recon_coverage_B",), target=2.0).set_index("arm").loc[CONFIRMED_ARMS]
    assert (never["reached"] == 0).all() and (never["censored"] == never["runs"]).all()
    assert (never["mean_epochs"] == SPEC["epochs"] + 1).all()


@pytest.mark.slow
def test_quality_frontier_counts_the_reconstructing_runs_from_their_records(study):
    tables = build_tables(study)
    for target in (0.0, 0.5, 2.0):
        frontier = quality_frontier(tables, target).set_index("arm")
        assert frontier.loc["unstable", "runs"] == 0 and math.isnan(frontier.loc["unstable", "mean"])
        for arm in CONFIRMED_ARMS:
            finals = [json.loads(p.read_text().splitlines()[-1])
                      for p in sorted((study / "confirm" / arm).rglob("metrics.jsonl"))]
            good = [r for r in finals if min(r["val_exact_match_A"], r["val_exact_match_B"]) >= target]
            row = frontier.loc[arm]
            assert row["runs"] == len(finals) and row["reconstructing"] == len(good)
            if good:  # a mean over every reconstructing run (never a best of n), the untied concordance beside it
                assert row["mean"] == pytest.approx(np.mean([r["triplet_r_A"] for r in good]))
                assert row["mean_triplet_untied_B"] == pytest.approx(np.mean([r["triplet_untied_B"] for r in good]))
            else:
                assert math.isnan(row["mean"]) and math.isnan(row["mean_triplet_untied_A"])
    assert (quality_frontier(tables, 2.0)["reconstructing"] == 0).all()  # exact match never exceeds 1


@pytest.mark.slow
def test_a_clear_improvement_is_named_the_winner(study):
    tables = build_tables(study)
    paired = paired_vs_fixed(tables)
    name, sentence = winner(tables, paired)
    detected = paired[(paired["metric"] == "triplet_r_A") & (paired["verdict"] == "better")]
    assert (name is None) == detected.empty
    # Raise the controller's confirmation triplet_r_A by a consistent margin: it must now win.
    _lead(tables, "controller", 0.05)
    name, sentence = winner(tables, paired_vs_fixed(tables))
    assert name == "controller" and sentence.startswith("Winner: `controller`") and "+0.05" in sentence


def _lead(tables: StudyTables, arm: str, margin: float, metric: str = "triplet_r_A") -> None:
    """Set the arm's confirmation runs' metric at every epoch to the fixed arm's value on the same seed and
    epoch + margin (+ 0.001 per seed, so the differences have a spread)."""
    epochs = tables.epochs
    fixed = epochs[(epochs["arm"] == "fixed") & (epochs["phase"] == "confirm")].set_index(["seed", "epoch"])[metric]
    seeds = sorted(set(fixed.index.get_level_values(0)))
    mine = (epochs["arm"] == arm) & (epochs["phase"] == "confirm")
    keys = list(zip(epochs.loc[mine, "seed"], epochs.loc[mine, "epoch"]))
    epochs.loc[mine, metric] = [fixed[k] + margin + 0.001 * seeds.index(k[0]) for k in keys]
    runs = (tables.trials["arm"] == arm) & (tables.trials["phase"] == "confirm")
    last = fixed.xs(SPEC["epochs"], level="epoch")
    tables.trials.loc[runs, f"final_{metric}"] = [last[s] + margin + 0.001 * seeds.index(s)
                                                  for s in tables.trials.loc[runs, "seed"]]


@pytest.mark.slow
def test_importances_come_from_the_optuna_journal(study, tmp_path, monkeypatch):
    tables = build_tables(study)
    hidden, notes = param_importances(tables)  # 2 trials an arm: below the minimum, none shown
    assert hidden.empty and all("too few complete trials" in note for note in notes.values())
    monkeypatch.setattr(questions, "MIN_IMPORTANCE_TRIALS", 2)
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
    assert ("Winner: `" in report) != ("No winner:" in report)
    for trial_id in _diverged_on_disk(analysed):
        assert f"`unstable` search `{trial_id}`: **diverged**" in report
    for link in re.findall(r"\]\(([^)]+)\)", report):
        assert (analysed / link).is_file(), link
    plots = sorted((analysed / "plots").glob("*.png"))
    # objective_per_arm, learning_curves, control_signals, optimization_history, concurrency and one trajectory plot
    # (the distilled controller); expected_best.png, tradeoff.png
    assert len(plots) == 6 + 2
    for path in plots:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 100 and image.size[1] > 100
    questions = pd.read_csv(analysed / "tables" / "questions.csv")
    regularizer = questions[questions["key"] == "arm.regularizer"].iloc[0]
    search = tables.trials[tables.trials["phase"] == "search"]
    if search["arm.regularizer"].nunique() > 1:  # TPE may draw one option twice
        # One trial per option: below the minimum group size, so no test is run (and none is claimed).
        assert regularizer["arm"] == "controller" and regularizer["answer"].startswith("not tested")
    else:
        assert regularizer["answer"].startswith("not studied")
    collapse = pd.read_csv(analysed / "tables" / "collapse.csv")
    n_controller = (tables.trials["arm"] == "controller").sum()
    assert set(collapse["arm"]) == {"controller"} and len(collapse) == n_controller
    _conclusions_table_first(analysed, report, tables)
    cost = pd.read_csv(analysed / "tables" / "cost.csv")
    assert cost["trials"].sum() == len(tables.trials)
    assert cost["cpu_hours"].sum() == pytest.approx(tables.trials["wall_time_s"].sum() / 3600)


def _conclusions_table_first(analysed: Path, report: str, tables) -> None:
    """The Conclusions start with one row per compared arm, its numbers those of the paired table and the runs."""
    table = pd.read_csv(analysed / "tables" / "conclusions.csv")
    assert table["arm"].tolist() == [*CONFIRMED_ARMS, "unstable"]  # an arm with nothing confirmed is listed too
    assert table.set_index("arm").loc["unstable", "verdict"] == "not compared"
    section = report.split("## Conclusions", 1)[1]
    assert section.index("| arm | feasible |") < section.index("\n- ")  # the table before the prose
    paired = pd.read_csv(analysed / "tables" / "paired_vs_fixed.csv")
    selection = tables.spec.selection.metric
    row = paired[(paired["arm"] == "controller") & (paired["metric"] == selection) & (paired["budget"] == 1.0)].iloc[0]
    controller = table.set_index("arm").loc["controller"]
    assert controller["diff"] == pytest.approx(row["mean_diff"]) and controller["verdict"] == row["verdict"]
    runs = tables.trials[(tables.trials["phase"] == "confirm") & (tables.trials["arm"] == "controller")]
    assert controller["runs"] == len(runs) and controller["kl_A"] == pytest.approx(runs["final_kl_A"].mean())
    assert table.set_index("arm").loc["fixed", "verdict"] == "reference"


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
