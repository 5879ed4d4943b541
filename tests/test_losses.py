import math

import torch

from diffctl.losses import (
    UNIFORM_CE,
    decoder_entropy,
    entropy_alignment,
    free_bits_kl,
    gaussian_kl,
    reconstruction_ce,
    sample_triples,
    triplet_ranking_loss,
)


def test_reconstruction_ce_uniform_and_perfect():
    x = torch.randint(-1, 2, (16, 9)).float()
    assert math.isclose(float(reconstruction_ce(torch.zeros(16, 9, 3), x)), UNIFORM_CE, rel_tol=1e-6)
    assert math.isclose(UNIFORM_CE, 9.8875, abs_tol=1e-4)
    perfect = torch.nn.functional.one_hot(x.long() + 1, 3).float() * 50
    assert float(reconstruction_ce(perfect, x)) < 1e-6


def test_free_bits_floor():
    mu = torch.zeros(4, 16, requires_grad=True)
    logvar = torch.zeros(4, 16)
    kl = free_bits_kl(mu, logvar, 0.5)
    assert float(kl.detach()) == 8.0  # 16 dims x 0.5 floor
    (g,) = torch.autograd.grad(kl, mu)
    assert float(g.abs().sum()) == 0.0  # below the floor: no gradient
    mu2 = torch.full((4, 16), 2.0)
    assert math.isclose(float(free_bits_kl(mu2, logvar)), 16 * 2.0, rel_tol=1e-6)
    assert math.isclose(float(gaussian_kl(mu2, logvar).sum(-1).mean()), 32.0, rel_tol=1e-6)


def test_triplet_loss_prefers_3adic_neighbours():
    index = torch.tensor([0, 9, 1])  # v3(0-9)=2 > v3(0-1)=0: 9 is the 3-adic neighbour of 0
    triples = torch.tensor([[0, 1, 2]])
    good = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0]])
    bad = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.1, 0.0]])
    assert float(triplet_ranking_loss(good, index, triples)) == 0.0
    assert math.isclose(float(triplet_ranking_loss(bad, index, triples)), 5.0, rel_tol=1e-6)
    # the reversed triple does not qualify (d3(a,p) > d3(a,n)): zero loss with a graph
    z = bad.clone().requires_grad_()
    loss = triplet_ranking_loss(z, index, torch.tensor([[0, 2, 1]]))
    assert float(loss.detach()) == 0.0 and loss.requires_grad


def test_triplet_loss_is_batched_over_the_two_vaes():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 64, 16, generator=g)
    index = torch.randperm(19_683, generator=g)[:64]
    triples = sample_triples(64, 500, g)
    both = triplet_ranking_loss(z, index, triples)
    assert both.shape == (2,)
    assert torch.allclose(both[1], triplet_ranking_loss(z[1], index, triples))


def test_entropy_is_differentiable():
    logits = torch.zeros(8, 9, 3, requires_grad=True)
    h = decoder_entropy(logits)
    assert math.isclose(float(h.detach()), math.log(3), rel_tol=1e-6)
    peaked = torch.zeros(8, 9, 3)
    peaked[..., 0] = 30
    assert float(decoder_entropy(peaked)) < 1e-6
    other = torch.randn(8, 9, 3)
    (g,) = torch.autograd.grad(entropy_alignment(decoder_entropy(other.requires_grad_()), h.detach()), other)
    assert float(g.norm()) > 0
