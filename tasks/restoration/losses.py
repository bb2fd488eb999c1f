"""Losses of old photo restoration (Wan et al., CVPR 2020), Sections 3.1 and 3.3, with the conventions of the
authors' code (pix2pixHD's, microsoft/Bringing-Old-Photos-Back-to-Life, Global/; /work/shared/REFERENCES.md):

* ``lsgan``: the least-squares GAN loss of L_{VAE,GAN}, L_{VAE1,GAN}^latent and L_{T,GAN}.
* ``feature_matching``: L_FM of the mapping stage (and of the VAEs, in the code).
* ``kl_reduced``: the KL term of L_VAE for the reduced VAE (sigma fixed at 1).
* ``VGGLoss``: the perceptual loss the code adds to the VAEs and the mapping.
* ``class_balanced_bce``: L_CE of the scratch detector (Section 3.3).

The loss weights (x 10 feature matching and VGG, x 60 latent L1, ...) are the caller's (the task's config).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

VGG_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)  # relu1_1 .. relu5_1


def lsgan(preds: Sequence[Sequence[torch.Tensor]], target_is_real: bool) -> torch.Tensor:
    """LSGAN (Mao et al. 2017): sum over the discriminator's scales of mean((D_k - t)^2), D_k each scale's last
    output (the patch prediction), t = 1 (real) or 0 (fake). Summed over scales, not averaged, as pix2pixHD's
    GANLoss (so a two-scale D's loss is about twice a one-scale D's). ``preds`` is a MultiscaleDiscriminator's
    output, [scale][layer]."""
    target = 1.0 if target_is_real else 0.0
    return sum(F.mse_loss(scale[-1], torch.full_like(scale[-1], target)) for scale in preds)


def feature_matching(fake_feats: Sequence[Sequence[torch.Tensor]],
                     real_feats: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """L_FM (pix2pixHD): sum over scales i and intermediate layers j (all but the last, the prediction) of
    (1 / num_D) (4 / (n_layers + 1)) |D_i^j(fake) - D_i^j(real)|_1 (mean over elements), the real features
    detached; a PatchGAN with n_layers has n_layers + 1 intermediate layers, so the weights sum to 4 per scale and
    to 4 over the scales. The x 10 is the caller's."""
    if len(fake_feats) != len(real_feats):
        raise ValueError(f"{len(fake_feats)} fake and {len(real_feats)} real scales")
    scale_weight = 1.0 / len(fake_feats)
    total = 0.0
    for fake, real in zip(fake_feats, real_feats):
        layer_weight = 4.0 / (len(fake) - 1)  # n_layers + 1 intermediate layers
        for f, r in zip(fake[:-1], real[:-1]):
            total = total + scale_weight * layer_weight * F.l1_loss(f, r.detach())
    return total


def kl_reduced(mean: torch.Tensor) -> torch.Tensor:
    """The reduced VAE's KL term, mean(mean^2) (the code's). With sigma fixed at 1, KL(N(mu, 1) || N(0, 1)) =
    mu^2 / 2 per latent element: this is twice the exact KL averaged over the latent's elements (weight 1 here =
    weight 2 on that mean); the exact KL of the paper's L_VAE, summed over the latent, is sum(mu^2) / 2."""
    return mean.pow(2).mean()


class VGGLoss(nn.Module):
    """sum_i w_i |phi_i(x) - phi_i(y)|_1, phi_i the relu1_1 .. relu5_1 features of a frozen ``VGG19Features``,
    w = 1/32, 1/16, 1/8, 1/4, 1 (the code's VGGLoss_torch; y's features detached). The x 10 is the caller's."""

    def __init__(self, vgg: nn.Module):
        super().__init__()
        self.vgg = vgg

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx, fy = self.vgg(x), self.vgg(y)
        if len(fx) != len(VGG_WEIGHTS):
            raise ValueError(f"the VGG gives {len(fx)} feature maps, {len(VGG_WEIGHTS)} weights")
        return sum(w * F.l1_loss(a, b.detach()) for w, a, b in zip(VGG_WEIGHTS, fx, fy))


def class_balanced_bce(logits: torch.Tensor, target: torch.Tensor, alpha: str = "intact") -> torch.Tensor:
    """L_CE of Section 3.3: alpha (-y log p) + (1 - alpha)(-(1 - y) log(1 - p)), p = sigmoid(logits), y = 1 at
    scratches; alpha per image = the fraction of intact (y = 0) pixels, so where scratches are rare a scratch
    pixel weighs more than an intact one (alpha > 1/2). Averaged over pixels and images (the paper sums over
    pixels: a constant factor). F.binary_cross_entropy_with_logits with the weight map: stable for large logits.
    An image with no scratch has alpha = 1 and adds nothing, as the formula gives.
    (The seed report writes alpha = |y = 1| / (|y = 1| + |y = 0|), the scratch fraction, which with this formula
    would weigh the rare scratches less; we follow REFERENCES.md and the stated aim, scratches weigh more.
    ``alpha="scratch"`` gives that literal reading: alpha = the fraction of scratch pixels.)"""
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ")
    target = target.to(logits.dtype)
    if alpha not in ("intact", "scratch"):
        raise ValueError(f"alpha {alpha!r}: intact or scratch")
    positive = target if alpha == "scratch" else 1 - target
    alpha = positive.flatten(1).mean(dim=1).view(-1, *([1] * (target.dim() - 1)))
    weight = alpha * target + (1 - alpha) * (1 - target)
    return F.binary_cross_entropy_with_logits(logits, target, weight=weight)
