"""Evaluation metrics, all independent of the loss weights, computed with a fixed evaluation seed.

None of these quantities is scaled by any arm's weights, so they compare arms fairly. Sampled coverage has a
ceiling: even a perfectly uniform sampler reaches only 1 - (1 - 1/19,683)^N (92.1% at N = 50,000), and it
rewards nearly uniform, untrained decoders; prior argmax coverage decodes the same prior samples by argmax,
which an untrained decoder cannot game. Triplet concordance r has one too: half of all triples tie in v3 and
score about 0.5 for any embedding, so r tops out near 0.75; ``triplet_untied`` scores the untied triples alone
(ceiling 1.0), see :func:`triplet_concordance`.

An epoch is evaluated in full (every field), or cheaply: the val split's loss, exact match, trit accuracy and
KL only, the full set (``FULL_SET``: everything over all 19,683 operations, the prior samples or the triples)
None. The config's ``eval.full_every`` / ``eval.full_epochs`` choose the epochs; a full evaluation gives the
same values whichever earlier epochs were evaluated cheaply.

With ``eval.test_split`` on (a study sets it for every run but its search trials), every evaluation also computes
the cheap fields on the held-out test split (``TEST_FIELDS``: ``test_loss_unweighted``, ``test_exact_match``,
``test_trit_acc``, ``test_kl``), with a generator of their own drawn after every other field, so that no val or
full-set field changes with it; off, the record has no test field at all.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .data import N_OPERATIONS, OperationSet, Split, trits_to_index, valuation3
from .losses import gaussian_kl, reconstruction_ce
from .model import DualVAE, Encoding, cross_inject


def sampled_coverage_ceiling(n_samples: int) -> float:
    """Expected coverage of a perfectly uniform sampler after ``n_samples`` draws."""
    return 1.0 - (1.0 - 1.0 / N_OPERATIONS) ** n_samples


def decoded_indices(logits: torch.Tensor) -> torch.Tensor:
    """argmax decoding of logits (..., 9, 3) into operation indices (...)."""
    return trits_to_index(logits.argmax(-1) - 1)


def categorical_draw(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One categorical draw per position from logits (..., 3): class indices (...), by inverse CDF.

    Works on the three class slices elementwise (a softmax over a last axis of 3 is several times slower on
    450,000 rows); same distribution as ``torch.multinomial``.
    """
    l0, l1, l2 = logits.unbind(-1)
    top = torch.maximum(torch.maximum(l0, l1), l2)
    e0, e1, e2 = (l0 - top).exp(), (l1 - top).exp(), (l2 - top).exp()
    u = torch.rand(l0.shape, generator=generator) * (e0 + e1 + e2)
    return (u > e0).long() + (u > e0 + e1).long()


def coverage(indices: torch.Tensor) -> float:
    """Distinct operations among ``indices`` / 19,683."""
    return float(torch.unique(indices).numel() / N_OPERATIONS)


def exact_match(logits: torch.Tensor, x: torch.Tensor) -> float:
    """Fraction of samples with all 9 trits right."""
    return float(((logits.argmax(-1) - 1) == x.long()).all(-1).float().mean())


def trit_accuracy(logits: torch.Tensor, x: torch.Tensor) -> float:
    return float(((logits.argmax(-1) - 1) == x.long()).float().mean())


class TripletConcordance(NamedTuple):
    """What :func:`triplet_concordance` measures on one set of triples.

    ``r`` and ``se``: the concordance over all triples (upstream's definition, ceiling about 0.75). ``untied``
    and ``untied_se``: the concordance over the untied triples alone (ceiling 1.0, random 0.5; NaN without any).
    ``tie_share``: the share of the triples tied in v3.
    """

    r: float
    se: float
    untied: float
    untied_se: float
    tie_share: float


def triplet_concordance(
    z: torch.Tensor, index: torch.Tensor, n_triplets: int, generator: torch.Generator
) -> TripletConcordance:
    """Triplet concordance r, its standard error, and the same on the untied triples.

    r = mean([v3(|i-j|) > v3(|i-k|)] == [|z_i - z_j| < |z_i - z_k|]) over random triples of distinct positions
    of ``index``, se = sqrt(r(1 - r)/n). On a tied triple (v3(|i-j|) == v3(|i-k|)) "3-adically closer" is false
    and any embedding is right about half the time. The tie share s is about 50%: at the default evaluation
    (5,000 indices, 20,000 triples, eval.seed 0) 50.0% for A and 49.6% for B; (3^9 + 1) / (2 (3^9 - 1)) =
    0.50005 in theory. So

        r = s * (agreement on tied triples) + (1 - s) * untied,

    where ``untied`` = c is r's indicator on the untied triples alone: the share whose latent order matches the
    3-adic order (ceiling 1.0, random 0.5, NaN when no triple is untied), untied_se = sqrt(c(1 - c)/n_untied).
    Random embeddings score r = 0.5 and r's ceiling is 0.5 * s + (1 - s), about 0.75; the tied half adds only
    binomial noise. The untied fields mask the very triples of r (no further draws), so r, se and every later
    draw from ``generator`` stay what they were.
    """
    n = len(index)
    i = torch.randint(0, n, (n_triplets,), generator=generator)
    j = (i + torch.randint(1, n, (n_triplets,), generator=generator)) % n
    k = torch.randint(0, n, (n_triplets,), generator=generator)
    clash = (k == i) | (k == j)
    while bool(clash.any()):
        k[clash] = torch.randint(0, n, (int(clash.sum()),), generator=generator)
        clash = (k == i) | (k == j)
    v_ij, v_ik = valuation3(index[i] - index[j]), valuation3(index[i] - index[k])
    closer_3adic = v_ij > v_ik
    closer_latent = (z[i] - z[j]).norm(dim=-1) < (z[i] - z[k]).norm(dim=-1)
    hits = (closer_3adic == closer_latent).double()
    r = float(hits.mean())
    se = math.sqrt(r * (1 - r) / n_triplets) if n_triplets > 1 else float("nan")
    untied = v_ij != v_ik
    n_untied = int(untied.sum())
    c = float(hits[untied].mean()) if n_untied else float("nan")
    c_se = math.sqrt(c * (1 - c) / n_untied) if n_untied > 1 else float("nan")
    return TripletConcordance(r, se, c, c_se, (n_triplets - n_untied) / n_triplets)


def latent_variance(mu: torch.Tensor) -> float:
    """Mean per-dimension variance of the codes (> 0.1 healthy)."""
    return float(mu.var(dim=0).mean())


def effective_dimension(mu: torch.Tensor) -> float:
    """exp(entropy of the normalised covariance eigenvalues) of the codes (> 8 of 16 healthy)."""
    cov = torch.cov(mu.T.double())
    eig = torch.linalg.eigvalsh(cov).clamp(min=0)
    total = eig.sum()
    if total <= 0:
        return 0.0
    p = eig / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


# Rows per forward pass in evaluation: 2,048 rows keep the 128-wide activations in cache; measured here about
# 2x faster than one pass over 50,000 rows on one thread.
CHUNK = 2048


def encode_in_chunks(model: DualVAE, x: torch.Tensor) -> Encoding:
    parts = [model.encode(part) for part in x.split(CHUNK)]
    return Encoding(torch.cat([p.mu for p in parts], 1), torch.cat([p.logvar for p in parts], 1))


def decode_in_chunks(model: DualVAE, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``model.decode`` of codes (2, N, latent) in row chunks."""
    parts = [model.decode(part) for part in z.split(CHUNK, dim=1)]
    return torch.cat([a for a, _ in parts]), torch.cat([b for _, b in parts])


# Fields of the full set: over all 19,683 operations, the prior samples and the triples. An epoch evaluated
# without them (``full=False``) has them as None; the cheap rest reads only the val split.
TRIPLET = ("triplet_r", "triplet_r_se", "triplet_untied", "triplet_untied_se", "triplet_tie_share")
# Both VAEs in one number: the mean of their untied concordances (a study that ranks on it judges A and B alike).
BOTH_UNTIED = "triplet_untied_AB"
FULL_SET_PER_VAE = ("recon_coverage", "sampled_coverage", "prior_argmax_coverage", "latent_var", "eff_dim", *TRIPLET,
                    "recon_coverage_at_rho")
PER_VAE = ("val_exact_match", "val_trit_acc", "recon_coverage", "sampled_coverage", "prior_argmax_coverage", "kl",
           "latent_var", "eff_dim")
AT_RHO = ("val_exact_match_at_rho", "recon_coverage_at_rho")
VAES = ("A", "B")


# The cheap fields again on the held-out test split (``evaluate(..., test=True)``), and the val field each repeats:
# val_loss_unweighted, val_exact_match, val_trit_acc and kl are all on the val split (``kl`` has no prefix).
TEST_LOSS = "test_loss_unweighted"
TEST_PER_VAE = ("test_exact_match", "test_trit_acc", "test_kl")
TEST_COUNTERPART = {"val_loss_unweighted": TEST_LOSS,
                    **{f"{m}_{v}": f"{t}_{v}" for v in VAES
                       for m, t in zip(("val_exact_match", "val_trit_acc", "kl"), TEST_PER_VAE)}}
TEST_FIELDS = (TEST_LOSS, *(f"{m}_{v}" for v in VAES for m in TEST_PER_VAE))
# The test generator's seed is eval.seed + this: its own draws, never the val split's (which keep their values).
TEST_SEED_OFFSET = 1_000_003


def counterpart_on_test(metric: str) -> str | None:
    """The test-split field measuring what the val-split field ``metric`` measures (``val_exact_match_A`` ->
    ``test_exact_match_A``, ``kl_B`` -> ``test_kl_B``); None for a field without one (the full set, which is over
    all 19,683 operations, the prior samples or the triples; the fields at rho; the control signals)."""
    return TEST_COUNTERPART.get(metric)


def metric_names(with_rho: bool, with_test: bool = False) -> list[str]:
    """Every field :func:`evaluate` returns, in its order (the test fields last, only ``with_test``)."""
    names = ["val_loss_unweighted"]
    names += [f"{m}_{v}" for v in VAES for m in PER_VAE]
    names += [f"{m}_{v}" for v in VAES for m in TRIPLET]
    names.append(BOTH_UNTIED)
    names += [f"{m}_{v}" for v in VAES for m in AT_RHO] if with_rho else []
    names += list(TEST_FIELDS) if with_test else []
    return names


# Fields that may be undefined (NaN) in a healthy run: a standard error of fewer than two samples, and the
# untied concordance of triples that all tie. Any other non-finite metric marks the run diverged (diffctl.train).
# The test fields never do: a run's status (which the study's picks read) must not depend on the test split.
MAY_BE_UNDEFINED = frozenset(
    [*(f"{m}_{v}" for m in ("triplet_r_se", "triplet_untied", "triplet_untied_se") for v in VAES), BOTH_UNTIED,
     *TEST_FIELDS])
FULL_SET = frozenset([*(f"{m}_{v}" for m in FULL_SET_PER_VAE for v in VAES), BOTH_UNTIED])


def recon_coverage(logits: torch.Tensor, data: OperationSet) -> float:
    """Fraction of all 19,683 operations that argmax decoding of ``logits`` (one row each) reproduces exactly."""
    return float((decoded_indices(logits) == data.index).float().mean())


def _full_set(
    model: DualVAE,
    data: OperationSet,
    mu: torch.Tensor,
    logits_all: tuple[torch.Tensor, torch.Tensor],
    g: torch.Generator,
    prior_samples: int,
    triplet_indices: int,
    triplets: int,
) -> dict[str, float]:
    """The full set of both VAEs from the codes ``mu`` and the decoded logits of all operations; draws from ``g``
    in a fixed order (prior samples, their categorical draws, the triplet indices, the triples)."""
    out: dict[str, float] = {}
    prior_z = torch.randn((prior_samples, model.latent_dim), generator=g)
    for v, name in enumerate(VAES):
        out[f"recon_coverage_{name}"] = recon_coverage(logits_all[v], data)
        decoder = (model.vae_a, model.vae_b)[v].decoder
        prior_logits = torch.cat([decoder(part) for part in prior_z.split(CHUNK)])
        out[f"sampled_coverage_{name}"] = coverage(trits_to_index(categorical_draw(prior_logits, g) - 1))
        out[f"prior_argmax_coverage_{name}"] = coverage(decoded_indices(prior_logits))
        out[f"latent_var_{name}"] = latent_variance(mu[v])
        out[f"eff_dim_{name}"] = effective_dimension(mu[v])
    idx = torch.randperm(N_OPERATIONS, generator=g)[:triplet_indices]
    for v, name in enumerate(VAES):
        concordance = triplet_concordance(mu[v][idx], data.index[idx], triplets, g)
        out[f"triplet_r_{name}"] = concordance.r
        out[f"triplet_r_se_{name}"] = concordance.se
        out[f"triplet_untied_{name}"] = concordance.untied
        out[f"triplet_untied_se_{name}"] = concordance.untied_se
        out[f"triplet_tie_share_{name}"] = concordance.tie_share
    out[BOTH_UNTIED] = (out["triplet_untied_A"] + out["triplet_untied_B"]) / 2
    return out


@torch.inference_mode()
def evaluate(
    model: DualVAE,
    data: OperationSet,
    split: Split,
    *,
    seed: int,
    prior_samples: int,
    triplet_indices: int,
    triplets: int,
    temperature: float = 1.0,
    rho: float | None = None,
    full: bool = True,
    test: bool = False,
) -> dict[str, float | None]:
    """Every per-epoch metric of both VAEs. With ``rho``, also the reconstruction metrics at that rho.

    Codes are z = mu except for the unweighted validation loss, whose CE uses z sampled with the evaluation
    seed (the negative ELBO: CE_A + CE_B + KL_A + KL_B, beta = 1, true KL, no free-bits floor). Without
    ``full``, only the cheap fields on the val split are computed (about a tenth of the work), the full set is
    None. The generator is seeded from ``seed`` at every call and the cheap fields draw first, so a field has
    the same value whichever earlier epochs were evaluated in full. With ``test``, also the cheap fields on the
    test split (:data:`TEST_FIELDS`, defined as their val counterparts), computed last with a generator of their
    own (seeded ``seed + TEST_SEED_OFFSET``): every other field has the value it has without ``test``.
    """
    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    val = split.val
    x_val = data.trits[val]
    enc_all, logits_all = None, None
    if full:
        enc_all = encode_in_chunks(model, data.trits)
        logits_all = decode_in_chunks(model, enc_all.mu)
    enc_val, logits_val = _rows(model, data, val, enc_all, logits_all)
    out: dict[str, float | None] = {}
    loss, per_vae = _cheap(model, enc_val, logits_val, x_val, temperature, g)
    out["val_loss_unweighted"] = loss
    for v, name in enumerate(VAES):
        out[f"val_exact_match_{name}"], out[f"val_trit_acc_{name}"], out[f"kl_{name}"] = per_vae[v]
    if rho is not None:
        logits_rho = decode_in_chunks(model, cross_inject(enc_all.mu if full else enc_val.mu, torch.tensor(rho)))
        for v, name in enumerate(VAES):
            at_val = logits_rho[v][val] if full else logits_rho[v]
            out[f"val_exact_match_at_rho_{name}"] = exact_match(at_val, x_val)
            if full:
                out[f"recon_coverage_at_rho_{name}"] = recon_coverage(logits_rho[v], data)
    if full:
        out.update(_full_set(model, data, enc_all.mu, logits_all, g, prior_samples, triplet_indices, triplets))
    if test:  # last, from a generator of its own: nothing above draws or computes anything else with it on
        g_test = torch.Generator().manual_seed(seed + TEST_SEED_OFFSET)
        enc_test, logits_test = _rows(model, data, split.test, enc_all, logits_all)
        loss, per_vae = _cheap(model, enc_test, logits_test, data.trits[split.test], temperature, g_test)
        out[TEST_LOSS] = loss
        for v, name in enumerate(VAES):
            for field, value in zip(TEST_PER_VAE, per_vae[v]):
                out[f"{field}_{name}"] = value
    model.train(was_training)
    return {key: out.get(key) for key in metric_names(rho is not None, test)}


def _rows(
    model: DualVAE,
    data: OperationSet,
    rows: torch.Tensor,
    enc_all: Encoding | None,
    logits_all: tuple[torch.Tensor, torch.Tensor] | None,
) -> tuple[Encoding, tuple[torch.Tensor, torch.Tensor]]:
    """The codes and decoded logits of one split's ``rows``: sliced from the pass over all operations when there
    is one, else from a pass over those rows alone (bit for bit the same slices, tests/test_metrics.py)."""
    if enc_all is not None and logits_all is not None:
        return Encoding(enc_all.mu[:, rows], enc_all.logvar[:, rows]), (logits_all[0][rows], logits_all[1][rows])
    enc = encode_in_chunks(model, data.trits[rows])
    return enc, decode_in_chunks(model, enc.mu)


def _cheap(
    model: DualVAE,
    enc: Encoding,
    logits: tuple[torch.Tensor, torch.Tensor],
    x: torch.Tensor,
    temperature: float,
    g: torch.Generator,
) -> tuple[float, list[tuple[float, float, float]]]:
    """The cheap fields of one split: the unweighted loss (CE at z sampled from ``g``, plus KL), and per VAE its
    (exact match, trit accuracy, KL)."""
    z = DualVAE.sample(enc, temperature, g)
    ce = torch.stack([reconstruction_ce(lg, x) for lg in model.decode(z)])
    kl = gaussian_kl(enc.mu, enc.logvar).sum(-1).mean(-1)
    per_vae = [(exact_match(logits[v], x), trit_accuracy(logits[v], x), float(kl[v])) for v in range(len(VAES))]
    return float(ce.sum() + kl.sum()), per_vae
