"""Population based training as an arm (study/pbt.py, study/members.py, analysis/pbt.py): the spec's checks, and a
real tiny study with a PBT arm and the fixed arm run from the command line, SIGKILLed while its population trains
and resumed.

Checked: the exploits are in trial.json and in the lineage table; an exploited member's records up to the exploit
are its source's, byte for byte, and its own epochs follow with its perturbed values; the members' initial draws
are those of the spec's seed; schedule-r0.yaml retrains the best member's weights, rho and learning rate exactly;
the confirmation runs replay that schedule on the spec's seeds; report and tables show the arm; no checkpoint is
left; the kill lost nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from diffctl.cli import main
from diffctl.config import load_config
from diffctl.errors import InputError
from diffctl.files import read_jsonl
from study.phases.pbt import initial_params
from study.trialdir import schedule_file
from study.protocol import load_spec
from study_kill import assert_nothing_reran, killed_in_phase_and_resumed
from study.protocol import trial_config
from study.phases.registry import total_trials
from tiny_specs import TINY, run_diffctl, spec_variant, write_spec

MUTATIONS = {"arm.w_rank": {"type": "float", "low": 0.05, "high": 20.0, "log": True},
             "arm.rho": {"type": "float", "low": 0.0, "high": 0.5},
             "optim.lr": {"type": "float", "low": 3e-4, "high": 3e-3, "log": True}}
PBT_ARM = {"budget": 4, "search": "pbt", "config": {"arm": {"kind": "fixed"}},
           "pbt": {"perturbation_interval": 2, "quantile_fraction": 0.25, "seed": 0, "mutations": MUTATIONS}}
FIXED_ARM = {"budget": 2, "config": {"arm": {"kind": "fixed"}},
             "space": {"arm.w_rank": {"type": "float", "low": 0.05, "high": 20.0, "log": True}}}
SEEDS = TINY["confirm"]["seeds"]
SPEC = spec_variant(
    name="pbt", epochs=4,
    base={**TINY["base"], "data": {"batch_size": 1024}},  # 16 steps an epoch: a short study
    confirm={"top_k": 1, "seeds": SEEDS, "distill": ["final"]},
    arms={"pbt": PBT_ARM, "fixed": FIXED_ARM},  # the PBT arm first: the reference arm is still `fixed`
)
KEYS = ("rho", "w_recon", "w_kl", "w_rank", "w_ent")
slow = pytest.mark.slow


# --- the spec ----------------------------------------------------------------------------------------------------
def _pbt(**changes) -> dict:
    return {"arms": {"pbt": {**PBT_ARM, **changes}, "fixed": FIXED_ARM}}


def _mutations(**changes) -> dict:
    return _pbt(pbt={**PBT_ARM["pbt"], "mutations": {**MUTATIONS, **changes}})


BAD_SPECS = [
    ("a key PBT cannot mutate", _mutations(**{"loss.margin": {"type": "float", "low": 0.1, "high": 1.0}}),
     "arms.pbt.pbt.mutations.loss.margin: not mutable"),
    ("unknown key in pbt", _pbt(pbt={**PBT_ARM["pbt"], "period": 2}), "arms.pbt.pbt.period: unknown key"),
    ("a condition on a mutation", _mutations(**{"arm.rho": {"type": "float", "low": 0.0, "high": 0.5,
                                                             "when": {"optim.lr": [1e-3]}}}),
     "arms.pbt.pbt.mutations.arm.rho.when: unknown key"),
    ("categorical mutation", _mutations(**{"arm.rho": {"type": "categorical", "choices": [0.0, 0.5]}}),
     "arms.pbt.pbt.mutations.arm.rho.type: unknown distribution type 'categorical' (known: float, int)"),
    ("low above high", _mutations(**{"arm.rho": {"type": "float", "low": 0.5, "high": 0.1}}),
     "arms.pbt.pbt.mutations.arm.rho: low (0.5) must be below high (0.1)"),
    ("a value diffctl refuses", _mutations(**{"arm.rho": {"type": "float", "low": 0.0, "high": 2.0}}),
     "arms.pbt.pbt.mutations: arm.rho: input should be less than or equal to 1"),
    ("space with pbt", _pbt(space=FIXED_ARM["space"]), "arms.pbt.space: not used with search: pbt"),
    ("pbt missing", _pbt(pbt=None), "arms.pbt.pbt: missing"),
    ("pbt with optuna", {"arms": {"fixed": {**FIXED_ARM, "pbt": PBT_ARM["pbt"]}}},
     "arms.fixed.pbt: only with search: pbt"),
    ("a controller population", _pbt(config={"arm": {"kind": "controller"}}),
     "arms.pbt.config.arm.kind: a PBT arm's members train kind fixed (got controller)"),
    ("interval of the whole run", _pbt(pbt={**PBT_ARM["pbt"], "perturbation_interval": 4}),
     "arms.pbt.pbt.perturbation_interval: 4 must be below epochs (4)"),
    ("a population of one", _pbt(budget=1), "arms.pbt.budget: a population needs at least 2 members"),
    ("unknown search", _pbt(search="grid"), "arms.pbt.search: input should be 'optuna' or 'pbt'"),
]


@pytest.mark.parametrize("case, changes, message", BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_bad_pbt_spec_names_the_key(tmp_path, case, changes, message):
    with pytest.raises(InputError) as info:
        load_spec(write_spec(tmp_path, spec_variant(epochs=4, **changes)))
    text = str(info.value)
    assert text.startswith(message) and "\n" not in text, text


def test_bad_pbt_spec_fails_at_the_command_line(tmp_path, capsys):
    spec_path = write_spec(tmp_path, spec_variant(epochs=4, **_pbt(search="grid")))
    code = main(["study", "run", str(spec_path), "--storage", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("diffctl: error: arms.pbt.search: "), err
    assert not (tmp_path / "results").exists()


def test_a_pbt_spec_counts_its_population_and_draws_the_same_members(tmp_path):
    spec = load_spec(write_spec(tmp_path, SPEC))
    # search 4 + 2; confirmation 1 x 2 seeds (PBT: its schedule only) + 1 x 2; distilled `final` of pbt: 2
    assert total_trials(spec) == 6 + 2 + 2 + 2
    draws = initial_params(spec, "pbt")
    assert draws == initial_params(load_spec(write_spec(tmp_path, SPEC, "again.yaml")), "pbt")
    assert len(draws) == 4 and len({d["arm.w_rank"] for d in draws}) == 4
    for draw in draws:
        assert 0.05 <= draw["arm.w_rank"] <= 20.0 and 0.0 <= draw["arm.rho"] <= 0.5 and 3e-4 <= draw["optim.lr"] <= 3e-3
    other = {**SPEC, **_pbt(pbt={**PBT_ARM["pbt"], "seed": 1})}
    assert initial_params(load_spec(write_spec(tmp_path, other, "other.yaml")), "pbt") != draws
    thinned = {**SPEC, "epochs": 7, "base": {"eval": {"full_every": 3}}}
    spec = load_spec(write_spec(tmp_path, thinned, "thinned.yaml"))
    assert {2, 4, 6} <= set(trial_config(spec, "pbt", draws[0])["eval"]["full_epochs"])  # ranked in full
    assert 6 not in trial_config(spec, "fixed", {})["eval"]["full_epochs"]  # other arms as before


# --- a real study --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def study(tmp_path_factory):  # killed once some member is final, not all of them
    return killed_in_phase_and_resumed(tmp_path_factory.mktemp("pbt"), SPEC, "search", PBT_ARM["budget"])


def _infos(study_dir: Path, phase: str, arm: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(study_dir.glob(f"{phase}/{arm}/*/trial.json"))]


def _records(study_dir: Path, phase: str, arm: str, trial_id: str) -> list[dict]:
    return read_jsonl(study_dir / phase / arm / trial_id / "metrics.jsonl")


@slow
def test_killed_while_the_population_trains_and_resumed_without_loss(study):
    assert_nothing_reran(study, "search")
    study_dir = study[0]
    members = [i for i in _infos(study_dir, "search", "pbt") if not i["reason"]]
    assert len(members) == PBT_ARM["budget"]  # the budget exactly spent
    assert all(i["status"] == "ok" and i["epochs_done"] == 4 for i in members)
    assert (study_dir / "ray_pbt" / "pbt").is_dir()
    assert not [p for p in study_dir.rglob("*") if p.name.startswith("checkpoint_") or p.name == ".checkpoint"]
    state = json.loads((study_dir / "state.json").read_text())
    assert state["finished"] and state["phases"]["search"] == {"pbt": "done", "fixed": "done"}
    row = next(line.split() for line in run_diffctl("study", "status", str(study_dir)).stdout.splitlines()
               if line.startswith("search") and " pbt " in line)
    assert row[2:4] == ["done", "4"] and row[8] == "4"  # state, ok, total


@slow
def test_exploits_continue_from_the_source_state(study):
    study_dir = study[0]
    members = {i["trial_id"]: i for i in _infos(study_dir, "search", "pbt") if not i["reason"]}
    exploits = [(trial_id, e) for trial_id, i in members.items() for e in i["exploits"]]
    assert exploits, "no member took another's state"
    lineage = pd.read_csv(study_dir / "tables" / "pbt_lineage.csv")
    assert len(lineage) == len(exploits)
    for trial_id, exploit in exploits:
        assert exploit["epoch"] == 2 and exploit["source_trial"] in members and exploit["source_trial"] != trial_id
        row = lineage[(lineage["member"] == trial_id) & (lineage["epoch"] == exploit["epoch"])].iloc[0]
        assert row["source_trial"] == exploit["source_trial"]
        assert row["after_arm.w_rank"] == pytest.approx(exploit["after"]["arm.w_rank"], rel=1e-12)
        mine = _records(study_dir, "search", "pbt", trial_id)
        theirs = _records(study_dir, "search", "pbt", exploit["source_trial"])
        assert [r["epoch"] for r in mine] == [1, 2, 3, 4]
        assert mine[:2] == theirs[:2]  # what its state trained: the source's records, not recomputed
        assert exploit["after"] == members[trial_id]["params"] != exploit["before"]
        for record in mine[2:]:  # its own epochs, with its perturbed values (held in float32 by the arm)
            assert record["lr"] == exploit["after"]["optim.lr"]
            assert record["w_rank_mean"] == pytest.approx(exploit["after"]["arm.w_rank"], rel=2**-23)
            assert record["rho_mean"] == pytest.approx(exploit["after"]["arm.rho"], rel=2**-23, abs=1e-12)
    # Every member started from the spec's draws: an exploited one's `before`, the others' params.
    spec = load_spec(study_dir / "spec.yaml")
    started = [i["exploits"][0]["before"] if i["exploits"] else i["params"] for i in members.values()]
    assert sorted(json.dumps(p, sort_keys=True) for p in started) == \
        sorted(json.dumps(p, sort_keys=True) for p in initial_params(spec, "pbt"))


@slow
def test_the_schedule_retrains_the_best_member(study, tmp_path):
    study_dir = study[0]
    confirm = _infos(study_dir, "confirm", "pbt")
    members = {i["trial_id"]: i for i in _infos(study_dir, "search", "pbt") if not i["reason"]}
    finals = {t: _records(study_dir, "search", "pbt", t)[-1]["triplet_r_A"] for t in members}
    best = max(sorted(finals), key=finals.get)
    assert {i["source_trial"] for i in confirm} == {best}
    path = study_dir / "search" / "pbt" / schedule_file(0)
    schedule = load_config(path)
    assert schedule.arm.kind == "piecewise" and schedule.seed == 0
    trained = run_diffctl("train", "--config", str(path), "--out", str(tmp_path / "replay"))
    assert trained.returncode == 0, trained.stderr[-2000:]
    replay = read_jsonl(tmp_path / "replay" / "metrics.jsonl")
    source = _records(study_dir, "search", "pbt", best)
    assert [r["epoch"] for r in replay] == [r["epoch"] for r in source] == [1, 2, 3, 4]
    for mine, theirs in zip(replay, source):
        assert {k: mine[f"{k}_mean"] for k in KEYS} == {k: theirs[f"{k}_mean"] for k in KEYS}
        assert mine["lr"] == theirs["lr"]
    # The confirmation runs replay that schedule on the spec's seeds; the arm's constants are distilled.
    assert sorted(i["seed"] for i in confirm) == SEEDS and all(i["status"] == "ok" for i in confirm)
    for info in confirm:
        config = load_config(study_dir / "confirm" / "pbt" / info["trial_id"] / "config.yaml")
        assert config.arm == schedule.arm and config.seed == info["seed"]
    assert sorted(i["seed"] for i in _infos(study_dir, "distill", "pbt.distilled_final")) == SEEDS
    assert not list(study_dir.glob("distill/pbt.distilled_replay")) and not list(study_dir.glob("distill/fixed.*"))


@slow
def test_report_and_tables_show_the_pbt_arm(study):
    study_dir = study[0]
    report = (study_dir / "report.md").read_text()
    lineage = pd.read_csv(study_dir / "tables" / "pbt_lineage.csv")
    assert "## Population based training" in report
    assert f"`pbt`: population 4 x 4 epochs = 16 trial-epochs per replicate; {len(lineage)} exploit(s)" in report
    assert "`fixed` 2 x 4 = 8" in report and "fixed-λ reference arm `fixed`" in report
    summary = pd.read_csv(study_dir / "tables" / "confirm_summary.csv")
    assert set(summary["arm"]) == {"pbt", "fixed", "pbt.distilled_final"}
    assert (summary.loc[summary["arm"] == "pbt", "n"] == len(SEEDS)).all()
    search = pd.read_csv(study_dir / "tables" / "search.csv")
    assert (search["arm"] == "pbt").sum() >= 4 and search.loc[search["arm"] == "pbt", "selected"].sum() == 1
    paired = pd.read_csv(study_dir / "tables" / "paired_vs_fixed.csv")
    assert set(paired["arm"]) == {"pbt"}
    assert (study_dir / "plots" / "pbt_schedule_pbt.png").stat().st_size > 10_000
    assert yaml.safe_load((study_dir / "spec.yaml").read_text())["arms"]["pbt"]["search"] == "pbt"
