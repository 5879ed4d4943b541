"""A population's draws and names: each member's initial values of the mutated keys, a value drawn from or clipped
to a mutation's range, the seed of a replicate's draws, and the Tune experiment of a replicate.
"""

from __future__ import annotations

import math
import random
from typing import Any

from ...protocol.schema import MutationFloat, MutationInt, StudySpec

EXPERIMENTS = "ray_pbt"  # <study>/ray_pbt/<arm>/: the Tune experiment of each PBT arm
CHECKPOINT_GLOB = "checkpoint_*"  # Tune's name for a reported checkpoint in a trial's experiment directory
STAGING_DIR = ".checkpoint"  # where a member writes a checkpoint before Tune copies it into the experiment
MEMBER_FILE = "member.json"
SCORE = "pbt_score"  # what a member reports for the ranking (ranking_score), larger is better


def draw(rng: Any, mutation: MutationFloat | MutationInt) -> float | int:
    """One value of a mutated key from its range (log-uniform with ``log``), with ``rng`` (a ``random.Random``
    or the ``random`` module)."""
    low, high = mutation.low, mutation.high
    if mutation.log:
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    return clip(mutation, value)


def clip(mutation: MutationFloat | MutationInt, value: float) -> float | int:
    """``value`` within the mutation's range (rounded for an int key)."""
    value = min(max(value, mutation.low), mutation.high)
    return int(round(value)) if isinstance(mutation, MutationInt) else float(value)


def replicate_seed(seed: int, replicate: int) -> int | str:
    """The seed of one replicate's draws: ``pbt.seed`` itself for the first, one derived apart for the others."""
    return seed if replicate == 0 else f"{seed}/replicate {replicate}"


def experiment_name(arm: str, replicate: int) -> str:
    """The Tune experiment of one replicate of a PBT arm: ``ray_pbt/<arm>``, then ``ray_pbt/<arm>.r1``, ..."""
    return arm if replicate == 0 else f"{arm}.r{replicate}"


def initial_params(spec: StudySpec, arm: str, replicate: int = 0) -> list[dict[str, Any]]:
    """Every member's initial values of the mutated keys, in member order (the same for the same spec)."""
    pbt = spec.arms[arm].pbt
    rng = random.Random(replicate_seed(pbt.seed, replicate))
    return [{key: draw(rng, mutation) for key, mutation in pbt.mutations.items()} for _ in range(spec.arms[arm].budget)]
