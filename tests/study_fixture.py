"""A tiny study directory in the layout of study/LAYOUT.md, for the analysis and export tests.

``SPEC`` (the study tests' tiny spec with other arms) has 3 arms x 1-2 search trials x 2 epochs and 2
confirmation seeds: ``fixed`` (the fixed-lambda reference), ``controller`` (the regulariser varied) and
``unstable`` (lr = 10: its trial diverges, so it has nothing to confirm). Two ways to make the directory,
both through :func:`make_tiny_study`:

- ``study`` (default): the real ``diffctl study run`` of the spec on a local Ray (parameters sampled by
  TPE) — about 1-1.5 min on 2 cores.
- ``direct``: diffctl's training loop run in-process, the trial files and an Optuna journal written
  as the study layer writes them, with fixed parameters (``SEARCH_PARAMS``) — about 20 s, no Ray; for quick
  iteration on the analysis, with the environment variable ``DIFFCTL_TINY_STUDY=direct``.

The tests only use the returned directory and ``SPEC``, so they run on either.
"""

from __future__ import annotations

import atexit
import copy
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from diffctl.config import apply_overrides, config_from_dict, dump_config
from diffctl.files import atomic_write_jsonl, atomic_write_text
from diffctl.train import train
from study.objectives import is_feasible, selection_value, told_value
from study.spec import spec_from_dict
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
# The direct way's parameters: w_recon = 0.01 leaves reconstruction unlearnt (infeasible); lr = 10 diverges.
SEARCH_PARAMS = {
    "fixed": [{"arm.w_recon": 1.0}, {"arm.w_recon": 0.01}],
    "controller": [{"arm.regularizer": "none"}, {"arm.regularizer": "log_barrier"}],
    "unstable": [{"optim.lr": 10.0}],
}
SEARCH_SEED = 0

_cache: dict[str, Path] = {}


def _config(arm: str, params: dict, seed: int):
    data = copy.deepcopy(SPEC["base"])
    for section, values in SPEC["arms"][arm]["config"].items():
        data.setdefault(section, {}).update(values)
    data["seed"] = seed
    overrides = [f"optim.epochs={SPEC['epochs']}", f"optim.threads={SPEC['cpus_per_trial']}"]
    apply_overrides(data, [*overrides, *(f"{k}={v!r}" for k, v in params.items())])
    return config_from_dict(data)


def _run_trial(root: Path, phase: str, arm: str, trial_id: str, params: dict, seed: int, source=None) -> dict:
    trial_dir = root / phase / arm / trial_id
    trial_dir.mkdir(parents=True)
    config = _config(arm, params, seed)
    atomic_write_text(trial_dir / "config.yaml", dump_config(config))
    start = time.perf_counter()
    records = list(train(config))
    atomic_write_jsonl(trial_dir / "metrics.jsonl", records)
    info = {"arm": arm, "phase": phase, "trial_id": trial_id, "params": params, "seed": seed,
            "status": records[-1]["status"], "reason": records[-1].get("reason"), "epochs_done": len(records),
            "wall_time_s": time.perf_counter() - start}
    if phase == "confirm":
        info.update(source_trial=source[0], source_feasible=source[1])
    atomic_write_text(trial_dir / "trial.json", json.dumps(info))
    return records[-1]


def _distribution(space: dict) -> optuna.distributions.BaseDistribution:
    if space["type"] == "categorical":
        return optuna.distributions.CategoricalDistribution(space["choices"])
    return optuna.distributions.FloatDistribution(space["low"], space["high"], log=space.get("log", False))


def _build_direct(root: Path) -> Path:
    root.mkdir(parents=True)
    write_spec(root, SPEC)
    storage = JournalStorage(JournalFileBackend(str(root / "optuna.journal")))
    directions = ["minimize" if o["mode"] == "min" else "maximize" for o in SPEC["objectives"]]
    phases: dict[str, dict[str, str]] = {"search": {}, "confirm": {}}
    spec = spec_from_dict(SPEC)
    for arm, trials in SEARCH_PARAMS.items():
        study = optuna.create_study(study_name=arm, storage=storage, directions=directions)
        distributions = {k: _distribution(v) for k, v in SPEC["arms"][arm]["space"].items()}
        finals = {}
        for i, params in enumerate(trials):
            trial_id = f"{arm}_{i:05d}"
            last = finals[trial_id] = _run_trial(root, "search", arm, trial_id, params, SEARCH_SEED)
            # As the study tells Optuna: a diverged trial completes with the finite stand-in value.
            study.add_trial(optuna.trial.create_trial(
                params=params, distributions=distributions, values=[told_value(o, last) for o in spec.objectives],
                user_attrs={"ray_trial_id": trial_id, "status": last["status"], "epochs": last["epoch"]}))
        phases["search"][arm] = "done"
        # The study's selection rule: the best selection metric among feasible trials, else among finished ones.
        finished = {t: r for t, r in finals.items() if r["status"] == "ok"}
        pool = {t: r for t, r in finished.items() if is_feasible(spec, r)} or finished
        if pool:
            best = max(pool, key=lambda t: selection_value(spec, pool[t]))
            params = trials[int(best.rsplit("_", 1)[1])]
            source = (best, is_feasible(spec, pool[best]))
            for j, seed in enumerate(SPEC["confirm"]["seeds"]):
                _run_trial(root, "confirm", arm, f"{arm}_c{j:05d}", params, seed, source)
        phases["confirm"][arm] = "done"
    state = {"name": SPEC["name"], "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "phases": phases,
             "ray_address": None}
    atomic_write_text(root / "state.json", json.dumps(state))
    return root


def _build_with_study(root: Path) -> Path:
    root.parent.mkdir(parents=True, exist_ok=True)
    spec = write_spec(root.parent, SPEC, "tiny-spec.yaml")
    done = run_diffctl("study", "run", str(spec), "--storage", str(root.parent), "--name", root.name, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return root


def make_tiny_study(tmp_path: Path) -> Path:
    """A fresh copy of the tiny study under ``tmp_path`` (built once per test session, then copied)."""
    if "study" not in _cache:
        cache = Path(tempfile.mkdtemp(prefix="diffctl-tiny-study-"))
        atexit.register(shutil.rmtree, cache, ignore_errors=True)
        build = _build_direct if os.environ.get("DIFFCTL_TINY_STUDY") == "direct" else _build_with_study
        _cache["study"] = build(cache / SPEC["name"])
    target = Path(tmp_path) / SPEC["name"]
    shutil.copytree(_cache["study"], target)
    return target
