"""One real tiny study for the distill and ablation tests (tests/test_distill.py, tests/test_ablate.py), built once
per test session (the conftest's ``derived_study`` fixture): the fixed arm and a controller arm reading encoder-side statistics behind a log barrier, run
from the command line, SIGKILLed during its distill phase, resumed and SIGKILLed again during its ablation phase,
then resumed to the end.

The ablation around the controller's confirmed configuration has two questions: the statistics (a decoder-side
subset that ``stats_source: encoder`` cannot provide — not applicable — and an encoder-side subset) and rho's
granularity (``batch``, the centre's own value — same as the centre — then ``sample`` and ``latent``).
"""

from __future__ import annotations

from pathlib import Path

from study.phases.ablate import NOT_APPLICABLE, RUNS, SAME
from study.protocol.schema import DISTILL_VARIANTS as VARIANTS
from study_kill import Killed, killed_in_phases_and_resumed
from tiny_specs import TINY, spec_variant

AXES = {
    "statistics": {"entropies": {"arm.stats": ["H_A", "H_B", "H_gap"]},
                   "encoder subset": {"arm.stats": ["KL_A", "KL_B", "rank"]}},
    "rho granularity": {"batch": {"arm.rho_granularity": "batch"}, "sample": {"arm.rho_granularity": "sample"},
                        "latent": {"arm.rho_granularity": "latent"}},
}
EXPECTED = {("statistics", "entropies"): NOT_APPLICABLE, ("statistics", "encoder subset"): RUNS,
            ("rho granularity", "batch"): SAME, ("rho granularity", "sample"): RUNS,
            ("rho granularity", "latent"): RUNS}
SPEC = spec_variant(
    name="derived",
    equivalence={"triplet_r_A": 0.05},
    arms={
        "fixed": {"budget": 2, "config": {"arm": {"kind": "fixed"}},
                  "space": {"arm.w_rank": {"type": "float", "low": 0.05, "high": 20.0, "log": True}}},
        "controller": {"budget": 2,
                       "config": {"arm": {"kind": "controller", "regularizer": "log_barrier", "stats_source": "encoder"}},
                       "space": {"arm.controller_lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}},
    },
    ablate={"arm": "controller", "seeds": None, "axes": AXES},
)
SEEDS = TINY["confirm"]["seeds"]
RUNNING = [key for key, status in EXPECTED.items() if status == RUNS]


def build_derived_study(root: Path) -> dict[str, Killed]:
    """Phase (``distill``, ``ablate``) -> what its kill and resume left (see :func:`killed_in_phases_and_resumed`);
    the conftest's ``derived_study`` fixture builds it once per test session."""
    runs = {"distill": len(VARIANTS) * len(SEEDS), "ablate": len(RUNNING) * len(SEEDS)}
    return killed_in_phases_and_resumed(root, SPEC, runs)
