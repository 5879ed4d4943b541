"""Distilled baselines end to end (study/distill.py, analysis/trajectory.py): the real tiny study of
tests/derived_study.py (a controller arm and the fixed arm), SIGKILLed during its distill phase and resumed.

Checked: every distilled variant has a run on every confirmation seed; a constant run's config holds its source
run's recorded means (last epoch or whole run) and a replay's segments its source's per-epoch means, with
everything else of the source's config unchanged; the kill left finished trials untouched and the resume reran
none; status, tables and report show the new phase, the box check and the three-level line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from analysis.load import build_tables
from diffctl.config import load_config
from diffctl.files import read_jsonl
from study.protocol.plan import distilled_label
from study.protocol.schema import DISTILL_VARIANTS as VARIANTS
from derived_study import SEEDS
from study_kill import assert_nothing_reran
from tiny_specs import run_diffctl

pytestmark = pytest.mark.slow

KEYS = ("rho", "w_recon", "w_kl", "w_rank", "w_ent")


@pytest.fixture(scope="module")
def study(derived_study):  # killed once some distilled run is final, not all of them
    return derived_study["distill"]


def _source_records(study_dir: Path, trial_id: str) -> list[dict]:
    (path,) = study_dir.glob(f"confirm/controller/{trial_id}/metrics.jsonl")
    return [r for r in read_jsonl(path) if r["status"] == "ok"]


def test_killed_in_the_distill_phase_and_resumed_without_rerunning(study):
    assert_nothing_reran(study, "distill")
    study_dir = study[0]
    runs = {variant: list(study_dir.glob(f"distill/{distilled_label('controller', variant)}/*/trial.json"))
            for variant in VARIANTS}
    for variant, paths in runs.items():
        infos = [json.loads(p.read_text()) for p in paths]
        finished = [i for i in infos if i["status"] == "ok"]
        assert sorted(i["seed"] for i in finished) == SEEDS, variant  # every seed once, none twice
    assert not list(study_dir.glob("distill/fixed.*"))  # the fixed arm's weights never move: nothing to distill
    status = run_diffctl("study", "status", str(study_dir))
    for variant in VARIANTS:
        row = next(line for line in status.stdout.splitlines() if distilled_label("controller", variant) in line)
        assert row.split()[0] == "distill" and row.split()[2] == "done" and row.split()[3] == str(len(SEEDS))


def test_distilled_configs_hold_the_source_runs_values(study):
    study_dir = study[0]
    for variant in VARIANTS:
        for info_path in study_dir.glob(f"distill/{distilled_label('controller', variant)}/*/trial.json"):
            info = json.loads(info_path.read_text())
            if info["status"] != "ok":
                continue
            records = _source_records(study_dir, info["source_trial"])
            source = load_config(next(study_dir.glob(f"confirm/controller/{info['source_trial']}/config.yaml")))
            config = load_config(info_path.with_name("config.yaml"))
            assert config.seed == source.seed == info["seed"] and info["source_arm"] == "controller"
            # Everything but the arm section is the source run's.
            assert config.model_copy(update={"arm": source.arm}) == source
            arm = config.arm.model_dump()
            if variant == "replay":
                assert arm["kind"] == "piecewise" and len(arm["segments"]) <= len(records)
                for record in records:  # each epoch's segment holds that epoch's means
                    segment = next(s for s in arm["segments"] if s["until_epoch"] is None
                                   or s["until_epoch"] >= record["epoch"])
                    assert all(segment[k] == record[f"{k}_mean"] for k in KEYS)
            else:
                used = records[-1:] if variant == "final" else records
                assert arm["kind"] == "fixed"
                for k in KEYS:
                    assert arm[k] == pytest.approx(math.fsum(r[f"{k}_mean"] for r in used) / len(used), rel=1e-12)
            # trial.json records what was copied: the arm section as given to the run.
            assert {k: v for k, v in info["distilled"].items() if k != "segments"} == \
                {k: arm[k] for k in info["distilled"] if k != "segments"}
            assert len(info["distilled"].get("segments", [])) == len(arm.get("segments", []))


def test_the_replay_trains_with_the_source_runs_per_epoch_means(study):
    study_dir = study[0]
    for metrics in study_dir.glob(f"distill/{distilled_label('controller', 'replay')}/*/metrics.jsonl"):
        info = json.loads(metrics.with_name("trial.json").read_text())
        source = _source_records(study_dir, info["source_trial"])
        replay = [r for r in read_jsonl(metrics) if r["status"] == "ok"]
        assert len(replay) == len(source)
        for mine, theirs in zip(replay, source):  # held in float32 by the arm: equal to float32 rounding
            for k in KEYS:
                assert mine[f"{k}_mean"] == pytest.approx(theirs[f"{k}_mean"], rel=2**-23, abs=1e-12)


def test_report_has_the_box_check_and_the_three_level_line(study):
    study_dir = study[0]
    report = (study_dir / "report.md").read_text()
    assert "## Trajectory or destination" in report and "### Box check" in report
    levels = pd.read_csv(study_dir / "tables" / "trajectory.csv")
    assert list(levels["arm"]) == ["controller"]
    level = levels["level"].iloc[0]
    assert level in ("destination only", "schedule", "feedback", "inconclusive")
    assert f"Trajectory or destination, `controller` on triplet_r_A: **{level}**" in report
    box = pd.read_csv(study_dir / "tables" / "box_check.csv")
    assert set(box["key"]) >= set(KEYS) and set(box["statistic"]) == {"last epoch", "whole run"}
    fixed_box = box[box["key"] == "w_rank"][["box_low", "box_high"]].drop_duplicates()
    assert fixed_box.values.tolist() == [[0.05, 20.0]]  # the fixed arm's searched range
    for row in box[~box["inside"]].itertuples():  # every value outside the box is named in the report
        assert f"{row.key} {row.value:.3g} ({row.statistic}) outside `fixed` box" in report
    tables = build_tables(study_dir)
    distilled = tables.trials[tables.trials["phase"] == "distill"]
    assert len(distilled) >= len(VARIANTS) * len(SEEDS) and (distilled["source_arm"] == "controller").all()
    assert (study_dir / "plots" / "trajectory_controller.png").is_file()
