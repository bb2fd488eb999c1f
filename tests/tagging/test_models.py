"""Models of the tagging task (Ferraro et al. 2020, Tables I-III, Section VI): shapes on the meta device for every
Table II configuration, the Table I baseline, cost trends, and a real MUSICNN forward/backward."""
import dataclasses
import types

import pytest
import torch

from sweeplab.cost import model_cost
from sweeplab.tasks.tagging.config import TaggingConfig
from sweeplab.tasks.tagging.models import (MusiCNN, VGGCNN, build_model, input_frames, input_shape,
                                           patch_frames, vgg_pools)

TASK = types.SimpleNamespace(build_model=build_model, input_shape=input_shape, components=None)  # for model_cost
RATES = (12000, 16000)
TABLE_II = ([(sr, m, k) for sr in RATES for m in (128, 96, 48) for k in (1, 2, 3, 4, 5, 10)]
            + [(sr, m, 1) for sr in RATES for m in (32, 24, 16, 8)])


def cfg(**kw) -> TaggingConfig:
    return dataclasses.replace(TaggingConfig(), **kw)


def test_table_ii_has_54_configurations():
    assert len(TABLE_II) == len(set(TABLE_II)) == 2 * (3 * 6 + 4)


@pytest.mark.parametrize("sr, x1, x10", [(12000, 1366, 137), (16000, 1820, 182)])
def test_vgg_input_frames(sr, x1, x10):  # Section V / Table II text
    assert input_frames(cfg(sample_rate=sr, hop_factor=1)) == x1
    assert input_frames(cfg(sample_rate=sr, hop_factor=10)) == x10
    # keeping every k-th frame of the x1 spectrogram gives the same count
    for k in (2, 3, 4, 5):
        assert input_frames(cfg(sample_rate=sr, hop_factor=k)) == len(range(0, x1, k))


def test_musicnn_input_is_a_3s_patch():  # Section VI-B
    assert patch_frames(16000) == 187 and patch_frames(12000) == 140
    c = cfg(model="musicnn", sample_rate=16000, n_mels=48)
    assert input_frames(c) == 187 and input_shape(c) == (1, 1, 48, 187)


@pytest.mark.parametrize("sr, n_mels, k", TABLE_II)
def test_vgg_every_table_ii_configuration_reaches_1x1(sr, n_mels, k):
    c = cfg(sample_rate=sr, n_mels=n_mels, hop_factor=k)
    with torch.device("meta"):
        model = build_model(c)
        x = torch.empty(2, 1, n_mels, input_frames(c))
        pooled = model.features(x)
        out = model(x)
    assert pooled.shape == (2, 2048, 1, 1)  # the map the dense layer reads
    assert out.shape == (2, 50)
    assert input_shape(c) == (1, 1, n_mels, input_frames(c))


def test_vgg_table_i_baseline():
    assert vgg_pools(96, 12000, 1) == [(2, 4), (4, 5), (3, 8), (4, 8)]
    with torch.device("meta"):
        model = build_model(cfg())
        h = torch.empty(1, 1, 96, 1366)
        shapes = []
        for layer in model.features:
            h = layer(h)
            if isinstance(layer, torch.nn.MaxPool2d):
                shapes.append(tuple(h.shape[1:]))
    # Table I prints 48x341, 24x85, 12x21, 1x1: those are Choi et al.'s 5-layer (2,4),(2,4),(2,4),... chain and do
    # not follow from its own pools; the pools (2,4),(4,5),(3,8),(4,8) give these (channels, freq, time):
    assert shapes == [(128, 48, 341), (384, 12, 68), (768, 4, 8), (2048, 1, 1)]
    assert [m.out_channels for m in model.features if isinstance(m, torch.nn.Conv2d)] == [128, 384, 768, 2048]


def test_vgg_table_iii_rows():
    assert [t for _, t in vgg_pools(48, 12000, 10)] == [4, 5, 4, 1]
    assert [t for _, t in vgg_pools(128, 16000, 1)] == [4, 5, 9, 10]
    assert [t for _, t in vgg_pools(96, 16000, 3)] == [4, 5, 9, 3]
    assert [f for f, _ in vgg_pools(8, 16000, 1)] == [2, 2, 2, 1]
    assert [f for f, _ in vgg_pools(32, 12000, 1)] == [2, 2, 3, 2]
    with pytest.raises(ValueError, match="n_mels"):
        vgg_pools(64, 12000, 1)


def test_vgg_refuses_pools_that_do_not_reach_1x1():
    with pytest.raises(ValueError, match="not 1x1"):
        VGGCNN(96, 1366, [(2, 4), (4, 5), (3, 8), (4, 4)])


def test_vgg_gmacs_fall_with_fewer_bands_and_longer_hops():
    def gmacs(**kw):
        return model_cost(TASK, cfg(**kw)).gmacs

    for sr in RATES:
        by_mels = [gmacs(sample_rate=sr, n_mels=m) for m in (128, 96, 48, 32, 24, 16, 8)]
        assert all(a > b for a, b in zip(by_mels, by_mels[1:])), by_mels
        by_hop = [gmacs(sample_rate=sr, n_mels=96, hop_factor=k) for k in (1, 2, 3, 4, 5, 10)]
        assert all(a > b for a, b in zip(by_hop, by_hop[1:])), by_hop
    # Section VIII: 96 -> 48 bands and x1 -> x2 each cut the MACs by about half
    base = gmacs()
    assert 0.4 < gmacs(n_mels=48) / base < 0.6
    assert 0.4 < gmacs(hop_factor=2) / base < 0.6


def test_vgg_forward_backward_real_tensor():
    torch.manual_seed(0)
    model = VGGCNN(8, 64, [(2, 2), (2, 2), (2, 4), (1, 4)], n_tags=5)
    x = torch.randn(2, 1, 8, 64)
    out = model(x)
    out.sum().backward()
    assert out.shape == (2, 5)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_musicnn_forward_backward_real_tensor():
    torch.manual_seed(0)
    model = build_model(cfg(model="musicnn", n_mels=48, sample_rate=12000))
    x = torch.randn(3, 1, 48, patch_frames(12000))
    logits = model(x)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.randint(0, 2, (3, 50)).float())
    loss.backward()
    assert logits.shape == (3, 50) and torch.isfinite(logits).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    assert model(x[:1]).shape == (1, 50)  # eval mode: batch of one


def test_musicnn_filter_heights_follow_the_mel_bands():
    model = MusiCNN(96, 187)
    heights = sorted({b[0].kernel_size[0] for b in model.timbral})
    assert heights == [38, 86]  # Section IV: 38 x w and 86 x w at 96 bands
    # the paper's frequency x time shapes (Section IV), not the authors' script read literally (7 bands x 86 frames)
    assert sorted(b[0].kernel_size for b in model.timbral) == [(38, 1), (38, 3), (38, 7), (86, 1), (86, 3), (86, 7)]
    assert sorted(b[1].kernel_size[0] for b in model.temporal) == [32, 64, 128, 165]  # 1 x 32 ... 1 x 165
    assert sorted({b[0].kernel_size[0] for b in MusiCNN(8, 187).timbral}) == [3, 7]


@pytest.mark.parametrize("n_mels", (128, 96, 48, 32, 24, 16, 8))
@pytest.mark.parametrize("frames", (187, 5))
def test_musicnn_builds_for_every_band_count_and_short_inputs(n_mels, frames):
    with torch.device("meta"):
        model = MusiCNN(n_mels, frames)
        assert model(torch.empty(2, 1, n_mels, frames)).shape == (2, 50)


def test_musicnn_cost_falls_with_fewer_bands():
    costs = [model_cost(TASK, cfg(model="musicnn", n_mels=m, sample_rate=16000)) for m in (128, 96, 48)]
    assert costs[0].gmacs > costs[1].gmacs > costs[2].gmacs > 0
    assert costs[0].input_shape == ((1, 1, 128, 187),)  # one shape per input


def test_build_model_rejects_unknown_model():
    c = types.SimpleNamespace(model="crnn", n_mels=96, sample_rate=12000, hop_factor=1, n_tags=50)
    with pytest.raises(ValueError, match="crnn"):
        build_model(c)
