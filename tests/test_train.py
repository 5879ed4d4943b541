import math

import pytest
import torch

from diffctl.config import load_config
from diffctl.metrics import FULL_SET
from diffctl.train import STATUS_DIVERGED, Trainer, train

TIMING = {"epoch_time_s", "eval_time_s"}
FAST = ["eval.prior_samples=2000", "eval.triplets=2000"]


def strip_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def test_same_config_same_records():
    cfg = load_config("configs/fixed.yaml", ["optim.epochs=2", *FAST])
    a = strip_timing(train(cfg))
    b = strip_timing(train(cfg))
    assert a == b
    assert [r["epoch"] for r in a] == [1, 2] and all(r["status"] == "ok" for r in a)
    assert a[1]["train_loss_weighted"] < a[0]["train_loss_weighted"]  # the loss falls
    other = strip_timing(train(load_config("configs/fixed.yaml", ["optim.epochs=1", "seed=1", *FAST])))
    assert other[0] != a[0]


def test_checkpoint_resume_is_bit_identical(tmp_path):
    cfg = load_config("configs/scheduled.yaml", ["optim.epochs=2", *FAST])
    straight = strip_timing(train(cfg))
    first = Trainer(cfg)
    first.run_epoch()
    torch.save(first.state_dict(), tmp_path / "ckpt.pt")
    resumed = Trainer(cfg)
    resumed.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True))
    assert strip_timing([resumed.run_epoch()]) == straight[1:]
    assert resumed.finished


def test_divergence_is_a_status_not_an_exception():
    cfg = load_config("configs/fixed.yaml", ["optim.epochs=3", "optim.lr=10.0", "arm.w_recon=1000", *FAST])
    records = list(train(cfg))
    last = records[-1]
    assert last["status"] == STATUS_DIVERGED
    assert "non-finite" in last["reason"]
    assert all(r["status"] == "ok" for r in records[:-1])


def test_nan_input_weight_diverges_at_the_first_step(monkeypatch):
    cfg = load_config("configs/fixed.yaml", ["optim.epochs=2", *FAST])
    trainer = Trainer(cfg)
    trainer.arm._control.w_kl = torch.tensor(math.nan)
    record = trainer.run_epoch()
    assert record["status"] == STATUS_DIVERGED and "step 0" in record["reason"]
    assert trainer.finished


@pytest.mark.slow
def test_fixed_defaults_learn_reconstruction_in_15_epochs():
    records = list(train(load_config("configs/fixed.yaml", ["optim.epochs=15"])))
    last = records[-1]
    for vae in "AB":
        assert last[f"val_exact_match_{vae}"] >= 0.9
        assert last[f"recon_coverage_{vae}"] >= 0.9
        assert last[f"kl_{vae}"] > 8.0  # above the free-bits floor: no posterior collapse
        assert last[f"eff_dim_{vae}"] > 4.0
    # decoder B (larger) learns faster than decoder A
    first_b = next(r["epoch"] for r in records if r["recon_coverage_B"] >= 0.9)
    first_a = next(r["epoch"] for r in records if r["recon_coverage_A"] >= 0.9)
    assert first_b < first_a


def full_set_nulled(record):
    return {k: (None if k in FULL_SET else v) for k, v in record.items() if k not in TIMING | {"eval_full"}}


THINNED_BASE = ["optim.epochs=4", "eval.prior_samples=300", "eval.triplet_indices=200", "eval.triplets=300"]


@pytest.fixture(scope="module")
def every_epoch_full():
    return strip_timing(train(load_config("configs/fixed.yaml", THINNED_BASE)))


@pytest.mark.parametrize(
    "schedule, full",
    [
        (["eval.full_every=2", "eval.full_epochs=[1]"], [1, 2, 4]),
        (["eval.full_every=3"], [3, 4]),  # the last epoch is always full
        (["eval.full_every=9", "eval.full_epochs=[2]"], [2, 4]),
    ],
)
def test_full_set_only_at_its_epochs_and_identical_there(every_epoch_full, schedule, full):
    """The full set at every full_every-th epoch, the listed ones and the last; byte-identical there to a run
    evaluating it every epoch, null elsewhere, where every other field is the same as in that run."""
    every = every_epoch_full
    thinned = strip_timing(train(load_config("configs/fixed.yaml", [*THINNED_BASE, *schedule])))
    assert [r["eval_full"] for r in every] == [1, 1, 1, 1]
    assert [r["epoch"] for r in thinned if r["eval_full"] == 1] == full
    for a, b in zip(every, thinned):
        if b["eval_full"]:
            assert b == a
        else:
            assert b["recon_coverage_A"] is None and b["triplet_r_se_B"] is None and b["eff_dim_A"] is None
            assert b == full_set_nulled(a) | {"eval_full": 0}
