"""A published study is a study: the tiny study cut down to what ``results/<name>/`` commits (report, tables,
plots, Parquet tables, spec, exported configuration, ``ablate.json``, the Optuna journal; no trial directories)
is read by every command that reads, with the numbers of the live study it came from.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from analysis import open_study
from diffctl.config import load_config
from study_fixture import copy_study
from test_dashboard import _start_dashboard
from tiny_specs import run_diffctl

pytestmark = pytest.mark.slow  # the tiny study is a real study run (built once per test session)

KEPT = ("report.md", "tables", "plots", "trials.parquet", "epochs.parquet", "spec.yaml", "best.yaml", "ablate.json",
        "optuna.journal")


@pytest.fixture(scope="module")
def live_and_published(tiny_study, tmp_path_factory) -> tuple[Path, Path]:
    live = copy_study(tiny_study, tmp_path_factory.mktemp("live"))
    assert run_diffctl("export", str(live), "--out", str(live / "best.yaml")).returncode == 0
    published = tmp_path_factory.mktemp("published") / live.name
    published.mkdir()
    for name in KEPT:
        source = live / name
        if source.is_dir():
            shutil.copytree(source, published / name)
        elif source.is_file():
            shutil.copy2(source, published / name)
    assert not any(p.name == "trial.json" for p in published.rglob("*"))
    return live, published


def test_the_results_object_reads_a_published_study_as_the_live_one(live_and_published):
    live, published = (open_study(d) for d in live_and_published)
    assert published.published and not live.published
    numbers = [c for c in live.trials.columns if c.startswith("final_")]
    key = ["phase", "arm", "trial_id"]
    pd.testing.assert_frame_equal(published.trials.sort_values(key)[key + numbers].reset_index(drop=True),
                                  live.trials.sort_values(key)[key + numbers].reset_index(drop=True))
    assert len(published.epochs) == len(live.epochs) and published.winner == live.winner
    pd.testing.assert_frame_equal(published.verdicts(), live.verdicts())


def test_status_export_and_analyze_of_a_published_study(live_and_published, tmp_path):
    live, published = live_and_published
    status = run_diffctl("study", "status", str(published))
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith(f"published study {published.name} at {published}")
    listed = run_diffctl("study", "status", str(published.parent))
    assert listed.returncode == 0 and published.name in listed.stdout, listed.stdout + listed.stderr
    for arm in ("fixed", "controller"):
        done = run_diffctl("export", str(published), "--arm", arm, "--out", str(tmp_path / f"{arm}.yaml"))
        assert done.returncode == 0, done.stderr
        again = run_diffctl("export", str(live), "--arm", arm, "--out", str(tmp_path / f"{arm}-live.yaml"))
        assert again.returncode == 0, again.stderr
        ours, theirs = (load_config(tmp_path / f"{name}.yaml").to_dict() for name in (arm, f"{arm}-live"))
        for exported in (ours, theirs):
            exported.pop("provenance")
        assert ours == theirs
    before = (published / "tables" / "conclusions.csv").read_text()
    (published / "report.md").unlink()
    analysed = run_diffctl("analyze", str(published))
    assert analysed.returncode == 0, analysed.stderr
    assert (published / "report.md").read_text().startswith("# Study `")
    assert (published / "tables" / "conclusions.csv").read_text() == before  # the same numbers, re-rendered


def test_the_dashboard_serves_a_published_studys_journal(live_and_published):
    _, published = live_and_published
    server, url = _start_dashboard(published)
    try:
        with urllib.request.urlopen(f"{url}/api/studies", timeout=60) as response:
            studies = json.load(response)["study_summaries"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert sorted(s["study_name"] for s in studies) == ["controller", "fixed", "unstable"]
