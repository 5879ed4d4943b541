"""study/disk.py: the projected disk need of a study, from a study directory laid out as study/LAYOUT.md says
with files of known sizes, and the warning when the (simulated) disk has less free space than that."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from diffctl.config import config_from_dict
from diffctl.train import Trainer
from study.disk import disk_warning, format_bytes, model_state_bytes, projected_need
from study.protocol import spec_from_dict, trial_config
from tiny_specs import TINY, spec_variant

SPEC = spec_from_dict(TINY)  # 2 + 2 search trials, 2 x 2 confirmation runs: 8 in all, 2 at a time


def _trial(study_dir: Path, arm: str, trial_id: str, status: str, size: int, state: int = 0) -> None:
    """A search trial directory whose files (trainer.pt aside) hold exactly ``size`` bytes."""
    trial_dir = study_dir / "search" / arm / trial_id
    trial_dir.mkdir(parents=True)
    info = {"arm": arm, "phase": "search", "trial_id": trial_id, "params": {}, "seed": 0, "status": status}
    (trial_dir / "trial.json").write_text(json.dumps(info))
    (trial_dir / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "status": status}) + "\n")
    used = sum(p.stat().st_size for p in trial_dir.iterdir())
    (trial_dir / "config.yaml").write_text("#" * (size - used))
    if state:
        (trial_dir / "trainer.pt").write_bytes(b"\0" * state)


@pytest.fixture
def half_done(tmp_path):
    """Two ok trials (20 and 30 kB), a diverged one (5 kB), one running with a 2 MB trainer.pt, and 40 kB of
    Ray's files: 3 of 8 trials ended."""
    study_dir = tmp_path / "tiny"
    _trial(study_dir, "fixed", "a", "ok", 20_000)
    _trial(study_dir, "fixed", "b", "ok", 30_000)
    _trial(study_dir, "lr", "c", "diverged", 5_000)
    _trial(study_dir, "lr", "d", "running", 1_000, state=2_000_000)
    (study_dir / "ray").mkdir()
    (study_dir / "ray" / "experiment_state.json").write_bytes(b"x" * 40_000)
    return study_dir


def _free(monkeypatch, free: int) -> list[Path]:
    """Make shutil.disk_usage report ``free`` bytes; returns the paths it is asked about."""
    asked: list[Path] = []
    monkeypatch.setattr(shutil, "disk_usage", lambda path: asked.append(Path(path)) or SimpleNamespace(free=free))
    return asked


def test_projection_from_the_trials_so_far(half_done):
    need = projected_need(half_done, SPEC)
    assert need.trials_left == 8 - 3  # the running trial is still to be written
    assert need.trial_bytes == 25_000  # mean of the ok trials; the diverged one ended early
    assert need.shared_bytes == 10_000  # 40 kB of Ray's files over 4 trials started
    assert (need.state_bytes, need.concurrent) == (2_000_000, 2)
    assert need.total == 5 * 35_000 + 2 * 2_000_000


def test_warns_with_the_numbers_when_the_disk_is_short(half_done, monkeypatch):
    asked = _free(monkeypatch, 1_000_000)
    warning = disk_warning(half_done, SPEC)
    assert asked == [half_done]
    assert warning == (
        f"warning: 1.0 MB free on the disk of {half_done}, less than the 4.2 MB the study is projected to write "
        "(5 trials left x 35.0 kB + 2 running x 2.0 MB trainer.pt)"
    )


def test_silent_with_enough_space(half_done, monkeypatch):
    _free(monkeypatch, 4_175_000)  # exactly the projected need
    assert disk_warning(half_done, SPEC) is None
    _free(monkeypatch, 4_174_999)
    assert disk_warning(half_done, SPEC).startswith("warning: 4.2 MB free")
    _free(monkeypatch, 10**12)
    assert disk_warning(half_done, SPEC) is None


def test_finished_study_needs_nothing(tmp_path, monkeypatch):
    one_trial = {"fixed": {**TINY["arms"]["fixed"], "budget": 1}}
    spec = spec_from_dict(spec_variant(arms=one_trial, confirm={"top_k": 1, "seeds": [7]}))
    _trial(tmp_path, "fixed", "a", "ok", 3_000)
    _trial(tmp_path, "fixed", "b", "ok", 3_000)  # stands for the confirmation run
    _free(monkeypatch, 0)
    assert projected_need(tmp_path, spec).total == 0 and disk_warning(tmp_path, spec) is None


def test_fresh_study_reckons_with_the_model_state(tmp_path, monkeypatch):
    need = projected_need(tmp_path, SPEC)
    state = model_state_bytes(SPEC)
    assert (need.trials_left, need.trial_bytes, need.state_bytes, need.concurrent) == (8, state, state, 2)
    _free(monkeypatch, 9 * state)
    assert f"less than the {format_bytes(10 * state)}" in disk_warning(tmp_path, SPEC)
    # The estimate is the size of a real trainer.pt after one epoch, within 5 %.
    trainer = Trainer(config_from_dict(trial_config(SPEC, "fixed", {})))
    trainer.run_epoch()
    buffer = io.BytesIO()
    torch.save(trainer.state_dict(), buffer)
    assert abs(state - buffer.tell()) < 0.05 * buffer.tell()


def test_format_bytes():
    assert [format_bytes(n) for n in (999, 1000, 35_000, 4_175_000, 2.5e9, 7e15)] == [
        "999 B", "1.0 kB", "35.0 kB", "4.2 MB", "2.5 GB", "7000.0 TB"
    ]
