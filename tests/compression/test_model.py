"""The autoencoder of Dumas et al. 2018: shapes, the two variants, parameter counts, meta-device construction."""
import pytest
import torch

from sweeplab.tasks.compression.config import CompressionConfig
from sweeplab.tasks.compression.layers import GDN, ConvSame, ConvTransposeSame
from sweeplab.tasks.compression.model import DELTA_MAX, DELTA_MIN, Autoencoder, build_model


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("quantization", ["fixed-step", "learned-step"])
@pytest.mark.parametrize("size", [(256, 256), (64, 96)])
def test_shapes(quantization, size):
    torch.manual_seed(0)
    model = Autoencoder(128, quantization)
    x = torch.rand(2, 1, *size) * 255
    out = model(x)
    assert set(out) == {"x_hat", "y", "y_tilde"}
    h, w = size[0] // 16, size[1] // 16
    assert out["y"].shape == out["y_tilde"].shape == (2, 128, h, w)
    assert out["x_hat"].shape == x.shape
    torch.testing.assert_close(model.encode(x), out["y"])
    assert model.decode(out["y"]).shape == x.shape


def test_noise_is_uniform_of_width_delta():
    torch.manual_seed(0)
    model = Autoencoder(8, "learned-step", delta_init=2.0)
    with torch.no_grad():
        model.delta.copy_(torch.linspace(0.8, 4.0, 8))
    out = model(torch.rand(3, 1, 64, 64) * 255)
    noise = (out["y_tilde"] - out["y"]) / model.delta.view(1, -1, 1, 1)
    assert noise.abs().max() <= 0.5 + 1e-5 and noise.abs().max() > 0.4
    still = model(torch.rand(1, 1, 32, 32) * 255, noise=False)
    torch.testing.assert_close(still["y_tilde"], still["y"])


def test_variants():
    fixed, learned = Autoencoder(16, "fixed-step"), Autoencoder(16, "learned-step")
    assert isinstance(fixed.g_e[-1], GDN) and not fixed.g_e[-1].inverse
    assert isinstance(fixed.g_d[0], GDN) and fixed.g_d[0].inverse
    assert isinstance(learned.g_e[-1], ConvSame) and isinstance(learned.g_d[0], ConvTransposeSame)
    assert fixed.delta is None and torch.equal(fixed.steps(), torch.ones(16))
    assert learned.steps() is learned.delta and learned.delta.shape == (16,)
    assert sum(isinstance(l, GDN) for l in fixed.modules()) == 6
    assert sum(isinstance(l, GDN) for l in learned.modules()) == 4
    last = fixed.g_d[-1]
    assert isinstance(last, ConvTransposeSame) and last.bias is None and last.out_channels == 1


def test_parameter_counts():
    m = 128
    fixed, learned = Autoencoder(m, "fixed-step"), Autoencoder(m, "learned-step")
    gdn_pair = 2 * (m * m + m)
    assert gdn_pair == 33024  # Section 4: the normalisations {phi_e, phi_d} of cases 1 and 3
    assert _count(fixed) - _count(learned) == gdn_pair - m  # learned-step has the m steps delta_i instead
    convs = (81 * m + m) + 2 * (25 * m * m + m) + 2 * (25 * m * m + m) + 81 * m  # last transposed conv: no bias
    assert _count(learned) == convs + 4 * (m * m + m) + m
    assert (_count(fixed), _count(learned)) == (1758848, 1725952)


def test_build_model_on_meta_device():
    cfg = CompressionConfig(quantization="learned-step")
    with torch.device("meta"):
        model = build_model(cfg)
        out = model(torch.empty(1, 1, 512, 768))
    assert all(p.device.type == "meta" for p in model.parameters())
    assert out["x_hat"].shape == (1, 1, 512, 768) and out["y"].shape == (1, 128, 32, 48)
    assert build_model(CompressionConfig(codec="jpeg")) is None


def test_encode_rejects_sizes_not_multiple_of_16():
    with pytest.raises(ValueError, match="multiple of 16"):
        Autoencoder(8).encode(torch.zeros(1, 1, 40, 64))


def test_latent_means_and_step_clipping():
    torch.manual_seed(0)
    model = Autoencoder(8, "learned-step")
    assert torch.equal(model.latent_means, torch.zeros(8))
    images = [torch.rand(1, 1, 32, 48) * 255, torch.rand(2, 1, 64, 32) * 255]
    mu = model.set_latent_means(images)
    ys = [model.encode(x).detach() for x in images]
    expected = torch.cat([y.transpose(0, 1).reshape(8, -1) for y in ys], dim=1).mean(dim=1)
    torch.testing.assert_close(mu, expected)
    torch.testing.assert_close(model.latent_means, expected)
    with torch.no_grad():
        model.delta.copy_(torch.tensor([0.1, 0.5, 0.8, 1.0, 2.0, 4.0, 5.0, 100.0]))
    model.clip_steps()
    assert model.delta.min() == DELTA_MIN and model.delta.max() == DELTA_MAX
    assert model.delta[3] == 1.0
