"""Population based training (PBT) of an arm, at the compute of the other arms' searches, and its schedule.

An arm with ``search: pbt`` trains a population of ``budget`` members of its fixed-arm config for the spec's
epochs (population x epochs trial-epochs: the budget x epochs of an Optuna arm). Each member starts from its own
draw of the mutated keys (``pbt.mutations``, drawn with ``pbt.seed``). At every ``perturbation_interval`` epochs
the whole population is ranked on the spec's selection metric, feasible members first
(``study.protocol.ranking.ranking_score``; synchronously: a member waits until every member has reached that epoch), and each member of the worst ``quantile_fraction`` continues from the state of one of
the best (model, optimiser, generator and records: ``Trainer.state_dict()``) with that member's values of the
mutated keys perturbed or, with ``resample_probability``, drawn afresh from their range (clipped to it). Members
are the arm's search trials (``search/<arm>/<trial_id>/``); the worker side is :class:`MemberCheckpoints` below.

Ray Tune's ``PopulationBasedTraining`` refuses a Tuner that has a search algorithm and must see every result as
it comes, so each PBT arm runs in a Tune experiment of its own, ``ray_pbt/<arm>/``, before the study's Tuner
(:class:`PopulationSearch`, ``study.phases.pbt.population``); the members' states travel as Ray checkpoints, all
kept while that Tuner runs and removed once it has finished (``schedule.remove_checkpoints``).

The package: ``draws`` (initial draws, ranges, names), ``scheduler`` (Tune's PBT, seeded and synchronous),
``members`` (the worker side), ``population`` (the Tuners), ``schedule`` (the best member's schedule).

The best member (the selection rule on its final record, feasible first) then gives the arm's **schedule**: its
per-epoch values of rho, the weights and, where mutated, the learning rate, as a piecewise arm
(``search/<arm>/schedule-r<k>.yaml``, a whole diffctl config). The arm's confirmation runs replay that schedule on the
confirmation seeds (``study.phases.confirm``); its distilled baselines hold its constants (``final``, ``mean``;
the replay is the confirmation itself).

The worker side (:class:`MemberCheckpoints`): a member reports a Ray checkpoint at every perturbation epoch (a
multiple of ``pbt.perturbation_interval`` before the last epoch): ``trainer.pt`` (``Trainer.state_dict()``, its
records included) and ``member.json`` ({"trial_id", "epoch"}: whose state it is), staged in the trial directory
(``.checkpoint/``) and copied by Tune into the PBT experiment (``ray_pbt/<arm>/<trial_id>/checkpoint_*``). A
member that starts with a checkpoint (``tune.get_checkpoint()``) continues from it: its own (paused until the
population caught up; or restarted after its worker or the driver died: the epochs after that checkpoint are
trained again, deterministically, and the session counts as a restart), or another member's (an exploit: it
takes that state with its own, perturbed config — the weights, rho and learning rate of its config,
``Trainer.adopt_state_dict``; its ``metrics.jsonl`` becomes the source's records up to that epoch, and
``trial.json`` gains ``{"epoch", "source_trial", "before", "after"}`` in ``exploits``). Every report carries
``pbt_score`` (:data:`SCORE`): the record's rank in the population, larger is better
(``study.protocol.ranking.ranking_score``).

Replicates (``search_replicates``): each replicate's population trains in a Tune experiment of its own
(``ray_pbt/<arm>``, then ``ray_pbt/<arm>.r1``, ...), its members named ``r<k>-m<member>``, its draws seeded apart.

Reproducibility: the initial draws depend on ``pbt.seed`` (and the replicate) only; each perturbation draws from
a generator seeded with ``pbt.seed``, the member's index and the epoch, so a resumed study perturbs as an
uninterrupted one would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffctl.config import load_config

from ...protocol.schema import StudySpec
from ...trialdir import SEARCH, schedule_file
from ..base import SearchMethod, TrialRequest
from .draws import EXPERIMENTS, experiment_name, initial_params
from .schedule import remove_checkpoints, write_schedule

__all__ = ["EXPERIMENTS", "METHOD", "initial_params", "write_schedule"]


class PopulationSearch(SearchMethod):
    """``search: pbt``: the arm's population trained in Tuners of its own before the study's Tuner; its
    confirmation replays each replicate's best member's schedule, which its distilled baselines hold constant."""

    kind = "pbt"
    in_study_tuner = False
    picks_constants = False

    # The Ray parts are imported where they run (``study check`` and ``study status`` load no Ray).
    def run_before(self, job: Any, arm: str, tuners: Any) -> None:
        from .population import run_population

        run_population(job, arm, tuners)

    def state_store(self, spec: StudySpec, trial_dir: Path, request: TrialRequest) -> Any:
        from .members import MemberCheckpoints

        return MemberCheckpoints(spec, trial_dir, request.name, request.arm)

    def moves(self, spec: StudySpec, arm: str) -> bool:
        return True  # PBT moves the fixed arm's weights

    def confirm_top_k(self, spec: StudySpec) -> int:
        return 1  # its best member's schedule

    def replay(self, spec: StudySpec, study_dir: Path, arm: str, replicate: int) -> dict[str, Any]:
        schedule = study_dir / SEARCH / arm / schedule_file(replicate)
        if not schedule.is_file():
            raise FileNotFoundError(schedule)
        return load_config(schedule).arm.model_dump(mode="json")

    def distill_variants(self, spec: StudySpec) -> list[str]:
        return [v for v in spec.confirm.distill if v != "replay"]  # its confirmation runs are the replay

    def finish(self, spec: StudySpec, study_dir: Path, arm: str) -> None:
        for replicate in range(spec.search_replicates):  # none left by now; a study never ends with checkpoints
            remove_checkpoints(study_dir / EXPERIMENTS / experiment_name(arm, replicate))


METHOD = PopulationSearch()
