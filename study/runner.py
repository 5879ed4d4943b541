"""Launching and resuming a study: the Ray connection (``study.tuners``), what each phase runs before the study's
Tuner (a PBT arm's populations, in Tuners of their own: ``study.phases.pbt``), then the study's main
``tune.Tuner`` — every searching place, then every planned place (the order and the reasons for one Tuner are
in ``study.searcher``), then each phase's finish. It goes through the phases of ``study.phases.registry`` and
names none. The PBT Tuners come first so that the main Tuner's searcher finds every PBT arm's search ended and
its schedule written, and plans its confirmation like any arm's.

``state.json`` records each phase of each arm as it starts and ends, and ``finished`` once every trial has its
final status. ``resume`` restores whichever Tuner had not finished with ``Tuner.restore(path, trainable,
resume_errored=True)`` (a PBT arm whose search is done is not rerun): finished trials never rerun, the searcher's
state (Optuna studies, confirmation plans) comes back from Tune's experiment snapshot, and trials that were
running continue from their own ``trainer.pt`` (a PBT member: from its last Ray checkpoint).
"""

from __future__ import annotations

from pathlib import Path

import ray
from ray import tune
from ray.tune.execution import class_cache

from diffctl.errors import InputError
from diffctl.files import atomic_write_text
from diffctl.provenance import code_version

from .check import checked_run
from .cluster import check_storage
from .driver import driver_lock
from .journal import journal_storage
from .phases.registry import PhasePlaces, phases
from .progress import StudyProgress, install
from .searcher import StudySearch
from .snapshot import atomic_snapshots
from .protocol import SPEC_FILE, StudySpec, dump_spec, load_spec
from .state import LAYOUT_VERSION, PHASE_DONE, new_state, read_state, write_state
from .trainable import TrialJob
from .trialdir import CONFIRM, SEARCH, read_trials, trial_dirname
from . import tuners
from .tuners import StudyInterrupted, buffer_results, connect, finish, fit, interrupt, restored, run_config, trainable

EXPERIMENT = "ray"  # the Tune experiment directory inside the study directory
__all__ = ["StudyInterrupted", "connect"]  # the Ray connection of every command that starts one (study.tuners)


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
        spec = load_spec(study_dir / SPEC_FILE)
    except InputError as exc:
        raise InputError(f"{study_dir / SPEC_FILE}: {exc}") from None
    for place in PhasePlaces(phases(), spec).places():  # a damaged trial file is refused before Ray starts
        read_trials(study_dir / place.phase / place.label)
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


def run_phases(study_dir: Path, spec: StudySpec) -> None:
    """Run (or resume) what runs before the study's Tuner (each PBT arm's population), then the study's Tuner:
    the search of every other arm, then every planned place (see ``study.searcher``); then each phase's finish
    (Optuna trials left open closed, checkpoints removed), and the study is finished."""
    storage = journal_storage(study_dir)
    places = PhasePlaces(phases(), spec)
    progress = StudyProgress(spec, study_dir, places)
    install(progress)
    try:
        job = TrialJob(spec, str(study_dir), code_version(), places.phases)
        _plain_trial_actors()
        atomic_snapshots()
        for phase, place in places.before_tuner():
            phase.run_before(job, place, tuners)
        main = trainable(job, spec.cpus_per_trial)
        buffer_results(spec)
        tuner = restored(study_dir / EXPERIMENT, main) or _new_tuner(study_dir, spec, main, storage, places)
        finish(job, fit(tuner), [place for _, place in places.in_tuner()], places.short_of_runs(study_dir))
    except KeyboardInterrupt as exc:  # a Ctrl-C outside a fit (between two Tuners): resumable all the same
        if isinstance(exc, StudyInterrupted):
            raise
        interrupt(study_dir)
    finally:
        install(None)
    for phase in places.phases:
        phase.finish(spec, study_dir, places.of(phase))
    state = read_state(study_dir)
    state["finished"] = True
    write_state(study_dir, state)


def _plain_trial_actors() -> None:
    """Keep Tune from giving trial actors a runtime environment of their own. Tune (2.60,
    ``ray.tune.execution.class_cache``) always sets ``PL_DISABLE_FORK=1`` (for PyTorch Lightning, unused here) in
    the trial actors' runtime_env, and an actor with a runtime_env never starts on Ray's idle workers: it waits
    for a new worker process (measured: 1.7 s for an actor with that env, 0.27 s without). Environment variables
    that Tune propagates from the driver (cloud credentials, Ray Train settings) still make their own env."""
    class_cache.DEFAULT_ENV_VARS.pop("PL_DISABLE_FORK", None)


def _new_tuner(study_dir: Path, spec: StudySpec, main, storage, places: PhasePlaces) -> tune.Tuner:
    tune_config = tune.TuneConfig(
        search_alg=StudySearch(spec, study_dir, storage, places),
        scheduler=places.scheduler(study_dir),
        num_samples=-1,  # the searcher says when the study is complete, and caps how many trials run at once
        reuse_actors=True,
        trial_dirname_creator=trial_dirname,
    )
    return tune.Tuner(main, tune_config=tune_config, run_config=run_config(study_dir, EXPERIMENT))
