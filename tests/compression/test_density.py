"""The piecewise-linear density f~_i and the rate h~_i of eq. (4), against independent numpy/scipy computations."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from sweeplab.tasks.compression.density import PSI_MIN, PiecewiseLinearDensity


def _fit(density: PiecewiseLinearDensity, sample, steps: int = 150, lr: float = 0.2) -> None:
    """The authors' density updates: grow the grid, one plain gradient step on the fitting loss, project."""
    opt = torch.optim.SGD([density.psi], lr=lr)
    for _ in range(steps):
        y, half_step = sample()
        density.expand(float(y.abs().max()) + half_step)
        opt.zero_grad()
        density.density_loss(y).backward()
        opt.step()
        density.project()


def _laplace(n_per_map: int, scales, gen: torch.Generator) -> torch.Tensor:
    """(n, m, 1, 1) Laplace samples (inverse CDF from uniforms), map i with scale scales[i]."""
    u = torch.rand(n_per_map, len(scales), 1, 1, generator=gen, dtype=torch.float64) - 0.5
    y = -torch.sign(u) * torch.log1p(-2 * u.abs())
    return (y * torch.tensor(scales, dtype=torch.float64).view(1, -1, 1, 1)).float()


def test_grid_initialisation_and_interpolation():
    d = PiecewiseLinearDensity(2)
    assert d.half_width == 10 and d.psi.shape == (2, 101)
    grid = d.grid()
    torch.testing.assert_close(grid[1] - grid[0], torch.tensor(0.2))
    torch.testing.assert_close(d.psi[0], 1 / (math.pi * (1 + grid ** 2)))  # standard Cauchy density
    with torch.no_grad():
        d.psi.copy_(torch.rand(2, 101) + 0.1)
    knots = grid[[3, 50, 77]].repeat(2, 1)
    torch.testing.assert_close(d.evaluate(knots), d.psi.detach()[:, [3, 50, 77]])
    mid = (grid[[3, 60]] + 0.1).repeat(2, 1)
    psi = d.psi.detach()
    torch.testing.assert_close(d.evaluate(mid), 0.5 * (psi[:, [3, 60]] + psi[:, [4, 61]]))


def test_expand_pads_with_the_projection_floor_and_keeps_the_values():
    d = PiecewiseLinearDensity(3)
    old = d.psi.detach().clone()
    assert not d.expand(9.99)
    assert d.expand(12.3)  # authors: N <- ceil(max_abs) + 1 = 14
    assert d.half_width == 14 and d.psi.shape == (3, 141)
    torch.testing.assert_close(d.psi.detach()[:, 20:121], old)
    assert torch.all(d.psi.detach()[:, :20] == PSI_MIN) and torch.all(d.psi.detach()[:, 121:] == PSI_MIN)
    fresh = PiecewiseLinearDensity(3)
    fresh.load_state_dict(d.state_dict())  # a checkpoint restores the grown grid
    assert fresh.half_width == 14 and torch.equal(fresh.psi, d.psi)


def test_fit_to_laplace_integrates_to_one_and_gives_its_differential_entropy():
    """After fitting, f~ integrates to 1 (the minimiser of the Riemann-sum MISE loss is psi_k = 5 E[phi_k(y)],
    whose trapezoidal area is P(y in grid) = 1), and -mean log2 f~(y) is the differential entropy of the
    Laplace distribution, log2(2 e b). Tolerance 0.03 bits: Monte Carlo error of the mean over 50k samples is
    log2(e) / sqrt(50k) ~ 0.007 bits (4 sigma ~ 0.03), and the linear interpolation on a 0.2 grid smooths the
    cusp of the density at 0 (bias measured ~ 0.005 bits for b = 0.5)."""
    gen = torch.Generator().manual_seed(0)
    scales = [0.5, 1.0, 2.0]
    d = PiecewiseLinearDensity(3)
    _fit(d, lambda: (_laplace(4000, scales, gen), 0.0))
    torch.testing.assert_close(d.area(), torch.ones(3), atol=2e-3, rtol=0)
    y = _laplace(50_000, scales, gen)
    d.expand(float(y.abs().max()))
    h = d.rate_bits(y, torch.ones(3))
    expected = torch.tensor([math.log2(2 * math.e * b) for b in scales])
    torch.testing.assert_close(h, expected, atol=0.03, rtol=0)


def _entropy_noisy_laplace(delta: float) -> float:
    """h(y + delta tau) - log2 delta in bits for y ~ Laplace(0, 1), tau ~ U(-0.5, 0.5), by quadrature."""
    cdf = stats.laplace.cdf

    def integrand(t):
        p = (cdf(t + delta / 2) - cdf(t - delta / 2)) / delta
        return -p * np.log2(p) if p > 0 else 0.0

    h, _ = integrate.quad(integrand, -40, 40, points=[-delta / 2, delta / 2], limit=200)
    return h - math.log2(delta)


def test_rate_of_noisy_laplace_matches_quadrature_and_decreases_with_delta():
    """h~ of eq. (4) estimates h(y~) - log2 delta; for a Laplace y it decreases with delta (Laplace(a') = Laplace(a)
    + independent noise for a' > a, so h(y / delta + tau) grows as delta shrinks). Same 0.03-bit tolerance."""
    gen = torch.Generator().manual_seed(1)
    deltas = [0.5, 1.0, 2.0, 4.0]
    d = PiecewiseLinearDensity(len(deltas))
    steps = torch.tensor(deltas)

    def noisy(n):
        y = _laplace(n, [1.0] * len(deltas), gen)
        return y + steps.view(1, -1, 1, 1) * (torch.rand(y.shape, generator=gen) - 0.5)

    _fit(d, lambda: (noisy(4000), max(deltas) / 2))
    y_tilde = noisy(50_000)
    d.expand(float(y_tilde.abs().max()))
    h = d.rate_bits(y_tilde, steps)
    expected = torch.tensor([_entropy_noisy_laplace(delta) for delta in deltas], dtype=torch.float32)
    torch.testing.assert_close(h, expected, atol=0.03, rtol=0)
    assert torch.all(h[1:] < h[:-1])


def test_rate_gradients():
    """d h~_i / d delta_i at fixed y~ is exactly -1 / (delta_i ln 2); w.r.t. y~ it is -f~'/(f~ ln 2 n) (gradcheck)."""
    torch.manual_seed(0)
    d = PiecewiseLinearDensity(3).double()
    with torch.no_grad():
        d.psi.copy_(torch.rand(3, 101, dtype=torch.float64) + 0.05)
    y = (torch.randn(2, 3, 4, 4, dtype=torch.float64) * 2).requires_grad_()
    steps = torch.tensor([0.8, 1.5, 3.0], dtype=torch.float64, requires_grad=True)
    d.rate_bits(y, steps).sum().backward()
    torch.testing.assert_close(steps.grad, -1 / (steps.detach() * math.log(2)))
    assert d.psi.grad is None  # the rate does not train the density
    assert torch.autograd.gradcheck(lambda t: d.rate_bits(t, steps.detach()), (y.detach().requires_grad_(),))


def test_fixed_step_rate_has_no_step_term():
    d = PiecewiseLinearDensity(2)
    y = torch.randn(3, 2, 4, 4)
    f = d.evaluate(y.transpose(0, 1).reshape(2, -1))
    torch.testing.assert_close(d.rate_bits(y, torch.ones(2)), -torch.log2(f).mean(dim=1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_density_loss_is_the_authors_formula(dtype):
    d = PiecewiseLinearDensity(2).to(dtype)
    y = torch.randn(5, 2, 3, 3, dtype=dtype)
    f = d.evaluate(y.transpose(0, 1).reshape(2, -1))
    expected = (-2 * f.mean(1) + (d.psi ** 2).sum(1) / 5).sum()
    torch.testing.assert_close(d.density_loss(y), expected)
