"""What every Tune experiment of a study shares — the study's Tuner (``study.runner``) and a population's Tuners
(``study.phases.pbt``): the Ray connection, the trainable with its resources, a Tuner restored or fitted, results
buffered or not, and the final status of the trials a Tuner ended without their trainable saying so.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any, Callable

import ray
from ray import tune

from diffctl.errors import InputError, one_line

from .progress import ProgressCallback
from .quiet import RESTORE_ANALYSIS_LOGGER, TOKEN_SETUP_LOGGER, TUNE_LOGGER, UNFINISHED_ERROR, quiet
from .snapshot import check_snapshot
from .protocol import StudySpec, check_resources
from .trainable import TrialJob, train_trial
from .trialdir import ABANDONED, ERROR, RUNNING, mark_finished, read_info, read_trials

# An experiment snapshot (trial states and searcher, what resume restores) every 2 s instead of every >= 10 s:
# a trial started after the last snapshot of a killed driver is unknown to the restored experiment, which runs
# a new trial in its place. The new output engine prints an experiment banner even at verbose=0; the legacy
# one is silent at 0.
_RAY_ENV = {"TUNE_GLOBAL_CHECKPOINT_S": "2", "RAY_AIR_NEW_OUTPUT": "0"}
# The local Ray starts one idle worker per core at once; each imports these before taking work, while the driver
# sets the study up. Trial actors then start on them (see study.runner._plain_trial_actors) with torch, the
# project and torch._dynamo (imported by the first optimiser, ~1.1 s) already loaded.
PRELOAD = ["torch._dynamo", "study.trainable"]
RESULT_BUFFER_S = 10.0  # how long a trial's epochs may wait before the driver hears of them (see buffer_results)
# A trial whose worker process dies (killed, out of memory) is restarted this many times, from its trainer.pt.
MAX_RETRIES = 2


class StudyInterrupted(KeyboardInterrupt):
    """The Tuner ended before every trial did (Ctrl-C): the study is resumable."""


def connect(spec: StudySpec, address: str | None) -> str | None:
    """Start a local Ray on every core, or join the cluster at ``address`` / ``RAY_ADDRESS``; refuse a spec whose
    trials need more CPUs than one node has. Returns the address used (None: local)."""
    for key, value in _RAY_ENV.items():
        os.environ.setdefault(key, value)
    address = address or os.environ.get("RAY_ADDRESS") or None
    silent = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address is None:
        cores = os.cpu_count() or 1
        check_resources(spec, cores, "this machine")
        preload = {"preload_python_modules": PRELOAD}
        # A new local Ray turns token authentication on and says so in a WARNING line, which would head every
        # study's output; it stays on, unannounced.
        with quiet(TOKEN_SETUP_LOGGER):
            # address="local": a new local Ray even when `ray start` left an address file on this machine
            ray.init(address="local", num_cpus=cores, include_dashboard=False, _system_config=preload, **silent)
        return None
    try:
        ray.init(address=address, **silent)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise InputError(f"--address {address}: cannot join a Ray cluster ({one_line(exc)})") from None
    try:
        largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]), default=0)
        check_resources(spec, largest, f"the largest node of the Ray cluster at {address}")
    except InputError:
        ray.shutdown()
        raise
    return address


def fit(tuner: tune.Tuner) -> tuple[tune.ResultGrid, bool]:
    """``tuner.fit()`` without Tune's own resume hint on an interrupt (the study's follows, in :func:`finish`), nor
    its lines on the trials an interrupt left unfinished (the study's files say where each stands); and whether a
    SIGINT stopped it.

    Tune catches SIGINT during a fit with a handler of its own, which puts back the handler it replaced when it
    fires and stays installed otherwise: the one it replaced is put back here, so that a Ctrl-C after the fit is
    an ordinary KeyboardInterrupt, not a stop request nobody reads. Tune's having put it back itself is how an
    interrupt is known even when every trial had ended by then (the fit then returns as if complete)."""
    before = signal.getsignal(signal.SIGINT)
    catches = threading.current_thread() is threading.main_thread() and \
        not int(os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0"))
    try:
        with quiet(TUNE_LOGGER, errors=(UNFINISHED_ERROR,)), quiet(RESTORE_ANALYSIS_LOGGER):
            results = tuner.fit()
    finally:
        after = signal.getsignal(signal.SIGINT)
        if catches:
            signal.signal(signal.SIGINT, before)
    return results, catches and after is before


def trainable(job: TrialJob, cpus: float):
    """The study's trainable with ``job`` in Ray's object store (a Ray started again needs a new one)."""
    return tune.with_resources(tune.with_parameters(train_trial, job=job), {"cpu": cpus})


def restored(experiment_dir: Path, trainable) -> tune.Tuner | None:
    """The Tuner of an experiment that a driver started before (None: none yet)."""
    if not tune.Tuner.can_restore(str(experiment_dir)):
        return None
    check_snapshot(experiment_dir)
    # Tune reads the old run's results first and warns of the trials that were running at the kill and had sent
    # none (buffered); their own files say where they stand, and they run on below.
    with quiet(RESTORE_ANALYSIS_LOGGER):
        return tune.Tuner.restore(str(experiment_dir), trainable, resume_errored=True)


def buffer_results(spec: StudySpec, every_epoch: bool = False) -> None:
    """Let a trial report several epochs per round trip to the driver. Tune's function trainable blocks at each
    ``tune.report`` until the driver has taken the result and asked for the next one; with two trials and the
    driver sharing 2 cores, that wait cost a trial ~11% of its time. Trials keep writing every epoch to their own
    files, so buffering loses nothing on a kill. ASHA and PBT (``every_epoch``) must see every epoch as it comes:
    no buffering then."""
    if spec.asha is None and not every_epoch:
        os.environ["TUNE_RESULT_BUFFER_LENGTH"] = str(spec.epochs)
        os.environ["TUNE_RESULT_BUFFER_MIN_TIME_S"] = str(RESULT_BUFFER_S)
    else:  # unset: Tune warns about any buffer length set alongside a scheduler that cannot take buffering
        os.environ.pop("TUNE_RESULT_BUFFER_LENGTH", None)
        os.environ.pop("TUNE_RESULT_BUFFER_MIN_TIME_S", None)


def run_config(storage_path: Path, name: str, **options) -> tune.RunConfig:
    return tune.RunConfig(
        name=name,
        storage_path=str(storage_path),
        failure_config=tune.FailureConfig(max_failures=MAX_RETRIES),
        callbacks=[ProgressCallback()],
        verbose=0,
        **options,
    )


def finish(job: TrialJob, fitted: tuple[tune.ResultGrid, bool], places: list[Any],
           short: Callable[[Any], bool] = lambda place: False) -> None:
    """Check that every trial of a Tuner's ``places`` (``study.phases.base.Place``) ended, and give a final status to those
    Ray ended without their trainable saying so: ``error`` (the actor died past its retries; or a trial directory
    Ray no longer knows). A trial Tune ended while its own files say it still runs was interrupted (Ctrl-C): the
    study is, and resumes it from its files; so is a study whose fit a SIGINT stopped (``fitted``: the results
    and whether it did, :func:`fit`), or one with a place ``short`` of the runs it should have started (a search
    whose budget is not spent: an interrupt between trials)."""
    study_dir = Path(job.study_dir)
    results, stopped = fitted
    interrupted = stopped or results.num_terminated + results.num_errors < len(results)
    known = set()
    for result, config in _with_configs(results):
        trial_dir = job.trial_dir(config)
        known.add(trial_dir)
        if result.error is not None:
            mark_finished(trial_dir, ERROR, one_line(result.error))
        elif (info := read_info(trial_dir)) is not None and info.status == RUNNING:
            interrupted = True  # early stopping marks what it stops; a finished trial wrote its own status
    if interrupted:
        interrupt(study_dir)
    for place in places:
        for trial in read_trials(study_dir / place.phase / place.label):
            if trial.dir not in known:
                mark_finished(trial.dir, ERROR, ABANDONED)
    if any(short(place) for place in places):
        interrupt(study_dir)


def _with_configs(results: tune.ResultGrid) -> list[tuple[tune.Result, dict[str, Any]]]:
    """Each result of a Tuner with its trial's config. ``Result.config`` is read from the trial's last result, so
    it is None for a trial that had reported nothing (interrupted or failed before its first epoch ended); the
    config is taken from the Ray trial itself (the ResultGrid's trials, in the order of its results)."""
    return [(result, trial.config) for result, trial in zip(results, results._experiment_analysis.trials, strict=True)]


def interrupt(study_dir: Path) -> None:
    print(f"study interrupted; resume with: diffctl study resume {study_dir}", flush=True)
    raise StudyInterrupted()
