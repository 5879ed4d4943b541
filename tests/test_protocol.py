"""The study's protocol on one real study: one ranking rule from the rungs to the verdict, the pruning audit, and
search replicates.

The study (``SPEC``, run once from the command line): the arm ``fixed`` searches ``arm.w_rank`` in {0.01, 20}
one trial a batch; with sampler seed 1 its first trial draws 0.01 (the better negative ELBO, the worse triplet r
A) and its second 20 (the better triplet r A, the worse ELBO). The arm ``audited`` searches ``arm.w_kl`` over 5
trials one at a time, so that early stopping stops some, and the audit trains 2 of those to the end. Every search
runs twice (``search_replicates: 2``).
"""

from __future__ import annotations

import json
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna
import pandas as pd
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna_dashboard import wsgi

from analysis.audit import audit_summary
from analysis.load import build_tables
from analysis.runs import winner_runs
from study.dashboard import read_only_storage
from study.protocol import spec_from_dict
from study.protocol.ranking import ranking_score
from tiny_specs import run_study, spec_variant

pytestmark = pytest.mark.slow
EPOCHS = 3
SPEC = spec_variant(
    name="protocol", epochs=EPOCHS, sampler_seed=1, search_batch=1, search_replicates=2, defaults_first=False,
    constraints=["val_exact_match_A >= 0.0"], asha={"grace_period": 1, "reduction_factor": 2},
    audit={"per_arm": 2}, confirm={"top_k": 1, "seeds": [1001, 1002]},
    arms={
        "fixed": {"budget": 2, "startup_trials": 2, "config": {"arm": {"kind": "fixed"}},
                  "space": {"arm.w_rank": {"type": "categorical", "choices": [0.01, 20.0]}}},
        "audited": {"budget": 5, "startup_trials": 5, "config": {"arm": {"kind": "fixed"}},
                    "space": {"arm.w_kl": {"type": "float", "low": 0.001, "high": 5.0, "log": True}}},
    },
)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    return run_study(tmp_path_factory.mktemp("protocol"), SPEC)


def _records(trial_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (trial_dir / "metrics.jsonl").read_text().splitlines()]


def _untimed(record: dict) -> dict:
    return {k: v for k, v in record.items() if not k.endswith("time_s")}


def test_the_ranking_rule_keeps_the_trial_it_prefers_from_rung_to_verdict(study):
    """The second trial is worse on the first objective and better on the selection metric under the constraint: it
    survives every rung, is the arm's pick and its confirmed configuration, and the verdict's runs are its runs.
    The earlier rule (rungs on the first objective) would have stopped it at the first rung."""
    elbo_first, rank_first = study / "search" / "fixed" / "r0-0000", study / "search" / "fixed" / "r0-0001"
    assert json.loads((elbo_first / "trial.json").read_text())["params"] == {"arm.w_rank": 0.01}
    assert json.loads((rank_first / "trial.json").read_text())["params"] == {"arm.w_rank": 20.0}
    a, b = _records(elbo_first), _records(rank_first)
    assert b[0]["val_loss_unweighted"] > a[0]["val_loss_unweighted"]  # rung 1 on the ELBO: ASHA would stop it
    assert b[-1]["val_loss_unweighted"] > a[-1]["val_loss_unweighted"]  # and it stays worse there
    assert b[-1]["triplet_r_A"] > a[-1]["triplet_r_A"]
    info = json.loads((rank_first / "trial.json").read_text())
    assert (info["status"], info["epochs_done"]) == ("ok", EPOCHS)  # it survived every rung (epochs 1 and 2)
    tables = build_tables(study)
    search = tables.trials[(tables.trials["phase"] == "search") & (tables.trials["arm"] == "fixed")
                           & (tables.trials["replicate"] == 0)]
    assert (search["status"] == "ok").all()
    runs = winner_runs(tables, "fixed")
    assert set(runs.loc[runs["replicate"] == 0, "source_trial"]) == {"r0-0001"}  # the verdict's runs are its runs
    optuna_study = optuna.load_study(study_name="fixed", storage=JournalStorage(JournalFileBackend(
        str(study / "optuna.journal"))))
    assert optuna_study.best_trial.user_attrs["name"] == "r0-0001"  # Optuna is told the same ranking


def test_the_audit_counts_the_stopped_trials_that_would_have_been_picked(study):
    """Hand count from the trial files: for each audited trial, does its final record rank above its replicate's
    pick (the selected search trial) by the ranking rule? The audit table and its summary say the same."""
    spec = spec_from_dict(SPEC)
    tables = build_tables(study)
    table = pd.read_csv(study / "tables" / "pruning_audit.csv")
    table = table[table["arm"] == "audited"]
    audited = sorted((study / "audit" / "audited").iterdir())
    assert 1 <= len(audited) <= 2 * SPEC["search_replicates"] and len(table) == len(audited)
    beats = 0
    for trial_dir in audited:
        stopped = json.loads((study / "search" / "audited" / trial_dir.name / "trial.json").read_text())
        assert stopped["status"] == "stopped" and stopped["epochs_done"] < EPOCHS
        records = _records(trial_dir)
        # the same run as the stopped trial up to its rung (timing fields aside), then on to the last epoch
        before = _records(study / "search" / "audited" / trial_dir.name)
        assert [_untimed(r) for r in records[:len(before)]] == [_untimed(r) for r in before]
        assert records[-1]["epoch"] == EPOCHS
        replicate = int(trial_dir.name[1])
        finished = [d for d in (study / "search" / "audited").iterdir()
                    if d.name.startswith(f"r{replicate}-") and json.loads((d / "trial.json").read_text())["status"] == "ok"]
        pick = max(finished, key=lambda d: (ranking_score(spec, _records(d)[-1]), [-ord(c) for c in d.name]))
        won = ranking_score(spec, records[-1]) > ranking_score(spec, _records(pick)[-1])
        row = table[table["trial_id"] == trial_dir.name].iloc[0]
        assert row["pick"] == pick.name and bool(row["beats_pick"]) == won
        assert row["gain"] == pytest.approx(records[-1]["triplet_r_A"] - _records(pick)[-1]["triplet_r_A"])
        beats += won
    summary = audit_summary(table).set_index("arm")
    assert summary.loc["audited", "audited"] == len(audited) and summary.loc["audited", "would_be_picked"] == beats
    report = (study / "report.md").read_text()
    assert f"`audited`: {beats} of {len(audited)} would have been picked over its pick" in report
    assert (tables.trials["phase"].eq("audit") & tables.trials["arm"].eq("audited")).sum() == len(audited)


def test_replicates_are_searched_confirmed_and_reported_apart(study):
    storage = JournalStorage(JournalFileBackend(str(study / "optuna.journal")))
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
    assert names == ["audited", "audited.r1", "fixed", "fixed.r1"]  # one Optuna study per replicate
    first, second = (optuna.load_study(study_name=n, storage=storage) for n in ("audited", "audited.r1"))
    assert [t.params for t in first.trials] != [t.params for t in second.trials]  # sampler seeds derived apart
    tables = build_tables(study)
    for arm in ("fixed", "audited"):
        runs = winner_runs(tables, arm)
        assert sorted(runs["replicate"].unique()) == [0, 1] and len(runs) == 2 * 2  # each replicate's pick, 2 seeds
        picks = runs.groupby("replicate")["source_trial"].unique()
        assert all(len(p) == 1 and p[0].startswith(f"r{r}-") for r, p in picks.items())
    spread = pd.read_csv(study / "tables" / "replicate_spread.csv")
    assert sorted(spread["arm"].unique()) == ["audited", "fixed"] and not spread["search_share"].isna().all()
    assert "### Search replicates" in (study / "report.md").read_text()
    paired = pd.read_csv(study / "tables" / "paired_vs_fixed.csv")
    row = paired[(paired["metric"] == "triplet_r_A") & (paired["budget"] == 1.0)].iloc[0]
    assert row["replicates_arm"] == row["replicates_reference"] == 2 and row["level"] == "pipeline"
    assert 0.0 <= row["p_better"] <= 1.0 and row["n_pairs"] == 2


def test_the_dashboard_lists_every_replicate(study):
    app = wsgi(read_only_storage(study))
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/api/studies"}
    setup_testing_defaults(environ)
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer["status"] = status

    body = b"".join(app(environ, start_response))
    assert answer["status"].startswith("200")
    listed = sorted(s["study_name"] for s in json.loads(body)["study_summaries"])
    assert listed == ["audited", "audited.r1", "fixed", "fixed.r1"]
