"""Piecewise-linear density f~_i of each feature map (Section 2.2; authors' ``tfutils.py``).

f~_i approximates p~_i = p_i * l_i, the density of y~_ij = y_ij + delta_i tau_ij. It is linear between the points
of a grid on [-N, N] with 5 points per unit (spacing 0.2, on the scale of y) and psi^(i)_k = f~_i(grid_k), so
its parameters are its values at the grid points. As in the authors' code:

* initialisation: N = 10, psi^(i) = the standard Cauchy density at the grid points, for every map;
* growth: before each density update, if max |y| + max delta / 2 >= N, then N <- ceil(max |y| + max delta / 2) + 1
  and the new points get psi = 1e-6 (:meth:`expand`);
* fit: its own loss, not a likelihood: the mean integrated squared error  int (f~ - p~)^2  up to the constant
  int p~^2, i.e.  sum_i [ -2 mean_j f~_i(y~_ij) + (1/5) sum_k (psi^(i)_k)^2 ]  (:meth:`density_loss`),
  minimised by plain gradient descent (lr 0.2), then psi is projected onto [1e-6, inf) (:meth:`project`);
  int f~^2 is taken as the Riemann sum (1/5) sum_k psi_k^2, so the minimiser is psi_k = 5 E[phi_k(y~)]
  (phi_k the hat function of point k) and f~ integrates to P(y~ in grid) = 1;
* rate of eq. (4): h~_i = -log2 delta_i - mean_j log2 f~_i(y~_ij)  (:meth:`rate_bits`); psi gets no gradient
  from it (the authors' transform and delta optimisers do not update psi).

Deviation: the authors store N separately; here it is implied by the shape of ``psi`` (2 * 5 N + 1 columns), which
a checkpoint restores (``_load_from_state_dict`` resizes psi first).
"""
from __future__ import annotations

import math

import torch
from torch import nn

POINTS_PER_UNIT = 5  # authors' NB_POINTS_PER_INTERVAL
HALF_WIDTH_INIT = 10  # authors' NB_ITVS_PER_SIDE_INIT
PSI_MIN = 1e-6  # authors' LOW_PROJECTION


class PiecewiseLinearDensity(nn.Module):
    """m piecewise-linear densities f~_i on a common grid [-N, N] (see the module docstring)."""

    def __init__(self, m: int, half_width: int = HALF_WIDTH_INIT, points_per_unit: int = POINTS_PER_UNIT):
        super().__init__()
        self.m, self.points_per_unit = m, points_per_unit
        grid = torch.linspace(-half_width, half_width, 2 * points_per_unit * half_width + 1)
        cauchy = 1.0 / (math.pi * (1.0 + grid ** 2))
        self.psi = nn.Parameter(cauchy.repeat(m, 1))

    @property
    def half_width(self) -> int:
        """N: the grid covers [-N, N]."""
        return (self.psi.shape[1] - 1) // (2 * self.points_per_unit)

    def grid(self) -> torch.Tensor:
        n, p = self.half_width, self.points_per_unit
        return torch.linspace(-n, n, 2 * p * n + 1, device=self.psi.device, dtype=self.psi.dtype)

    @torch.no_grad()
    def expand(self, max_abs: float) -> bool:
        """Grow the grid when max_abs (= max |y| + max delta / 2) reaches N; new points get psi = 1e-6."""
        n = self.half_width
        if max_abs < n:
            return False
        added = self.points_per_unit * (math.ceil(max_abs) + 1 - n)
        pad = torch.full((self.m, added), PSI_MIN, device=self.psi.device, dtype=self.psi.dtype)
        self.psi.data = torch.cat([pad, self.psi.data, pad], dim=1)
        if self.psi.grad is not None:
            self.psi.grad = None
        return True

    @torch.no_grad()
    def project(self) -> None:
        """psi <- max(psi, 1e-6), after each density update."""
        self.psi.clamp_(min=PSI_MIN)

    def area(self) -> torch.Tensor:
        """int f~_i over the grid (trapezoidal rule, exact for a piecewise-linear function), shape (m,)."""
        psi = self.psi
        return (psi.sum(1) - 0.5 * (psi[:, 0] + psi[:, -1])) / self.points_per_unit

    def evaluate(self, samples: torch.Tensor, psi: torch.Tensor | None = None) -> torch.Tensor:
        """f~_i(samples[i, j]) for samples of shape (m, K); values outside [-N, N] are clamped to it."""
        psi = self.psi if psi is None else psi
        n, p = self.half_width, self.points_per_unit
        scaled = p * samples.clamp(-n, n)
        idx = (torch.floor(scaled).long() + p * n).clamp(0, 2 * p * n - 1)
        left, right = psi.gather(1, idx), psi.gather(1, idx + 1)
        frac = scaled - (idx - p * n).to(scaled.dtype)
        return left + (right - left) * frac

    @staticmethod
    def _by_map(y: torch.Tensor) -> torch.Tensor:
        """(B, m, h, w) -> (m, B h w)."""
        return y.transpose(0, 1).reshape(y.shape[1], -1)

    def rate_bits(self, y_tilde: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """h~_i of eq. (4) in bits per coefficient, shape (m,); differentiable w.r.t. y_tilde and steps.

        ``y_tilde`` (B, m, h, w) = y + delta (.) tau; ``steps`` = delta, shape (m,) (ones for fixed-step, where the
        -log2 delta term vanishes).
        """
        f = self.evaluate(self._by_map(y_tilde), self.psi.detach())
        return -torch.log2(steps) - torch.log2(f.clamp_min(PSI_MIN)).mean(dim=1)

    def density_loss(self, y_tilde: torch.Tensor) -> torch.Tensor:
        """The authors' fitting loss  sum_i [-2 mean_j f~_i(y~_ij) + (1/5) sum_k psi_ik^2]  (pass y_tilde detached)."""
        f = self.evaluate(self._by_map(y_tilde))
        return (-2.0 * f.mean(dim=1) + (self.psi ** 2).sum(dim=1) / self.points_per_unit).sum()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        saved = state_dict.get(prefix + "psi")
        if saved is not None and saved.shape != self.psi.shape:  # the saved grid had grown
            self.psi.data = torch.empty(saved.shape, device=self.psi.device, dtype=self.psi.dtype)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
