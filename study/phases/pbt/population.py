"""A PBT arm's populations, one Tune experiment per replicate (``ray_pbt/<arm>/``, ``ray_pbt/<arm>.r1/``, ...),
trained before the study's Tuner: Tune's PopulationBasedTraining refuses a Tuner with a search algorithm (the
study's Tuner has the study's searcher) and must see every result as it comes.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import ray
from ray import tune

from ...cluster import held_cpus
from ...progress import live_progress
from ...protocol.schema import StudySpec
from ...state import PHASE_DONE, read_state
from ...trialdir import SEARCH, trial_dirname
from ..base import Place
from .draws import EXPERIMENTS, experiment_name
from .schedule import remove_checkpoints, write_schedule
from .scheduler import MemberPBT


def run_population(job: Any, arm: str, tuners: ModuleType) -> None:
    """Train each replicate's population of a PBT arm in its own Tuner, unless the arm's search is done; after
    each, write its schedule and remove its checkpoints (only then: a driver killed earlier resumes from them).
    ``job``: the study's ``study.trainable.TrialJob``; ``tuners``: ``study.tuners``, what every Tune experiment of
    the study shares (handed in by the runner: it imports the trainable, which imports the phases)."""
    study_dir, spec = Path(job.study_dir), job.spec
    if read_state(study_dir)["phases"][SEARCH].get(arm) == PHASE_DONE:
        return
    progress = live_progress()
    total = spec.arms[arm].budget * spec.search_replicates
    progress.start_phase(SEARCH, arm, total, total)
    tuners.buffer_results(spec, every_epoch=True)
    for replicate in range(spec.search_replicates):
        members = tuners.trainable(job, _member_cpus(spec))  # its parameters live in this Ray's object store
        experiment_dir = study_dir / EXPERIMENTS / experiment_name(arm, replicate)
        tuner = tuners.restored(experiment_dir, members) or _new_population(tuners, spec, study_dir, arm,
                                                                             replicate, members)
        tuners.finish(job, tuners.fit(tuner), [Place(SEARCH, arm, arm)])
        reclaim_cpus(study_dir, spec, tuners.connect)
        write_schedule(spec, study_dir, arm, replicate)
        remove_checkpoints(experiment_dir)
    progress.end_phase(SEARCH, arm)


def reclaim_cpus(study_dir: Path, spec: StudySpec, connect: Any, progress: Any = None) -> None:
    """After a PBT Tuner on a local Ray: restart Ray if it still holds CPUs of the Tuner's trials
    (``study.cluster.held_cpus``), so that the next Tuner gets every slot. (On a cluster other jobs hold CPUs too,
    and a study cannot restart Ray there.) ``connect``: ``study.tuners.connect``; ``progress``: where the notice
    goes (default: the study's progress)."""
    if read_state(study_dir).get("ray_address") is not None:
        return
    held = held_cpus()
    if held > 0.0:
        progress = progress or live_progress()
        if progress is not None:
            progress.notice(f"Ray still held {held:g} CPU(s) of the ended PBT Tuner; restarting the local Ray so "
                            f"that the next Tuner runs {spec.max_concurrent} trials at once")
        ray.shutdown()
        connect(spec, None)


def _member_cpus(spec: StudySpec) -> float:
    """The CPUs a PBT member reserves: its threads, or more so that at most ``max_concurrent`` members run at once
    on the largest node. (Tune's ``max_concurrent_trials`` would hold back the creation of members, and a
    synchronous population needs every member created.)"""
    largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]), default=spec.cpus_per_trial)
    return max(float(spec.cpus_per_trial), largest / spec.max_concurrent)


def _new_population(tuners: ModuleType, spec: StudySpec, study_dir: Path, arm: str, replicate: int,
                    members) -> tune.Tuner:
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
    config = tuners.run_config(study_dir / EXPERIMENTS, experiment_name(arm, replicate), checkpoint_config=keep_all)
    return tune.Tuner(members, param_space=space, tune_config=tune_config, run_config=config)
