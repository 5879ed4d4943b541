"""The strong reference on one real study: every Optuna arm's search starts at its defaults, which no rung stops;
the fixed-λ front runs its grid to the last epoch, its table flags the non-dominated feasible points, and a grid
point that ranks first under the ranking rule is the reference's confirmed configuration. Then the margin over
the front on hand-made tables, and the spec's checks of both.

The study (``SPEC``): an arm of constant weights searching ``arm.w_kl`` over 4 trials a replicate in batches of
2, 2 replicates, early stopping at epochs 1 and 2 of 3; its front: ``arm.w_rank`` x ``arm.w_kl`` on the search
seed 0 — the search holds the ranking weight at its default 0.5, the grid moves it, so a grid point is the
reference's pick.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.cli import analyze
from analysis.front import margin_over_front, welch_interval
from analysis.load import build_tables
from study.protocol import SpecError, spec_from_dict
from study.protocol.checks import check_spec
from study.protocol.reference import default_params, front_points
from study.protocol.ranking import ranking_score
from study.trialdir import read_trials
from tiny_specs import run_study, spec_variant

pytestmark = pytest.mark.slow
EPOCHS = 3
GRID = {"arm.w_rank": [0.1, 3.0], "arm.w_kl": [0.01, 1.0]}
SPEC = spec_variant(
    name="front", epochs=EPOCHS, sampler_seed=0, defaults_first=True, search_batch=2, search_replicates=2,
    constraints=["val_exact_match_B >= 0.1"], asha={"grace_period": 1, "reduction_factor": 2},
    confirm={"top_k": 1, "seeds": [1001], "budgets": [1.0], "distill": []},
    arms={
        "fixed": {"budget": 4, "config": {"arm": {"kind": "fixed"}},
                  "space": {"arm.w_kl": {"type": "float", "low": 0.01, "high": 1.0, "log": True}}},
        # a far larger constant ranking weight: it orders triples better and gives up reconstructing B
        "greedy": {"budget": 2, "config": {"arm": {"kind": "fixed", "w_rank": 20.0}},
                   "space": {"arm.w_kl": {"type": "float", "low": 0.01, "high": 1.0, "log": True}}},
    },
    front={"arm": "fixed", "grid": GRID, "seeds": [0]},
)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    return run_study(tmp_path_factory.mktemp("front"), SPEC)


def test_every_replicate_of_every_optuna_arm_starts_at_its_defaults_and_no_rung_stops_them(study):
    spec = spec_from_dict(SPEC)
    stopped_later = 0
    for arm in spec.arms:
        trials = {t.trial_id: t for t in read_trials(study / "search" / arm)}
        assert len(trials) == spec.arms[arm].budget * 2
        for replicate in range(2):
            first = trials[f"r{replicate}-0000"]
            assert first.info.sampling == "defaults" and first.info.params == default_params(spec, arm)
            assert first.status == "ok" and first.info.epochs_done == EPOCHS
            later = [t for name, t in trials.items() if name.startswith(f"r{replicate}-") and t.info.slot > 0]
            assert all(t.info.sampling != "defaults" for t in later)
            stopped_later += sum(t.status == "stopped" for t in later)
    assert stopped_later >= 1  # the rungs do stop later trials of the same arms


def test_the_front_runs_its_grid_and_flags_the_non_dominated_feasible_points(study):
    analyze(study)
    spec = spec_from_dict(SPEC)
    runs = {t.trial_id: t for t in read_trials(study / "front" / "fixed")}
    assert sorted(runs) == [f"g{i:02d}-s0" for i in range(4)]
    assert all(t.status == "ok" and t.info.epochs_done == EPOCHS for t in runs.values())
    front = pd.read_csv(study / "tables" / "front.csv")
    assert len(front) == 4 and front["arm.w_rank"].tolist() == [p["arm.w_rank"] for p in front_points(spec)]
    # by hand: among the feasible points, one is dominated when another is at least as good on both objectives and
    # better on one
    last = [runs[f"g{i:02d}-s0"].last for i in range(4)]
    feasible = [r["val_exact_match_B"] >= 0.1 for r in last]
    loss, rank = [r["val_loss_unweighted"] for r in last], [r["triplet_r_A"] for r in last]
    by_hand = [feasible[i] and not any(
        feasible[j] and loss[j] <= loss[i] and rank[j] >= rank[i] and (loss[j] < loss[i] or rank[j] > rank[i])
        for j in range(4)) for i in range(4)]
    assert front["feasible"].tolist() == feasible and 0 < sum(feasible) < 4
    assert front["non_dominated"].tolist() == by_hand and any(by_hand)
    assert np.allclose(front["final_val_loss_unweighted"], loss)


def test_a_grid_point_that_ranks_first_is_the_references_confirmed_configuration(study):
    spec = spec_from_dict(SPEC)
    grid = [t for t in read_trials(study / "front" / "fixed") if t.info.seed == 0]
    search = read_trials(study / "search" / "fixed")
    confirmed = {t.info.replicate: t.info.source_trial for t in read_trials(study / "confirm" / "fixed")}
    picks = []
    for replicate in range(2):
        pool = [t for t in search if t.info.replicate == replicate and t.status == "ok"
                and t.info.epochs_done == EPOCHS] + grid
        best = max(pool, key=lambda t: ranking_score(spec, t.last))
        assert confirmed[replicate] == best.trial_id
        picks.append(best.trial_id)
    assert any(p.startswith("g") for p in picks)  # a grid point won a replicate's pick
    confirm = build_tables(study).trials.query("phase == 'confirm' and arm == 'fixed'")
    source = confirm.iloc[0]
    assert confirm["trial_id"].str.match(r"^r\d-").all() and source["seed"] == 1001
    conclusions = pd.read_csv(study / "tables" / "conclusions.csv")
    assert {"margin_over_front", "front_position"} <= set(conclusions)


def test_how_often_a_pipeline_lands_beyond_the_front_is_counted_per_search_replicate(study):
    per_replicate = pd.read_csv(study / "tables" / "front_replicates.csv")
    conclusions = pd.read_csv(study / "tables" / "conclusions.csv").set_index("arm")
    trials = build_tables(study).trials
    for arm in ("fixed", "greedy"):
        own = per_replicate[per_replicate["arm"] == arm]
        assert sorted(own["replicate"]) == [0, 1] and (own["runs"] == 1).all()  # one confirmation seed a replicate
        beyond = int((own["front_position"] == "beyond").sum())
        assert conclusions.loc[arm, "beyond_replicates"] == f"{beyond}/2"
        confirmed = trials.query("phase == 'confirm' and arm == @arm")
        for row in own.itertuples():
            run = confirmed[confirmed["replicate"] == row.replicate].iloc[0]
            assert row.feasible_runs == int(run["feasible"])
            if row.feasible_runs:  # its rate is its one run's negative ELBO
                assert row.arm_rate == pytest.approx(run["final_val_loss_unweighted"])
            # one run is no interval: placed only with a spread, never "beyond" on one seed
            assert row.front_position != "beyond" or row.runs > 1


def test_one_replicate_beyond_and_one_behind_pool_to_on():
    front = _front([(0, True, 0.70, 0.01, 2, 30.0), (1, True, 0.90, 0.01, 2, 40.0)])
    runs = pd.DataFrame({"replicate": [0, 0, 0, 1, 1, 1], "feasible": [True] * 6,
                         "selection": [0.95, 0.96, 0.97, 0.60, 0.61, 0.62], "rate": [35.0] * 6})
    placed = {r: margin_over_front(g, front, "s", "max")["front_position"] for r, g in runs.groupby("replicate")}
    assert placed == {0: "beyond", 1: "behind"}  # the front is 0.80 at rate 35
    assert margin_over_front(runs, front, "s", "max")["front_position"] == "on"


def _front(rows):
    return pd.DataFrame(rows, columns=["point", "feasible", "selection", "sd", "finished", "rate"])


def test_margin_over_front_is_against_the_front_interpolated_at_the_arms_rate():
    front = _front([(0, True, 0.70, 0.01, 2, 30.0), (1, True, 0.80, 0.02, 2, 35.0),
                    (2, False, 0.95, 0.01, 2, 32.0), (3, True, 0.90, 0.01, 2, 45.0),
                    (4, True, 0.75, 0.01, 2, 40.0)])
    runs = pd.DataFrame({"replicate": [0, 0, 1, 1], "feasible": [True, True, True, False],
                         "selection": [0.84, 0.86, 0.88, 0.10], "rate": [36.0, 37.0, 38.0, 10.0]})
    got = margin_over_front(runs, front, "s", "max")
    # feasible runs: 0.84, 0.86, 0.88 at rate 37.0. The curve: points 0, 1, 3 (2 is infeasible; 4 ranks below 1
    # at a higher rate). 37 lies between 1 (35, 0.80) and 3 (45, 0.90): w = 0.2, front value 0.82.
    assert got["arm_rate"] == pytest.approx(37.0)
    assert (got["front_point"], got["front_point_high"]) == (1, 3)
    assert got["front_value"] == pytest.approx(0.82)
    assert got["margin_over_front"] == pytest.approx(0.86 - 0.82)
    a = np.array([0.85, 0.88])  # the replicates' means: the unit of the interval
    parts = [a.var(ddof=1) / 2, 0.8**2 * 0.02**2 / 2, 0.2**2 * 0.01**2 / 2]  # each with 1 degree of freedom
    df = sum(parts) ** 2 / sum(v**2 for v in parts)
    half = __import__("scipy.stats").stats.t.ppf(0.975, df) * math.sqrt(sum(parts))
    assert (got["front_ci_low"], got["front_ci_high"]) == pytest.approx((a.mean() - 0.82 - half, a.mean() - 0.82 + half))
    assert got["front_position"] == "on"  # two replicates: a wide interval
    assert got["past_front"] is False and got["front_max_rate"] == 45.0
    assert welch_interval(np.array([0.9, 0.9, 0.91]), 0.8, [])[0] > 0
    # the step front (the best point at or below 37: point 1, 0.80) would have credited the arm 0.02 more
    assert got["margin_over_front"] < 0.86 - 0.80


def test_an_arm_with_no_feasible_front_point_at_its_rate_has_no_margin_and_says_why():
    front = _front([(0, True, 0.70, 0.01, 2, 30.0), (1, False, 0.80, 0.01, 2, 20.0)])
    runs = pd.DataFrame({"replicate": [0, 0], "feasible": [True, True], "selection": [0.9, 0.92],
                         "rate": [25.0, 26.0]})
    got = margin_over_front(runs, front, "s", "max")
    assert math.isnan(got["margin_over_front"]) and got["front_position"] == ""
    assert got["front_reason"] == "no feasible front point at or below its rate 25.5"
    none = margin_over_front(runs.assign(feasible=False), front, "s", "max")
    assert none["front_reason"] == "no feasible confirmation run"
    beyond = margin_over_front(pd.DataFrame({"replicate": [0, 0, 0], "feasible": [True] * 3,
                                             "selection": [0.95, 0.96, 0.97], "rate": [31.0] * 3}),
                               front, "s", "max")
    assert beyond["front_point"] == 0 and beyond["front_position"] == "beyond"
    # its rate 31 lies past the only feasible point's 30: the front does not reach it, and says so
    assert beyond["past_front"] is True and beyond["front_max_rate"] == 30.0
    assert beyond["front_value"] == 0.70 and beyond["front_point_high"] == 0


@pytest.mark.parametrize("change, message", [
    ({"front": {"arm": "fixed", "grid": GRID, "seeds": [7]}}, "front.seeds: must include 0"),
    ({"front": {"arm": "fixed", "grid": GRID, "seeds": [0, 1001]}}, "front.seeds: 1001 is a confirmation seed"),
    ({"front": {"arm": "nope", "grid": GRID, "seeds": [0]}}, "front.arm: no arm 'nope'"),
    ({"front": {"arm": "fixed", "grid": {"arm.w_rank": [-1.0]}, "seeds": [0]}}, "front.grid: "),
    ({"arms": {"fixed": {"budget": 2, "config": {"arm": {"kind": "fixed"}},
                         "space": {"arm.w_kl": {"type": "float", "low": 0.2, "high": 1.0}}}}},
     "arms.fixed.space.arm.w_kl: the arm's default 0.1 lies outside the searched range"),
])
def test_the_spec_refuses_a_front_or_defaults_it_cannot_run(change, message):
    with pytest.raises(SpecError, match=message.replace(".", r"\.").replace("(", r"\(")):
        check_spec(spec_from_dict({**SPEC, **change}))


def test_an_arm_that_ranks_higher_by_giving_up_reconstruction_is_not_better(study):
    """The greedy arm's runs order triples better than the reference's but miss the reconstruction constraint
    that the reference's meet: not better, and the Conclusions count its feasible runs."""
    conclusions = pd.read_csv(study / "tables" / "conclusions.csv").set_index("arm")
    greedy, fixed = conclusions.loc["greedy"], conclusions.loc["fixed"]
    assert greedy["mean_triplet_r_A"] > fixed["mean_triplet_r_A"]
    assert fixed["feasible_runs"] == fixed["runs"] == 2 and greedy["feasible_runs"] == 0
    assert greedy["verdict"] != "better"
    assert "| greedy | 0/2 |" in (study / "report.md").read_text()
