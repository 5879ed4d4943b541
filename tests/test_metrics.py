import math

import torch

from diffctl.data import OperationSet, make_split
from diffctl.metrics import (
    FULL_SET,
    coverage,
    decoded_indices,
    effective_dimension,
    evaluate,
    exact_match,
    latent_variance,
    sampled_coverage_ceiling,
    trit_accuracy,
    triplet_concordance,
)
from diffctl.model import DualVAE


def one_hot_logits(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.one_hot(x.long() + 1, 3).float() * 10


def test_perfect_decoder_scores_one():
    data = OperationSet()
    logits = one_hot_logits(data.trits)
    assert exact_match(logits, data.trits) == 1.0
    assert trit_accuracy(logits, data.trits) == 1.0
    assert torch.equal(decoded_indices(logits), data.index)
    assert coverage(decoded_indices(logits)) == 1.0


def test_one_wrong_trit():
    data = OperationSet()
    x = data.trits[:100]
    logits = one_hot_logits(x)
    logits[:50, 0] = logits[:50, 0].roll(1, dims=-1)  # first trit wrong in half the samples
    assert exact_match(logits, x) == 0.5
    assert math.isclose(trit_accuracy(logits, x), 1 - 50 / 900, rel_tol=1e-6)


def test_sampled_coverage_of_a_uniform_decoder_reaches_the_ceiling():
    assert math.isclose(sampled_coverage_ceiling(50_000), 0.9211, abs_tol=1e-4)
    g = torch.Generator().manual_seed(0)
    draws = torch.randint(0, 19_683, (50_000,), generator=g)
    assert abs(coverage(draws) - sampled_coverage_ceiling(50_000)) < 0.005
    # argmax of a uniform decoder is one table: prior argmax coverage cannot be gamed
    assert coverage(decoded_indices(torch.zeros(50_000, 9, 3))) == 1 / 19_683


def test_triplet_concordance_random_and_3adic_embeddings():
    data = OperationSet()
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(19_683, generator=g)[:5_000]
    r, se = triplet_concordance(torch.randn(5_000, 16, generator=g), data.index[idx], 20_000, g)
    assert abs(r - 0.5) < 4 * se and se < 0.004
    # low-order trits dominate the distance: a larger v3 means a closer code
    z = data.trits[idx] * torch.tensor([10.0**-j for j in range(9)])
    r, se = triplet_concordance(z, data.index[idx], 20_000, g)
    assert r > 0.72


def test_collapse_signals():
    g = torch.Generator().manual_seed(0)
    iso = torch.randn(20_000, 16, generator=g)
    assert abs(effective_dimension(iso) - 16) < 0.1
    assert abs(latent_variance(iso) - 1) < 0.05
    flat = torch.zeros(1000, 16)
    flat[:, 0] = torch.randn(1000, generator=g)
    assert abs(effective_dimension(flat) - 1) < 1e-6
    assert effective_dimension(torch.zeros(100, 16)) == 0.0


def test_evaluate_untrained_model_is_deterministic():
    torch.manual_seed(0)
    model, data, split = DualVAE(), OperationSet(), make_split(42)
    kw = dict(seed=0, prior_samples=2_000, triplet_indices=1_000, triplets=2_000, rho=0.2)
    a = evaluate(model, data, split, **kw)
    assert a == evaluate(model, data, split, **kw)
    for name in ("val_exact_match_A", "recon_coverage_B", "sampled_coverage_A", "prior_argmax_coverage_B"):
        assert 0.0 <= a[name] <= 1.0
    assert a["recon_coverage_A"] < 0.01  # an untrained decoder reconstructs almost nothing
    assert a["val_loss_unweighted"] > 9.0  # at least the CE of a near-uniform decoder per VAE
    assert {"val_exact_match_at_rho_A", "recon_coverage_at_rho_B", "triplet_r_se_A", "eff_dim_B"} <= set(a)


def test_categorical_draw_matches_the_probabilities():
    from diffctl.metrics import categorical_draw

    p = torch.tensor([0.2, 0.5, 0.3])
    logits = p.log().expand(200_000, 3)
    draws = categorical_draw(logits, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=3).float() / 200_000
    assert torch.allclose(freq, p, atol=0.005)


def test_cheap_evaluation_is_the_full_one_without_the_full_set():
    """Without ``full``: exactly the FULL_SET fields are None (same keys, same order), every other field has the
    value the full evaluation gives."""
    torch.manual_seed(0)
    model, data, split = DualVAE(), OperationSet(), make_split(42)
    kw = dict(seed=3, prior_samples=500, triplet_indices=300, triplets=500, rho=0.3)
    full = evaluate(model, data, split, **kw)
    cheap = evaluate(model, data, split, full=False, **kw)
    assert list(cheap) == list(full)
    assert {k for k, v in cheap.items() if v is None} == FULL_SET
    assert len(FULL_SET) == 16 and "val_exact_match_at_rho_A" not in FULL_SET
    assert {k: v for k, v in cheap.items() if v is not None} == {k: v for k, v in full.items() if k not in FULL_SET}
    assert all(isinstance(full[k], float) for k in FULL_SET)
    assert evaluate(model, data, split, **kw) == full  # a cheap call in between changes nothing (fresh generator)
