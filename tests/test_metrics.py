import math

import torch

from diffctl.config import Config
from diffctl.data import OperationSet, make_split, valuation3
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
    got = triplet_concordance(torch.randn(5_000, 16, generator=g), data.index[idx], 20_000, g)
    assert abs(got.r - 0.5) < 4 * got.se and got.se < 0.004
    assert abs(got.untied - 0.5) < 3 * got.untied_se and got.untied_se < 0.006  # random: 0.5 on the new field too
    # low-order trits dominate the distance: a larger v3 means a closer code
    z = data.trits[idx] * torch.tensor([10.0**-j for j in range(9)])
    got = triplet_concordance(z, data.index[idx], 20_000, g)
    assert got.r > 0.72


def draw_triples(n: int, n_triplets: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reference draw sequence: triplet_concordance's triples (i, j, k distinct positions), written out again."""
    i = torch.randint(0, n, (n_triplets,), generator=g)
    j = (i + torch.randint(1, n, (n_triplets,), generator=g)) % n
    k = torch.randint(0, n, (n_triplets,), generator=g)
    clash = (k == i) | (k == j)
    while bool(clash.any()):
        k[clash] = torch.randint(0, n, (int(clash.sum()),), generator=g)
        clash = (k == i) | (k == j)
    return i, j, k


def trit_code(trits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """z = concatenation over trit positions t (least significant first) of weights[t] * one-hot(trit t)."""
    one_hot = torch.nn.functional.one_hot(trits.long() + 1, 3).double()
    return (one_hot * weights.double()[:, None]).flatten(1)


def test_a_code_ordering_every_untied_triple_scores_one_and_r_splits_into_tied_and_untied():
    """w_t = 2^-t: a difference at a lower trit outweighs all higher ones, so the lowest differing trit, v3, decides
    every untied triple (v3 = a < b: |z_i - z_j|^2 >= 2 * 4^-a > 2 * sum_{u>a} 4^-u >= |z_i - z_k|^2, a gap of at
    least 4/3 * 4^-8 = 2e-5). The jitter moves a squared distance by at most 1e-8, below every gap: it only orders
    the tied triples whose distances would tie exactly."""
    data = OperationSet()
    g = torch.Generator().manual_seed(1)
    idx = torch.randperm(19_683, generator=g)[:5_000]
    jitter = 1e-4 * torch.rand(5_000, 1, generator=g, dtype=torch.float64)
    z = torch.cat([trit_code(data.trits[idx], 2.0 ** -torch.arange(9)), jitter], 1)
    index, before = data.index[idx], g.get_state()
    got = triplet_concordance(z, index, 20_000, g)
    assert got.untied == 1.0 and got.untied_se == 0.0
    # The expectation from the same triples, drawn again: r counts a tied triple as a hit when the code does not
    # call j closer than k (3-adically, j is not closer).
    i, j, k = draw_triples(5_000, 20_000, torch.Generator().set_state(before))
    tied = valuation3(index[i] - index[j]) == valuation3(index[i] - index[k])
    tied_hits = int(((z[i] - z[j]).norm(dim=-1) >= (z[i] - z[k]).norm(dim=-1))[tied].sum())
    n_tied = int(tied.sum())
    assert got.tie_share == n_tied / 20_000
    assert got.r == (tied_hits + (20_000 - n_tied)) / 20_000  # s * tied agreement + (1 - s) * 1.0, in counts
    assert abs(tied_hits / n_tied - 0.5) < 3 * math.sqrt(0.25 / n_tied)  # ties ordered arbitrarily
    assert abs(got.r - (0.5 * got.tie_share + (1 - got.tie_share))) < 3 * got.se  # r's ceiling, about 0.75
    assert got.r < 0.76


def test_a_code_reversing_the_3adic_order_scores_zero_on_untied_triples():
    """The reversed code: 3-adically closer operations lie farther apart, |z_i - z_j|^2 = 2 - 16 eps + 2 eps v3(i-j).
    Its Gram matrix is K = I - eps * sum_{t=1..8} [i = j mod 3^t] (positive definite for eps times the block sizes
    below 1), z its Cholesky factor. (Reversing the trit weights of ``trit_code`` is no such code: the highest
    differing trit then decides, which says nothing about v3, and untied triples score about 0.5.)"""
    data = OperationSet()
    g = torch.Generator().manual_seed(2)
    index = data.index[torch.randperm(19_683, generator=g)[:600]]
    same_block = sum((index[:, None] - index[None, :]) % 3**t == 0 for t in range(1, 9)).double()
    z = torch.linalg.cholesky(torch.eye(600, dtype=torch.float64) - 1e-3 * same_block)
    got = triplet_concordance(z, index, 20_000, g)
    assert got.untied == 0.0 and 0.45 < got.tie_share < 0.55
    assert got.r <= got.tie_share  # only tied triples can count


def test_no_untied_triple_gives_nan_untied_fields():
    """0, 1, 2 differ pairwise by 1 or 2: every triple ties at v3 = 0."""
    got = triplet_concordance(torch.randn(3, 4), torch.tensor([0, 1, 2]), 50, torch.Generator().manual_seed(0))
    assert got.tie_share == 1.0 and math.isnan(got.untied) and math.isnan(got.untied_se)
    assert 0.0 <= got.r <= 1.0 and math.isfinite(got.se)


def test_tie_share_at_the_default_evaluation_sizes_is_one_half():
    """About half of all triples tie: (3^9 + 1) / (2 (3^9 - 1)) = 0.50005 for independent j and k."""
    eval_config = Config().eval
    n, n_triplets = eval_config.triplet_indices, eval_config.triplets
    assert (n, n_triplets) == (5_000, 20_000)
    data = OperationSet()
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(19_683, generator=g)[:n]
    got = triplet_concordance(torch.zeros(n, 1), data.index[idx], n_triplets, g)
    assert abs(got.tie_share - 0.5) < 3 * math.sqrt(0.25 / n_triplets)  # measured: 0.49975 (9,995 of 20,000)


def test_triplet_r_and_its_draws_are_those_of_the_previous_implementation():
    """r and se of a fixed input, recorded from the implementation before the untied fields were added (it
    returned (r, se)), and the generator left where the reference draw sequence leaves it: nothing drawn extra,
    so every record field after the triples keeps its value."""
    data = OperationSet()
    g = torch.Generator().manual_seed(7)
    idx = torch.randperm(19_683, generator=g)[:500]
    z = torch.randn(500, 4, generator=g)
    reference = torch.Generator().set_state(g.get_state())
    got = triplet_concordance(z, data.index[idx], 2_000, g)
    assert (got.r, got.se) == (0.52, 0.011171392035015153)  # recorded from the previous implementation
    draw_triples(500, 2_000, reference)
    assert torch.equal(g.get_state(), reference.get_state())
    assert torch.equal(torch.randint(0, 2**62, (3,), generator=g), torch.randint(0, 2**62, (3,), generator=reference))


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
    names = list(a)  # the triplet fields of each VAE sit together, triplet_r first
    assert names[names.index("triplet_r_B") :][:5] == [
        "triplet_r_B", "triplet_r_se_B", "triplet_untied_B", "triplet_untied_se_B", "triplet_tie_share_B"
    ]  # fmt: skip
    for vae in "AB":
        assert 0.0 <= a[f"triplet_untied_{vae}"] <= 1.0 and 0.4 < a[f"triplet_tie_share_{vae}"] < 0.6


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
    assert len(FULL_SET) == 23 and "val_exact_match_at_rho_A" not in FULL_SET
    assert {"triplet_untied_A", "triplet_untied_se_B", "triplet_tie_share_A", "triplet_untied_AB"} <= FULL_SET
    assert full["triplet_untied_AB"] == (full["triplet_untied_A"] + full["triplet_untied_B"]) / 2
    assert {k: v for k, v in cheap.items() if v is not None} == {k: v for k, v in full.items() if k not in FULL_SET}
    assert all(isinstance(full[k], float) for k in FULL_SET)
    assert evaluate(model, data, split, **kw) == full  # a cheap call in between changes nothing (fresh generator)
