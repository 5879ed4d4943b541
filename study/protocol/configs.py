"""The diffctl config of each trial a spec can run, and which of its epochs are evaluated in full.

A trial's config is: ``base``, deep-merged with the arm's ``config`` (an ``arm`` section of another kind replaces
the base's), then ``optim.epochs`` = ``epochs`` and ``optim.threads`` = ``cpus_per_trial``, then the sampled flat
``params``, then an ablation option's flat ``overrides``, then the seed.

A spec that sets ``eval.full_every`` > 1 (in ``base`` or an arm's config) evaluates the full set (coverage over
all 19,683 operations, the prior samples, triplet_r; see ``diffctl.metrics.FULL_SET``) only every that many
epochs and at the last. Every epoch that the study reads besides those is added to each trial's
``eval.full_epochs``: the epochs where ASHA compares an arm's trials (its rungs), so a rung never meets a trial
whose ranking metric is null there; the budgets of the anytime comparison (``confirm.budgets``); and for the arm
of a population based training its perturbation epochs, where its members are ranked.

Example::

    trial_config(spec, "fixed", {"arm.w_kl": 0.2}, seed=1001)["arm"]   # {'kind': 'fixed', 'w_kl': 0.2}
    rung_epochs(Asha(grace_period=1, reduction_factor=3), 12)          # [1, 3, 9]
"""

from __future__ import annotations

import copy
import math
from typing import Any

from .schema import Asha, Pbt, StudySpec
from .trees import merge, set_flat


def trial_config(spec: StudySpec, arm: str, params: dict[str, Any], seed: int | None = None,
                 overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The diffctl config (as a dict) of one trial of ``arm`` (see the module docstring)."""
    data = copy.deepcopy(spec.base)
    merge(data, copy.deepcopy(spec.arms[arm].config))
    merge(data, {"optim": {"epochs": spec.epochs, "threads": spec.cpus_per_trial}})
    for key, value in {**params, **copy.deepcopy(overrides or {})}.items():
        set_flat(data, key, value)
    if seed is not None:
        data["seed"] = seed
    return add_full_epochs(spec, data, spec.arms[arm].pbt)


def arm_kind(spec: StudySpec, arm: str) -> Any:
    """The arm kind an arm's trials train (its config's ``arm.kind`` over the base's; diffctl's default is
    ``fixed``), read without building a trial config."""
    return spec.arm_kind(arm)


def rung_epochs(asha: Asha, epochs: int) -> list[int]:
    """The epochs at which ASHA (Ray's ``ASHAScheduler`` with time_attr epoch) records a trial at a rung:
    milestones grace_period x reduction_factor^k up to ``epochs``, each met at the first epoch not below it.
    (tests/test_spec.py checks them against the scheduler's own rungs.)"""
    found, k = [], 0
    while (milestone := asha.grace_period * asha.reduction_factor**k) <= epochs:
        found.append(math.ceil(milestone))
        k += 1
    return found


def perturbation_epochs(pbt: Pbt, epochs: int) -> list[int]:
    """The epochs at which a PBT arm's members are ranked (and may continue from another's state): every
    multiple of the perturbation interval before the last epoch."""
    return list(range(pbt.perturbation_interval, epochs, pbt.perturbation_interval))


def full_eval_epochs(spec: StudySpec, pbt: Pbt | None = None) -> list[int]:
    """The epochs every trial of ``spec`` evaluates in full besides each ``full_every``-th and the last (and, for
    the arm of the population based training ``pbt``, its perturbation epochs)."""
    epochs: set[int] = set(perturbation_epochs(pbt, spec.epochs)) if pbt is not None else set()
    if spec.asha is not None:
        epochs |= set(rung_epochs(spec.asha, spec.epochs))
    epochs |= {epoch for _, epoch in spec.confirm.budget_epochs(spec.epochs)}  # the anytime comparison's budgets
    return sorted(e for e in epochs if 1 <= e <= spec.epochs)


def add_full_epochs(spec: StudySpec, data: dict[str, Any], pbt: Pbt | None = None) -> dict[str, Any]:
    """A trial's config ``data`` with :func:`full_eval_epochs` merged into ``eval.full_epochs`` when it sets
    ``eval.full_every`` > 1 (a malformed section is left for the config's validation to name)."""
    section = data.get("eval")
    extra = full_eval_epochs(spec, pbt)
    if not isinstance(section, dict) or not extra:
        return data
    every, listed = section.get("full_every", 1), section.get("full_epochs", [])
    if type(every) is int and every > 1 and isinstance(listed, list) and all(type(e) is int for e in listed):
        section["full_epochs"] = sorted(set(listed) | set(extra))
    return data
