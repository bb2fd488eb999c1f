"""The autoencoder of Dumas, Roumy & Guillemot, ICASSP 2018 (Section 3; authors' ``eae/graph/components.py``).

    g_e:  X (1) -conv 9x9/4-> GDN -conv 5x5/2-> GDN -conv 5x5/2-> Y (m maps, 16x smaller per side)
    g_d:  Y~ -tconv 5x5/2-> IGDN -tconv 5x5/2-> IGDN -tconv 9x9/4 (no bias)-> X^ (1)

m = 128 throughout. Two variants (Section 4):

* ``fixed-step`` (cases 1 and 3, the architecture of Ballé et al. [6]): one more GDN after g_e and one more IGDN
  before g_d; quantisation step delta_i = 1 for every map.
* ``learned-step`` (case 2): no extra normalisation; one learned step delta_i per map, kept in [0.8, 4]
  (authors' MIN_BW / MAX_BW) by :meth:`Autoencoder.clip_steps` after each update.

Training replaces quantisation by additive noise (eq. (4)): y~ = y + delta (.) tau, tau ~ U(-0.5, 0.5).

Precision: under ``dtype: bfloat16`` the caller runs g_e and g_d under autocast; ``encode`` and ``decode`` still
return float32, so the noise, the centring and rounding of the quantisation, the density of the rate and the
entropy coder work in float32 (bfloat16's 8 significant bits cannot even hold (y - mu) / delta to 0.5 once it
exceeds 64); y itself carries g_e's bfloat16 rounding (about 0.4% of its value).

Pixel scale: as in the authors' code the network is fed the raw luminance as float in [0, 255] (no centring, no
scaling; TF 'SAME' zero padding is therefore black) and the distortion of eq. (1) is the squared error summed over
the pixels of an image on that scale. Weights are initialised as the authors do: N(0, sigma^2) with sigma =
0.01, 0.02, 0.05 for the encoder convolutions (0.05, 0.02, 0.01 for the decoder), zero biases.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from .layers import GDN, ConvSame, ConvTransposeSame

DELTA_MIN, DELTA_MAX = 0.8, 4.0  # authors' MIN_BW / MAX_BW
STRIDE = 16  # product of the three strides (4 x 2 x 2)


class Autoencoder(nn.Module):
    """g_e / g_d of Section 3 with the quantisation of Section 2 (see the module docstring).

    ``encode`` / ``decode`` work on the [0, 255] luminance scale; ``forward`` returns the fixed keys
    ``x_hat`` (g_d(y~), unclipped), ``y`` (g_e(X)) and ``y_tilde`` (y + delta tau when ``noise``, else y).
    ``latent_means`` holds mu_i of Section 3.1 (zeros until :meth:`set_latent_means`).
    """

    def __init__(self, m: int = 128, quantization: str = "fixed-step", delta_init: float = 1.0):
        super().__init__()
        if quantization not in ("fixed-step", "learned-step"):
            raise ValueError(f"quantization: {quantization!r} is not fixed-step or learned-step")
        self.m, self.quantization = m, quantization
        fixed = quantization == "fixed-step"
        self.g_e = nn.Sequential(
            ConvSame(1, m, 9, 4), GDN(m), ConvSame(m, m, 5, 2), GDN(m), ConvSame(m, m, 5, 2),
            *([GDN(m)] if fixed else []))
        self.g_d = nn.Sequential(
            *([GDN(m, inverse=True)] if fixed else []),
            ConvTransposeSame(m, m, 5, 2), GDN(m, inverse=True), ConvTransposeSame(m, m, 5, 2),
            GDN(m, inverse=True), ConvTransposeSame(m, 1, 9, 4, bias=False))
        convs = [l for l in (*self.g_e, *self.g_d) if isinstance(l, (ConvSame, ConvTransposeSame))]
        for layer, std in zip(convs, (0.01, 0.02, 0.05, 0.05, 0.02, 0.01)):
            nn.init.normal_(layer.weight, 0.0, std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        self.delta = nn.Parameter(torch.full((m,), float(delta_init))) if not fixed else None
        self.register_buffer("latent_means", torch.zeros(m))

    def conv_weights(self) -> list[torch.Tensor]:
        """The six convolution kernels (the authors' l2 weight decay applies to these only)."""
        return [l.weight for l in (*self.g_e, *self.g_d) if isinstance(l, (ConvSame, ConvTransposeSame))]

    def steps(self) -> torch.Tensor:
        """delta_i, shape (m,): learned (learned-step) or all ones (fixed-step)."""
        if self.delta is not None:
            return self.delta
        return torch.ones(self.m, device=self.latent_means.device, dtype=self.latent_means.dtype)

    @torch.no_grad()
    def clip_steps(self) -> None:
        """Project delta_i onto [0.8, 4] (the authors do it after every delta update)."""
        if self.delta is not None:
            self.delta.clamp_(DELTA_MIN, DELTA_MAX)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """X (B, 1, H, W) in [0, 255], H and W multiples of 16 -> Y (B, m, H/16, W/16), float32."""
        if x.shape[-2] % STRIDE or x.shape[-1] % STRIDE:
            raise ValueError(f"image size {tuple(x.shape[-2:])} is not a multiple of {STRIDE}")
        return self.g_e(x).float()

    def decode(self, y_hat: torch.Tensor) -> torch.Tensor:
        """Y^ (B, m, h, w) -> X^ (B, 1, 16 h, 16 w) on the [0, 255] scale, not clipped, float32."""
        return self.g_d(y_hat).float()

    def forward(self, x: torch.Tensor, noise: bool = True) -> dict[str, torch.Tensor]:
        y = self.encode(x)
        y_tilde = y + self.steps().view(1, -1, 1, 1) * (torch.rand_like(y) - 0.5) if noise else y
        return {"x_hat": self.decode(y_tilde), "y": y, "y_tilde": y_tilde}

    @torch.no_grad()
    def set_latent_means(self, images: Iterable[torch.Tensor]) -> torch.Tensor:
        """mu_i = mean of the i-th map of g_e(X) over every coefficient of ``images`` (Section 3.1).

        ``images``: (B, 1, H, W) float tensors in [0, 255] (the extra image set). Returns and stores mu.
        """
        device = self.latent_means.device
        total, count = torch.zeros(self.m, dtype=torch.float64, device=device), 0
        for x in images:
            y = self.encode(x.to(device=device, dtype=self.latent_means.dtype))
            total += y.double().sum(dim=(0, 2, 3))
            count += y.shape[0] * y.shape[2] * y.shape[3]
        if count == 0:
            raise ValueError("set_latent_means: no images")
        self.latent_means.copy_(total / count)
        return self.latent_means.clone()


def build_model(cfg) -> Autoencoder | None:
    """The task's model for ``cfg`` (None for the codec anchors, which have none)."""
    if cfg.codec != "autoencoder":
        return None
    return Autoencoder(cfg.m, cfg.quantization, cfg.delta_init)
