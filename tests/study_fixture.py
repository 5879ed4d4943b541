"""The tiny study of the analysis, export, dashboard, runner and hostile-input tests, in two builds.

``SPEC`` (the study tests' tiny spec with other arms) has 3 arms x 1-2 search trials x 2 epochs and 2
confirmation seeds: ``fixed`` (the fixed-lambda reference), ``controller`` (the regulariser varied) and
``unstable`` (lr = 10: its trial diverges, so it has nothing to confirm). The conftest's session fixtures build
each once per test session (``tiny_study``, ``direct_study``); a test works on a copy
(:func:`copy_study`).

- :func:`build_tiny_study`: the real ``diffctl study run`` of the spec on a local Ray (parameters sampled by
  TPE) — about 1-1.5 min on 2 cores.
- :func:`build_direct_study`: the same phases without Ray, in-process, through the study's own code: each arm's
  ``ArmSearch`` asks Optuna for fixed parameters (``SEARCH_PARAMS``, enqueued) and tells it every end, every run
  is trained by the trainable's own ``_run`` (with Ray's report and node lookup stubbed), and the confirmation
  and distilled runs are what the study's planned phases plan (``study.phases.registry``) — about 20 s.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from unittest import mock

import study.trainable
from diffctl.provenance import code_version
from study.journal import journal_storage
from study.phases.search import ArmSearch
from study.runner import create_study_dir
from study.protocol import spec_from_dict
from study.phases.registry import PhasePlaces, phases
from study.protocol.plan import SEARCH
from study.protocol.ranking import tune_metrics
from study.state import PHASE_DONE, read_state, set_phase, write_state
from study.trainable import TrialJob
from study.trialdir import read_metrics
from tiny_specs import run_diffctl, spec_variant, write_spec

SPEC = spec_variant(
    constraints=["val_exact_match_B >= 0.1"],
    arms={
        "fixed": {
            "budget": 2,
            "config": {"arm": {"kind": "fixed"}},
            "space": {"arm.w_recon": {"type": "float", "low": 0.01, "high": 2.0, "log": True}},
        },
        "controller": {
            "budget": 2,
            "config": {"arm": {"kind": "controller"}},
            "space": {"arm.regularizer": {"type": "categorical", "choices": ["none", "log_barrier"]}},
        },
        "unstable": {
            "budget": 1,
            "config": {"arm": {"kind": "scheduled"}},
            "space": {"optim.lr": {"type": "categorical", "choices": [10.0]}},
        },
    },
)
# The direct build's parameters: w_recon = 0.01 leaves reconstruction unlearnt (infeasible); lr = 10 diverges.
SEARCH_PARAMS = {
    "fixed": [{"arm.w_recon": 1.0}, {"arm.w_recon": 0.01}],
    "controller": [{"arm.regularizer": "none"}, {"arm.regularizer": "log_barrier"}],
    "unstable": [{"optim.lr": 10.0}],
}


def build_tiny_study(root: Path) -> Path:
    """The real study of ``SPEC`` at ``root`` (``diffctl study run`` on a local Ray)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    spec = write_spec(root.parent, SPEC, "tiny-spec.yaml")
    done = run_diffctl("study", "run", str(spec), "--storage", str(root.parent), "--name", root.name, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return root


def _train(job: TrialJob, ray_trial_id: str, config: dict) -> dict:
    """One run through the trainable's own code, without a Ray session; returns its last record."""
    trial_dir = job.trial_dir(config)
    trial_dir.mkdir(parents=True)
    study.trainable._run(trial_dir, ray_trial_id, config, job)
    return read_metrics(trial_dir)[-1]


def build_direct_study(root: Path) -> Path:
    """The phases of ``SPEC`` run in-process at ``root`` (see the module docstring)."""
    spec = spec_from_dict(SPEC)
    create_study_dir(root, spec, None)
    job, storage = TrialJob(spec, str(root), code_version(), tuple(phases())), journal_storage(root)
    node = {"node_id": "direct", "hostname": "direct"}
    with mock.patch.object(study.trainable.tune, "report"), mock.patch.object(study.trainable, "this_node",
                                                                               return_value=node):
        for arm, trials in SEARCH_PARAMS.items():
            search = ArmSearch(spec, arm, 0, storage)
            for params in trials:
                search.study.enqueue_trial(params)
            while not search.ended():
                ray_trial_id = f"direct-{arm}-{len(search.slots)}"
                last = _train(job, ray_trial_id, search.next_run(ray_trial_id))
                search.on_complete(ray_trial_id, {**last, **tune_metrics(spec, last)}, error=False)
            set_phase(root, SEARCH, arm, PHASE_DONE)
        for phase, place in PhasePlaces(phases(), spec):
            if not phase.plans:
                continue
            for run in phase.plan(spec, root, place).runs:
                _train(job, f"direct-{place.phase}-{run.name}", run.ray_config())
            set_phase(root, place.phase, place.label, PHASE_DONE)
    state = read_state(root)
    write_state(root, {**state, "finished": True})
    return root


def copy_study(built: Path, tmp_path: Path) -> Path:
    """A fresh copy of a built study under ``tmp_path``."""
    return Path(shutil.copytree(built, Path(tmp_path) / built.name))
