"""The held-out test split (``eval.test_split``, ``diffctl.metrics.TEST_FIELDS``).

Checked: the test fields leave every other field bit for bit as it is; a study computes them in every run but its
search trials (the epochs table has them for the confirmation runs, none for the search trials); the analysis
judges a confirmed run's feasibility on them (``feasible_split``) and a search trial's on val; and what the test
split holds changes no decision of the study and no pick of the analysis, only the confirmed runs' feasibility.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from analysis.load import _flag, build_tables
from analysis.runs import confirmation_winner, source_ranking
from diffctl.config import load_config
from diffctl.data import OperationSet, Split, make_split
from diffctl.metrics import TEST_COUNTERPART, TEST_FIELDS, counterpart_on_test, evaluate, metric_names
from diffctl.model import DualVAE
from diffctl.train import train
from study.confirmed import confirmed_configuration
from study.protocol import SpecError, saved_spec, spec_from_dict
from study.protocol.checks import check_spec
from study.protocol.ranking import confirmation_sources, ranking_score, rung_score, tune_metrics
from study.trialdir import METRICS_FILE, read_trials
from study_fixture import SPEC, copy_study
from tiny_specs import TINY

TIMING = {"epoch_time_s", "eval_time_s"}
TINY_EVAL = ["optim.epochs=1", "eval.prior_samples=300", "eval.triplet_indices=200", "eval.triplets=300"]


def _records(path: str, overrides: list[str]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in train(load_config(path, overrides))]


@pytest.mark.parametrize("config", ["configs/fixed.yaml", "configs/scheduled.yaml"])  # scheduled: also at rho
def test_val_fields_are_bit_identical_with_the_test_split_on_and_off(config):
    off = _records(config, TINY_EVAL)
    on = _records(config, [*TINY_EVAL, "eval.test_split=true"])
    assert [r["status"] for r in on] == ["ok"]
    assert not any(k.startswith("test_") for k in off[0])
    assert {k: v for k, v in on[0].items() if k not in TEST_FIELDS} == off[0]  # == on floats: bit for bit
    keys = list(on[0])
    start = keys.index(TEST_FIELDS[0])  # after every other evaluation field, before eval_full
    assert keys[start:start + len(TEST_FIELDS) + 1] == [*TEST_FIELDS, "eval_full"]
    for field in TEST_FIELDS:
        assert isinstance(on[0][field], float) and math.isfinite(on[0][field]), field
    # Another split of the operations: the test fields are measured on other rows than the val fields.
    assert on[0]["test_loss_unweighted"] != on[0]["val_loss_unweighted"]


def test_the_test_fields_are_the_val_definitions_on_the_test_rows():
    """A cheap evaluation gives the full one's test fields; with the test split's rows as val, the val fields
    of a plain evaluation are the test fields but for the loss's draw (a generator of its own)."""
    torch.manual_seed(0)
    model, data, split = DualVAE(), OperationSet(), make_split(42)
    kw = dict(seed=3, prior_samples=500, triplet_indices=300, triplets=500, rho=0.3)
    full = evaluate(model, data, split, test=True, **kw)
    cheap = evaluate(model, data, split, full=False, test=True, **kw)
    assert {k: full[k] for k in TEST_FIELDS} == {k: cheap[k] for k in TEST_FIELDS}
    assert {k: v for k, v in full.items() if k not in TEST_FIELDS} == evaluate(model, data, split, **kw)
    swapped = evaluate(model, data, Split(split.train, split.test, split.val), full=False, **kw)
    for field in TEST_FIELDS[1:]:
        assert full[field] == swapped[next(m for m, t in TEST_COUNTERPART.items() if t == field)], field
    assert full["test_loss_unweighted"] != swapped["val_loss_unweighted"]  # another draw of z
    assert full["test_loss_unweighted"] == pytest.approx(swapped["val_loss_unweighted"], rel=0.05)


def test_test_fields_are_named_with_their_val_counterparts():
    assert TEST_FIELDS == ("test_loss_unweighted", "test_exact_match_A", "test_trit_acc_A", "test_kl_A",
                           "test_exact_match_B", "test_trit_acc_B", "test_kl_B")
    assert metric_names(False) == [n for n in metric_names(False, True) if n not in TEST_FIELDS]
    assert counterpart_on_test("val_exact_match_A") == "test_exact_match_A"
    assert counterpart_on_test("kl_B") == "test_kl_B"
    assert counterpart_on_test("val_loss_unweighted") == "test_loss_unweighted"
    for metric in ("recon_coverage_A", "triplet_untied_AB", "val_exact_match_at_rho_A", "rho_mean"):
        assert counterpart_on_test(metric) is None


def test_a_spec_cannot_set_the_test_split():
    """The study owns the key: on in every run but the search trials, so no search decision can read it."""
    base = {**TINY["base"], "eval": {**TINY["base"]["eval"], "test_split": True}}
    with pytest.raises(SpecError, match=r"^base\.eval\.test_split: set by the study"):
        check_spec(spec_from_dict({**SPEC, "base": base}))


def test_confirmation_runs_have_the_test_fields_and_search_trials_none(direct_study, tmp_path):
    tables = build_tables(copy_study(direct_study, tmp_path))
    trials, epochs = tables.trials, tables.epochs
    ok = epochs[epochs["status"] == "ok"]
    confirm, search = ok[ok["phase"] == "confirm"], ok[ok["phase"] == "search"]
    assert len(confirm) and len(search)
    for field in TEST_FIELDS:
        assert confirm[field].notna().all() and search[field].isna().all(), field
    assert (trials.loc[trials["phase"] == "search", "eval.test_split"] == False).all()  # noqa: E712
    assert (trials.loc[trials["phase"] != "search", "eval.test_split"] == True).all()  # noqa: E712
    # Feasibility: the confirmation runs judged on test (the spec's val_exact_match_B >= 0.1 read on test), the
    # search trials on val.
    (constraint,) = tables.spec.parsed_constraints()
    assert constraint.metric == "val_exact_match_B"
    judged = {"confirm": "test", "distill": "test", "search": "val"}
    for row in trials.itertuples():
        if row.phase not in judged:
            continue
        assert row.feasible_split == judged[row.phase], row.trial_id
        metric = "final_test_exact_match_B" if row.feasible_split == "test" else "final_val_exact_match_B"
        assert row.feasible == (row.usable and constraint.holds(getattr(row, metric))), row.trial_id
        assert row.feasible_val == (row.usable and constraint.holds(row.final_val_exact_match_B)), row.trial_id


def _frame(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {"status": ["ok"] * n, "final_epoch": [2] * n}
    return pd.DataFrame({**base, **columns})


def test_each_constraint_reads_its_test_counterpart_or_its_metric_as_written(direct_study):
    """``val_exact_match_A >= 0.9`` is read as ``test_exact_match_A >= 0.9`` on a confirmed run with the test
    fields; ``recon_coverage_A``, over all operations, has no test counterpart and is read as written."""
    spec = saved_spec(direct_study)
    spec = spec.model_copy(update={"constraints": ["val_exact_match_A >= 0.9", "recon_coverage_A >= 0.5"]})
    trials = _frame(
        trial_id=["search val ok", "confirm test low", "confirm test ok", "ablate coverage low", "audit val ok",
                  "confirm without test"],
        phase=["search", "confirm", "confirm", "ablate", "audit", "confirm"],
        **{"eval.test_split": [False, True, True, True, True, None]},
        final_val_exact_match_A=[0.95, 0.95, 0.5, 0.95, 0.95, 0.95],
        final_test_exact_match_A=[math.nan, 0.5, 0.95, 0.95, 0.2, math.nan],
        final_recon_coverage_A=[0.9, 0.9, 0.9, 0.1, 0.9, 0.9],
    )
    flagged = _flag(trials, spec).set_index("trial_id")
    assert flagged["feasible_split"].to_dict() == {
        "search val ok": "val", "confirm test low": "test", "confirm test ok": "test", "ablate coverage low": "test",
        "audit val ok": "val", "confirm without test": "val"}
    assert flagged["feasible"].to_dict() == {
        "search val ok": True, "confirm test low": False, "confirm test ok": True, "ablate coverage low": False,
        "audit val ok": True, "confirm without test": True}
    assert flagged["feasible_val"].to_dict() == {
        "search val ok": True, "confirm test low": True, "confirm test ok": False, "ablate coverage low": False,
        "audit val ok": True, "confirm without test": True}


def _overwrite_test_fields(study_dir: Path, value: float) -> None:
    """Every record of every trial gets every test field set to ``value`` (a search trial's records too, which
    had none)."""
    for path in study_dir.rglob(METRICS_FILE):
        records = [json.loads(line) for line in path.read_text().splitlines()]
        for record in records:
            if record.get("status") == "ok":
                record.update(dict.fromkeys(TEST_FIELDS, value))
        path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _decisions(study_dir: Path) -> dict:
    """Everything the study decides from its records, and the analysis's picks."""
    spec = saved_spec(study_dir)
    tables = build_tables(study_dir)
    out: dict = {"scores": {}}
    for phase in ("search", "confirm", "distill"):
        for arm_dir in sorted(p for p in (study_dir / phase).glob("*") if p.is_dir()):
            for trial in read_trials(arm_dir):
                if trial.last:
                    out["scores"][str(trial.dir.relative_to(study_dir))] = (
                        tune_metrics(spec, trial.last), ranking_score(spec, trial.last), rung_score(spec, trial.last))
    for arm in spec.arms:
        sources = confirmation_sources(spec, read_trials(study_dir / "search" / arm))
        out[f"sources {arm}"] = [(t.trial_id, flag) for t, flag in sources]
        found = confirmed_configuration(spec, study_dir, arm)
        out[f"confirmed {arm}"] = found and (found[0], [r.trial_id for r in found[1]])
        out[f"winner {arm}"] = confirmation_winner(tables, arm)
        ranking = source_ranking(tables, arm).to_dict("records")
        out[f"ranking {arm}"] = [{k: repr(v) for k, v in r.items()} for r in ranking]  # repr: NaN == NaN
    confirm = tables.trials[tables.trials["phase"] == "confirm"].set_index("trial_id")
    return {**out, "feasible": confirm["feasible"].to_dict(), "feasible_val": confirm["feasible_val"].to_dict(),
            "usable": confirm["usable"].to_dict()}


def test_what_the_test_split_holds_changes_no_decision_and_no_pick(direct_study, tmp_path):
    study_dir = copy_study(direct_study, tmp_path)
    before = _decisions(study_dir)
    assert any(before["feasible"].values())  # some confirmation run met the constraint on test
    for value in (0.0, 1.0):  # every confirmed run infeasible on test, then every one feasible there
        _overwrite_test_fields(study_dir, value)
        after = _decisions(study_dir)
        assert {k: v for k, v in after.items() if k != "feasible"} == {k: v for k, v in before.items()
                                                                      if k != "feasible"}
        # ... while the feasibility the Conclusions read follows the test split.
        assert after["feasible"] == {t: bool(value) and before["usable"][t] for t in after["feasible"]}
