"""The controller's statistics: registry, sources, per-sample values, and the running normalisation."""

from __future__ import annotations

import math

import torch

from diffctl.arms.statistics import (
    DEFAULT_STATS,
    ENCODER_STATS,
    REGISTRY,
    RunningNormaliser,
    StatPlan,
    StatView,
    check_stats,
    decoded_quantities,
    encoder_view,
    stat_matrix,
)
from diffctl.data import OperationSet
from diffctl.losses import decoder_entropy, reconstruction_ce
from diffctl.model import DualVAE


def _batch(n: int = 48):
    torch.manual_seed(0)
    data, model = OperationSet(), DualVAE()
    index = torch.randperm(len(data.index))[:n]
    x = data.trits[index]
    with torch.no_grad():
        encoding = model.encode(x)
        logits = torch.stack(model.decode(encoding.mu))
    return x, index, encoding, logits


def test_registry_has_at_least_eight_statistics_on_both_sides():
    assert len(REGISTRY) >= 8 and len(DEFAULT_STATS) == 8
    assert set(ENCODER_STATS) == {"KL_A", "KL_B", "var_A", "var_B", "code_gap", "rank"}
    assert check_stats(DEFAULT_STATS, "previous") is None
    assert "needs the decoder" in check_stats(("KL_A", "H_B"), "encoder")
    assert "unknown" in check_stats(("H_C",), "pre_decode") and "twice" in check_stats(("H_A", "H_A"), "previous")


def test_per_sample_statistics_average_to_the_batch_values_of_the_losses():
    x, index, encoding, logits = _batch()
    view = encoder_view(encoding, index, DEFAULT_STATS + ENCODER_STATS)
    view.ce, view.ent = decoded_quantities(logits, x)
    assert view.ce.shape == (2, 48) and view.ent.shape == (2, 48)
    batch_ce = torch.stack([reconstruction_ce(lg, x) for lg in logits])
    assert torch.allclose(view.ce.mean(-1), batch_ce, atol=1e-5)
    assert torch.allclose(view.ent.mean(-1), decoder_entropy(logits), atol=1e-6)
    names = ("CE_A", "CE_ratio", "var_B", "rank")
    per_sample, batch = stat_matrix(names, view, True), stat_matrix(names, view, False)
    assert per_sample.shape == (48, 4) and batch.shape == (1, 4)
    assert float(batch[0, 1]) == float(batch_ce[0] / batch_ce[1])  # ratio of the batch means
    assert math.isclose(float(batch[0, 2]), float(encoding.mu[1].var(0, unbiased=False).mean()), rel_tol=1e-5)
    assert float(per_sample[:, 3].std()) == 0.0  # the ranking loss is batch-level: broadcast


def _one_at_a_time(names, view: StatView, per_sample: bool) -> torch.Tensor:
    """The statistics as the registry defines them, a column at a time (the reference for StatPlan)."""
    if not per_sample:
        fields = [None if t is None else t.mean(-1, keepdim=True) for t in (view.kl, view.var, view.code_gap)]
        decoded = [t.mean(-1, keepdim=True) for t in (view.ce, view.ent)]
        view = StatView(1, *fields, view.rank, *decoded)
    return torch.stack([REGISTRY[name].column(view).reshape(-1).expand(view.rows) for name in names], -1)


def test_stat_plan_gives_each_statistic_as_defined_bit_for_bit():
    x, index, encoding, logits = _batch()
    everything = tuple(REGISTRY)
    per_sample = encoder_view(encoding, index, everything)
    per_sample.ce, per_sample.ent = decoded_quantities(logits, x)
    previous = encoder_view(encoding, index, everything)  # the previous step's values: one column, broadcast
    previous.ce, previous.ent = torch.tensor([[2.5, 1.25], [0.75, 0.5]]).unsqueeze(-1).unbind(0)
    shuffled = tuple(everything[i] for i in torch.randperm(len(everything), generator=torch.Generator().manual_seed(1)))
    selections = [everything, everything[::-1], shuffled, DEFAULT_STATS, ENCODER_STATS, ("rank",), ("H_gap",),
                  ("CE_ratio", "KL_B"), ("code_gap", "H_gap", "var_A")]  # fmt: skip
    for view in (per_sample, previous):
        for names in selections:
            for sample in (True, False):
                got = StatPlan(names).matrix(view, sample)
                expected = _one_at_a_time(names, view, sample)
                assert got.shape == expected.shape == ((48 if sample else 1), len(names))
                assert torch.equal(got, expected), (names, sample)
    # the gradient of statistics that are not detached reaches the encodings as through the reference
    mu = encoding.mu.clone().requires_grad_()
    view = encoder_view(type(encoding)(mu, encoding.logvar), index, everything)
    view.ce, view.ent = per_sample.ce, per_sample.ent
    got = torch.autograd.grad(StatPlan(everything).matrix(view, True).sum(), mu, retain_graph=True)[0]
    want = torch.autograd.grad(_one_at_a_time(everything, view, True).sum(), mu)[0]
    assert float(got.abs().sum()) > 0 and torch.allclose(got, want, rtol=1e-6, atol=1e-9)


def test_normaliser_compresses_scales_and_restores_from_its_state():
    stats = torch.tensor([[1e4, 1e-3, -50.0]])
    norm = RunningNormaliser(3)
    outs = [norm(stats * (1 + 0.1 * k)) for k in range(20)]
    assert all(float(o.abs().max()) <= 5.0 for o in outs)
    twin = RunningNormaliser(3)
    twin.load_state_dict(norm.state_dict())
    probe = torch.tensor([[2e4, 2e-3, -10.0]])
    assert torch.equal(twin(probe), norm(probe))
    assert int(norm.count) == 21 and float(norm.mean[0]) > 5  # log1p(1e4) ~ 9.2: stored in log scale
    frozen = RunningNormaliser(3).eval()
    frozen(stats)
    assert int(frozen.count) == 0  # moments move only in training mode
