"""ULAE-net and VoxelMorph: parameter counts against hand computations and the published figures, forward/backward at
32^3, near-identity start, flows composed (eq. 2) not summed, the cost on the meta device, build(cfg)."""
from __future__ import annotations

import pytest
import torch

from sweeplab.cost import count
from sweeplab.tasks.registration.config import RegistrationConfig
from sweeplab.tasks.registration.layers import compose, warp
from sweeplab.tasks.registration.networks import ULAENet, VoxelMorph, build

SIZE = (32, 32, 32)
VARIANTS = {  # every network build() can make
    "ulae": lambda size: ULAENet(size),
    "ulae-per-step": lambda size: ULAENet(size, decoder="per-step"),
    "ulae-coupled": lambda size: ULAENet(size, uncoupled=False),
    "ulae-one-step": lambda size: ULAENet(size, accumulative=False),
    "ulae-chained": lambda size: ULAENet(size, final_warp="chained"),
    "voxelmorph": lambda size: VoxelMorph(size),
}


def conv(k: int, c_in: int, c_out: int, bias: bool) -> int:
    return k ** 3 * c_in * c_out + (c_out if bias else 0)


def ulae_hand_count(decoder: str) -> int:
    """From the layer list of the module docstring (InstanceNorm without affine parameters)."""
    fixed = conv(3, 1, 16, False) + conv(3, 16, 32, False) + 2 * conv(3, 32, 32, False)
    moving = sum(conv(1, a, b, True) + 4 * conv(3, a, b, True) + conv(1, a, b, True)  # pool, 3^3 + 3 dilated, 1x1
                 + conv(1, 7 * b, b, True) for a, b in ((1, 16), (16, 32), (32, 32), (32, 32)))
    fusion = conv(3, 32, 16, False) + 3 * conv(3, 64, 32, False)
    ups = [conv(3, 64, 32, False), conv(3, 64, 32, False), conv(3, 48, 32, False)]
    common = conv(3, 32, 32, False) + conv(3, 32, 32, False) + conv(3, 32, 16, False) + conv(3, 18, 16, False)
    decoders = [common + sum(ups)] if decoder == "shared" else [common + sum(ups[:k]) for k in (1, 2, 3)]
    heads = 3 * conv(3, 16, 3, True)
    return fixed + moving + fusion + sum(decoders) + heads


def voxelmorph_hand_count() -> int:
    enc = conv(3, 2, 16, True) + conv(3, 16, 32, True) + 2 * conv(3, 32, 32, True)
    dec = (conv(3, 32, 32, True) + 2 * conv(3, 64, 32, True) + conv(3, 48, 32, True) + conv(3, 32, 32, True)
           + conv(3, 34, 16, True) + conv(3, 16, 16, True))
    return enc + dec + conv(3, 16, 3, True)


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("size", [SIZE, (160, 192, 160)])
def test_parameter_counts(size):
    with torch.device("meta"):
        shared, per_step, vm = ULAENet(size), ULAENet(size, decoder="per-step"), VoxelMorph(size)
    assert _params(shared) == ulae_hand_count("shared") == 789_561  # the paper's 789.56K (Table 1)
    assert _params(per_step) == ulae_hand_count("per-step") == 1_109_241  # the authors' public code
    assert _params(vm) == voxelmorph_hand_count() == 300_547  # vm2, "about 300K"


def test_cost_on_the_meta_device():
    shape = ((1, 1, 160, 192, 160),) * 2
    p_s, g_s, _ = count(lambda: ULAENet((160, 192, 160)), shape)
    p_p, g_p, _ = count(lambda: ULAENet((160, 192, 160), decoder="per-step"), shape)
    p_v, g_v, _ = count(lambda: VoxelMorph((160, 192, 160)), shape)
    assert (p_s, p_p, p_v) == (789_561, 1_109_241, 300_547)
    assert g_s == pytest.approx(g_p)  # the same convolutions run; only the weights are shared or not
    assert g_v == pytest.approx(161.7, abs=0.1)  # REFERENCES: 161.7 GMAC (the paper's "164.74G")
    assert 150 < g_s < 200


def _images(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    blur = torch.nn.functional.avg_pool3d
    moving = blur(torch.rand(1, 1, *SIZE, generator=g), 5, 1, 2)
    fixed = blur(torch.rand(1, 1, *SIZE, generator=g), 5, 1, 2)
    return moving, fixed


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_forward_backward(name):
    torch.manual_seed(0)
    model = VARIANTS[name](SIZE)
    moving, fixed = _images()
    out = model(moving, fixed)
    steps = 1 if name in ("voxelmorph", "ulae-one-step") else 3
    assert set(out) == {"warped", "flow", "flows", "warped_steps"}
    assert out["flow"].shape == (1, 3, *SIZE) and out["warped"].shape == moving.shape
    assert len(out["flows"]) == len(out["warped_steps"]) == steps
    assert all(f.shape == (1, 3, *SIZE) for f in out["flows"])
    assert out["warped_steps"][-1] is out["warped"]
    # zero-mean N(0, 1e-5) heads: the flows start near zero and the warp near the identity
    assert out["flow"].abs().max() < 1e-2
    torch.testing.assert_close(out["warped"], moving, atol=1e-2, rtol=0)
    (out["warped"].square().mean() + out["flow"].square().mean()).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def _with_large_heads(model: ULAENet) -> ULAENet:
    with torch.no_grad():
        for head in model.heads:
            head.weight.normal_(0.0, 0.05)
    return model


def test_flows_compose_not_summed():
    torch.manual_seed(1)
    model = _with_large_heads(ULAENet(SIZE)).eval()
    moving, fixed = _images(1)
    with torch.no_grad():
        out = model(moving, fixed)
    f1, f2, f3 = out["flows"]
    assert min(float(f.abs().max()) for f in (f1, f2, f3)) > 0.1
    torch.testing.assert_close(out["flow"], compose(compose(f1, f2), f3))  # eq. 2
    assert float((out["flow"] - (f1 + f2 + f3)).abs().max()) > 1e-3
    # each step warps the image the previous one warped; the final image is M o phi
    torch.testing.assert_close(out["warped_steps"][0], warp(moving, f1))
    torch.testing.assert_close(out["warped_steps"][1], warp(out["warped_steps"][0], f2))
    torch.testing.assert_close(out["warped"], warp(moving, out["flow"]))


def test_chained_final_warp_and_single_step():
    torch.manual_seed(2)
    chained = _with_large_heads(ULAENet(SIZE, final_warp="chained")).eval()
    one = _with_large_heads(ULAENet(SIZE, accumulative=False)).eval()
    moving, fixed = _images(2)
    with torch.no_grad():
        out, single = chained(moving, fixed), one(moving, fixed)
    torch.testing.assert_close(out["warped"], warp(out["warped_steps"][1], out["flows"][2]))  # M_2 o phi_3
    assert single["flow"] is single["flows"][0]
    torch.testing.assert_close(single["warped"], warp(moving, single["flow"]))


def test_state_dict_round_trip_through_the_saved_config():
    model = ULAENet(SIZE, decoder="per-step", uncoupled=False)
    clone = ULAENet(**model.config)
    clone.load_state_dict(model.state_dict())  # strict: the same layout
    assert clone.config == model.config


def test_build_from_the_config():
    ulae = build(RegistrationConfig(volume_shape=SIZE, decoder="per-step", uncoupled=False, accumulative=False))
    assert type(ulae) is ULAENet and ulae.config == {"size": SIZE, "decoder": "per-step", "uncoupled": False,
                                                     "accumulative": False, "final_warp": "composed"}
    assert type(build(RegistrationConfig(model="voxelmorph", volume_shape=SIZE))) is VoxelMorph
    assert build(RegistrationConfig(model="syn")) is None and build(RegistrationConfig(model="identity")) is None
    with pytest.raises(ValueError):
        ULAENet((30, 32, 32))


def test_smallest_sizes_and_2d():
    with pytest.raises(ValueError, match="more than one voxel"):
        ULAENet((16, 16, 16))
    moving, fixed = torch.rand(2, 1, 16, 32, 16), torch.rand(2, 1, 16, 32, 16)
    assert ULAENet((16, 32, 16))(moving, fixed)["flow"].shape == (2, 3, 16, 32, 16)  # 1x2x1 at 1/16
    for model in (ULAENet((32, 48)), ULAENet((32, 48), decoder="per-step"), VoxelMorph((32, 48))):
        out = model(torch.rand(1, 1, 32, 48), torch.rand(1, 1, 32, 48))
        assert out["flow"].shape == (1, 2, 32, 48) and out["warped"].shape == (1, 1, 32, 48)
