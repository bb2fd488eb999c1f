"""Wan et al. 2020 networks: parameter counts against REFERENCES.md and hand counts (meta device), shapes at tiny
sizes, the mask on the latent grid, the partial nonlocal block against its formula and the plain block, the VGG19
loader's round trip and errors, the inference path."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from sweeplab.cost import count
from sweeplab.tasks.restoration.networks import (VAE, BlurPool, Mapping, MultiscaleDiscriminator, PartialNonLocal,
                                                 RestorationPath, ScratchUNet, VGG19Features, latent_discriminator,
                                                 latent_hole, load_vgg19, nonlocal_attention)


def conv(k: int, c_in: int, c_out: int) -> int:
    return k * k * c_in * c_out + c_out


def test_parameter_counts_and_vae_cost_at_the_defaults():
    params, gmacs, _ = count(VAE, (1, 3, 256, 256))
    assert params == 872_131 and gmacs == pytest.approx(6.3, abs=0.05)
    assert count(lambda: VAE().encoder, (1, 3, 16, 16))[0] == 436_096
    assert count(lambda: VAE().decoder, (1, 64, 4, 4))[0] == 436_035
    res = 2 * conv(3, 512, 512)
    head = conv(3, 64, 128) + conv(3, 128, 256) + conv(3, 256, 512) + conv(3, 512, 512)
    tail = conv(3, 512, 512) + conv(3, 512, 256) + conv(3, 256, 128) + conv(3, 128, 64)
    plain, block = head + 6 * res + tail, 4 * conv(1, 512, 512) + 3 * res
    assert count(Mapping, (1, 64, 8, 8))[0] == plain and round(plain / 1e6, 1) == 36.1
    with_block = count(lambda: Mapping(nonlocal_block=True), ((1, 64, 8, 8), (1, 1, 32, 32)))[0]
    assert with_block == plain + block and round(with_block / 1e6, 1) == 51.3
    assert round(count(ScratchUNet, (1, 1, 32, 32))[0] / 1e6, 1) == 37.6


def test_vae_latent_reconstruction_and_sampling():
    vae, x = VAE(), torch.rand(2, 3, 16, 20) * 2 - 1
    z = vae.encode(x)
    assert z.shape == (2, 64, 4, 5)
    y = vae(x)
    assert y.shape == x.shape and y.abs().max() <= 1 and torch.equal(y, vae.decode(z))
    noise = VAE.sample(torch.zeros(1, 64, 32, 32))
    assert noise.std().item() == pytest.approx(1.0, abs=0.05)


def _patch_sizes(n: int, n_layers: int) -> list[int]:
    sizes = []
    for layer in range(n_layers + 2):  # kernel 4, padding 2: stride 2 -> n // 2 + 1, stride 1 -> n + 1
        n = n // 2 + 1 if layer < n_layers else n + 1
        sizes.append(n)
    return sizes


def test_discriminators_give_every_layer_of_every_scale():
    d = MultiscaleDiscriminator(6, num_d=2, n_layers=3, ndf=8, spectral_norm=True)
    out = d(torch.randn(1, 6, 32, 32))
    assert len(out) == 2 and all(len(scale) == 5 for scale in out)
    for scale, n in zip(out, (32, 16)):
        assert [t.shape[1] for t in scale] == [8, 16, 32, 64, 1]
        assert [t.shape[-1] for t in scale] == _patch_sizes(n, 3)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 10 and all(nn.utils.parametrize.is_parametrized(m, "weight") for m in convs)
    latent = latent_discriminator(8)(torch.randn(2, 8, 16, 16))
    assert len(latent) == 1 and latent[0][-1].shape == (2, 1, *[_patch_sizes(16, 3)[-1]] * 2)


def test_latent_hole_marks_exactly_the_cell_of_a_hole_pixel():
    for i, j in [(0, 0), (13, 6), (23, 23), (4, 19), (11, 8)]:
        mask = torch.zeros(1, 1, 24, 24)
        mask[0, 0, i, j] = 1
        expected = torch.zeros(1, 1, 6, 6)
        expected[0, 0, i // 4, j // 4] = 1
        assert torch.equal(latent_hole(mask, (6, 6)), expected)


def test_mapping_shapes_and_mask_reaching_the_block():
    z, mask = torch.randn(2, 8, 6, 6), torch.zeros(2, 1, 24, 24)
    mask[1, 0, 13, 6] = 1
    plain = Mapping(channels=8, width=16, n_res=1)
    assert plain(z).shape == z.shape and torch.equal(plain(z, mask), plain(z))
    mapping = Mapping(channels=8, width=16, n_res=1, nonlocal_block=True)
    seen = []
    mapping.nonlocal_block.register_forward_pre_hook(lambda module, args: seen.append(args[1]))
    assert mapping(z, mask).shape == z.shape
    assert torch.equal(seen[0], latent_hole(mask, (6, 6))) and seen[0].sum() == 1


def _hand_attention(theta, phi, hole):
    logits = torch.einsum("bci,bcj->bij", theta, phi)
    f = logits.exp() / logits.exp().sum(-1, keepdim=True)
    masked = (1 - hole)[:, None, :] * f
    return f, masked / masked.sum(-1, keepdim=True)


def test_partial_attention_drops_hole_columns_and_renormalises_rows():
    torch.manual_seed(0)
    theta, phi = torch.randn(2, 4, 15), torch.randn(2, 4, 15)
    hole = (torch.rand(2, 15) < 0.4).float()
    hole[:, 0] = 0
    s = nonlocal_attention(theta, phi, hole)
    f, expected = _hand_attention(theta, phi, hole)
    assert torch.allclose(s, expected, atol=1e-6)
    assert torch.all(s.masked_select(hole.bool()[:, None, :].expand_as(s)) == 0)
    assert torch.allclose(s.sum(-1), torch.ones(2, 15))
    assert torch.allclose(nonlocal_attention(theta, phi, torch.zeros(2, 15)), f, atol=1e-6)
    everywhere = nonlocal_attention(theta, phi, torch.ones(2, 15))  # no intact position: falls back to f
    assert torch.allclose(everywhere, f, atol=1e-6)


def test_partial_nonlocal_block_plain_case_and_fusion():
    torch.manual_seed(0)
    block = PartialNonLocal(channels=4, n_res=1)
    assert torch.all(block.W.weight == 0)
    nn.init.normal_(block.W.weight, 0.0, 0.5)  # a nonzero global branch, so the checks below can fail
    x = torch.randn(2, 4, 3, 5)
    none = torch.zeros(2, 1, 3, 5)
    f = nonlocal_attention(block.theta(x).flatten(2), block.phi(x).flatten(2))
    assert torch.allclose(block.attention(x, none), f, atol=1e-7)
    assert torch.allclose(block.global_branch(x, none), block.plain(x), atol=1e-6)
    assert torch.equal(block(x, none), x)
    hole = torch.zeros(2, 1, 3, 5)
    hole[0, 0, 1, 2] = hole[1, 0, 0, :2] = 1
    z, y = block(x, hole), block.global_branch(x, hole)
    intact = (hole == 0).expand_as(x)
    assert torch.equal(z[intact], x[intact]) and torch.equal(z[~intact], y[~intact])
    assert not torch.allclose(y, block.plain(x))  # the mask changed the attention


def test_scratch_unet_logits_shape_and_blur_pool():
    net = ScratchUNet(base=4, depth=2)
    assert net(torch.rand(2, 1, 16, 12) * 2 - 1).shape == (2, 1, 16, 12)
    blur = BlurPool(3)(torch.full((1, 3, 8, 6), 0.7))
    assert blur.shape == (1, 3, 4, 3) and torch.allclose(blur, torch.full_like(blur, 0.7))


@pytest.fixture(scope="module")
def vgg():
    return VGG19Features()


def test_vgg19_features_layout_outputs_and_normalisation(vgg):
    convs = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28)  # torchvision's vgg19 features indices to conv5_1
    assert set(vgg.state_dict()) == {f"features.{i}.{p}" for i in convs for p in ("weight", "bias")}
    assert not any(p.requires_grad for p in vgg.parameters())
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    outs = vgg(x)
    assert [(o.shape[1], o.shape[-1]) for o in outs] == [(64, 16), (128, 8), (256, 4), (512, 2), (512, 1)]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)  # ImageNet's, as torchvision's weights expect
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    vgg.imagenet_norm = False  # the same weights on the input normalised by hand
    try:
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(vgg(((x + 1) / 2 - mean) / std), outs))
        assert not torch.allclose(vgg(x)[0], outs[0], atol=1e-5)
    finally:
        vgg.imagenet_norm = True


def test_load_vgg19_round_trip_and_errors(tmp_path, vgg):
    state = vgg.state_dict()
    extra = {"features.30.weight": torch.zeros(512, 512, 3, 3), "classifier.0.weight": torch.zeros(4, 4)}
    path = tmp_path / "vgg19.pth"
    torch.save({**state, **extra}, path)
    loaded = load_vgg19(path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items()) and not loaded.training
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        load_vgg19(tmp_path / "absent.pth")
    (tmp_path / "text.pth").write_text("not weights")
    with pytest.raises(ValueError, match="text.pth"):
        load_vgg19(tmp_path / "text.pth")
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "short.pth")
    with pytest.raises(ValueError, match=r"short.pth.*missing.*features\.28\.weight"):
        load_vgg19(tmp_path / "short.pth")
    torch.save({"features.0.weight": torch.zeros(64, 1, 3, 3)}, tmp_path / "grey.pth")
    with pytest.raises(ValueError, match=r"grey.pth.*wrong shape \['features\.0\.weight"):
        load_vgg19(tmp_path / "grey.pth")


def test_restoration_path_composes_encoder_mapping_decoder():
    vae1, vae2 = VAE(ngf=8, n_res=1), VAE(ngf=8, n_res=1)
    mapping = Mapping(channels=8, width=16, n_res=1, nonlocal_block=True)
    x, mask = torch.rand(1, 3, 16, 16) * 2 - 1, torch.zeros(1, 1, 16, 16)
    mask[0, 0, 5, 9] = 1
    path = RestorationPath(vae1, mapping, vae2)
    assert torch.equal(path(x, mask), vae2.decode(mapping(vae1.encode(x), mask)))
    assert path(x).shape == x.shape
