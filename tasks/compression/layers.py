"""Layers of the Dumas et al. (ICASSP 2018) autoencoder: GDN/IGDN and TensorFlow-'SAME' (transposed) convolutions.

The authors' network is written in TensorFlow with ``padding='SAME'``. For the strides used here the total padding
``k - s`` is odd (9x9 stride 4: 5; 5x5 stride 2: 3) and TensorFlow puts the extra row/column at the bottom/right.
PyTorch's ``padding=p`` is symmetric, which shifts the sampling grid by half a pixel per layer, so the layers below
pad explicitly. ``ConvTransposeSame`` is the adjoint of ``ConvSame`` (TensorFlow's ``conv2d_transpose`` with
``padding='SAME'`` and output size = input size x stride): it computes the full transposed convolution and crops
the same (top/left, bottom/right) margins that ``ConvSame`` pads.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

GDN_MIN = 2e-5  # lower bound of Gamma and beta (authors' MIN_GAMMA_BETA)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) of one spatial dimension: the extra pixel goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv_same(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int) -> torch.Tensor:
    """``tf.nn.conv2d(..., padding='SAME')`` + bias: zero padding, asymmetric (extra at bottom/right)."""
    top, bottom = same_padding(x.shape[-2], weight.shape[-2], stride)
    left, right = same_padding(x.shape[-1], weight.shape[-1], stride)
    return F.conv2d(F.pad(x, (left, right, top, bottom)), weight, bias, stride=stride)


class ConvSame(nn.Conv2d):
    """A strided convolution with TensorFlow 'SAME' padding: output size = ceil(input size / stride)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_same(x, self.weight, self.bias, self.stride[0])


class ConvTransposeSame(nn.ConvTranspose2d):
    """``tf.nn.conv2d_transpose(..., padding='SAME')`` with output size = input size x stride (+ bias).

    Full transposed convolution (size ``(n - 1) s + k``), then the ``k - s`` extra rows/columns are cropped
    ``(k - s) // 2`` at the top/left and the rest at the bottom/right, i.e. exactly the margins that
    :class:`ConvSame` pads for an input of size ``n s``: the two layers are adjoint (tested).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, bias: bool = True):
        if kernel_size < stride:
            raise ValueError("ConvTransposeSame needs kernel_size >= stride")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        s, k = self.stride[0], self.kernel_size[0]
        h, w = x.shape[-2] * s, x.shape[-1] * s
        top, _ = same_padding(h, k, s)
        left, _ = same_padding(w, k, s)
        full = F.conv_transpose2d(x, self.weight, None, stride=s)
        out = full[..., top:top + h, left:left + w]
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)


class _LowerBound(torch.autograd.Function):
    """max(x, bound) whose gradient also passes where x < bound if it points upwards (CompressAI's LowerBound)."""

    @staticmethod
    def forward(ctx, x, bound: float):
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp(min=bound)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        pass_through = (x >= ctx.bound) | (grad < 0)  # grad < 0: gradient descent would increase x
        return grad * pass_through.to(grad.dtype), None


class NonNegative(nn.Module):
    """Reparametrisation keeping a value >= ``minimum``: value = max(v, sqrt(minimum + p))^2 - p, p = 2^-36.

    As CompressAI's ``NonNegativeParametrizer`` (after Ballé et al., ICLR 2017): storing ``v = sqrt(value + p)``
    makes steps near zero small, and the bound's gradient lets a parameter stuck at the bound move back up.
    """

    def __init__(self, minimum: float = GDN_MIN, pedestal: float = 2.0 ** -36):
        super().__init__()
        self.minimum, self.pedestal = minimum, pedestal
        self.bound = math.sqrt(minimum + pedestal)

    def init(self, value: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(torch.clamp(value + self.pedestal, min=self.pedestal))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return _LowerBound.apply(v, self.bound) ** 2 - self.pedestal


class GDN(nn.Module):
    """Generalized divisive normalization (Ballé, Laparra & Simoncelli, ICLR 2016), full matrix, non-spatial.

    GDN:  y_i = x_i / sqrt(beta_i + sum_j Gamma_ij x_j^2)        IGDN (``inverse=True``):  y_i = x_i * sqrt(...)

    over the channels i, j of each pixel. As in the authors' code, ``Gamma`` (C x C) is symmetric and Gamma, beta
    >= 2e-5; initialisation: Gamma ~ U(2e-5, 0.01) symmetrised, beta = 1.
    Deviation: the authors project (clip, then symmetrise) Gamma and beta after every Adam step; here the bound
    is a reparametrisation (:class:`NonNegative`) and symmetry holds by construction, Gamma = (G + G^T) / 2, so
    no step can leave the valid set and DDP needs no post-step hook. C^2 + C parameters, as the paper counts
    (33024 = 2 x (128^2 + 128) for the extra GDN + IGDN of cases 1 and 3).
    Cost: the sum over j is a 1x1 convolution of x^2 (C^2 MACs per pixel) and is counted in ``gmacs``; the square,
    square root and division are element-wise and are not. At 512 x 768 with m = 128, the six GDN/IGDN of
    ``fixed-step`` are 1.057 of its 7.858 GMAC, the four of ``learned-step`` 1.007 of 7.808.
    """

    def __init__(self, channels: int, inverse: bool = False):
        super().__init__()
        self.inverse = inverse
        self.param = NonNegative(GDN_MIN)
        gamma = torch.rand(channels, channels) * (0.01 - GDN_MIN) + GDN_MIN
        self.gamma_raw = nn.Parameter(self.param.init(0.5 * (gamma + gamma.T)))
        self.beta_raw = nn.Parameter(self.param.init(torch.ones(channels)))

    @property
    def gamma(self) -> torch.Tensor:
        g = self.param(self.gamma_raw)
        return 0.5 * (g + g.T)

    @property
    def beta(self) -> torch.Tensor:
        return self.param(self.beta_raw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        norm = torch.sqrt(F.conv2d(x * x, self.gamma.view(c, c, 1, 1), self.beta))
        return x * norm if self.inverse else x / norm

    def extra_repr(self) -> str:
        return f"{self.beta_raw.numel()}, inverse={self.inverse}"
