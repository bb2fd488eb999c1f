"""Wan et al. 2020 losses against hand computations: LSGAN summed over scales, feature matching's pix2pixHD
weights, the reduced KL, the weighted VGG loss, the class-balanced cross-entropy."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sweeplab.tasks.restoration.losses import (VGGLoss, class_balanced_bce, feature_matching, kl_reduced,
                                               lsgan)


def _preds(value: float, scales: int = 2, layers: int = 5) -> list[list[torch.Tensor]]:
    return [[torch.full((1, 2, 3, 3), value) for _ in range(layers)] for _ in range(scales)]


def test_lsgan_zero_at_the_target_and_summed_over_scales():
    assert lsgan(_preds(1.0), True) == 0 and lsgan(_preds(0.0), False) == 0
    preds = _preds(0.5)
    preds[1][-1] = torch.full((1, 1, 4, 4), 3.0)
    assert lsgan(preds, True).item() == pytest.approx(0.25 + 4.0)
    assert lsgan(preds, False).item() == pytest.approx(0.25 + 9.0)


def test_feature_matching_weights_and_detached_real():
    real = [[t.requires_grad_() for t in scale] for scale in _preds(0.2, layers=4)]  # n_layers = 2
    assert feature_matching(_preds(0.2, layers=4), real) == 0
    fake = _preds(0.2, layers=4)
    fake[0][-1] = fake[0][-1] + 5  # the prediction layer is not matched
    assert feature_matching(fake, real) == 0
    fake[0][1] = fake[0][1] + 1  # one intermediate layer of scale 0 off by 1: (1 / 2) (4 / (2 + 1)) 1
    fake[1][0] = fake[1][0].requires_grad_()
    loss = feature_matching(fake, real)
    assert loss.item() == pytest.approx(2 / 3)
    loss.backward()
    assert all(t.grad is None for scale in real for t in scale) and fake[1][0].grad is not None


def test_kl_reduced_is_the_mean_square():
    mean = torch.tensor([[1.0, -2.0], [3.0, 0.0]])
    assert kl_reduced(mean).item() == pytest.approx((1 + 4 + 9 + 0) / 4)


class _Scaled(nn.Module):
    def forward(self, x):
        return [x * (k + 1) for k in range(5)]


def test_vgg_loss_weights_the_five_levels():
    x, y = torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2)
    loss = VGGLoss(_Scaled())
    assert loss(y, y) == 0
    assert loss(x, y).item() == pytest.approx(sum(w * (k + 1) for k, w in enumerate((1 / 32, 1 / 16, 1 / 8, 1 / 4, 1))))


def _bce(logit: float, y: int, alpha: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return alpha * -math.log(p) if y else (1 - alpha) * -math.log(1 - p)


def test_class_balanced_bce_matches_a_hand_computation():
    logits = torch.tensor([[[[2.0, -1.0], [0.5, -3.0]]], [[[0.0, 1.0], [-2.0, 4.0]]]])
    target = torch.tensor([[[[1, 0], [0, 0]]], [[[1, 1], [0, 1]]]])
    alphas = (3 / 4, 1 / 4)  # fraction of intact pixels per image
    hand = [_bce(logits[b].flatten()[i].item(), int(target[b].flatten()[i]), alphas[b]) for b in range(2)
            for i in range(4)]
    assert class_balanced_bce(logits, target).item() == pytest.approx(sum(hand) / 8)
    assert torch.isfinite(class_balanced_bce(torch.tensor([[[[100.0, -100.0]]]]), torch.tensor([[[[0, 1]]]])))


def test_rare_scratch_pixels_weigh_more():
    logits = torch.zeros(1, 1, 4, 4, requires_grad=True)
    target = torch.zeros(1, 1, 4, 4)
    target[0, 0, 1, 2] = 1  # one scratch pixel in 16
    class_balanced_bce(logits, target).backward()
    grad = logits.grad.abs()[0, 0]
    assert grad[1, 2] > 10 * grad[0, 0]  # alpha = 15/16 against 1/16 at p = 1/2
