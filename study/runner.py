"""Launching and resuming a study: the Ray connection, the population of each PBT arm in a Tuner of its own
(``study.phases.pbt``: Tune's PBT refuses a search algorithm), then the study's main ``tune.Tuner`` — every other arm's
Optuna search with exactly its budget, then each arm's best configurations re-run on fresh seeds (the order
and the reasons for one Tuner are in ``study.searcher``). The PBT Tuners come first so that the main Tuner's
searcher finds every PBT arm's search ended and its schedule written, and plans its confirmation like any arm's.

``state.json`` records each phase of each arm as it starts and ends, and ``finished`` once every trial has its
final status. ``resume`` restores whichever Tuner had not finished with ``Tuner.restore(path, trainable,
resume_errored=True)`` (a PBT arm whose search is done is not rerun): finished trials never rerun, the searcher's
state (Optuna studies, confirmation plans) comes back from Tune's experiment snapshot, and trials that were
running continue from their own ``trainer.pt`` (a PBT member: from its last Ray checkpoint).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.execution import class_cache

from diffctl.errors import InputError
from diffctl.provenance import code_version
from diffctl.files import atomic_write_text

from .check import checked_run
from .cluster import check_storage, held_cpus
from .driver import driver_lock
from .journal import journal_storage
from .phases.pbt import EXPERIMENTS as PBT_EXPERIMENTS
from .phases.pbt import MemberPBT, experiment_name, remove_checkpoints, write_schedule
from .phases.search import SearchPruner, close_orphans, study_name
from .progress import ProgressCallback, StudyProgress, install
from .quiet import RESTORE_ANALYSIS_LOGGER, TOKEN_SETUP_LOGGER, TUNE_LOGGER, UNFINISHED_ERROR, quiet
from .searcher import StudySearch
from .snapshot import atomic_snapshots, check_snapshot
from .spec import SPEC_FILE, StudySpec, check_resources, dump_spec, load_spec
from .spec.plan import optuna_arms, pbt_arms, phase_places
from .state import LAYOUT_VERSION, PHASE_DONE, new_state, read_state, write_state
from .trainable import TrialJob, train_trial
from .trialdir import (
    ABANDONED,
    CONFIRM,
    ERROR,
    RUNNING,
    SEARCH,
    mark_finished,
    one_line,
    read_info,
    read_trials,
    trial_dirname,
)

# An experiment snapshot (trial states and searcher, what resume restores) every 2 s instead of every >= 10 s:
# a trial started after the last snapshot of a killed driver is unknown to the restored experiment, which runs
# a new trial in its place. The new output engine prints an experiment banner even at verbose=0; the legacy
# one is silent at 0.
_RAY_ENV = {"TUNE_GLOBAL_CHECKPOINT_S": "2", "RAY_AIR_NEW_OUTPUT": "0"}
EXPERIMENT = "ray"  # the Tune experiment directory inside the study directory
# The local Ray starts one idle worker per core at once; each imports these before taking work, while the driver
# sets the study up. Trial actors then start on them (see _plain_trial_actors) with torch, the project and
# torch._dynamo (imported by the first optimiser, ~1.1 s) already loaded.
PRELOAD = ["torch._dynamo", "study.trainable"]
RESULT_BUFFER_S = 10.0  # how long a trial's epochs may wait before the driver hears of them (see _buffer_results)
# A trial whose worker process dies (killed, out of memory) is restarted this many times, from its trainer.pt.
MAX_RETRIES = 2


class StudyInterrupted(KeyboardInterrupt):
    """The Tuner ended before every trial did (Ctrl-C): the study is resumable."""


def run_study(
    spec_path: str, *, name: str | None, storage: str, address: str | None, max_concurrent: int | None
) -> Path:
    """``diffctl study run``: validate the spec, create ``<storage>/<name>/`` and run every phase."""
    spec, study_dir = checked_run(spec_path, name=name, storage=storage, max_concurrent=max_concurrent)
    address = connect(spec, address)
    try:
        if address is not None:  # every node writes its trials' files into the study directory
            check_storage(study_dir, f"--storage {storage}")
        create_study_dir(study_dir, spec, address)
        with driver_lock(study_dir):  # held for the driver's lifetime: `study status` knows it runs
            run_phases(study_dir, spec)
    finally:
        ray.shutdown()
    return study_dir


def create_study_dir(study_dir: Path, spec: StudySpec, address: str | None) -> None:
    """Create the study directory with its resolved ``spec.yaml`` and a fresh ``state.json``."""
    study_dir.mkdir(parents=True)
    atomic_write_text(study_dir / SPEC_FILE, dump_spec(spec))
    write_state(study_dir, new_state(spec.name, address))


def resume_study(directory: str, *, address: str | None) -> Path:
    """``diffctl study resume``: continue the unfinished phases of a study directory (refused while another
    driver runs it: ``study.driver``)."""
    study_dir = Path(directory).absolute()
    read_state(study_dir)
    try:  # its metrics passed the probe when the study started
        spec = load_spec(study_dir / SPEC_FILE, probe=False)
    except InputError as exc:
        raise InputError(f"{study_dir / SPEC_FILE}: {exc}") from None
    for phase, arm in phase_places(spec):  # a damaged trial file is refused before Ray starts
        read_trials(study_dir / phase / arm)
    with driver_lock(study_dir):  # (a damaged study is refused above, before the lock file is made)
        return _resume_locked(study_dir, spec, address)


def _resume_locked(study_dir: Path, spec: StudySpec, address: str | None) -> Path:
    state = read_state(study_dir)
    if state.get("layout") != LAYOUT_VERSION and not state.get("finished"):
        if not all(state["phases"][phase].get(arm) == PHASE_DONE for phase in (SEARCH, CONFIRM) for arm in spec.arms):
            raise InputError(f"{study_dir}: started by an earlier diffctl ({_earlier_layout(study_dir)}); only that "
                             "version can resume it")
        state["finished"] = True
        write_state(study_dir, state)
    if state.get("finished"):
        return study_dir  # every trial has its final status: nothing to run (the command line redoes the analysis)
    address = connect(spec, address)
    try:
        if address is not None:
            check_storage(study_dir, str(study_dir))
        state["ray_address"] = address
        write_state(study_dir, state)
        run_phases(study_dir, spec)
    finally:
        ray.shutdown()
    return study_dir


def _earlier_layout(study_dir: Path) -> str:
    """What an earlier diffctl's study directory looks like, in words."""
    if not (study_dir / EXPERIMENT).exists() and any(study_dir.glob(f"{SEARCH}/*/tuner.pkl")):
        return "one Tune experiment per arm and phase"
    return "trial directories named by Ray trial id, asynchronous early stopping"


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


def run_phases(study_dir: Path, spec: StudySpec) -> None:
    """Run (or resume) each PBT arm's Tuner, then the study's main Tuner: the search of every other arm, then the
    confirmation of every arm (see ``study.searcher``); then give Ray-ended trials their final status."""
    storage = journal_storage(study_dir)
    progress = StudyProgress(spec, study_dir)
    install(progress)
    try:
        job = TrialJob(spec, str(study_dir), code_version())
        _plain_trial_actors()
        atomic_snapshots()
        for arm in pbt_arms(spec):
            _run_population(job, arm, progress)
        trainable = _trainable(job, spec.cpus_per_trial)
        _buffer_results(spec)
        tuner = _restored(study_dir / EXPERIMENT, trainable) or _new_tuner(study_dir, spec, trainable, storage)
        main_places = [(phase, arm) for phase, arm in phase_places(spec)
                       if not (phase == SEARCH and spec.arms[arm].is_pbt)]
        _finish(job, _fit(tuner), main_places)
    except KeyboardInterrupt as exc:  # a Ctrl-C outside a fit (between two Tuners): resumable all the same
        if isinstance(exc, StudyInterrupted):
            raise
        _interrupted(study_dir)
    finally:
        install(None)
    for arm in optuna_arms(spec):  # a PBT arm has no Optuna study
        for replicate in range(spec.search_replicates):
            close_orphans(storage, study_name(arm, replicate))
    for arm in pbt_arms(spec):  # none left by now; a study never ends with checkpoints
        for replicate in range(spec.search_replicates):
            remove_checkpoints(study_dir / PBT_EXPERIMENTS / experiment_name(arm, replicate))
    state = read_state(study_dir)
    state["finished"] = True
    write_state(study_dir, state)


def _fit(tuner: tune.Tuner) -> tuple[tune.ResultGrid, bool]:
    """``tuner.fit()`` without Tune's own resume hint on an interrupt (the study's follows, in ``_finish``), nor
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


def _trainable(job: TrialJob, cpus: float):
    return tune.with_resources(tune.with_parameters(train_trial, job=job), {"cpu": cpus})


def _restored(experiment_dir: Path, trainable) -> tune.Tuner | None:
    """The Tuner of an experiment that a driver started before (None: none yet)."""
    if not tune.Tuner.can_restore(str(experiment_dir)):
        return None
    check_snapshot(experiment_dir)
    # Tune reads the old run's results first and warns of the trials that were running at the kill and had sent
    # none (buffered); their own files say where they stand, and they run on below.
    with quiet(RESTORE_ANALYSIS_LOGGER):
        return tune.Tuner.restore(str(experiment_dir), trainable, resume_errored=True)


def _run_population(job: TrialJob, arm: str, progress: StudyProgress) -> None:
    """Train each replicate's population of a PBT arm in its own Tuner (``ray_pbt/<arm>/``, ``ray_pbt/<arm>.r1/``,
    ...), unless the arm's search is done; after each, write its schedule and remove its checkpoints (only then: a
    driver killed earlier resumes from them)."""
    study_dir, spec = Path(job.study_dir), job.spec
    if read_state(study_dir)["phases"][SEARCH].get(arm) == PHASE_DONE:
        return
    total = spec.arms[arm].budget * spec.search_replicates
    progress.start_phase(SEARCH, arm, total, total)
    _buffer_results(spec, population=True)
    for replicate in range(spec.search_replicates):
        trainable = _trainable(job, _member_cpus(spec))  # its parameters live in this Ray's object store
        experiment_dir = study_dir / PBT_EXPERIMENTS / experiment_name(arm, replicate)
        tuner = _restored(experiment_dir, trainable) or _new_population(study_dir, spec, arm, replicate, trainable)
        _finish(job, _fit(tuner), [(SEARCH, arm)])
        _reclaim_cpus(study_dir, spec, progress)
        write_schedule(spec, study_dir, arm, replicate)
        remove_checkpoints(experiment_dir)
    progress.end_phase(SEARCH, arm)


def _reclaim_cpus(study_dir: Path, spec: StudySpec, progress: StudyProgress) -> None:
    """After a PBT Tuner on a local Ray: restart Ray if it still holds CPUs of the Tuner's trials
    (``study.cluster.held_cpus``), so that the next Tuner gets every slot. (On a cluster other jobs hold CPUs too,
    and a study cannot restart Ray there.)"""
    if read_state(study_dir).get("ray_address") is not None:
        return
    held = held_cpus()
    if held > 0.0:
        progress.notice(f"Ray still held {held:g} CPU(s) of the ended PBT Tuner; restarting the local Ray so that "
                        f"the next Tuner runs {spec.max_concurrent} trials at once")
        ray.shutdown()
        connect(spec, None)


def _member_cpus(spec: StudySpec) -> float:
    """The CPUs a PBT member reserves: its threads, or more so that at most ``max_concurrent`` members run at once
    on the largest node. (Tune's ``max_concurrent_trials`` would hold back the creation of members, and a
    synchronous population needs every member created.)"""
    largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]), default=spec.cpus_per_trial)
    return max(float(spec.cpus_per_trial), largest / spec.max_concurrent)


def _buffer_results(spec: StudySpec, population: bool = False) -> None:
    """Let a trial report several epochs per round trip to the driver. Tune's function trainable blocks at each
    ``tune.report`` until the driver has taken the result and asked for the next one; with two trials and the
    driver sharing 2 cores, that wait cost a trial ~11% of its time. Trials keep writing every epoch to their own
    files, so buffering loses nothing on a kill. ASHA and PBT (``population``) must see every epoch as it comes:
    no buffering then."""
    if spec.asha is None and not population:
        os.environ["TUNE_RESULT_BUFFER_LENGTH"] = str(spec.epochs)
        os.environ["TUNE_RESULT_BUFFER_MIN_TIME_S"] = str(RESULT_BUFFER_S)
    else:  # unset: Tune warns about any buffer length set alongside a scheduler that cannot take buffering
        os.environ.pop("TUNE_RESULT_BUFFER_LENGTH", None)
        os.environ.pop("TUNE_RESULT_BUFFER_MIN_TIME_S", None)


def _plain_trial_actors() -> None:
    """Keep Tune from giving trial actors a runtime environment of their own. Tune (2.60,
    ``ray.tune.execution.class_cache``) always sets ``PL_DISABLE_FORK=1`` (for PyTorch Lightning, unused here) in
    the trial actors' runtime_env, and an actor with a runtime_env never starts on Ray's idle workers: it waits
    for a new worker process (measured: 1.7 s for an actor with that env, 0.27 s without). Environment variables
    that Tune propagates from the driver (cloud credentials, Ray Train settings) still make their own env."""
    class_cache.DEFAULT_ENV_VARS.pop("PL_DISABLE_FORK", None)


def _run_config(storage_path: Path, name: str, **options) -> tune.RunConfig:
    return tune.RunConfig(
        name=name,
        storage_path=str(storage_path),
        failure_config=tune.FailureConfig(max_failures=MAX_RETRIES),
        callbacks=[ProgressCallback()],
        verbose=0,
        **options,
    )


def _new_tuner(study_dir: Path, spec: StudySpec, trainable, storage) -> tune.Tuner:
    tune_config = tune.TuneConfig(
        search_alg=StudySearch(spec, study_dir, storage),
        scheduler=SearchPruner(spec, study_dir) if spec.asha is not None else None,
        num_samples=-1,  # the searcher says when the study is complete, and caps how many trials run at once
        reuse_actors=True,
        trial_dirname_creator=trial_dirname,
    )
    return tune.Tuner(trainable, tune_config=tune_config, run_config=_run_config(study_dir, EXPERIMENT))


def _new_population(study_dir: Path, spec: StudySpec, arm: str, replicate: int, trainable) -> tune.Tuner:
    """The Tuner of one replicate of a PBT arm: one trial per member (``member``: its index; ``MemberPBT`` gives
    it its initial params and name), every Ray checkpoint kept while it runs (see ``study.phases.pbt``)."""
    tune_config = tune.TuneConfig(
        scheduler=MemberPBT(spec, arm, replicate),
        num_samples=1,
        reuse_actors=True,
        trial_dirname_creator=trial_dirname,
    )
    space = {"phase": SEARCH, "arm": arm, "replicate": replicate,
             "member": tune.grid_search(list(range(spec.arms[arm].budget)))}
    keep_all = tune.CheckpointConfig(num_to_keep=None)
    run_config = _run_config(study_dir / PBT_EXPERIMENTS, experiment_name(arm, replicate), checkpoint_config=keep_all)
    return tune.Tuner(trainable, param_space=space, tune_config=tune_config, run_config=run_config)


def _finish(job: TrialJob, fitted: tuple[tune.ResultGrid, bool], places: list[tuple[str, str]]) -> None:
    """Check that every trial of a Tuner's ``places`` (phase, arm) ended, and give a final status to those Ray
    ended without their trainable saying so: ``error`` (the actor died past its retries; or a trial directory
    Ray no longer knows). A trial Tune ended while its own files say it still runs was interrupted (Ctrl-C): the
    study is, and resumes it from its files; so is a study whose fit a SIGINT stopped (``fitted``: the results
    and whether it did, :func:`_fit`), even where every trial had ended by then."""
    study_dir, spec = Path(job.study_dir), job.spec
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
        _interrupted(study_dir)
    for phase, arm in places:
        for trial in read_trials(study_dir / phase / arm):
            if trial.dir not in known:
                mark_finished(trial.dir, ERROR, ABANDONED)
    # The main Tuner can end with every trial it knows ended and a search not done (an interrupt between trials):
    # count the Optuna arms' trials on disk. (A PBT Tuner's results hold every member.)
    for arm in {arm for phase, arm in places if phase == SEARCH and not spec.arms[arm].is_pbt}:
        ran = [t for t in read_trials(study_dir / SEARCH / arm) if not t.abandoned]
        if len(ran) < spec.arms[arm].budget * spec.search_replicates:
            _interrupted(study_dir)


def _with_configs(results: tune.ResultGrid) -> list[tuple[tune.Result, dict[str, Any]]]:
    """Each result of a Tuner with its trial's config. ``Result.config`` is read from the trial's last result, so
    it is None for a trial that had reported nothing (interrupted or failed before its first epoch ended); the
    config is taken from the Ray trial itself (the ResultGrid's trials, in the order of its results)."""
    return [(result, trial.config) for result, trial in zip(results, results._experiment_analysis.trials, strict=True)]


def _interrupted(study_dir: Path) -> None:
    print(f"study interrupted; resume with: diffctl study resume {study_dir}", flush=True)
    raise StudyInterrupted()
