"""ULAE-net (Shu et al., MICCAI 2021) and VoxelMorph (vm2, as the paper compares it); ``build(cfg)`` picks one.

ULAE-net, phi = U_theta(M, F) (eq. 1), Sections 2.1-2.3; the layers below are the authors' public code's
(wanghaostu/ULAE-net), channel plan c = (16, 32, 32, 32) at 1/2 ... 1/16 of the input:

* Uncoupled spatial encoder (Section 2.2). Fixed path: four (conv 3^d stride 2, no bias, InstanceNorm,
  LeakyReLU 0.2) giving f_1..f_4. Moving path: four uncoupled encoding blocks (ASPP [3]) with dilation
  d = 4, 3, 2, 1: six stride-2 branches with bias (image pooling -> 1x1 conv -> upsampled; 3^d conv; 1x1 conv;
  3^d convs dilated d, 2d, 3d), concatenated with f_k, a 1x1 conv 7 c_k -> c_k, LeakyReLU 0.2, giving m_k.
  Skips ("CnC"): e_k = conv 3^d (2 c_k -> c_k, no bias) + IN + LeakyReLU on concat(m_k, f_k).
* Decoder: convs 3^d without bias + IN + LeakyReLU, x2 (tri)linear up-sampling (Section 2.1):
  bottom 32 -> 32 on e_4; up-blocks on concat(up(y), e_k): 64 -> 32 (to 1/8), 64 -> 32 (to 1/4),
  48 -> 32 (to 1/2); tail 32 -> 32, 32 -> 16, then up-sampled and concatenated with the pair (M_k, F)
  average-pooled to that resolution, 18 -> 16. Output head conv 3^d 16 -> ndims with weights N(0, 1e-5), zero bias.
* Accumulative warping enhancement (Section 2.3): three steps share the encoder. Step k runs the bottom, the first
  k up-blocks and the tail ("the first two decoder blocks ... phi_1 ...; Acc_2 and Acc_3 ... utilize one and two
  more decoder layers"), so its flow phi_k is at 1/4, 1/2 and full resolution; it is up-sampled to full
  resolution (``resize_flow``), the step warps the image the previous step warped (M_k = M_{k-1} o phi_k) and
  the flows compose, phi = S(S(phi_1) o phi_2 + phi_2) o phi_3 + phi_3 (eq. 2, ``compose``); no integration.

``decoder="shared"``: one decoder whose prefixes the steps use, with one head per step: 789,561 parameters, the
paper's 789.56K (Table 1). ``decoder="per-step"``: each step has its own decoder (only the blocks it uses) and head,
as the public code builds it: 1,109,241 parameters. The two have the same MACs. Both count F's fixed path once per
forward (F does not change between steps); the public code recomputes it in every step (same values, ~3.3 GMAC more
at 160x192x160). The final warped image is M o phi (Section 2.3: "W can be acquired by M o phi");
``final_warp="chained"`` gives the code's M_2 o phi_3 (two resamplings) instead.
Ablation (Table 2): ``uncoupled=False`` replaces the two paths by one plain encoder (the fixed path's convs) on
concat(M_k, F), its features the skips; ``accumulative=False`` runs one step with the full decoder (one head).

VoxelMorph (Balakrishnan et al. 2019, vm2; the legacy PyTorch layout the 2019-2021 papers ran): a U-Net on
concat(M, F) with conv 3^d stride 2 encoder 16-32-32-32 (bias, LeakyReLU 0.2, no normalisation), decoder
32-32-32-32-32-16-16 with x2 nearest up-sampling and skips (the last two at full resolution, the first of them on
concat(up(y), M, F)), flow head conv 3^d 16 -> ndims with weights N(0, 1e-5), zero bias; no integration (the
current voxelmorph package's VxmDense adds scaling-and-squaring and max-pool encoders). ``width=2`` doubles every
channel count but the two inputs and the three flow components: the paper's VMx2 ("we also doubled the channels of
VM", Section 3), 624.5 GMAC at 160x192x160 (not 4x vm2's 161.7: the first convolution, the full-resolution skip of
the pair and the flow head keep their 2 or 3 channels; the paper's 643.67G is 3% more) and 1,195,523
parameters (the paper's 1.58M, like its VM's 396.45K against vm2's 300,547, does not match the vm2 layout).

``forward(moving, fixed)`` of both returns {"warped": M o phi, "flow": phi (B, ndims, *size), "flows": the steps'
flows at full resolution, "warped_steps": M_1, M_2, ..., the last being "warped"}. 2D or 3D from ``len(size)``;
no device literals and no data-dependent branches (the cost is counted on the meta device).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import SpatialTransformer, compose, resize_flow

CHANNELS = (16, 32, 32, 32)  # encoder channels c_k at 1/2, 1/4, 1/8, 1/16
DILATIONS = (4, 3, 2, 1)  # d of the moving path's blocks
SLOPE = 0.2  # LeakyReLU
_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_NORM = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
_LINEAR = {2: "bilinear", 3: "trilinear"}


def _ndims(size: Sequence[int]) -> int:
    if len(size) not in (2, 3) or any(int(s) % 16 for s in size):
        raise ValueError(f"size {tuple(size)}: need 2 or 3 sides, each a multiple of 16 (four stride-2 levels)")
    return len(size)


def conv_norm_act(ndims: int, c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """conv 3^d (no bias), InstanceNorm, LeakyReLU 0.2: ULAE-net's fixed path, skips and decoder."""
    return nn.Sequential(_CONV[ndims](c_in, c_out, 3, stride=stride, padding=1, bias=False), _NORM[ndims](c_out),
                         nn.LeakyReLU(SLOPE))


def flow_head(ndims: int, c_in: int) -> nn.Module:
    """conv 3^d c_in -> ndims, weights N(0, 1e-5), zero bias: the flow starts near zero (the warp near identity)."""
    conv = _CONV[ndims](c_in, ndims, 3, padding=1)
    nn.init.normal_(conv.weight, 0.0, 1e-5)
    nn.init.zeros_(conv.bias)
    return conv


def _up(x: torch.Tensor, mode: str) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode=_LINEAR[x.dim() - 2] if mode == "linear" else mode)


class UncoupledBlock(nn.Module):
    """One level of the moving path (Section 2.2, Fig. 2): ASPP with six stride-2 branches, fused with the fixed
    feature f_k of the same level by a 1x1 conv (CnC): m_k = LeakyReLU(conv1x1([pool, 3^d, 1x1, d, 2d, 3d, f_k]))."""

    def __init__(self, ndims: int, c_in: int, c_out: int, dilation: int):
        super().__init__()
        conv = _CONV[ndims]
        self.pool = conv(c_in, c_out, 1)  # on the global mean; "up-sampled" = broadcast
        self.conv3 = conv(c_in, c_out, 3, stride=2, padding=1)
        self.conv1 = conv(c_in, c_out, 1, stride=2)
        self.atrous = nn.ModuleList(conv(c_in, c_out, 3, stride=2, padding=r, dilation=r)
                                    for r in (dilation, 2 * dilation, 3 * dilation))
        self.fuse = conv(7 * c_out, c_out, 1)

    def forward(self, m: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(m.mean(dim=tuple(range(2, m.dim())), keepdim=True)).expand(-1, -1, *f.shape[2:])
        branches = [pooled, self.conv3(m), self.conv1(m), *(a(m) for a in self.atrous), f]
        return F.leaky_relu(self.fuse(torch.cat(branches, dim=1)), SLOPE)


class UncoupledEncoder(nn.Module):
    """Section 2.2: ``prepare(F)`` -> f_1..f_4 (computed once); ``forward(M_k, fs)`` -> the skips e_1..e_4."""

    def __init__(self, ndims: int):
        super().__init__()
        ins = (1, *CHANNELS[:-1])
        self.fixed = nn.ModuleList(conv_norm_act(ndims, a, b, stride=2) for a, b in zip(ins, CHANNELS))
        self.moving = nn.ModuleList(UncoupledBlock(ndims, a, b, d) for a, b, d in zip(ins, CHANNELS, DILATIONS))
        self.fusion = nn.ModuleList(conv_norm_act(ndims, 2 * c, c) for c in CHANNELS)

    def prepare(self, fixed: torch.Tensor) -> list[torch.Tensor]:
        fs = []
        for layer in self.fixed:
            fs.append(layer(fs[-1] if fs else fixed))
        return fs

    def forward(self, moving: torch.Tensor, fs: list[torch.Tensor]) -> list[torch.Tensor]:
        m, skips = moving, []
        for block, fusion, f in zip(self.moving, self.fusion, fs):
            m = block(m, f)
            skips.append(fusion(torch.cat([m, f], dim=1)))
        return skips


class CoupledEncoder(nn.Module):
    """Table 2's baseline encoder: the fixed path's four convs on concat(M_k, F); their outputs are the skips."""

    def __init__(self, ndims: int):
        super().__init__()
        self.convs = nn.ModuleList(conv_norm_act(ndims, a, b, stride=2) for a, b in zip((2, *CHANNELS[:-1]), CHANNELS))

    def prepare(self, fixed: torch.Tensor) -> torch.Tensor:
        return fixed

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> list[torch.Tensor]:
        x, skips = torch.cat([moving, fixed], dim=1), []
        for conv in self.convs:
            x = conv(x)
            skips.append(x)
        return skips


class Decoder(nn.Module):
    """ULAE-net's decoder (module docstring) with ``depth`` up-blocks (1..3); ``forward(skips, pair, k)`` runs the
    bottom, the first k up-blocks and the tail and returns 16 channels at 1 / 2^(3 - k) of the input."""

    def __init__(self, ndims: int, depth: int = 3):
        super().__init__()
        self.bottom = conv_norm_act(ndims, CHANNELS[3], 32)
        self.ups = nn.ModuleList(conv_norm_act(ndims, 32 + CHANNELS[2 - j], 32) for j in range(depth))
        self.tail = nn.Sequential(conv_norm_act(ndims, 32, 32), conv_norm_act(ndims, 32, 16))
        self.last = conv_norm_act(ndims, 16 + 2, 16)

    def forward(self, skips: list[torch.Tensor], pair: torch.Tensor, depth: int) -> torch.Tensor:
        y = self.bottom(skips[3])
        for j in range(depth):
            y = self.ups[j](torch.cat([_up(y, "linear"), skips[2 - j]], dim=1))
        y = _up(self.tail(y), "linear")
        factor = 2 ** (3 - depth)
        if factor > 1:
            pair = (F.avg_pool3d if pair.dim() == 5 else F.avg_pool2d)(pair, factor)
        return self.last(torch.cat([y, pair], dim=1))


class ULAENet(nn.Module):
    """ULAE-net (module docstring). ``decoder``: "shared" (the paper's 789.56K) or "per-step" (the public code);
    ``uncoupled`` / ``accumulative``: Table 2's switches; ``final_warp``: "composed" (M o phi, the paper) or
    "chained" (M_2 o phi_3, the code)."""

    def __init__(self, size: Sequence[int], decoder: str = "shared", uncoupled: bool = True,
                 accumulative: bool = True, final_warp: str = "composed"):
        super().__init__()
        ndims = _ndims(size)
        if math.prod(int(s) // 16 for s in size) == 1:
            raise ValueError(f"size {tuple(size)}: ULAE-net's InstanceNorm needs more than one voxel at 1/16")
        if decoder not in ("shared", "per-step") or final_warp not in ("composed", "chained"):
            raise ValueError(f"decoder {decoder!r} (shared, per-step) or final_warp {final_warp!r} "
                             "(composed, chained) unknown")
        self.config = {"size": tuple(int(s) for s in size), "decoder": decoder, "uncoupled": uncoupled,
                       "accumulative": accumulative, "final_warp": final_warp}
        self.size, self.final_warp = self.config["size"], final_warp
        self.depths = (1, 2, 3) if accumulative else (3,)  # up-blocks of each step
        self.shared = decoder == "shared"
        self.encoder = UncoupledEncoder(ndims) if uncoupled else CoupledEncoder(ndims)
        self.decoders = nn.ModuleList([Decoder(ndims, 3)] if self.shared else
                                      [Decoder(ndims, k) for k in self.depths])
        self.heads = nn.ModuleList(flow_head(ndims, 16) for _ in self.depths)
        self.transformer = SpatialTransformer(self.size)

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> dict:
        context = self.encoder.prepare(fixed)
        image, flow, flows, warped_steps = moving, None, [], []
        last = len(self.depths) - 1
        for k, depth in enumerate(self.depths):
            skips = self.encoder(image, context)
            y = self.decoders[0 if self.shared else k](skips, torch.cat([image, fixed], dim=1), depth)
            step = self.heads[k](y)
            if tuple(step.shape[2:]) != self.size:
                step = resize_flow(step, self.size)
            flow = step if flow is None else compose(flow, step)
            flows.append(step)
            if k < last or self.final_warp == "chained" or last == 0:
                image = self.transformer(image, step)  # M_k = M_{k-1} o phi_k
            else:
                image = self.transformer(moving, flow)  # W = M o phi (eq. 2)
            warped_steps.append(image)
        return {"warped": image, "flow": flow, "flows": flows, "warped_steps": warped_steps}


class VoxelMorph(nn.Module):
    """VoxelMorph vm2 (module docstring), its channels times ``width`` (2: VMx2): ``forward(moving, fixed)`` -> the
    same keys as ULAE-net, one step."""

    ENCODER = (16, 32, 32, 32)
    DECODER = (32, 32, 32, 32, 32, 16, 16)

    def __init__(self, size: Sequence[int], width: int = 1):
        super().__init__()
        ndims = _ndims(size)
        self.config = {"size": tuple(int(s) for s in size), "width": int(width)}
        conv = _CONV[ndims]
        enc, dec = (tuple(width * c for c in chans) for chans in (self.ENCODER, self.DECODER))

        def block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
            return nn.Sequential(conv(c_in, c_out, 3, stride=stride, padding=1), nn.LeakyReLU(SLOPE))

        self.enc = nn.ModuleList(block(a, b, 2) for a, b in zip((2, *enc[:-1]), enc))
        # dec[0..2] then up-sampling and the skip of the next finer level: inputs 32, 32+32, 32+32, then 32+16
        ins = (enc[3], dec[0] + enc[2], dec[1] + enc[1], dec[2] + enc[0], dec[3], dec[4] + 2, dec[5])
        self.dec = nn.ModuleList(block(a, b) for a, b in zip(ins, dec))
        self.head = flow_head(ndims, dec[6])
        self.transformer = SpatialTransformer(self.config["size"])

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> dict:
        x = torch.cat([moving, fixed], dim=1)
        feats = [x]
        for layer in self.enc:
            feats.append(layer(feats[-1]))
        y = feats[-1]
        for i in range(3):  # 1/16 -> 1/8 -> 1/4 -> 1/2
            y = torch.cat([_up(self.dec[i](y), "nearest"), feats[-(i + 2)]], dim=1)
        y = self.dec[4](self.dec[3](y))
        y = self.dec[6](self.dec[5](torch.cat([_up(y, "nearest"), x], dim=1)))
        flow = self.head(y)
        warped = self.transformer(moving, flow)
        return {"warped": warped, "flow": flow, "flows": [flow], "warped_steps": [warped]}


def build(cfg) -> nn.Module | None:
    """The network of a RegistrationConfig at ``cfg.volume_shape``; None for syn and identity (no learned model)."""
    if cfg.model == "ulae":
        return ULAENet(cfg.volume_shape, decoder=cfg.decoder, uncoupled=cfg.uncoupled, accumulative=cfg.accumulative,
                       final_warp=cfg.final_warp)
    if cfg.model == "voxelmorph":
        return VoxelMorph(cfg.volume_shape, width=cfg.vm_width)
    return None
