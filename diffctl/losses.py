"""The loss terms, each a function returning a tensor. Weighting them is the arms' business, not this module's.

Terms of both VAEs are returned stacked as shape (2,) (index 0 = A, 1 = B), so an arm may weight the VAEs
separately (a scalar weight broadcasts over both).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .data import valuation3

UNIFORM_CE = 9 * math.log(3)  # reconstruction CE of a uniform prediction, summed over 9 positions


def reconstruction_ce(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Cross-entropy summed over the 9 positions, averaged over the batch.

    ``logits``: (..., B, 9, 3); ``x``: (B, 9) trits in {-1, 0, +1}. Returns shape ``logits.shape[:-3]``.
    """
    target = (x.long() + 1).expand(*logits.shape[:-1])
    logp = F.log_softmax(logits, dim=-1)
    nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return nll.sum(-1).mean(-1)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) per element, same shape as ``mu``."""
    return (mu.pow(2) + logvar.exp() - 1.0 - logvar).mul(0.5)


def free_bits_kl(mu: torch.Tensor, logvar: torch.Tensor, free_bits: float = 0.5) -> torch.Tensor:
    """KL with each (sample, dim) element clamped from below at ``free_bits``, summed over dims, batch mean.

    With 16 dims and a floor of 0.5 the term is >= 8 nats and has zero gradient below the floor.
    ``mu``/``logvar``: (..., B, latent) -> shape ``mu.shape[:-2]``.
    """
    return gaussian_kl(mu, logvar).clamp(min=free_bits).sum(-1).mean(-1)


def sample_triples(n: int, count: int, generator: torch.Generator | None) -> torch.Tensor:
    """``count`` random (anchor, positive, negative) position triples into a batch of ``n``: (count, 3)."""
    return torch.randint(0, n, (count, 3), generator=generator)


def triplet_ranking_loss(
    z: torch.Tensor, index: torch.Tensor, triples: torch.Tensor, margin: float = 0.1
) -> torch.Tensor:
    """3-adic triplet ranking loss on codes ``z`` (..., B, latent) of operations ``index`` (B,).

    Of the given (a, p, n) triples, keeps those with d3(a, p) < d3(a, n), i.e. v3(a - p) > v3(a - n), and returns
    the mean of relu(|z_a - z_p| - |z_a - z_n| + margin). Zero (with a graph) when no triple qualifies.
    """
    a, p, n = triples.unbind(-1)
    keep = valuation3(index[a] - index[p]) > valuation3(index[a] - index[n])
    if not bool(keep.any()):
        return (z * 0).sum(dim=(-1, -2))
    a, p, n = a[keep], p[keep], n[keep]
    za = z[..., a, :]
    d_ap = (za - z[..., p, :]).norm(dim=-1)
    d_an = (za - z[..., n, :]).norm(dim=-1)
    return F.relu(d_ap - d_an + margin).mean(-1)


def decoder_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Differentiable mean per-position categorical entropy of decoder outputs (..., B, 9, 3) -> (...)."""
    logp = F.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1).mean(dim=(-1, -2))


def entropy_alignment(h_a: torch.Tensor, h_b: torch.Tensor) -> torch.Tensor:
    """|H_A - H_B| on differentiable decoder entropies (upstream used a no-grad histogram, which never trained)."""
    return (h_a - h_b).abs()
