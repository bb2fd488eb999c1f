"""The network of Kanezaki, "Unsupervised image segmentation by backpropagation", ICASSP 2018 (Sections 2.1, 2.3).

    v (B, 3, H, W) RGB in [0, 1]
      -> M x [conv 3x3 (p filters, padding 1) -> ReLU -> BatchNorm]    features x_n in R^p
      -> conv 1x1 (q responses)                                        y_n = W_c x_n + b_c
      -> BatchNorm                                                     y'_n, eq. (2): zero mean, unit variance
    label c_n = argmax_i y'_{n,i}  (eq. (1); taken by the caller, see ``method.py``)

The batch of every BatchNorm is the N pixels of one image (Section 2.1), i.e. the layers run in train mode: the
final BatchNorm is the "intra-axis normalisation" that favours many labels (Section 2.3). Layer order (ReLU
*before* BatchNorm) and padding follow the authors' ``demo.py`` (kanezaki/pytorch-unsupervised-segmentation).

Initialisation. The paper (Section 2.4) initialises with Xavier: we draw every convolution weight from Glorot's
uniform distribution and set the convolution biases to zero (the usual Caffe ``xavier`` filler setting; the paper
says nothing about biases); BatchNorm starts at scale 1, shift 0. The authors' PyTorch ``demo.py`` instead keeps
PyTorch's default initialisation (Kaiming-uniform with a = sqrt(5) and uniform biases); we follow the paper.

All M components are trained: the paper (Section 2.4) updates {W_m, b_m} for every m, and so does the authors'
current ``demo.py``, which registers its components in an ``nn.ModuleList`` (since commit 878840f, 2019). An older
revision of ``demo.py`` kept components 2..M in a plain Python list, so they were not registered submodules and
their parameters never reached the optimiser; only that revision differs from the paper here. We hold them in an
``nn.Sequential``.

Deviation from ``demo.py``, on purpose: ``demo.py`` ties p = q (``--nChannel``); here they are separate, as in the
paper's notation.
"""
from __future__ import annotations

import torch
from torch import nn


class SegNet(nn.Module):
    """M conv/ReLU/BN components with p filters, a 1x1 classifier to q responses and a final BatchNorm.

    ``forward(v)`` maps an RGB batch (B, 3, H, W) to the normalised responses y' (B, q, H, W). Construct, then call
    :meth:`reset_parameters` with a ``torch.Generator`` for a seeded initialisation.
    """

    def __init__(self, M: int = 3, p: int = 100, q: int = 100):
        super().__init__()
        if M < 1 or p < 1 or q < 2:
            raise ValueError(f"SegNet needs M >= 1, p >= 1, q >= 2; got M={M}, p={p}, q={q}")
        self.M, self.p, self.q = M, p, q
        layers: list[nn.Module] = []
        for m in range(M):
            layers += [nn.Conv2d(3 if m == 0 else p, p, kernel_size=3, padding=1), nn.ReLU(inplace=True),
                       nn.BatchNorm2d(p)]
        self.features = nn.Sequential(*layers)  # GetFeats of Algorithm 1: x_n
        self.classifier = nn.Conv2d(p, q, kernel_size=1)  # y_n = W_c x_n + b_c
        self.norm = nn.BatchNorm2d(q)  # Norm of Algorithm 1: y'_n, eq. (2)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Xavier-uniform convolution weights, zero biases, BatchNorm (1, 0) (module docstring).

        ``generator`` must live on the parameters' device (a CPU generator for a model built on the CPU); without
        it the global RNG is used. A no-op on the meta device.
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight, generator=generator)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """v (B, 3, H, W) in [0, 1] -> y' (B, q, H, W)."""
        return self.norm(self.classifier(self.features(v)))


def build_model(cfg) -> SegNet | None:
    """The network of a ``cnn`` configuration (``SegNet(cfg.M, cfg.p, cfg.q)``); None for the baselines."""
    if cfg.method != "cnn":
        return None
    return SegNet(cfg.M, cfg.p, cfg.q)
