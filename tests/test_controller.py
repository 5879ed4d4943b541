"""The controller arm: gradients reach every used output for every option combination the study can draw,
bounds, warm-ups, rho shapes, the lookahead's gradient source, and the trap measured in training."""

from __future__ import annotations

import itertools

import pytest
import torch

from diffctl.arms import StepInputs
from diffctl.arms.controller import (
    BOUNDS,
    OUTPUT_NAMES,
    ControllerArm,
    ControllerNet,
    ControllerOptions,
    first_controlled_epoch,
)
from diffctl.arms.lookahead import _OuterObjective
from diffctl.config import ConfigError, load_config
from diffctl.gradcheck import output_gradients
from diffctl.train import Trainer, loss_terms, train

BATCH = 32
STEPS = 62
SMALL_EVAL = ["eval.prior_samples=1000", "eval.triplets=1000", "eval.triplet_indices=1000"]


@pytest.fixture(scope="module")
def trainer() -> Trainer:
    # free_bits 0: at a fresh init every KL element sits under the free-bits floor, whose gradient is zero, so a
    # lookahead could not move w_kl through its virtual step; the test is about the controller's wiring.
    return Trainer(load_config(None, ["loss.free_bits=0.0", f"data.batch_size={BATCH}"]))


def make_arm(trainer: Trainer, **options) -> ControllerArm:
    arm = ControllerArm(ControllerOptions(**options), trainer.config.model.latent_dim)
    arm.start_epoch(0, [], trainer.optimizer)  # the model's lr: the lookahead's default virtual step
    return arm


def step(trainer: Trainer, arm: ControllerArm, epoch: int = 0, seed: int = 0):
    """One batch through ``arm``: (inputs, control, total loss)."""
    trainer.generator.manual_seed(seed)
    x, index = next(trainer.data.batches(trainer.split.train, BATCH, trainer.generator))
    encoding = trainer.model.encode(x)
    inputs = StepInputs(epoch, 0, STEPS, x, index, encoding, context=trainer.context)
    control = arm.control(inputs)
    terms = loss_terms(trainer.model, encoding, x, index, control.rho, trainer.config, trainer.generator)
    return inputs, control, terms.weighted_total(control)


GRID = list(
    itertools.product(
        ("batch", "sample", "latent"),
        ("none", "hold", "blend", "init_at_defaults"),
        ("none", "log_barrier", "anchor", "normalized"),
        ("same_loss", "lookahead"),
        ("previous", "pre_decode", "encoder"),
        (True, False),
    )
)


@pytest.mark.parametrize("source", ("previous", "pre_decode", "encoder"))
@pytest.mark.parametrize("objective", ("same_loss", "lookahead"))
def test_gradient_reaches_every_output_for_every_combination(trainer, objective, source):
    """Granularity x warm-up x regulariser x detach for this objective and source: every output used in the
    step passes a non-zero gradient to the controller's parameters (from the outer objective for lookahead)."""
    combos = [c for c in GRID if c[3] == objective and c[4] == source]
    assert len(combos) == 3 * 4 * 4 * 2
    for granularity, warmup, regularizer, _, _, detach in sorted(combos, key=lambda c: not c[5]):
        arm = make_arm(
            trainer, rho_granularity=granularity, warmup=warmup, warmup_epochs=2, regularizer=regularizer,
            objective=objective, stats_source=source, detach_stats=detach,
        )  # fmt: skip
        arm.previous_decoded.copy_(torch.tensor([[9.0, 7.0], [0.9, 0.6]]))
        arm.has_previous.fill_(True)
        # hold: the first epoch after it; blend: half-way through it
        epoch = first_controlled_epoch(arm.options) // (2 if warmup == "blend" else 1)
        inputs, control, total = step(trainer, arm, epoch)
        if objective == "lookahead" and not detach:
            # the lookahead always detaches its statistics: the same step as detach_stats=true, checked above
            assert not arm.statistics(inputs).requires_grad
            continue
        loss = arm.outer(total, trainer.context)[0] if objective == "lookahead" else total
        norms = output_gradients(loss, control, [arm.net.theta])["outputs"]
        dead = [name for name in OUTPUT_NAMES if not norms[name]["grad_norm"] > 0]
        assert not dead, (granularity, warmup, regularizer, detach, dead)


def test_bounds_hold_for_extreme_inputs(trainer):
    for granularity in ("batch", "sample", "latent"):
        arm = make_arm(trainer, rho_granularity=granularity)
        with torch.no_grad():
            arm.net.theta.mul_(50.0)
        stats = torch.cat((torch.full((8, 8), 1e6), torch.full((8, 8), -1e6)))
        rho, weights = arm.outputs(stats if granularity == "sample" else stats[:1])
        assert float(rho.detach().min()) >= 0.0 and float(rho.detach().max()) <= 0.5
        lower = torch.tensor([BOUNDS[name].lower for name in OUTPUT_NAMES[1:]])
        assert bool((weights >= lower).all()), weights


DEFAULTS = {"rho": 0.2, "w_recon": 2.0, "w_kl": 0.3, "w_rank": 0.7, "w_ent": 0.05}


@pytest.mark.parametrize("warmup", ("hold", "blend", "init_at_defaults"))
def test_each_warmup_gives_the_defaults_at_step_0(trainer, warmup):
    arm = make_arm(trainer, warmup=warmup, warmup_epochs=3, defaults=DEFAULTS)
    _, control, _ = step(trainer, arm)
    got = {name: float(getattr(control, name).detach()) for name in OUTPUT_NAMES}
    assert got == pytest.approx(DEFAULTS, abs=1e-5)
    free = make_arm(trainer, warmup="none", defaults=DEFAULTS)
    _, control, _ = step(trainer, free)
    assert float(control.w_recon.detach()) != pytest.approx(DEFAULTS["w_recon"], abs=1e-2)


def test_init_at_defaults_starts_a_default_on_a_floor_just_inside_it(trainer):
    arm = make_arm(trainer, warmup="init_at_defaults")  # the fixed arm's w_kl = 0.1 is w_kl's lower bound
    _, control, _ = step(trainer, arm)
    assert 0.1 < float(control.w_kl.detach()) <= BOUNDS["w_kl"].floor
    assert float(control.rho.detach()) == pytest.approx(0.1, abs=1e-6)


@pytest.mark.parametrize("granularity,shape", (("batch", ()), ("sample", (BATCH, 1)), ("latent", (1, 16))))
def test_rho_granularity_gives_the_right_shape(trainer, granularity, shape):
    arm = make_arm(trainer, rho_granularity=granularity, stats_source="pre_decode")
    _, control, _ = step(trainer, arm)
    assert tuple(control.rho.shape) == shape
    if granularity != "batch":
        assert float(control.rho.detach().std()) > 0  # per-sample statistics / per-dimension outputs differ


def test_detach_stats_false_lets_the_encoders_move_their_weights(trainer):
    encoder = list(trainer.model.vae_a.encoder.parameters())
    for detach, expect_path in ((True, False), (False, True)):
        arm = make_arm(trainer, detach_stats=detach, stats_source="pre_decode")
        _, control, _ = step(trainer, arm)
        grads = torch.autograd.grad(control.w_kl, encoder, allow_unused=True)
        reached = any(g is not None and float(g.abs().sum()) > 0 for g in grads)
        assert reached == expect_path


def test_lookahead_trains_the_controller_only_through_the_outer_objective(trainer):
    def run(seed=3):
        torch.manual_seed(seed)  # the controller's initial weights
        arm = make_arm(trainer, objective="lookahead", regularizer="log_barrier", regularizer_strength=0.5)
        inputs, control, total = step(trainer, arm, seed=seed)
        return arm, inputs, control, total

    arm, inputs, control, total = run()
    trainer.model.zero_grad(set_to_none=True)
    arm.backward(total, inputs)
    applied = arm.net.theta.grad.clone()
    model_applied = [p.grad.clone() for p in trainer.model.parameters()]

    arm, inputs, control, total = run()
    params = list(trainer.model.parameters())
    weighted = torch.autograd.grad(total, params, retain_graph=True)
    same_loss = torch.autograd.grad(total, arm.net.theta, retain_graph=True)[0]
    outer, _ = arm.outer(total, trainer.context)
    expected = torch.autograd.grad(outer + control.penalty, arm.net.theta)[0]
    assert torch.allclose(applied, expected, rtol=1e-4, atol=1e-9)
    assert not torch.allclose(applied, same_loss, rtol=0.1)
    assert all(torch.equal(a, b) for a, b in zip(model_applied, weighted))


def test_outer_objective_is_one_plain_sgd_step_per_parameter_bit_for_bit(trainer):
    # the virtual parameters come from two fused list operations: the same arithmetic as p - lr * g
    torch.manual_seed(3)
    arm = make_arm(trainer, objective="lookahead", regularizer="log_barrier")
    _, _, total = step(trainer, arm, seed=5)
    before = trainer.generator.get_state()
    outer, grads = arm.outer(total, trainer.context)
    trainer.generator.set_state(before)  # the outer batch and the outer loss's draws again
    names, params = zip(*trainer.model.named_parameters())
    plain = torch.autograd.grad(total, params, create_graph=True)
    virtual = {f"model.{n}": p.detach() - arm.virtual_lr() * g for n, p, g in zip(names, params, plain)}
    x, index = trainer.context.draw_batch()
    expected = torch.func.functional_call(_OuterObjective(trainer.context, arm.outer_weights), virtual, (x, index))
    assert torch.equal(outer, expected)
    assert all(torch.equal(a, b) for a, b in zip(grads, plain))
    got, want = (torch.autograd.grad(value, arm.net.theta, retain_graph=True)[0] for value in (outer, expected))
    assert float(got.abs().sum()) > 0 and torch.equal(got, want)


def test_controller_net_reuses_views_without_grad_only_while_theta_keeps_its_storage():
    torch.manual_seed(0)
    net, x = ControllerNet(8, 16, 5), torch.randn(3, 8)

    def both() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            plain = net(x)
        return plain, net(x).detach()  # grad mode: fresh views every call

    first, fresh = both()
    assert torch.equal(first, fresh)
    with torch.no_grad():
        net.theta.mul_(0.5)  # as the optimiser updates it: in place
    halved, fresh = both()
    assert not torch.equal(halved, first) and torch.equal(halved, fresh)
    net.theta.data = net.theta.data * 3  # new storage: the kept views would read the old one
    tripled, fresh = both()
    assert not torch.equal(tripled, halved) and torch.equal(tripled, fresh)


def test_hypergradient_moves_the_model_lr_within_its_bounds(trainer):
    cfg = load_config(None, ["arm.kind=controller", "arm.lr_control=hypergradient", "arm.hypergradient_beta=1e-4",
                             "arm.lr_min=5e-4", "arm.lr_max=2e-3", "data.batch_size=256"])  # fmt: skip
    t = Trainer(cfg)
    t.arm.start_epoch(0, [], t.optimizer)
    lrs = []
    for i, (x, index) in zip(range(8), t.data.batches(t.split.train, 256, t.generator)):
        t.train_step(x, index, i, STEPS)
        lrs.append(t.optimizer.param_groups[0]["lr"])
    assert lrs[0] == lrs[1] == 1e-3  # two updates are needed before there is a previous direction
    assert any(lr != 1e-3 for lr in lrs[2:]) and all(5e-4 <= lr <= 2e-3 for lr in lrs)


def test_bad_options_fail_naming_the_key():
    with pytest.raises(ConfigError, match=r"^arm\.stats: .*'H_A' needs the decoder"):
        load_config(None, ["arm.kind=controller", "arm.stats_source=encoder", "arm.stats=[H_A]"])
    with pytest.raises(ConfigError, match=r"^arm\.stats: .*unknown statistic 'entropy'"):
        load_config(None, ["arm.kind=controller", "arm.stats=[entropy]"])
    with pytest.raises(ConfigError, match=r"^arm\.rho_granularity"):
        load_config(None, ["arm.kind=controller", "arm.rho_granularity=pixel"])
    with pytest.raises(ConfigError, match=r"defaults\.w_rank must be > 0"):
        load_config(None, ["arm.kind=controller", "arm.regularizer=anchor", "arm.defaults.w_rank=0.0"])


def _last_epoch(config_path: str, epochs: int, *overrides: str) -> dict:
    records = list(train(load_config(config_path, [f"optim.epochs={epochs}", *SMALL_EVAL, *overrides])))
    assert records[-1]["status"] == "ok"
    return records[-1]


def test_the_trap_seed_literal_weights_end_at_their_floors():
    # controller_lr 1e-2 (10x the model's) makes the slide take 2 epochs instead of ~4
    last = _last_epoch("configs/seed_literal.yaml", 2, "arm.controller_lr=1e-2")
    for name in ("w_kl", "w_rank", "w_ent"):
        assert last[f"{name}_at_floor"] >= 0.95, (name, last[f"{name}_at_floor"])
    assert last["controller_grad_norm"] > 0 and last["controller_param_drift"] > 0.1


def test_a_log_barrier_lifts_rank_and_entropy_weights_but_not_recon_and_kl():
    last = _last_epoch("configs/controller_barrier.yaml", 2, "arm.controller_lr=1e-2")
    assert last["w_rank_at_floor"] == 0.0 and last["w_ent_at_floor"] == 0.0
    assert last["w_rank_mean"] > 1.0 and last["w_ent_mean"] > 1.0  # w = 1/L for small L
    assert last["w_recon_at_floor"] >= 0.95 and last["w_kl_at_floor"] >= 0.95  # 1/L lies below their bounds


def test_checkpoint_between_epochs_resumes_identically():
    cfg = load_config(None, ["arm.kind=controller", "arm.lr_control=hypergradient", "optim.epochs=2",
                             "data.batch_size=1024", *SMALL_EVAL])  # fmt: skip
    straight = list(train(cfg))
    first = Trainer(cfg)
    first.run_epoch()
    resumed = Trainer(cfg)
    resumed.load_state_dict(first.state_dict())
    record = resumed.run_epoch()
    drop = ("epoch_time_s", "eval_time_s")
    assert {k: v for k, v in record.items() if k not in drop} == {
        k: v for k, v in straight[1].items() if k not in drop
    }
