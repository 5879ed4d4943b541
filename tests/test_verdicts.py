"""The verdicts and the export never crown a run that fails the constraints (a diverged, missing or infeasible
confirmation seed blocks a win; one pair is no test; a configuration drawn twice is one piece of evidence).

Each case edits a copy of the real tiny study's files (tests/study_fixture.py) the way a real study could have
written them: a confirmation run that diverged, one that missed the constraint, one that never ran.
"""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from analysis.cli import analyze
from analysis.compare import paired_vs_fixed, winner
from analysis.runs import feasible_share, source_ranking
from analysis.export import export_command
from analysis.load import build_tables
from analysis.questions import grouped_table
from diffctl.config import load_config
from study_fixture import SPEC

SEEDS = SPEC["confirm"]["seeds"]
LAST = SPEC["epochs"]


@pytest.fixture(scope="module")
def pristine(tiny_study) -> Path:
    return tiny_study


def _copy(pristine: Path, tmp_path: Path) -> Path:
    target = tmp_path / "study"
    shutil.copytree(pristine, target)
    return target


def _runs(study: Path, arm: str) -> dict[int, Path]:
    """seed -> confirmation run directory of the arm."""
    return {json.loads(p.read_text())["seed"]: p.parent for p in (study / "confirm" / arm).rglob("trial.json")}


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _write_records(run: Path, records: list[dict]) -> None:
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def _lead(study: Path, arm: str, margin: float) -> None:
    """Give the arm's confirmation runs triplet_r_A = fixed's on the same seed and epoch + margin (+0.001/seed)."""
    fixed = _runs(study, "fixed")
    for i, (seed, run) in enumerate(sorted(_runs(study, arm).items())):
        theirs = {r["epoch"]: r["triplet_r_A"] for r in _records(fixed[seed])}
        _write_records(run, [dict(r, triplet_r_A=theirs[r["epoch"]] + margin + 0.001 * i) for r in _records(run)])


def _set_last(run: Path, **fields) -> None:
    records = _records(run)
    records[-1].update(fields)
    _write_records(run, records)


def _diverge(run: Path) -> None:
    """The run's last epoch diverged, as diffctl.train records it and the trainable marks it."""
    records = _records(run)
    epoch = records[-1]["epoch"]
    records[-1] = {"epoch": epoch, "status": "diverged", "reason": f"non-finite training loss (nan) at epoch {epoch}"}
    _write_records(run, records)
    info = json.loads((run / "trial.json").read_text())
    info.update(status="diverged", reason=records[-1]["reason"])
    (run / "trial.json").write_text(json.dumps(info))


@pytest.mark.slow
def test_a_consistent_lead_on_every_feasible_seed_wins(pristine, tmp_path):
    study = _copy(pristine, tmp_path)
    _lead(study, "controller", 0.05)
    tables = build_tables(study)
    name, sentence = winner(tables, paired_vs_fixed(tables))
    assert name == "controller" and f"feasible runs {len(SEEDS)}/{len(SEEDS)}" in sentence


@pytest.mark.slow
def test_a_diverged_confirmation_seed_blocks_a_win(pristine, tmp_path):
    study = _copy(pristine, tmp_path)
    _lead(study, "controller", 0.05)
    _diverge(_runs(study, "controller")[SEEDS[-1]])
    tables = build_tables(study)
    assert feasible_share(tables, "controller") == (len(SEEDS) - 1, len(SEEDS))  # n is not silently 1
    name, sentence = winner(tables, paired_vs_fixed(tables))
    assert name is None and sentence.startswith("No winner")
    # With 2 seeds one diverged leaves one pair: no test at all, and the report says so.
    paired = paired_vs_fixed(tables)
    final = paired[(paired["arm"] == "controller") & (paired["budget"] == 1.0) & (paired["metric"] == "triplet_r_A")]
    assert final["n_pairs"].iloc[0] == 1 and final["verdict"].iloc[0] == "not tested"
    report = analyze(study).read_text()
    assert "not tested (one pair; n = 1)" in report and f"feasible on {len(SEEDS) - 1}/{len(SEEDS)} runs" in report


@pytest.mark.slow
def test_a_missing_or_infeasible_seed_blocks_a_win_and_the_export(pristine, tmp_path, capsys):
    study = _copy(pristine, tmp_path)
    _lead(study, "controller", 0.05)
    runs = _runs(study, "controller")
    # Misses "val_exact_match_B >= 0.1" on both splits (a confirmation run is judged on the test split).
    _set_last(runs[SEEDS[0]], val_exact_match_B=0.01, test_exact_match_B=0.01)
    tables = build_tables(study)
    name, sentence = winner(tables, paired_vs_fixed(tables))
    assert name is None and "`controller` (feasible on 1/2 runs)" in sentence
    out = tmp_path / "best.yaml"
    assert export_command(str(study), None, str(out)) == 0
    chosen = load_config(out).provenance
    assert chosen["arm"] == "fixed" and chosen["selection_rule"]["chosen"].startswith("the fixed-λ reference arm")
    assert "reference arm" in capsys.readouterr().out
    # Asked for by name, the infeasible arm is exported with a warning.
    assert export_command(str(study), "controller", str(out)) == 0
    assert "warning: `controller` met the constraints on 1 of 2 confirmation seeds" in capsys.readouterr().err
    # A seed whose run is missing altogether counts as infeasible too.
    shutil.rmtree(runs[SEEDS[1]])
    assert feasible_share(build_tables(study), "controller") == (0, len(SEEDS))


@pytest.mark.slow
def test_export_takes_the_winner(pristine, tmp_path, capsys):
    study = _copy(pristine, tmp_path)
    _lead(study, "controller", 0.05)
    out = tmp_path / "best.yaml"
    assert export_command(str(study), None, str(out)) == 0
    chosen = load_config(out).provenance
    assert chosen["arm"] == "controller" and chosen["selection_rule"]["chosen"] == "the winner of the analysis"
    assert chosen["feasible_seeds"] == f"{len(SEEDS)}/{len(SEEDS)}"


@pytest.mark.slow
def test_the_confirmed_configuration_is_ranked_feasibility_first(pristine, tmp_path):
    """top_k = 2: a configuration that diverged on a seed loses to one feasible on every seed, whatever its mean."""
    study = _copy(pristine, tmp_path)
    runs = _runs(study, "controller")
    twin = study / "confirm" / "controller"
    for seed, run in runs.items():  # a second confirmed configuration, far better on its surviving run
        copy = twin / f"{run.name}-other"
        shutil.copytree(run, copy)
        info = json.loads((copy / "trial.json").read_text())
        info.update(trial_id=copy.name, source_trial="other-search-trial")
        (copy / "trial.json").write_text(json.dumps(info))
        _set_last(copy, triplet_r_A=0.99)
    _diverge(twin / f"{runs[SEEDS[0]].name}-other")
    tables = build_tables(study)
    ranking = source_ranking(tables, "controller")
    assert ranking["source_trial"].iloc[0] != "other-search-trial"
    assert ranking.set_index("source_trial").loc["other-search-trial", "failed"] == 1


@pytest.mark.slow
def test_duplicate_configurations_count_once(pristine):
    tables = build_tables(pristine)
    before = grouped_table(tables)
    search = tables.trials[(tables.trials["phase"] == "search") & (tables.trials["arm"] == "controller")]
    twin = search.iloc[[0]].assign(trial_id="zz-duplicate")  # the same params drawn again by TPE
    tables.trials = pd.concat([tables.trials, twin], ignore_index=True)
    after = grouped_table(tables)
    pd.testing.assert_frame_equal(before, after)
