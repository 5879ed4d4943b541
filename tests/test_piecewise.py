"""The piecewise arm: per-epoch values recorded as given, lr per segment, a replay of a controller's and of the
scheduled arm's records, equivalence with the fixed arm, per-VAE weights, the distilling helpers and validation."""

import numpy as np
import pytest
import torch

from diffctl.arms.piecewise import CONTROL_KEYS, constant_from_records, schedule_from_records
from diffctl.cli import main
from diffctl.config import ConfigError, config_from_dict, dump_config, load_config, parse_yaml
from diffctl.errors import EXIT_BAD_INPUT, InputError
from diffctl.train import Trainer, train

FAST = ["eval.prior_samples=500", "eval.triplets=500", "eval.triplet_indices=500"]
TIMING = ("epoch_time_s", "eval_time_s")
WEIGHTS = ("w_recon", "w_kl", "w_rank", "w_ent")


def f32(value: float) -> float:
    """``value`` as the float32 tensor an arm holds, read back as a Python float."""
    return float(np.float32(value))


def run(path: str, overrides: list[str], arm: dict | None = None) -> list[dict]:
    data = load_config(path, [*FAST, *overrides]).to_dict()
    if arm is not None:
        data["arm"] = arm
    return [{k: v for k, v in r.items() if k not in TIMING} for r in train(config_from_dict(data))]


def piecewise(segments: list[dict]) -> dict:
    return {"kind": "piecewise", "segments": segments}


SEGMENTS = [
    {"until_epoch": 1, "rho": 0.1, "w_recon": 1.0, "w_kl": 0.1, "w_rank": 0.5, "w_ent": 0.1, "lr": 1e-3},
    {"until_epoch": 2, "rho": 0.3, "w_recon": 0.7, "w_kl": [0.05, 0.2], "w_rank": 2.0, "w_ent": 0.3, "lr": 5e-4},
    {"rho": 0.0, "w_recon": 1.3, "w_kl": 0.02, "w_rank": 4.0, "w_ent": 0.7, "lr": 2e-3},
]


# --- a run records exactly what its segments hold -------------------------------------------------------------
def test_records_hold_each_segments_values_and_lr_and_a_resumed_run_matches():
    config = load_config("configs/fixed.yaml", [*FAST, "optim.epochs=3"]).to_dict()
    config["arm"] = piecewise(SEGMENTS)
    config = config_from_dict(config)
    records = [{k: v for k, v in r.items() if k not in TIMING} for r in train(config)]
    assert [r["status"] for r in records] == ["ok"] * 3
    for record, segment in zip(records, SEGMENTS):
        assert record["rho_mean"] == f32(segment["rho"])
        assert record["lr"] == segment["lr"]
        for name in WEIGHTS:
            value = segment[name]
            if isinstance(value, list):  # per VAE: both recorded apart, and their mean as w_kl_mean
                assert [record[f"{name}_A_mean"], record[f"{name}_B_mean"]] == [f32(v) for v in value]
                assert record[f"{name}_mean"] == float(torch.tensor(value).mean())
            else:
                assert record[f"{name}_mean"] == f32(value)
                assert f"{name}_A_mean" not in record
    # rho moves between segments: the record also holds the metrics at the segment's rho
    assert "val_exact_match_at_rho_A" in records[0]
    # resumed from the checkpoint after epoch 1, the run sets the lr of epochs 2 and 3 again and matches
    first = Trainer(config)
    first.run_epoch()
    resumed = Trainer(config)
    resumed.load_state_dict(first.state_dict())
    rest = [{k: v for k, v in resumed.run_epoch().items() if k not in TIMING} for _ in range(2)]
    assert rest == records[1:]


def test_lr_only_touches_the_models_group():
    from diffctl.arms.piecewise import PiecewiseArm, PiecewiseOptions

    arm = PiecewiseArm(PiecewiseOptions(segments=[{"until_epoch": 2, "lr": 0.01}, {"lr": 0.02}]), 16)
    model, other = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW([{"params": model.parameters()}, {"params": other.parameters(), "lr": 0.5}], lr=1e-3)
    lrs = []
    for epoch in range(4):
        arm.start_epoch(epoch, [], opt)
        lrs.append([group["lr"] for group in opt.param_groups])
    assert lrs == [[0.01, 0.5], [0.01, 0.5], [0.02, 0.5], [0.02, 0.5]]
    assert [arm.segment_index(e) for e in range(4)] == [0, 0, 1, 1]


# --- equivalence with the fixed arm ---------------------------------------------------------------------------
def test_constant_segments_give_the_fixed_runs_metrics():
    fixed = run("configs/fixed.yaml", ["optim.epochs=2", "arm.w_kl=0.2", "arm.w_rank=1.5"])
    values = {"rho": 0.1, "w_recon": 1.0, "w_kl": 0.2, "w_rank": 1.5, "w_ent": 0.1}
    pieces = run("configs/fixed.yaml", ["optim.epochs=2"], piecewise([{"until_epoch": 1, **values}, values]))
    assert pieces == fixed
    # a weight given per VAE as [w, w] trains as the number w: the same metrics, plus the per-VAE means
    pair = run("configs/fixed.yaml", ["optim.epochs=1", "arm.w_kl=[0.2, 0.2]", "arm.w_rank=1.5"])
    assert pair[0]["w_kl_A_mean"] == pair[0]["w_kl_B_mean"] == f32(0.2)
    assert {k: v for k, v in pair[0].items() if k not in ("w_kl_A_mean", "w_kl_B_mean")} == fixed[0]


# --- replays ----------------------------------------------------------------------------------------------------
def test_replay_of_a_controller_run_reproduces_its_per_epoch_means():
    source = run("configs/controller_lookahead.yaml", ["optim.epochs=3"])
    segments = schedule_from_records(source, keys=(*CONTROL_KEYS, "lr"))
    assert len(segments) == 3 and "until_epoch" not in segments[-1]
    # the controller moved: a replay that held one value would fail below
    assert len({r["w_recon_mean"] for r in source}) == 3 and len({r["rho_mean"] for r in source}) == 3
    replay = run("configs/controller_lookahead.yaml", ["optim.epochs=3"], piecewise(segments))
    for got, want in zip(replay, source):
        # the replay holds each epoch mean as a float32 constant: equal to the source's mean rounded to float32
        assert [got[f"{k}_mean"] for k in CONTROL_KEYS] == [f32(want[f"{k}_mean"]) for k in CONTROL_KEYS]
        assert max(abs(got[f"{k}_mean"] - want[f"{k}_mean"]) / want[f"{k}_mean"] for k in CONTROL_KEYS) < 2**-24
        assert got["lr"] == want["lr"]


def test_replay_of_the_scheduled_arm_holds_its_per_vae_beta_and_trains_identically():
    source = run("configs/scheduled.yaml", ["optim.epochs=2", "arm.beta_warmup_epochs=1", "arm.beta_b_delay=5"])
    segments = schedule_from_records(source)
    assert [s["w_kl"] for s in segments] == [[0.0, 0.0], [f32(0.3), 0.0]]  # beta_A ramps, beta_B held at 0
    replay = run("configs/scheduled.yaml", ["optim.epochs=2"], piecewise(segments))
    for got, want in zip(replay, source):
        shared = {k for k in want if "_at_rho" not in k}
        # every control value is the source's float32 value again, so training is the same to the last bit
        assert {k: got[k] for k in shared} == {k: want[k] for k in shared}


# --- the distilling helpers on records computed by hand -------------------------------------------------------
def record(epoch: int, rho: float, w_kl: list[float], lr: float, **weights) -> dict:
    base = {"w_recon": 1.0, "w_rank": 0.5, "w_ent": 0.1, **weights}
    r = {"epoch": epoch, "status": "ok", "rho_mean": rho, "lr": lr, "w_kl_mean": sum(w_kl) / 2}
    r.update({f"{k}_mean": v for k, v in base.items()})
    r.update(w_kl_A_mean=w_kl[0], w_kl_B_mean=w_kl[1])
    return r


RECORDS = [
    record(1, 0.1, [0.1, 0.3], 1e-3, w_rank=1.0),
    record(2, 0.1, [0.1, 0.3], 1e-3, w_rank=1.0),
    record(3, 0.2, [0.4, 0.0], 1e-3, w_rank=4.0),
    record(4, 0.3, [0.4, 0.0], 5e-4, w_rank=7.0),
    {"epoch": 5, "status": "diverged", "reason": "non-finite training loss"},
]


def test_constant_from_records_final_and_mean():
    final = constant_from_records(RECORDS, how="final")
    assert final == {"kind": "fixed", "rho": 0.3, "w_recon": 1.0, "w_kl": [0.4, 0.0], "w_rank": 7.0, "w_ent": 0.1}
    mean = constant_from_records(RECORDS, how="mean")  # the diverged epoch 5 is not a finished epoch
    assert mean["rho"] == pytest.approx((0.1 + 0.1 + 0.2 + 0.3) / 4, abs=1e-15)
    assert mean["w_kl"] == pytest.approx([(0.1 + 0.1 + 0.4 + 0.4) / 4, (0.3 + 0.3) / 4], abs=1e-15)
    assert mean["w_rank"] == (1.0 + 1.0 + 4.0 + 7.0) / 4
    assert mean["w_recon"] == 1.0
    assert config_from_dict({"arm": mean}).arm.w_kl == mean["w_kl"]  # a valid fixed arm as it is
    assert constant_from_records(RECORDS, keys=("w_rank",)) == {"kind": "fixed", "w_rank": 7.0}


def test_schedule_from_records_merges_equal_epochs_and_takes_lr_when_asked():
    assert schedule_from_records(RECORDS, keys=("rho", "w_kl", "lr")) == [
        {"until_epoch": 2, "rho": 0.1, "w_kl": [0.1, 0.3], "lr": 1e-3},
        {"until_epoch": 3, "rho": 0.2, "w_kl": [0.4, 0.0], "lr": 1e-3},
        {"rho": 0.3, "w_kl": [0.4, 0.0], "lr": 5e-4},
    ]
    assert schedule_from_records(RECORDS, keys=("w_recon",)) == [{"w_recon": 1.0}]
    scalar_kl = [{k: v for k, v in r.items() if k not in ("w_kl_A_mean", "w_kl_B_mean")} for r in RECORDS]
    assert [s["w_kl"] for s in schedule_from_records(scalar_kl)] == [0.2, 0.2, 0.2]
    # the schedule is a valid piecewise arm
    assert len(config_from_dict({"arm": piecewise(schedule_from_records(RECORDS))}).arm.segments) == 3


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: constant_from_records(RECORDS[-1:]), "records: no finished epoch"),
        (lambda: constant_from_records(RECORDS, how="last"), "how: expected 'final' or 'mean'"),
        (lambda: constant_from_records(RECORDS, keys=("lr",)), "keys: lr is not an option of the fixed arm"),
        (lambda: schedule_from_records(RECORDS, keys=("beta",)), "keys: unknown key 'beta'"),
        (lambda: schedule_from_records(RECORDS[1:]), "records[0].epoch: 2 where 1 was expected"),
        (lambda: schedule_from_records([{**RECORDS[0], "rho_mean": None}]), "records[0].rho_mean: missing"),
    ],
)
def test_helpers_reject_bad_records(call, message):
    with pytest.raises(InputError) as exc:
        call()
    assert message in str(exc.value) and "\n" not in str(exc.value)


# --- validation ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "segments, message",
    [
        ("[{until_epoch: 5}, {until_epoch: 3}, {}]", "arm.segments[1].until_epoch: must be greater than segments[0]"),
        ("[{until_epoch: 3}, {until_epoch: 3}, {}]", "arm.segments[1].until_epoch: must be greater than"),
        ("[{until_epoch: 3}, {until_epoch: 8}]", "arm.segments[1].until_epoch: the last segment runs to the end"),
        ("[{until_epoch: 3}, {}, {}]", "arm.segments[1].until_epoch: missing"),
        ("[{until_epoch: 0}, {}]", "arm.segments[0].until_epoch: input should be greater than or equal to 1"),
        ("[{until_epoch: 2}, {rho: 1.5}]", "arm.segments[1].rho: input should be less than or equal to 1"),
        ("[{until_epoch: 2}, {w_rank: -1}]", "arm.segments[1].w_rank: input should be greater than or equal to 0"),
        ("[{w_kl: [0.1, 2000]}]", "arm.segments[0].w_kl: input should be less than or equal to 1000 (VAE B)"),
        ("[{w_kl: [0.1, 0.2, 0.3]}]", "arm.segments[0].w_kl: expected a number or a pair [A, B]"),
        ("[{until_epoch: 2, lr: 0.001}, {}]", "arm.segments[1].lr: set lr in every segment or in none"),
        ("[{until_epoch: 2}, {lr: 0.001}]", "arm.segments[1].lr: set lr in every segment or in none"),
        ("[{lr: 0}]", "arm.segments[0].lr: input should be greater than 0"),
        ("[{lr: 11}]", "arm.segments[0].lr: input should be less than or equal to 10"),
        ("[{w_rnk: 1}]", "arm.segments[0].w_rnk: unknown key"),
        ("[]", "arm.segments: list should have at least 1 item"),
    ],
)
def test_bad_segments_name_the_key_in_one_line(segments, message):
    with pytest.raises(ConfigError) as exc:
        load_config("configs/piecewise.yaml", [f"arm.segments={segments}"])
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_weights_per_vae_are_for_the_fixed_and_piecewise_arms_only():
    assert load_config("configs/fixed.yaml", ["arm.w_recon=[0.5, 2.0]"]).arm.w_recon == [0.5, 2.0]
    for path, key, message in [
        ("configs/fixed.yaml", "arm.rho", "arm.rho: input should be a valid number"),
        ("configs/controller_barrier.yaml", "arm.defaults.w_kl", "arm.defaults.w_kl: input should be a valid number"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(path, [f"{key}=[0.1, 0.2]"])


def test_the_example_config_loads_and_a_bad_one_exits_2(tmp_path, capsys):
    config = load_config("configs/piecewise.yaml")
    assert [s.until_epoch for s in config.arm.segments] == [5, 12, None] and config.arm.segments[1].w_kl == [0.05, 0.1]
    assert config_from_dict(parse_yaml(dump_config(config), "dumped")) == config  # a run's config.yaml reloads
    assert config_from_dict({"arm": {"kind": "piecewise"}}).arm.segments[0].w_rank == 0.5  # default: the fixed arm
    bad = tmp_path / "bad.yaml"
    bad.write_text("arm:\n  kind: piecewise\n  segments: [{until_epoch: 4}, {until_epoch: 2}, {}]\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "run"), "--quiet"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert "arm.segments[1].until_epoch: must be greater than segments[0].until_epoch 4 (got 2)" in err
    assert len(err.splitlines()) == 1
