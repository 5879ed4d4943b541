"""The trainable's sessions without Ray (``study.trainable._run`` with Tune's calls replaced): a trial killed after
its last epoch's records were written, but before its ``trial.json`` said it had ended, must not train that epoch
again when Ray restarts it; one killed between epochs continues from its state and reports its saved epoch
again first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import study.trainable as trainable
from diffctl.train import Trainer
from study.protocol import spec_from_dict
from study.phases.registry import phases
from study.trainable import TrialJob
from study.trialdir import METRICS_FILE, OK, TRAINER_FILE, TRIAL_FILE
from tiny_specs import TINY


class Killed(BaseException):
    """The SIGKILL of the driver and its workers, as seen by the trial: nothing after it runs."""


class FakeTune:
    def __init__(self) -> None:
        self.reports: list[dict] = []

    def report(self, metrics: dict, checkpoint=None) -> None:
        self.reports.append(metrics)


@pytest.fixture
def session(monkeypatch, tmp_path):
    """(run one session of the trial, the fake Tune, its trial directory, the epochs trained so far)."""
    fake = FakeTune()
    monkeypatch.setattr(trainable, "tune", fake)
    monkeypatch.setattr(trainable, "this_node", lambda: {"node_id": "test", "hostname": "test"})
    trained: list[int] = []
    run_epoch = Trainer.run_epoch

    def counted(self):
        trained.append(self.epoch + 1)
        return run_epoch(self)

    monkeypatch.setattr(Trainer, "run_epoch", counted)
    job = TrialJob(spec_from_dict(TINY), str(tmp_path), phases=tuple(phases()))
    config = {"phase": "search", "arm": "fixed", "name": "r0-0000", "params": {"arm.w_kl": 0.1},
              "sampling": "random", "replicate": 0, "batch": 0, "slot": 0}
    trial_dir = job.trial_dir(config)
    trial_dir.mkdir(parents=True)
    return (lambda: trainable._run(trial_dir, "t0", config, job)), fake, trial_dir, trained


def test_a_trial_killed_before_its_final_trial_json_trains_nothing_again(session, monkeypatch):
    run, fake, trial_dir, trained = session
    write_info = trainable.write_info

    def killed_at_the_final_info(directory: Path, info) -> None:
        if info.status == OK:
            raise Killed
        write_info(directory, info)

    monkeypatch.setattr(trainable, "write_info", killed_at_the_final_info)
    with pytest.raises(Killed):
        run()
    assert trained == [1, 2]
    metrics = (trial_dir / METRICS_FILE).read_bytes()
    assert len(metrics.splitlines()) == 2 and json.loads((trial_dir / TRIAL_FILE).read_text())["epochs_done"] == 1

    monkeypatch.setattr(trainable, "write_info", write_info)
    fake.reports.clear()
    run()  # Ray restarts the trial
    assert trained == [1, 2]  # no epoch trained again
    assert (trial_dir / METRICS_FILE).read_bytes() == metrics
    info = json.loads((trial_dir / TRIAL_FILE).read_text())
    assert (info["status"], info["epochs_done"], info["restarts"]) == (OK, 2, 1)
    assert [r["epoch"] for r in fake.reports] == [2]  # the last record reported once, so Tune ends the trial
    assert not (trial_dir / TRAINER_FILE).exists()


def test_a_trial_killed_between_epochs_continues_from_its_state(session, monkeypatch):
    run, fake, trial_dir, trained = session
    report = fake.report

    def killed_after_the_first_report(metrics, checkpoint=None):
        report(metrics)
        raise Killed

    monkeypatch.setattr(fake, "report", killed_after_the_first_report)
    with pytest.raises(Killed):
        run()
    first = (trial_dir / METRICS_FILE).read_bytes()
    monkeypatch.setattr(fake, "report", report)
    run()
    assert trained == [1, 2]
    assert (trial_dir / METRICS_FILE).read_bytes().startswith(first)
    # The restarted session reports its saved epoch again before it trains on: early stopping judges that epoch as
    # it would have in an uninterrupted run.
    assert [r["epoch"] for r in fake.reports] == [1, 1, 2]
    assert json.loads((trial_dir / TRIAL_FILE).read_text())["status"] == OK
