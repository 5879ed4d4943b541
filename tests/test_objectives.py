"""How a study judges a record: constraint violations (Optuna's sign), the values told for diverged trials,
feasibility, the selection order, and record fields read off a real probe epoch."""

import math

import pytest

from diffctl.config import config_from_dict
from diffctl.errors import InputError
from study.protocol.constraints import WORST, parse_constraint
from study.probe import record_fields
from study.protocol.ranking import constraint_values, is_feasible, ranking_score, selection_value, tune_metrics
from study.protocol import spec_from_dict
from tiny_specs import spec_variant

OK = {"status": "ok", "val_loss_unweighted": 30.0, "triplet_r_A": 0.7, "val_exact_match_A": 0.95}
DIVERGED = {"status": "diverged", "reason": "non-finite training loss", "epoch": 1, "val_loss_unweighted": math.nan}


def test_constraint_violation_has_optunas_sign():
    assert parse_constraint("val_exact_match_A >= 0.9", "c").violation(OK) == pytest.approx(-0.05)
    assert parse_constraint("val_exact_match_A <= 0.9", "c").violation(OK) == pytest.approx(0.05)
    at = {"x": 0.9}
    assert parse_constraint("x >= 0.9", "c").violation(at) == 0.0  # satisfied at the threshold
    assert parse_constraint("x > 0.9", "c").violation(at) > 0  # a strict inequality is not
    assert parse_constraint("x < 0.9", "c").violation(at) > 0
    assert parse_constraint("x > 0.9", "c").violation({"x": math.nextafter(0.9, 1.0)}) <= 0
    assert parse_constraint("x >= 0.9", "c").violation({"x": math.nan}) == WORST


@pytest.mark.parametrize("text", ["x = 1", "x >= ", ">= 1", "x >= nan", "x >= 1e999"])
def test_bad_constraint_text(text):
    with pytest.raises(InputError, match=r"^constraints\[2\]: "):
        parse_constraint(text, "constraints[2]")


def test_diverged_record_is_told_finite_worst_values_and_is_infeasible():
    spec = spec_from_dict(spec_variant(constraints=["val_exact_match_A >= 0.9"]))
    told = tune_metrics(spec, DIVERGED)
    assert told == {"objective_val_loss_unweighted": WORST, "objective_triplet_r_A": -WORST, "feasible": False}
    assert constraint_values(spec, DIVERGED) == {"status_ok": 1.0, "val_exact_match_A >= 0.9": WORST}
    ok = tune_metrics(spec, OK)
    assert ok == {"objective_val_loss_unweighted": 30.0, "objective_triplet_r_A": 0.7, "feasible": True}
    assert not is_feasible(spec, dict(OK, val_exact_match_A=0.5))


def test_selection_value_is_oriented_larger_is_better():
    spec = spec_from_dict(spec_variant(selection={"metric": "val_loss_unweighted", "mode": "min"}))
    assert selection_value(spec, OK) == -30.0
    assert selection_value(spec, OK) > selection_value(spec, DIVERGED)
    spec = spec_from_dict(spec_variant())  # triplet_r_A, max
    assert selection_value(spec, OK) == 0.7


def test_record_fields_come_from_a_real_epoch():
    fixed = record_fields(config_from_dict({"arm": {"kind": "fixed"}}), "arms.a")
    scheduled = record_fields(config_from_dict({"arm": {"kind": "scheduled"}}), "arms.b")
    assert {"val_loss_unweighted", "triplet_r_A", "val_exact_match_B", "train_loss_weighted", "epoch"} <= set(fixed)
    assert fixed["epoch"] == 1 and fixed["status"] == "ok"
    # Only an arm that moves rho records the reconstruction at its own rho.
    assert "val_exact_match_at_rho_A" in scheduled and "val_exact_match_at_rho_A" not in fixed


def test_a_population_ranks_feasible_members_first_then_by_how_far_the_others_miss():
    spec = spec_from_dict(spec_variant(constraints=["val_exact_match_A >= 0.9", "val_exact_match_B >= 0.9"]))
    keeps = {"status": "ok", "triplet_r_A": 0.60, "val_exact_match_A": 0.95, "val_exact_match_B": 0.99}
    better = dict(keeps, triplet_r_A=0.65)
    gave_up = dict(keeps, triplet_r_A=0.80, val_exact_match_A=0.30)  # ranking bought with reconstruction
    nearly = dict(gave_up, val_exact_match_A=0.85)
    diverged = dict(keeps, status="diverged", triplet_r_A=None)
    scores = [ranking_score(spec, r) for r in (better, keeps, nearly, gave_up, diverged)]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 5
    assert scores[:2] == [0.65, 0.60]  # a feasible member's score is its selection value
    assert scores[2] == pytest.approx(-1e6 - 0.05) and scores[3] == pytest.approx(-1e6 - 0.6)
