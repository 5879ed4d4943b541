"""The runner's two Ray-level settings, checked against the pinned Ray: trial actors carry no runtime_env of
their own (so they start on Ray's idle, preloaded workers), and Tune's result buffering follows the spec. And
what ``study resume`` does with a study that has nothing left to run."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess

import pytest
import ray
from ray.tune.execution import class_cache

from diffctl.cli import main
from study import runner, tuners
from study.protocol import spec_from_dict
from study_fixture import copy_study
from study_kill import poll_until
from tiny_specs import DIFFCTL, TINY, diffctl_env, run_diffctl, spec_variant, write_spec


class _Trainable:
    pass


def test_trial_actors_get_no_runtime_env(monkeypatch):
    for name in class_cache.ENV_VARS_TO_PROPAGATE:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(class_cache.DEFAULT_ENV_VARS, "PL_DISABLE_FORK", "1")  # as Tune ships it
    assert class_cache._ActorClassCache().get(_Trainable)._default_options["runtime_env"]["env_vars"]
    runner._plain_trial_actors()
    remote = class_cache._ActorClassCache().get(_Trainable)
    assert not remote._default_options.get("runtime_env")  # none: the actor may start on an idle worker


@pytest.mark.parametrize("asha, length", [(None, "2"), ({"grace_period": 1, "reduction_factor": 2}, None)])
def test_results_are_buffered_unless_asha(monkeypatch, asha, length):
    monkeypatch.setenv("TUNE_RESULT_BUFFER_LENGTH", "7")
    tuners.buffer_results(spec_from_dict(spec_variant(asha=asha)))
    assert os.environ.get("TUNE_RESULT_BUFFER_LENGTH") == length  # 2 = the tiny spec's epochs
    monkeypatch.delenv("TUNE_RESULT_BUFFER_LENGTH", raising=False)
    monkeypatch.delenv("TUNE_RESULT_BUFFER_MIN_TIME_S", raising=False)


@pytest.fixture
def finished_study(direct_study, tmp_path, monkeypatch):
    """The tiny study (built without Ray), with Ray made unstartable: resuming a finished study must not need it."""
    study_dir = copy_study(direct_study, tmp_path)

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray started")

    monkeypatch.setattr(ray, "init", no_ray)
    return study_dir


def _set_state(study_dir, **changes):
    state = json.loads((study_dir / "state.json").read_text())
    state.update(changes)
    (study_dir / "state.json").write_text(json.dumps(state))
    return state


def test_resuming_a_finished_study_only_redoes_the_analysis(finished_study):
    _set_state(finished_study, finished=True)
    (finished_study / "report.md").unlink(missing_ok=True)  # the fixture's study may have been analysed already
    assert main(["study", "resume", str(finished_study)]) == 0
    assert (finished_study / "report.md").is_file()


@pytest.mark.parametrize("layout", ["one experiment per phase", "Ray trial ids"])
def test_a_study_of_an_earlier_layout_is_finished_or_refused(finished_study, capsys, layout):
    if layout == "one experiment per phase":
        shutil.rmtree(finished_study / "ray", ignore_errors=True)  # one Tune experiment per arm and phase instead
        (finished_study / "search" / "fixed" / "tuner.pkl").write_bytes(b"")
    state = json.loads((finished_study / "state.json").read_text())
    del state["layout"]  # written before this version's layout (trials named by the spec)
    (finished_study / "state.json").write_text(json.dumps(state))
    state = _set_state(finished_study, finished=False)
    assert main(["study", "resume", str(finished_study)]) == 0  # every phase done: only marked finished
    assert json.loads((finished_study / "state.json").read_text())["finished"] is True
    arm = next(iter(state["phases"]["confirm"]))
    state["phases"]["confirm"][arm] = "running"
    _set_state(finished_study, **state)
    assert main(["study", "resume", str(finished_study)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "earlier diffctl" in err[0] and str(finished_study) in err[0]
    assert ("one Tune experiment per arm and phase" in err[0]) == (layout == "one experiment per phase")


@pytest.mark.slow
@pytest.mark.parametrize("first_epochs", [1, 0], ids=["between-epochs", "before-its-first-result"])
def test_an_interrupted_study_says_how_to_resume_it_once_and_shows_nothing_running(tmp_path, first_epochs):
    """Ctrl-C (SIGINT) once a search trial is between epochs, or has started and reported nothing (Ray's result of
    it then has no config): exit 130, diffctl's resume hint and no library's (Tune's "Resume experiment with:
    Tuner.restore(...)" would contradict it); ``study status`` then shows no trial running and no phase running,
    and says what resumes the trials stopped between epochs."""
    spec = write_spec(tmp_path, spec_variant(name="intr", epochs=30, arms={"fixed": TINY["arms"]["fixed"]}))
    driver = subprocess.Popen([DIFFCTL, "study", "run", str(spec), "--storage", str(tmp_path)], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=diffctl_env())
    study_dir = tmp_path / "intr"

    def started() -> bool:
        infos = [json.loads(p.read_text()) for p in study_dir.glob("search/*/*/trial.json")]
        return any(i["status"] == "running" and i["epochs_done"] >= first_epochs for i in infos)

    assert poll_until(driver, started, timeout=120)
    driver.send_signal(signal.SIGINT)
    out, err = driver.communicate(timeout=120)
    assert driver.returncode == 130, err[-2000:]
    assert f"resume with: diffctl study resume {study_dir}" in out
    assert "Tuner.restore" not in out + err and "Resume experiment" not in out + err, err[-2000:]
    assert not re.search(r"\b(WARNING|ERROR)\b", out + err), err[-2000:]  # no library's line (test_interrupt.py)
    status = run_diffctl("study", "status", str(study_dir)).stdout
    rows = [line.split() for line in status.splitlines() if line.startswith("search")]
    assert rows and all(row[7] == "0" and row[2] != "running" for row in rows), status  # column run: 0
    assert "no process trains them: they continue from their saved state on `diffctl study resume" in status
