"""``make bench``: every benchmark of the project, printing measured figures and ratios (no pass/fail)."""

from __future__ import annotations

from benchmarks.arm_steps import (
    DEFAULT_ARMS,
    arm_step_times,
    lookahead_epoch_ratios,
    print_arm_steps,
    print_lookahead_epochs,
)
from benchmarks.core_bench import core_benchmark, eval_schedule_benchmark, print_core, print_eval_schedule
from diffctl.config import load_config

CHEAPEST = ["arm.kind=controller", "arm.stats_source=encoder", "arm.stats=[code_gap]", "arm.hidden=4"]


def main() -> None:
    print_core(core_benchmark())
    print_eval_schedule(eval_schedule_benchmark())
    controllers = [
        ("controller same_loss", load_config("configs/controller_barrier.yaml")),
        ("controller lookahead", load_config("configs/controller_lookahead.yaml")),
        ("seed_literal", load_config("configs/seed_literal.yaml")),
        ("controller cheapest", load_config(None, CHEAPEST)),
        ("lookahead cheapest", load_config(None, [*CHEAPEST, "arm.objective=lookahead"])),
    ]
    print_arm_steps(arm_step_times([*DEFAULT_ARMS, *controllers]))
    print("  cheapest: the least work a controller of the design space can do per step (one encoder statistic,")
    print("  hidden width 4, one rho, no regulariser, no warm-up): what any design costs beyond the fixed arm.")
    print_lookahead_epochs(lookahead_epoch_ratios())
    from benchmarks import study_bench

    study_bench.main([])


if __name__ == "__main__":
    main()
