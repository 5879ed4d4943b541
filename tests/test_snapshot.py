"""Tune's experiment snapshot copied whole or not at all (study/snapshot.py), and a damaged one refused."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs
import pytest
from ray.train._internal.storage import _FilesystemSyncer

from diffctl.errors import InputError
from study.snapshot import atomic_snapshots, check_snapshot, upload_atomically


def _staged(tmp_path: Path) -> Path:
    staging = tmp_path / "staging"
    (staging / "trial_1").mkdir(parents=True)
    (staging / "experiment_state-2026.json").write_text('{"trial_data": [1, 2, 3]}')
    (staging / "searcher-state-2026.pkl").write_bytes(b"\x80\x04searcher")
    (staging / "trial_1" / "result.json").write_text('{"epoch": 1}\n')
    return staging


def test_tunes_syncer_copies_the_snapshot_through_a_rename(tmp_path):
    staging, experiment = _staged(tmp_path), tmp_path / "experiment"
    experiment.mkdir()
    old = experiment / "experiment_state-2026.json"
    old.write_text('{"trial_data": []}')
    inode = old.stat().st_ino
    atomic_snapshots()
    atomic_snapshots()  # idempotent: one wrapper
    syncer = _FilesystemSyncer(storage_filesystem=pyarrow.fs.LocalFileSystem(), sync_period=0, sync_timeout=30)
    assert syncer.sync_up(str(staging), str(experiment))
    syncer.wait()
    assert old.read_text() == '{"trial_data": [1, 2, 3]}'
    assert old.stat().st_ino != inode  # replaced by a new file, not truncated and rewritten in place
    assert (experiment / "trial_1" / "result.json").read_text() == '{"epoch": 1}\n'
    assert (experiment / "searcher-state-2026.pkl").read_bytes() == b"\x80\x04searcher"
    assert not list(experiment.rglob("*.tmp"))


def test_a_copy_that_fails_midway_leaves_the_old_snapshot_whole(tmp_path, monkeypatch):
    staging, experiment = _staged(tmp_path), tmp_path / "experiment"
    experiment.mkdir()
    (experiment / "experiment_state-2026.json").write_text('{"trial_data": []}')

    def torn(src, dst):  # the temporary file written, then the process dies before the rename
        raise KeyboardInterrupt

    monkeypatch.setattr("diffctl.files.os.replace", torn)
    with pytest.raises(KeyboardInterrupt):
        upload_atomically(str(staging), pyarrow.fs.LocalFileSystem(), str(experiment))
    assert (experiment / "experiment_state-2026.json").read_text() == '{"trial_data": []}'
    assert not list(experiment.rglob("*.tmp"))


@pytest.mark.parametrize("text", ["", '{"trial_data": [1, 2'])
def test_resume_refuses_a_damaged_newest_snapshot_naming_it(tmp_path, text):
    (tmp_path / "experiment_state-2026-11-01.json").write_text("{}")
    (tmp_path / "experiment_state-2026-12-01.json").write_text(text)
    with pytest.raises(InputError, match=r"experiment_state-2026-12-01\.json: damaged experiment snapshot"):
        check_snapshot(tmp_path)
    (tmp_path / "experiment_state-2026-12-01.json").write_text("{}")
    check_snapshot(tmp_path)  # whole: no error
