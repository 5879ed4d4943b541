"""The fixed-λ front: the reference swept as Xin et al. (NeurIPS 2022) and Kurin et al. (NeurIPS 2022) sweep
their fixed weightings, so that every other arm is measured against a trade-off curve instead of one tuned point.

Every point of the spec's ``front.grid`` (``study.protocol.reference.front_points``) runs on every ``front.seeds``
seed, to the last epoch (no rung stops a front run: only search trials are stopped early), with the arm's config
and the point's keys, named ``g<point>-s<seed>`` (``front/<arm>/g07-s0/``). The front waits for nothing: its
runs fill the slots the searches' batches leave idle. The runs on the arm's search seed are candidates of the
arm's pick beside its search trials (``study.phases.confirm``); ``analysis.front`` draws the front and measures
every arm against it.
"""

from __future__ import annotations

from pathlib import Path

from ..protocol.errors import SpecError
from ..protocol.reference import front_name, front_points
from ..protocol.schema import StudySpec
from .base import Phase, Place, Planned, TrialRequest, search_method


class FrontPhase(Phase):
    name = "front"
    test_split = True

    def check(self, spec: StudySpec) -> None:
        super().check(spec)
        if spec.front is not None and not search_method(spec, spec.front.arm).picks_constants:
            raise SpecError(f"front.arm: {spec.front.arm} is searched by {spec.arms[spec.front.arm].search}; the "
                            "front sweeps constant settings of an arm whose search picks constants (an Optuna arm)")

    def places(self, spec: StudySpec) -> list[Place]:
        return [Place(self.name, spec.front.arm, spec.front.arm)] if spec.front is not None else []

    def bound(self, spec: StudySpec, place: Place) -> int:
        return len(front_points(spec)) * len(spec.front.seeds)

    def plan(self, spec: StudySpec, study_dir: Path, place: Place) -> Planned:
        """The front's runs: every grid point on every front seed, point by point."""
        return Planned([TrialRequest(phase=self.name, arm=place.label, name=front_name(index, seed), params=point,
                                     seed=seed)
                        for index, point in enumerate(front_points(spec)) for seed in spec.front.seeds])


PHASE = FrontPhase()
