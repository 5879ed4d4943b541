"""The lookahead controller's cadence (``lookahead_every``) and its held-out outer data (``outer_data``)."""

from __future__ import annotations

import pytest
import torch

from diffctl.config import ConfigError, load_config
from diffctl.train import Trainer

BATCH = 1024  # 16 steps per epoch (15 full batches and one of 386): 16 is not a multiple of 3
STEPS_PER_EPOCH = 16
FAST = [f"data.batch_size={BATCH}", "eval.prior_samples=1000", "eval.triplets=1000", "eval.triplet_indices=1000"]
TIMING = ("epoch_time_s", "eval_time_s")


def lookahead_config(*overrides: str):
    return load_config("configs/controller_lookahead.yaml", ["optim.epochs=2", *FAST, *overrides])


class Recorder:
    """Wraps a trainer's step, its outer batches and its outer objective: what each step trained on, whether the
    controller's parameters changed in it, and the outer batches and outer passes taken."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.changed: list[bool] = []
        self.trained: list[torch.Tensor] = []
        self.outer_batches: list[torch.Tensor] = []
        self.outer_calls = 0
        step, draw, outer = trainer.train_step, trainer.context.draw_batch, trainer.arm.outer

        def train_step(x, index, *args):
            before = trainer.arm.net.theta.detach().clone()
            outcome = step(x, index, *args)
            assert outcome.problem is None
            self.changed.append(not torch.equal(before, trainer.arm.net.theta.detach()))
            self.trained.append(index.clone())
            return outcome

        def draw_batch():
            x, index = draw()
            self.outer_batches.append(index.clone())
            return x, index

        def counted_outer(*args):
            self.outer_calls += 1
            return outer(*args)

        trainer.train_step, trainer.context.draw_batch, trainer.arm.outer = train_step, draw_batch, counted_outer


def strip(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in TIMING}


@pytest.mark.parametrize("every", (1, 3))
def test_the_controller_changes_exactly_on_every_kth_global_step(every):
    trainer = Trainer(lookahead_config(f"arm.lookahead_every={every}"))
    rec = Recorder(trainer)
    for _ in range(2):
        assert trainer.run_epoch()["status"] == "ok"
    expected = [g % every == 0 for g in range(2 * STEPS_PER_EPOCH)]
    assert rec.changed == expected  # epoch 2 starts at global step 16: with k = 3 its first update is its step 2
    # the steps between are cheap: no outer pass and no outer batch, only on the update steps
    assert rec.outer_calls == len(rec.outer_batches) == sum(expected)


def test_a_run_resumed_between_epochs_keeps_the_cadence(tmp_path):
    cfg = lookahead_config("arm.lookahead_every=3")
    straight = Trainer(cfg)
    rec_straight = Recorder(straight)
    records = [straight.run_epoch() for _ in range(2)]
    first = Trainer(cfg)
    first.run_epoch()
    torch.save(first.state_dict(), tmp_path / "trainer.pt")
    resumed = Trainer(cfg)
    resumed.load_state_dict(torch.load(tmp_path / "trainer.pt", weights_only=True))
    rec_resumed = Recorder(resumed)
    record = resumed.run_epoch()
    assert rec_resumed.changed == rec_straight.changed[STEPS_PER_EPOCH:]
    assert rec_resumed.changed == [g % 3 == 0 for g in range(STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH)]
    assert strip(record) == strip(records[1])
    assert torch.equal(resumed.arm.net.theta, straight.arm.net.theta)


def test_holdout_batches_never_train_the_model_and_feed_every_outer_batch():
    trainer = Trainer(lookahead_config("arm.outer_data=holdout", "arm.holdout_fraction=0.1", "arm.lookahead_every=2"))
    rec = Recorder(trainer)
    assert trainer.run_epoch()["status"] == "ok"
    train_split, held = trainer.split.train, trainer.outer_part
    trained = torch.cat(rec.trained)
    assert len(held) == round(0.1 * len(train_split)) == 1575
    assert len(rec.trained) == len(rec.changed) == 14  # ceil(14,171 / 1024) steps
    assert len(trained) == len(trained.unique()) == len(train_split) - 1575  # every kept index once
    assert not torch.isin(trained, held).any()
    assert torch.equal(torch.cat((trained, held)).sort().values, train_split.sort().values)
    outer = torch.cat(rec.outer_batches)
    assert len(rec.outer_batches) == 7 and len(outer) == 7 * BATCH
    assert torch.isin(outer, held).all()
    assert not torch.isin(held, torch.cat((trainer.split.val, trainer.split.test))).any()


def test_the_holdout_comes_from_the_split_seed_and_only_under_lookahead():
    def parts(*overrides):
        t = Trainer(load_config(None, ["arm.kind=controller", "arm.objective=lookahead", *overrides]))
        return t.train_part, t.outer_part, t.split.train

    kept, held, train_split = parts("arm.outer_data=holdout", "arm.holdout_fraction=0.25")
    assert len(held) == round(0.25 * 15_746) and len(kept) + len(held) == 15_746
    other_seed = parts("arm.outer_data=holdout", "arm.holdout_fraction=0.25", "seed=7")
    assert torch.equal(other_seed[1], held)  # the run seed does not move it: every seed trains on the same data
    other_split = parts("arm.outer_data=holdout", "arm.holdout_fraction=0.25", "data.split_seed=1")
    assert not torch.equal(other_split[1].sort().values, held.sort().values)
    for overrides in (("arm.outer_data=train",), ("arm.objective=same_loss", "arm.outer_data=holdout")):
        kept, outer, train_split = parts(*overrides)
        assert torch.equal(kept, train_split) and torch.equal(outer, train_split)


@pytest.mark.parametrize(
    "override,key",
    (
        ("arm.lookahead_every=0", "arm.lookahead_every"),
        ("arm.lookahead_every=10001", "arm.lookahead_every"),
        ("arm.lookahead_every=2.5", "arm.lookahead_every"),
        ("arm.outer_data=val", "arm.outer_data"),
        ("arm.holdout_fraction=0.0", "arm.holdout_fraction"),
        ("arm.holdout_fraction=0.9", "arm.holdout_fraction"),
    ),
)
def test_bad_lookahead_options_fail_in_one_line_naming_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        load_config("configs/controller_lookahead.yaml", [override])
    message = str(err.value)
    assert message.startswith(f"{key}: ") and "\n" not in message
