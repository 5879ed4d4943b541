"""The fixed-λ front: the reference swept as Xin et al. (NeurIPS 2022) and Kurin et al. (NeurIPS 2022) sweep
their fixed weightings, so that every other arm is measured against a trade-off curve instead of one tuned point.

Every point of the spec's ``front.grid`` (``study.spec.reference.front_points``) runs on every ``front.seeds``
seed, to the last epoch (no rung stops a front run: only search trials are stopped early), with the arm's config
and the point's keys, named ``g<point>-s<seed>`` (``front/<arm>/g07-s0/``). The front waits for nothing: its
runs fill the slots the searches' batches leave idle. The runs on the arm's search seed are candidates of the
arm's pick beside its search trials (``study.phases.confirm``); ``analysis.front`` draws the front and measures
every arm against it.
"""

from __future__ import annotations

from pathlib import Path

from ..spec.plan import Planned
from ..spec.reference import front_name, front_points
from ..spec.schema import StudySpec
from ..trialdir import FRONT


def plan(spec: StudySpec, study_dir: Path, arm: str) -> Planned:
    """The Ray configs of the front's runs: every grid point on every front seed, point by point."""
    assert spec.front is not None and spec.front.arm == arm
    planned = Planned()
    planned.runs = [{"phase": FRONT, "arm": arm, "name": front_name(index, seed), "params": dict(point),
                     "seed": seed, "source_trial": None, "source_feasible": None}
                    for index, point in enumerate(front_points(spec)) for seed in spec.front.seeds]
    return planned
