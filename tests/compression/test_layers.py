"""GDN/IGDN against the equation computed by hand, the lower-bound reparametrisation, TF-'SAME' convolutions."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sweeplab.tasks.compression.layers import GDN, GDN_MIN, ConvSame, ConvTransposeSame, conv_same, same_padding


def _set_gdn(layer: GDN, gamma: np.ndarray, beta: np.ndarray) -> None:
    with torch.no_grad():
        layer.gamma_raw.copy_(layer.param.init(torch.from_numpy(gamma).float()))
        layer.beta_raw.copy_(layer.param.init(torch.from_numpy(beta).float()))


def _gdn_loops(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, inverse: bool) -> np.ndarray:
    out = np.empty_like(x)
    b, c, h, w = x.shape
    for n in range(b):
        for i in range(c):
            for r in range(h):
                for s in range(w):
                    norm = np.sqrt(beta[i] + sum(gamma[i, j] * x[n, j, r, s] ** 2 for j in range(c)))
                    out[n, i, r, s] = x[n, i, r, s] * norm if inverse else x[n, i, r, s] / norm
    return out


@pytest.mark.parametrize("inverse", [False, True])
def test_gdn_matches_the_equation(inverse):
    rng = np.random.default_rng(0)
    c = 5
    g = rng.uniform(0.05, 1.0, (c, c))
    gamma, beta = 0.5 * (g + g.T), rng.uniform(0.2, 2.0, c)
    layer = GDN(c, inverse=inverse)
    _set_gdn(layer, gamma, beta)
    x = rng.normal(0, 2, (2, c, 3, 4))
    expected = _gdn_loops(x, gamma, beta, inverse)
    got = layer(torch.from_numpy(x).float()).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_gdn_gamma_symmetric_even_from_an_asymmetric_raw_parameter():
    layer = GDN(4)
    with torch.no_grad():
        layer.gamma_raw.copy_(torch.rand(4, 4) + 0.1)  # not symmetric
    gamma = layer.gamma.detach()
    torch.testing.assert_close(gamma, gamma.T)


def test_reparametrisation_keeps_gamma_and_beta_above_the_bound():
    layer = GDN(4)
    opt = torch.optim.SGD(layer.parameters(), lr=10.0)
    (1e3 * (layer.gamma.sum() + layer.beta.sum())).backward()  # pushes every value far below zero
    opt.step()
    assert layer.gamma_raw.min() < layer.param.bound  # the raw parameters did cross the bound...
    assert layer.gamma.min().item() >= GDN_MIN * (1 - 1e-6)  # ...but the values did not
    assert layer.beta.min().item() >= GDN_MIN * (1 - 1e-6)
    # at the bound, a gradient that asks to grow passes through (CompressAI's LowerBound); one that asks to shrink not
    opt.zero_grad()
    (-layer.beta.sum()).backward()
    assert (layer.beta_raw.grad < 0).all()
    opt.zero_grad()
    layer.beta.sum().backward()
    assert (layer.beta_raw.grad == 0).all()


def test_same_padding_is_asymmetric_like_tensorflow():
    assert same_padding(64, 9, 4) == (2, 3)
    assert same_padding(32, 5, 2) == (1, 2)
    assert same_padding(33, 5, 2) == (2, 2)


@pytest.mark.parametrize("kernel,stride,pad", [(9, 4, (2, 3, 2, 3)), (5, 2, (1, 2, 1, 2))])
def test_conv_same_equals_explicit_pad_then_conv(kernel, stride, pad):
    torch.manual_seed(0)
    conv = ConvSame(3, 4, kernel, stride)
    x = torch.randn(2, 3, 64, 96)
    out = conv(x)
    assert out.shape == (2, 4, 64 // stride, 96 // stride)
    torch.testing.assert_close(out, F.conv2d(F.pad(x, pad), conv.weight, conv.bias, stride=stride))
    symmetric = F.conv2d(x, conv.weight, conv.bias, stride=stride, padding=pad[1])  # same size, shifted grid
    if symmetric.shape == out.shape:
        assert not torch.allclose(symmetric, out)
    torch.testing.assert_close(conv_same(x, conv.weight, conv.bias, stride), out)


@pytest.mark.parametrize("kernel,stride", [(9, 4), (5, 2)])
def test_conv_transpose_same_is_the_adjoint_of_conv_same(kernel, stride):
    """TF's conv2d_transpose is the gradient (adjoint) of conv2d with the same padding: <A x, y> = <x, A^T y>."""
    torch.manual_seed(0)
    conv = ConvSame(3, 5, kernel, stride, bias=False)
    tconv = ConvTransposeSame(5, 3, kernel, stride, bias=False)
    with torch.no_grad():
        tconv.weight.copy_(conv.weight)
    x = torch.randn(2, 3, 16 * stride, 24 * stride, dtype=torch.float64)
    y = torch.randn(2, 5, 16, 24, dtype=torch.float64)
    conv, tconv = conv.double(), tconv.double()
    assert tconv(y).shape == x.shape
    torch.testing.assert_close((conv(x) * y).sum(), (x * tconv(y)).sum())


def test_conv_transpose_same_bias_and_shape():
    tconv = ConvTransposeSame(4, 2, 5, 2)
    with torch.no_grad():
        tconv.weight.zero_()
        tconv.bias.copy_(torch.tensor([1.0, -2.0]))
    out = tconv(torch.randn(1, 4, 3, 7))
    assert out.shape == (1, 2, 6, 14)
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([1.0, -2.0]))


@pytest.mark.parametrize("inverse", [False, True])
def test_gdn_costs_one_1x1_convolution_in_gmacs(inverse):
    """The cost convention the README states: GDN/IGDN's channel mixing is counted (C^2 MACs per pixel), its
    element-wise square, square root and division are not."""
    from sweeplab.cost import count
    params, gmacs, _ = count(lambda: GDN(8, inverse=inverse), (2, 8, 5, 7))
    assert params == 8 * 8 + 8 and gmacs * 1e9 == pytest.approx(2 * 8 * 8 * 5 * 7)
