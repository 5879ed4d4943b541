"""Launching and resuming a study: the Ray connection, one ``tune.Tuner`` per arm for the search (so every arm
gets exactly its budget), then the confirmation runs of each arm's best configurations on fresh seeds.

Phases run in order — the search of every arm, then the confirmation of every arm — and ``state.json`` records
each phase's start and end. ``resume`` skips the phases marked done, restores a started one with
``Tuner.restore(path, trainable, resume_errored=True)`` (finished trials never rerun; the searcher state comes
back from the experiment directory), and starts the rest.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from diffctl.errors import InputError
from diffctl.files import atomic_write_text

from .objectives import is_feasible, objective_key, selection_value
from .progress import ProgressCallback, StudyProgress, install
from .searcher import ArmSearch, close_orphans, journal_storage
from .spec import StudySpec, check_resources, dump_spec, load_spec
from .state import PHASE_DONE, PHASE_RUNNING, SPEC_FILE, new_state, read_state, set_phase, write_state
from .trainable import TrialJob, train_trial
from .trialdir import CONFIRM, ERROR, OK, SEARCH, STOPPED, TrialSummary, mark_finished, one_line, read_trials
from .trialdir import trial_dirname

# An experiment snapshot (trial states and searcher, what resume restores) every 2 s instead of every >= 10 s:
# a trial started after the last snapshot of a killed driver is unknown to the restored experiment, which runs
# a new trial in its place. The new output engine prints an experiment banner even at verbose=0; the legacy
# one is silent at 0.
_RAY_ENV = {"TUNE_GLOBAL_CHECKPOINT_S": "2", "RAY_AIR_NEW_OUTPUT": "0"}


class StudyInterrupted(KeyboardInterrupt):
    """A phase ended before all its trials did (Ctrl-C): the study is resumable."""


def run_study(
    spec_path: str, *, name: str | None, storage: str, address: str | None, max_concurrent: int | None
) -> Path:
    """``diffctl study run``: validate the spec, create ``<storage>/<name>/`` and run every phase."""
    spec = load_spec(spec_path, name=name, max_concurrent=max_concurrent)
    assert spec.name is not None
    study_dir = Path(storage).absolute() / spec.name
    if study_dir.parent.exists() and not study_dir.parent.is_dir():
        raise InputError(f"--storage {storage}: not a directory")
    if study_dir.exists():
        raise InputError(f"--name {spec.name}: {study_dir} exists (resume it with: diffctl study resume {study_dir})")
    address = connect(spec, address)
    try:
        create_study_dir(study_dir, spec, address)
        run_phases(study_dir, spec)
    finally:
        ray.shutdown()
    return study_dir


def create_study_dir(study_dir: Path, spec: StudySpec, address: str | None) -> None:
    """Create the study directory with its resolved ``spec.yaml`` and a fresh ``state.json``."""
    assert spec.name is not None
    study_dir.mkdir(parents=True)
    atomic_write_text(study_dir / SPEC_FILE, dump_spec(spec))
    write_state(study_dir, new_state(spec.name, address))


def resume_study(directory: str, *, address: str | None) -> Path:
    """``diffctl study resume``: continue the unfinished phases of a study directory."""
    study_dir = Path(directory).absolute()
    state = read_state(study_dir)
    spec = load_spec(study_dir / SPEC_FILE, probe=False)  # its metrics passed the probe when the study started
    address = connect(spec, address)
    try:
        state["ray_address"] = address
        write_state(study_dir, state)
        run_phases(study_dir, spec)
    finally:
        ray.shutdown()
    return study_dir


def connect(spec: StudySpec, address: str | None) -> str | None:
    """Start a local Ray on every core, or join the cluster at ``address`` / ``RAY_ADDRESS``; refuse a spec whose
    trials need more CPUs than one node has. Returns the address used (None: local)."""
    for key, value in _RAY_ENV.items():
        os.environ.setdefault(key, value)
    address = address or os.environ.get("RAY_ADDRESS") or None
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address is None:
        cores = os.cpu_count() or 1
        check_resources(spec, cores, "this machine")
        ray.init(num_cpus=cores, include_dashboard=False, **quiet)
        return None
    try:
        ray.init(address=address, **quiet)
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
    """Run (or resume) the search of every arm, then the confirmation of every arm."""
    storage = journal_storage(study_dir)
    progress = StudyProgress(spec, study_dir)
    install(progress)
    try:
        for arm in spec.arms:
            if read_state(study_dir)["phases"][SEARCH].get(arm) != PHASE_DONE:
                run_search(study_dir, spec, arm, storage, progress)
        for arm in spec.arms:
            if read_state(study_dir)["phases"][CONFIRM].get(arm) != PHASE_DONE:
                run_confirm(study_dir, spec, arm, progress)
    finally:
        install(None)


def _trainable(job: TrialJob, spec: StudySpec):
    return tune.with_resources(tune.with_parameters(train_trial, job=job), {"cpu": spec.cpus_per_trial})


def _run_config(phase_dir: Path, arm: str) -> tune.RunConfig:
    return tune.RunConfig(
        name=arm,
        storage_path=str(phase_dir),
        failure_config=tune.FailureConfig(max_failures=0),
        callbacks=[ProgressCallback()],
        verbose=0,
    )


def _tune_config(spec: StudySpec, **kwargs) -> tune.TuneConfig:
    return tune.TuneConfig(
        max_concurrent_trials=spec.max_concurrent, reuse_actors=True, trial_dirname_creator=trial_dirname, **kwargs
    )


def _fit(experiment_dir: Path, trainable, make_tuner) -> tune.ResultGrid:
    if tune.Tuner.can_restore(str(experiment_dir)):
        tuner = tune.Tuner.restore(str(experiment_dir), trainable, resume_errored=True)
    else:
        tuner = make_tuner()
    return tuner.fit()


def run_search(study_dir: Path, spec: StudySpec, arm: str, storage, progress: StudyProgress) -> None:
    """The Optuna search of one arm: exactly its budget of trials, at most ``max_concurrent`` at a time."""
    experiment_dir = study_dir / SEARCH / arm
    budget = spec.arms[arm].budget
    trainable = _trainable(TrialJob(spec, arm, SEARCH, str(experiment_dir)), spec)
    set_phase(study_dir, SEARCH, arm, PHASE_RUNNING)
    progress.start_phase(SEARCH, arm, budget, replaces=budget)

    def make_tuner() -> tune.Tuner:
        scheduler = None
        if spec.asha is not None:
            first = spec.objectives[0]
            scheduler = ASHAScheduler(
                time_attr="epoch",  # Ray's training_iteration restarts with a trial restarted from its trainer.pt
                metric=objective_key(first.metric),
                mode=first.mode,
                max_t=spec.epochs,
                grace_period=spec.asha.grace_period,
                reduction_factor=spec.asha.reduction_factor,
            )
        config = _tune_config(spec, search_alg=ArmSearch(spec, arm, storage), scheduler=scheduler, num_samples=budget)
        return tune.Tuner(trainable, tune_config=config, run_config=_run_config(experiment_dir.parent, arm))

    _finish(study_dir, SEARCH, arm, _fit(experiment_dir, trainable, make_tuner), budget)
    close_orphans(storage, arm)
    set_phase(study_dir, SEARCH, arm, PHASE_DONE)


def confirmation_sources(spec: StudySpec, trials: list[TrialSummary]) -> list[tuple[TrialSummary, bool]]:
    """The ``top_k`` search trials of an arm by the selection rule, among feasible trials that ran every epoch;
    when none is feasible, the best of those that ran every epoch (flagged ``False``)."""
    full = [t for t in trials if t.status == OK and t.info.get("epochs_done") == spec.epochs]
    feasible = [t for t in full if is_feasible(spec, t.last)]
    pool = feasible or full
    ranked = sorted(pool, key=lambda t: -selection_value(spec, t.last))  # stable: ties keep trial-id order
    return [(t, bool(feasible)) for t in ranked[: spec.confirm.top_k]]


def run_confirm(study_dir: Path, spec: StudySpec, arm: str, progress: StudyProgress) -> None:
    """Re-run the arm's selected configurations with every confirmation seed (a grid, no search)."""
    experiment_dir = study_dir / CONFIRM / arm
    sources = confirmation_sources(spec, read_trials(study_dir / SEARCH / arm))
    bound = spec.confirm.top_k * len(spec.confirm.seeds)
    set_phase(study_dir, CONFIRM, arm, PHASE_RUNNING)
    if not sources:
        progress.start_phase(CONFIRM, arm, 0, replaces=bound)
        print(f"confirm {arm}: no search trial ran every epoch; nothing to confirm", flush=True)
        set_phase(study_dir, CONFIRM, arm, PHASE_DONE)
        return
    if not sources[0][1]:
        print(f"confirm {arm}: no feasible search trial; confirming the best infeasible one(s)", flush=True)
    job = TrialJob(
        spec,
        arm,
        CONFIRM,
        str(experiment_dir),
        sources={t.trial_id: {"params": t.info["params"], "feasible": feasible} for t, feasible in sources},
    )
    trainable = _trainable(job, spec)
    runs = len(sources) * len(spec.confirm.seeds)
    progress.start_phase(CONFIRM, arm, runs, replaces=bound)

    def make_tuner() -> tune.Tuner:
        grid = {
            "source_trial": tune.grid_search([t.trial_id for t, _ in sources]),
            "seed": tune.grid_search(list(spec.confirm.seeds)),
        }
        run_config = _run_config(experiment_dir.parent, arm)
        return tune.Tuner(trainable, param_space=grid, tune_config=_tune_config(spec), run_config=run_config)

    _finish(study_dir, CONFIRM, arm, _fit(experiment_dir, trainable, make_tuner), runs)
    set_phase(study_dir, CONFIRM, arm, PHASE_DONE)


def _finish(study_dir: Path, phase: str, arm: str, results: tune.ResultGrid, expected: int) -> None:
    """Check that every trial of the phase ended, and give a final status to those Ray ended without their
    trainable saying so: ``error`` (the actor died; or a trial directory Ray no longer knows) or ``stopped``
    (ASHA)."""
    if len(results) < expected or results.num_terminated + results.num_errors < len(results):
        print(f"{phase} {arm}: interrupted; resume with: diffctl study resume {study_dir}", flush=True)
        raise StudyInterrupted()
    ran = set()
    for result in results:
        trial_dir = Path(result.path)
        ran.add(trial_dir.name)
        if result.error is not None:
            mark_finished(trial_dir, ERROR, one_line(result.error))
        else:
            epoch = (result.metrics or {}).get("epoch")
            mark_finished(trial_dir, STOPPED, f"stopped early by ASHA after epoch {epoch}")
    for trial in read_trials(study_dir / phase / arm):
        if trial.trial_id not in ran:
            reason = "abandoned: started after the last experiment snapshot of a killed driver, replaced by a new trial"
            mark_finished(trial.dir, ERROR, reason)
