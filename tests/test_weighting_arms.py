"""The standard weighting arms (uncertainty, dwa, rlw) and the legacy StateNet: formulas on hand-computed cases,
gradient flow, training runs and checkpoint round trips."""

import io
import math

import pytest
import torch

from diffctl.arms import LossTerms
from diffctl.arms.dwa import RECORD_KEYS, DWAArm, DWAOptions, dwa_weights
from diffctl.arms.rlw import RLWArm, RLWOptions
from diffctl.arms.statenet import LAMBDA_STEP, LR_STEP, MEASURED, StateNetArm, StateNetOptions
from diffctl.arms.uncertainty import UncertaintyArm, UncertaintyOptions
from diffctl.config import ConfigError, load_config
from diffctl.train import Trainer, loss_terms, train

TIMING = {"epoch_time_s", "eval_time_s"}
FAST = ["eval.prior_samples=2000", "eval.triplets=2000", "eval.triplet_indices=2000"]
LATENT = 16


def weights_of(control) -> list[float]:
    return [float(w.detach().mean()) for w in control.weights().values()]


def constant_terms(recon: float, kl: float, rank: float, ent: float) -> LossTerms:
    """Loss terms whose per-term totals (summed over the two VAEs) are the given numbers."""
    half = lambda v: torch.tensor([0.6 * v, 0.4 * v])  # noqa: E731 - an uneven A/B split on purpose
    return LossTerms(ce=half(recon), kl=half(kl), rank=half(rank), ent=torch.tensor(ent), entropy=torch.zeros(2))


def strip_timing(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in TIMING}


# --- DWA -----------------------------------------------------------------------------------------------------
def test_dwa_weights_from_given_epoch_means():
    before = [20.0, 16.0, 0.8, 0.10]
    previous = [18.0, 16.0, 0.4, 0.15]
    ratios = [0.9, 1.0, 0.5, 1.5]
    e = [math.exp(r / 2.0) for r in ratios]
    expected = [4 * v / sum(e) for v in e]
    got = dwa_weights(previous, before, 2.0)
    assert got.tolist() == pytest.approx(expected, rel=1e-6)
    assert float(got.sum()) == pytest.approx(4.0, rel=1e-6)
    # the term that fell most slowly (entropy gap, ratio 1.5) gets the largest weight
    assert int(got.argmax()) == 3
    # T -> large flattens the weights toward 1
    assert dwa_weights(previous, before, 1e3).tolist() == pytest.approx([1.0] * 4, abs=1e-3)


def test_dwa_arm_weights_are_one_for_two_epochs_then_follow_the_history():
    arm = DWAArm(DWAOptions(temperature=2.0), LATENT)
    records = [dict(zip(RECORD_KEYS, [20.0, 16.0, 0.8, 0.10])), dict(zip(RECORD_KEYS, [18.0, 16.0, 0.4, 0.15]))]
    for epoch in (0, 1):
        arm.start_epoch(epoch, records[:epoch], None)
        assert weights_of(arm.control(None)) == [1.0] * 4
    arm.start_epoch(2, records, None)
    expected = dwa_weights([18.0, 16.0, 0.4, 0.15], [20.0, 16.0, 0.8, 0.10], 2.0).tolist()
    assert weights_of(arm.control(None)) == pytest.approx(expected, rel=1e-6)


def test_dwa_records_the_epoch_means_of_the_terms():
    arm = DWAArm(DWAOptions(), LATENT)
    arm.start_epoch(0, [], None)
    arm.after_step(constant_terms(10.0, 16.0, 0.4, 0.05), None, None)
    arm.after_step(constant_terms(20.0, 18.0, 0.2, 0.15), None, None)
    record = arm.epoch_record()
    assert [record[k] for k in RECORD_KEYS] == pytest.approx([15.0, 17.0, 0.3, 0.10], rel=1e-6)


# --- uncertainty ---------------------------------------------------------------------------------------------
def test_uncertainty_loss_at_init_and_its_stationary_point():
    arm = UncertaintyArm(UncertaintyOptions(init_log_variance=0.0), LATENT)
    totals = [10.0, 16.0, 0.4, 0.05]
    terms = constant_terms(*totals)
    # s = 0: every weight is 1/2 and the barrier is 0
    assert float(terms.weighted_total(arm.control(None)).detach()) == pytest.approx(0.5 * sum(totals), rel=1e-6)
    opt = torch.optim.Adam(arm.trainable_parameters(), lr=0.05)
    for _ in range(2000):
        opt.zero_grad()
        terms.weighted_total(arm.control(None)).backward()
        opt.step()
    # d/ds (1/2 e^-s L + 1/2 s) = 0  <=>  w = 1/2 e^-s = 1/(2 L)
    assert weights_of(arm.control(None)) == pytest.approx([1 / (2 * v) for v in totals], rel=1e-3)
    assert arm.log_variance.detach().tolist() == pytest.approx([math.log(v) for v in totals], abs=1e-3)


def test_uncertainty_records_gradient_and_drift_of_its_parameters():
    arm = UncertaintyArm(UncertaintyOptions(init_log_variance=1.0), LATENT)
    arm.start_epoch(0, [], None)
    control = arm.control(None)
    constant_terms(10.0, 16.0, 0.4, 0.05).weighted_total(control).backward()
    grad_norm = float(arm.log_variance.grad.norm())
    with torch.no_grad():
        arm.log_variance += torch.tensor([0.3, 0.0, -0.4, 0.0])
    arm.after_step(None, control, None)
    record = arm.epoch_record()
    assert grad_norm > 0 and record["controller_grad_norm"] == pytest.approx(grad_norm, rel=1e-6)
    assert record["controller_param_drift"] == pytest.approx(0.5, rel=1e-6)
    assert record["w_kl_at_floor"] == 0.0


# --- RLW -----------------------------------------------------------------------------------------------------
def test_rlw_weights_sum_to_k_and_average_one():
    arm = RLWArm(RLWOptions(seed=7), LATENT)
    draws = torch.stack([torch.stack([w for w in arm.control(None).weights().values()]) for _ in range(4000)])
    assert torch.allclose(draws.sum(1), torch.full((4000,), 4.0), atol=1e-5)
    assert bool((draws > 0).all())
    # by symmetry of N(0, I) every weight has mean 1 (sd of one weight ~0.7: 4000 draws give ~0.011)
    assert draws.mean(0).tolist() == pytest.approx([1.0] * 4, abs=0.05)
    assert float(draws.std(0).min()) > 0.3  # the weights really vary from step to step


def test_rlw_draws_are_reproducible_from_the_seed():
    def first_draws(arm, n=5):
        return [weights_of(arm.control(None)) for _ in range(n)]

    assert first_draws(RLWArm(RLWOptions(seed=3), LATENT)) == first_draws(RLWArm(RLWOptions(seed=3), LATENT))
    assert first_draws(RLWArm(RLWOptions(seed=3), LATENT)) != first_draws(RLWArm(RLWOptions(seed=4), LATENT))
    # unset seed: the run's seed decides, through a stream of its own (not the trainer's first noise draws)
    torch.manual_seed(11)
    a = first_draws(RLWArm(RLWOptions(), LATENT))
    torch.manual_seed(11)
    assert first_draws(RLWArm(RLWOptions(), LATENT)) == a
    torch.manual_seed(12)
    assert first_draws(RLWArm(RLWOptions(), LATENT)) != a
    trainer_noise = torch.randn(4, generator=torch.Generator().manual_seed(11))
    torch.manual_seed(11)
    assert not torch.equal(torch.randn(4, generator=RLWArm(RLWOptions(), LATENT).generator), trainer_noise)


# --- StateNet ------------------------------------------------------------------------------------------------
def statenet_record(**changes) -> dict:
    record = {"statenet_H_A": 1.05, "statenet_H_B": 0.7, "statenet_kl_A": 9.5, "statenet_kl_B": 14.0}
    record["statenet_loss_ratio"] = 1.06
    record.update(changes)
    return record


def test_statenet_has_upstreams_size_and_stays_out_of_the_optimiser():
    trainer = Trainer(load_config("configs/statenet.yaml", FAST))
    params = list(trainer.arm.net.parameters())
    assert sum(p.numel() for p in params) == 1068  # upstream v5.5's StateNet
    assert all(p.requires_grad for p in params)
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in params}
    assert len(optimised) == len(list(trainer.model.parameters()))


def test_statenet_parameters_get_no_gradient_from_the_total_loss():
    trainer = Trainer(load_config("configs/statenet.yaml", FAST))
    arm, model = trainer.arm, trainer.model
    arm.start_epoch(1, [statenet_record()], trainer.optimizer)  # its network has run: the lambdas came from it
    x, index = next(trainer.data.batches(trainer.split.train, 256, trainer.generator))
    encoding = model.encode(x)
    control = arm.control(None)
    terms = loss_terms(model, encoding, x, index, control.rho, trainer.config, trainer.generator)
    total = terms.weighted_total(control)
    params = list(arm.net.parameters())
    assert all(g is None for g in torch.autograd.grad(total, params, allow_unused=True))
    total.backward()
    assert all(p.grad is None for p in params)
    assert model.vae_a.encoder.mu.weight.grad.norm() > 0  # the same backward pass did reach the model


def test_statenet_moves_lambdas_and_lr_once_per_epoch_through_python_floats():
    trainer = Trainer(load_config("configs/statenet.yaml", FAST))
    arm, opt = trainer.arm, trainer.optimizer
    arm.start_epoch(0, [], opt)  # no finished epoch yet: nothing to read, nothing moves
    assert arm.lambdas == [0.7, 0.7, 0.3] and opt.param_groups[0]["lr"] == 1e-3
    record = statenet_record()
    state = torch.tensor([record[f"statenet_{n}"] for n in MEASURED] + [0.1, 0.7, 0.7, 0.3])
    assert torch.equal(arm.state_vector(record), state)
    d_lr, d_a, d_b, d_ent = arm.net(state).tolist()
    arm.start_epoch(1, [record], opt)
    assert arm.lambdas == pytest.approx([0.7 + LAMBDA_STEP * d_a, 0.7 + LAMBDA_STEP * d_b, 0.3 + LAMBDA_STEP * d_ent])
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * (1 + LR_STEP * d_lr))
    assert arm.lambdas != [0.7, 0.7, 0.3] and opt.param_groups[0]["lr"] != 1e-3
    assert all(isinstance(v, float) for v in arm.lambdas)
    control = arm.control(None)
    assert control.w_recon.tolist() == pytest.approx(arm.lambdas[:2])
    assert control.w_kl.tolist() == pytest.approx([0.1 * v for v in arm.lambdas[:2]])


def test_statenet_clips_at_upstreams_bounds():
    arm = StateNetArm(StateNetOptions(lambda_a=0.95, lambda_b=0.5, lambda_ent=0.75), LATENT)
    with torch.no_grad():
        arm.net.decoder[2].bias.copy_(torch.tensor([-50.0, 50.0, -50.0, 50.0]))  # tanh -> (-1, +1, -1, +1)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-6)
    arm.start_epoch(1, [statenet_record()], opt)
    assert arm.lambdas == [0.95, 0.5, 0.75]
    assert opt.param_groups[0]["lr"] == 1e-6
    record = arm.epoch_record()
    assert record["w_recon_at_floor"] == 0.5 and record["w_ent_at_floor"] == 0.0


# --- training through diffctl.train ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["uncertainty", "dwa", "rlw", "statenet"])
def test_each_arm_trains_two_epochs_with_finite_records(kind):
    records = list(train(load_config(f"configs/{kind}.yaml", ["optim.epochs=2", *FAST])))
    assert [r["status"] for r in records] == ["ok", "ok"]
    for record in records:
        numbers = [v for v in record.values() if isinstance(v, float)]
        assert all(math.isfinite(v) for v in numbers)
    first, second = records
    assert second["train_loss_weighted"] < first["train_loss_weighted"] or kind == "rlw"  # rlw rescales at random
    if kind == "uncertainty":
        assert second["controller_grad_norm"] > 0 and second["controller_param_drift"] > first["controller_param_drift"]
    if kind == "dwa":
        assert [second[f"{w}_mean"] for w in ("w_recon", "w_kl", "w_rank", "w_ent")] == [1.0] * 4
        assert all(second[k] > 0 for k in RECORD_KEYS)
    if kind == "rlw":
        total = sum(second[f"{w}_mean"] for w in ("w_recon", "w_kl", "w_rank", "w_ent"))
        assert total == pytest.approx(4.0, rel=1e-5) and second["w_recon_mean"] != 1.0
    if kind == "statenet":
        assert second["controller_grad_norm"] == 0.0 and second["controller_param_drift"] == 0.0
        assert second["statenet_params_with_grad"] == 0
        assert second["lr"] != first["lr"] and second["statenet_lambda_A"] != first["statenet_lambda_A"]


@pytest.mark.parametrize("kind", ["uncertainty", "dwa", "rlw", "statenet"])
def test_checkpoint_round_trip_gives_the_same_next_epoch(kind):
    cfg = load_config(f"configs/{kind}.yaml", ["optim.epochs=3", *FAST])
    straight = Trainer(cfg)
    straight.run_epoch()
    straight.run_epoch()
    buffer = io.BytesIO()
    torch.save(straight.state_dict(), buffer)
    expected = strip_timing(straight.run_epoch())
    buffer.seek(0)
    resumed = Trainer(cfg)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert strip_timing(resumed.run_epoch()) == expected
    if kind == "dwa":  # epoch 3 is the first one that DWA weights from the history
        assert expected["w_recon_mean"] != 1.0


@pytest.mark.parametrize(
    "override, key",
    [
        ("arm.temperature=0", "arm.temperature"),
        ("arm.seed=-1", "arm.seed"),
        ("arm.init_log_variance=99", "arm.init_log_variance"),
        ("arm.lambda_a=0.2", "arm.lambda_a"),
    ],
)
def test_bad_arm_options_name_the_key(override, key):
    kind = {"temperature": "dwa", "seed": "rlw", "init_log_variance": "uncertainty", "lambda_a": "statenet"}
    with pytest.raises(ConfigError, match=f"^{key}:"):
        load_config(None, [f"arm.kind={kind[key.split('.')[1]]}", override])
