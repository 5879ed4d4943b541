"""The controller's statistics: registry, sources, per-sample values, and the running normalisation."""

from __future__ import annotations

import math

import torch

from diffctl.arms.statistics import (
    DEFAULT_STATS,
    ENCODER_STATS,
    REGISTRY,
    RunningNormaliser,
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
