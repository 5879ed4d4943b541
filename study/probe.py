"""The record fields a spec may name, read off a real one-step epoch of diffctl's trainer (never a hand-kept
list): a metric the records of an arm do not carry is refused before a study runs (``study run``, ``study
check``: ``study.check``), naming the key. The spec itself (``study.protocol``) is data and trains nothing."""

from __future__ import annotations

import functools
import json
from typing import Any

from diffctl.config import Config, config_from_dict
from diffctl.data import make_split
from diffctl.suggest import closest_key
from diffctl.train import STATUS_OK, Trainer

from .protocol.checks import named_metrics
from .protocol.configs import trial_config
from .protocol.constraints import is_number
from .protocol.errors import SpecError
from .protocol.schema import StudySpec


@functools.lru_cache(maxsize=32)
def _probe(config_json: str) -> dict[str, Any]:
    return Trainer(config_from_dict(json.loads(config_json))).run_epoch()


def record_fields(config: Config, where: str) -> dict[str, Any]:
    """One real epoch record of ``config``'s arm, from a cheap probe: the whole training split in one batch,
    one epoch, tiny evaluation samples. Its keys are exactly the fields that arm's records carry."""
    data = config.to_dict()
    data["data"]["batch_size"] = len(make_split(config.data.split_seed).train)
    data["optim"]["epochs"] = 1
    data["eval"].update(prior_samples=16, triplet_indices=16, triplets=16, full_epochs=[])  # its epoch is full
    record = _probe(json.dumps(data, sort_keys=True))
    if record.get("status") != STATUS_OK:
        raise SpecError(f"{where}: a one-step probe epoch diverged ({record.get('reason')}); cannot check metrics")
    return record


def check_metric(metric: str, fields: dict[str, Any], where: str, arm: str) -> None:
    if metric not in fields:
        numeric = sorted(k for k, v in fields.items() if is_number(v))
        raise SpecError(f"{where}: unknown metric {metric!r} ({metric_hint(metric, numeric, arm)})")
    if not is_number(fields[metric]):
        raise SpecError(f"{where}: {metric!r} is not a numeric record field")


def metric_hint(metric: str, known: list[str], arm: str) -> str:
    """What an unknown metric most likely meant: a per-VAE metric named without its suffix (``triplet_r``: its
    fields are ``triplet_r_A`` and ``triplet_r_B``), else the closest record field, else every numeric field."""
    per_vae = [f"{metric}_{vae}" for vae in "AB" if f"{metric}_{vae}" in known]
    if per_vae:
        return f"did you mean {per_vae[0]}? a per-VAE metric ends in _A or _B: {' or '.join(per_vae)}"
    match = closest_key(metric, known)
    if match is not None:
        return f"did you mean {match}?"
    return f"records of arm {arm} have: {', '.join(known)}"


def check_metrics(spec: StudySpec) -> None:
    """Every metric the spec names (objectives, selection, constraints, equivalence margins) is a numeric field of
    a real epoch record of each arm kind the spec trains."""
    probed: dict[str, dict[str, Any]] = {}
    for label in spec.arms:
        # The arm's config without sampled keys: a sampled extreme (lr = 10) may well diverge in the probe. One
        # thread: the record's fields do not depend on it, and a count beyond the machine's would only slow it.
        config = config_from_dict(trial_config(spec, label, {}))
        config = config.model_copy(update={"optim": config.optim.model_copy(update={"threads": 1})})
        kind = config.arm.kind
        if kind not in probed:
            probed[kind] = record_fields(config, f"arms.{label}")
        for where, metric in named_metrics(spec):
            check_metric(metric, probed[kind], where, label)
