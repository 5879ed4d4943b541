"""The step benchmark: side-by-side timing of arms through Trainer.train_step, ratios to the fixed arm."""

import math

import pytest

from benchmarks.arm_steps import BASELINE, BLOCK, arm_step_times, lookahead_epoch_ratios
from diffctl.config import load_config


def test_ratios_are_relative_to_the_fixed_arm_which_is_added_when_missing():
    config = load_config("configs/dwa.yaml")
    result = arm_step_times(["uncertainty", ("dwa T=2", config)], steps=4, warmup=1)
    assert list(result) == [BASELINE, "uncertainty", "dwa T=2"]
    assert result[BASELINE]["ratio"] == 1.0
    for label, row in result.items():
        assert row["steps"] == 4
        assert row["p25_ms"] <= row["median_ms"] <= row["p75_ms"]
        base = result[BASELINE]["median_ms"]
        assert row["ratio"] == pytest.approx(row["median_ms"] / base) and math.isfinite(row["ratio"])
        assert 0.1 < row["ratio"] < 10  # the same model and batch: within an order of magnitude of fixed


def test_duplicate_labels_and_unknown_entries_are_refused():
    with pytest.raises(ValueError, match="'rlw' appears twice"):
        arm_step_times(["rlw", "rlw"], steps=1)
    with pytest.raises(ValueError, match="kinds_or_configs"):
        arm_step_times([42], steps=1)


def test_lookahead_epoch_ratios_time_blocks_of_real_epochs_for_each_cadence():
    result = lookahead_epoch_ratios(everies=(1, 4), blocks=2, warmup=0)
    assert list(result) == [BASELINE, "lookahead every 1", "lookahead every 4"]
    for row in result.values():
        assert row["steps"] == 2 and math.isfinite(row["ratio"]) and row["ratio"] > 0
    assert result[BASELINE]["ratio"] == 1.0
    with pytest.raises(ValueError, match=f"3 does not divide the block of {BLOCK} steps"):
        lookahead_epoch_ratios(everies=(3,), blocks=1)
