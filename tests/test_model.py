import pytest
import torch

from diffctl.model import DualVAE, cross_inject, param_count


def test_parameter_counts():
    model = DualVAE()
    assert param_count(model.vae_a) == 50_203
    assert param_count(model.vae_b) == 117_499


def test_encode_stacks_both_encoders():
    torch.manual_seed(0)
    model = DualVAE()
    x = torch.randint(-1, 2, (32, 9)).float()
    enc = model.encode(x)
    for v, vae in enumerate((model.vae_a, model.vae_b)):
        mu, logvar = vae.encoder(x)
        assert torch.allclose(enc.mu[v], mu, atol=1e-6)
        assert torch.allclose(enc.logvar[v], logvar, atol=1e-6)
    la, lb = model.decode(enc.mu)
    assert la.shape == lb.shape == (32, 9, 3)


def test_temperature_scales_the_noise_only():
    torch.manual_seed(0)
    model = DualVAE()
    enc = model.encode(torch.zeros(4, 9))
    z1 = DualVAE.sample(enc, 1.0, torch.Generator().manual_seed(3))
    z2 = DualVAE.sample(enc, 2.0, torch.Generator().manual_seed(3))
    assert torch.allclose(z2 - enc.mu, 2 * (z1 - enc.mu), atol=1e-6)


@pytest.mark.parametrize("shape", [(), (8, 1), (1, 16)])
def test_cross_injection_rho_shapes_and_stop_gradient(shape):
    z = torch.randn(2, 8, 16, requires_grad=True)
    rho = torch.full(shape, 0.3, requires_grad=True)
    mixed = cross_inject(z, rho)
    assert mixed.shape == (2, 8, 16)
    assert torch.allclose(mixed[0], 0.7 * z[0] + 0.3 * z[1])
    # gradient of decoder A's input reaches z_A and rho, not z_B (stop-gradient)
    gz, grho = torch.autograd.grad(mixed[0].sum(), (z, rho))
    assert torch.allclose(gz[0], torch.full((8, 16), 0.7))
    assert float(gz[1].abs().sum()) == 0.0
    assert float(grho.abs().sum()) > 0
