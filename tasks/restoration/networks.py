"""Networks of old photo restoration (Wan et al., CVPR 2020, "Bringing Old Photos Back to Life"), Section 3.

Restoration by latent translation (Section 3.1): r_{R->Y} = G_Y(T(E_R(r))). VAE1 (E_{R,X}, G_{R,X}) encodes real old
photos R and synthetic degraded images X into one latent space, VAE2 (E_Y, G_Y) clean images Y; the mapping T
translates Z_X to Z_Y; a partial nonlocal block (Section 3.2) gives T a global branch that inpaints scratched
regions given a mask m; the mask comes from a scratch detection U-Net (Section 3.3). Layer plans are the authors'
public code's (microsoft/Bringing-Old-Photos-Back-to-Life, Global/; /work/shared/REFERENCES.md), which the
paper does not give; where paper and code differ we say so beside the layer:

* ``VAE``: reflect-pad 3, conv 7x7 3 -> 64, IN, ReLU; two conv 4x4 s2 64 -> 64 + IN + ReLU; 4 residual blocks ->
  the latent mean (64 channels at 1/4). Decoder mirrors it with ConvTranspose 4x4 s2 and ends in conv 7x7 -> 3,
  tanh. "Reduced" VAE (the code, after MUNIT): sigma fixed at 1, z = mean + N(0, 1); the paper writes a general
  KL(E(z|r) || N(0, I)) without saying sigma is fixed.
* ``MultiscaleDiscriminator``: pix2pixHD's PatchGAN (kernel 4, padding 2 as the code) at num_d scales.
* ``Mapping``: T of Section 3.1 with the optional ``PartialNonLocal`` of Section 3.2.
* ``ScratchUNet``: the detector of Section 3.3.
* ``VGG19Features``: the frozen network of the perceptual loss, loading torchvision's ImageNet weights.

InstanceNorm has no affine parameters (the code's norm layer). Init (the code's ``weights_init``): conv weights
N(0, 0.02), biases PyTorch's default; the detector keeps PyTorch's defaults (its training code was never released).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

IMAGE_CHANNELS = 3
SLOPE = 0.2  # LeakyReLU of the discriminators and the detector
INIT_STD = 0.02


def conv(c_in: int, c_out: int, k: int, stride: int = 1, padding: int = 0, reflect: bool = False,
         transposed: bool = False) -> nn.Module:
    """A convolution with the authors' init (weights N(0, 0.02)); ``reflect`` pads by reflection (the code's
    ReflectionPad2d before an unpadded conv)."""
    if transposed:
        layer = nn.ConvTranspose2d(c_in, c_out, k, stride=stride, padding=padding)
    else:
        layer = nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding,
                          padding_mode="reflect" if reflect else "zeros")
    nn.init.normal_(layer.weight, 0.0, INIT_STD)
    return layer


def conv_in_relu(c_in: int, c_out: int, k: int, stride: int = 1, padding: int = 0, reflect: bool = False,
                 transposed: bool = False) -> list[nn.Module]:
    return [conv(c_in, c_out, k, stride, padding, reflect, transposed), nn.InstanceNorm2d(c_out), nn.ReLU()]


class ResBlock(nn.Module):
    """x + (reflect-pad, conv 3x3, IN, ReLU, reflect-pad, conv 3x3, IN)(x): the residual block of the VAEs, the
    mapping and the nonlocal block."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(*conv_in_relu(channels, channels, 3, padding=1, reflect=True),
                                  conv(channels, channels, 3, padding=1, reflect=True), nn.InstanceNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class VAE(nn.Module):
    """VAE1 / VAE2 of Section 3.1 (module docstring); the latent is 64 channels at 1/4 resolution (H, W multiples
    of 4). ``forward`` = decode(encode(x)) without noise: the deterministic inference path (and the cost's)."""

    def __init__(self, ngf: int = 64, n_res: int = 4):
        super().__init__()
        self.ngf, self.n_res = ngf, n_res
        self.encoder = nn.Sequential(*conv_in_relu(IMAGE_CHANNELS, ngf, 7, padding=3, reflect=True),
                                     *conv_in_relu(ngf, ngf, 4, 2, 1), *conv_in_relu(ngf, ngf, 4, 2, 1),
                                     *(ResBlock(ngf) for _ in range(n_res)))
        self.decoder = nn.Sequential(*(ResBlock(ngf) for _ in range(n_res)),
                                     *conv_in_relu(ngf, ngf, 4, 2, 1, transposed=True),
                                     *conv_in_relu(ngf, ngf, 4, 2, 1, transposed=True),
                                     conv(ngf, IMAGE_CHANNELS, 7, padding=3, reflect=True), nn.Tanh())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """E(x): the latent mean (B, ngf, H/4, W/4)."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """G(z): an image in [-1, 1]."""
        return self.decoder(z)

    @staticmethod
    def sample(mean: torch.Tensor) -> torch.Tensor:
        """z ~ N(mean, I): the reduced VAE's differentiable sampling (sigma fixed at 1, as the code)."""
        return mean + torch.randn_like(mean)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class SampledReconstruction(nn.Module):
    """A VAE's training pass (Section 3.1, eq. 1): ``forward(x)`` -> {"mean": E(x), "x_hat": G(E(x) + N(0, I))}.
    Training calls a VAE through this module so that the data-parallel wrapper around it sees the whole pass: a
    wrapper averages the gradients of what its own ``forward`` ran, not of ``encode`` / ``decode`` called on the
    module inside it."""

    def __init__(self, vae: VAE):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mean = self.vae.encode(x)
        return {"mean": mean, "x_hat": self.vae.decode(self.vae.sample(mean))}


class PatchGAN(nn.Module):
    """pix2pixHD's PatchGAN: conv 4x4 s2 ndf + LeakyReLU; (n_layers - 1) x conv s2 (doubling, at most 512) + IN +
    LeakyReLU; conv s1 + IN + LeakyReLU; conv s1 -> 1 (padding 2 everywhere, as the code). ``forward`` -> every
    layer's output, the last being the patch prediction. ``spectral_norm`` wraps every conv (the scratch model)."""

    def __init__(self, in_channels: int, n_layers: int = 3, ndf: int = 64, spectral_norm: bool = False):
        super().__init__()
        sn = _spectral_norm if spectral_norm else (lambda m: m)
        widths = [min(ndf * 2 ** n, 512) for n in range(n_layers + 1)]
        layers = [[sn(conv(in_channels, widths[0], 4, 2, 2)), nn.LeakyReLU(SLOPE)]]
        for n in range(1, n_layers + 1):
            layers.append([sn(conv(widths[n - 1], widths[n], 4, 2 if n < n_layers else 1, 2)),
                           nn.InstanceNorm2d(widths[n]), nn.LeakyReLU(SLOPE)])
        layers.append([sn(conv(widths[-1], 1, 4, 1, 2))])
        self.layers = nn.ModuleList(nn.Sequential(*layer) for layer in layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for layer in self.layers:
            x = layer(x)
            outputs.append(x)
        return outputs


class MultiscaleDiscriminator(nn.Module):
    """num_d PatchGANs, scale k seeing the input average-pooled k times (AvgPool 3, stride 2, padding 1, padding
    not counted). ``forward(x)`` -> [scale][layer] outputs, for LSGAN (the last of each) and feature matching.
    The image D of VAE1/VAE2 has in_channels 3; the mapping stage's D is conditioned on the degraded input,
    cat(x, image), in_channels 6."""

    def __init__(self, in_channels: int, num_d: int = 2, n_layers: int = 3, ndf: int = 64,
                 spectral_norm: bool = False):
        super().__init__()
        self.scales = nn.ModuleList(PatchGAN(in_channels, n_layers, ndf, spectral_norm) for _ in range(num_d))
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        results = []
        for k, scale in enumerate(self.scales):
            if k:
                x = self.downsample(x)
            results.append(scale(x))
        return results


def latent_discriminator(channels: int = 64) -> MultiscaleDiscriminator:
    """D_{R,X} of Section 3.1: the same PatchGAN at one scale on the latent, separating Z_R from Z_X."""
    return MultiscaleDiscriminator(channels, num_d=1)


def nonlocal_attention(theta: torch.Tensor, phi: torch.Tensor, hole: torch.Tensor | None = None) -> torch.Tensor:
    """The partial nonlocal affinity of Section 3.2: theta, phi (B, C, N), hole (B, N) with 1 at holes ->
    s (B, N, N), s_ij = (1 - h_j) f_ij / sum_k (1 - h_k) f_ik, f_ij = softmax_j(theta_i . phi_j): hole columns
    get zero weight and each row is renormalised over the intact positions. Computed as a softmax whose hole
    logits are -inf, which is the same quotient (softmax's normaliser cancels) without dividing by a sum of
    f_ik that may underflow to zero. ``hole=None`` is the plain nonlocal block's f.
    A sample whose every position is a hole has nothing intact to borrow from: its rows fall back to f (the plain
    attention over all positions) rather than 0/0. (The code's renormalisation, F.normalize, gives s = 0 there.)"""
    logits = torch.bmm(theta.transpose(1, 2), phi)
    if hole is not None:
        keep = hole == 0
        keep = keep | ~keep.any(dim=1, keepdim=True)  # no intact position: keep all (s = f)
        logits = logits.masked_fill(~keep[:, None, :], float("-inf"))
    return logits.softmax(dim=-1)


class PartialNonLocal(nn.Module):
    """The global branch of Section 3.2: theta, phi, g 1x1 convs; y = R(W(s g)) with s the partial affinity
    (``nonlocal_attention``), W a 1x1 conv and R ``n_res`` residual blocks; fusion z = (1 - h) x + h y: intact
    positions keep the local features x, holes take the global ones y.
    As the authors' code (NonLocalBlock2D_with_mask_Res, fusion "combine"), there is no "+ x" inside the global
    branch (Wang et al.'s nonlocal residual): the mask fusion takes its place. W starts at zero (Wang et al.'s
    init; ``zero_w=False`` gives what the code ends with: its global weights_init, applied after the block is
    built, overwrites the zero weights with N(0, 0.02), bias still 0).
    With no hole anywhere, z = x: the global branch has no effect on the output; then s is the plain softmax f
    and ``global_branch`` equals ``plain(x)``, the same block with attention over all positions."""

    def __init__(self, channels: int = 512, n_res: int = 3, zero_w: bool = True):
        super().__init__()
        self.theta, self.phi, self.g = (conv(channels, channels, 1) for _ in range(3))
        self.W = conv(channels, channels, 1)
        if zero_w:
            nn.init.zeros_(self.W.weight)
        nn.init.zeros_(self.W.bias)
        self.res = nn.Sequential(*(ResBlock(channels) for _ in range(n_res)))

    def attention(self, x: torch.Tensor, hole: torch.Tensor | None = None) -> torch.Tensor:
        """s (B, N, N) over the N = h w positions of x; hole (B, 1, h, w) or None (plain)."""
        return nonlocal_attention(self.theta(x).flatten(2), self.phi(x).flatten(2),
                                  None if hole is None else hole.flatten(1))

    def global_branch(self, x: torch.Tensor, hole: torch.Tensor | None = None) -> torch.Tensor:
        """y = R(W(s g)) (B, C, h, w)."""
        s = self.attention(x, hole)
        y = torch.bmm(self.g(x).flatten(2), s.transpose(1, 2))  # y_i = sum_j s_ij g_j
        return self.res(self.W(y.view_as(x)))

    def plain(self, x: torch.Tensor) -> torch.Tensor:
        """The plain nonlocal block's global output (softmax attention over all positions)."""
        return self.global_branch(x, None)

    def forward(self, x: torch.Tensor, hole: torch.Tensor | None = None) -> torch.Tensor:
        """z = (1 - h) x + h y; hole (B, 1, h, w) in {0, 1} at x's grid (None: no hole, z = x, the branch still
        computed so the cost counts it)."""
        if hole is None:
            hole = x.new_zeros(x.shape[0], 1, *x.shape[2:])
        return (1 - hole) * x + hole * self.global_branch(x, hole)


def latent_hole(mask: torch.Tensor, size) -> torch.Tensor:
    """The image-resolution mask (B, 1, H, W), nonzero at scratches, on the latent grid ``size`` = (h, w): a cell
    is a hole (1) when any of its pixels is (max-pool). The code instead samples the mask bilinearly at the cell
    centres and nearest at a corner, so a hole pixel elsewhere in the cell is missed."""
    return (F.adaptive_max_pool2d(mask, tuple(size)) > 0).to(mask.dtype)


class Mapping(nn.Module):
    """T of Section 3.1 (the code's Mapping_Model / Mapping_Model_with_mask): convs 3x3 + IN + ReLU channels ->
    width/4 -> width/2 -> width -> width, [``PartialNonLocal`` (Section 3.2) when ``nonlocal_block``], n_res
    residual blocks, convs width -> width -> width/2 -> width/4 (+ IN + ReLU), conv 3x3 width/4 -> channels.
    ``forward(z, mask)``: mask (B, 1, H, W) at image resolution (``latent_hole``); ignored without the block.
    ``plain``: the plain nonlocal block the paper compares with instead, x + (the global branch with attention over
    every position), the same at holes and intact positions; it ignores the mask."""

    def __init__(self, channels: int = 64, width: int = 512, n_res: int = 6, nonlocal_block: bool = False,
                 zero_w: bool = True, plain: bool = False):
        super().__init__()
        if width % 4:
            raise ValueError(f"width {width}: must be a multiple of 4 (widths width/4, width/2, width)")
        plan = [channels, width // 4, width // 2, width, width]
        self.head = nn.Sequential(*(m for a, b in zip(plan, plan[1:]) for m in conv_in_relu(a, b, 3, padding=1)))
        self.nonlocal_block = PartialNonLocal(width, zero_w=zero_w) if nonlocal_block else None
        self.plain = plain
        back = plan[:0:-1]  # width, width, width/2, width/4
        self.body = nn.Sequential(*(ResBlock(width) for _ in range(n_res)),
                                  *(m for a, b in zip(back, back[1:]) for m in conv_in_relu(a, b, 3, padding=1)),
                                  conv(width // 4, channels, 3, padding=1))

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.head(z)
        if self.nonlocal_block is not None and self.plain:
            x = x + self.nonlocal_block.plain(x)  # Wang et al.'s residual nonlocal block: blind to the mask
        elif self.nonlocal_block is not None:
            x = self.nonlocal_block(x, None if mask is None else latent_hole(mask, x.shape[2:]))
        return self.body(x)


class BlurPool(nn.Module):
    """Anti-aliased downsampling (Zhang 2019, as the code's detector): the binomial low-pass
    [1, 2, 1]^T [1, 2, 1] / 16 per channel (reflect padding), then stride 2."""

    def __init__(self, channels: int):
        super().__init__()
        a = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (torch.outer(a, a) / 16).expand(channels, 1, 3, 3).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), self.kernel, stride=2, groups=x.shape[1])


def _conv_bn_lrelu(c_in: int, c_out: int, k: int = 3) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, padding=k // 2, padding_mode="reflect"), nn.BatchNorm2d(c_out),
            nn.LeakyReLU(SLOPE)]


class ScratchUNet(nn.Module):
    """The scratch detector of Section 3.3 (the code's UNet: depth 4, wf 6, conv_num 2, bilinear up-sampling,
    antialiasing), reflect padding throughout: reflect-pad 3, conv 7x7 in -> base, LeakyReLU 0.2 (no BN);
    ``depth`` levels of [conv 3x3 + BN + LeakyReLU at full resolution, ``BlurPool``] then 2 x (conv 3x3, BN,
    LeakyReLU) doubling the channels (128, 256, 512, 1024); back up: bilinear x2 + conv 3x3 halving, concatenation
    with the level's skip, 2 x (conv 3x3, BN, LeakyReLU); conv 3x3 -> 1. ``forward(grey)`` (B, 1, H, W) in [-1, 1],
    H and W multiples of 2^depth and at least 2^(depth + 1) (reflect padding needs 2 pixels at the bottom) ->
    logits (B, 1, H, W); sigmoid gives the scratch probability, the 0.4 threshold is the caller's. The conv before
    each blur (antialiased-cnns' ConvBlurPool) is the code's; it holds ~3.1 M of the ~37.6 M parameters."""

    def __init__(self, in_channels: int = 1, base: int = 64, depth: int = 4):
        super().__init__()
        widths = [base * 2 ** i for i in range(depth + 1)]
        self.first = nn.Sequential(nn.Conv2d(in_channels, base, 7, padding=3, padding_mode="reflect"),
                                   nn.LeakyReLU(SLOPE))
        self.down = nn.ModuleList(nn.Sequential(*_conv_bn_lrelu(c, c), BlurPool(c), *_conv_bn_lrelu(c, 2 * c),
                                                *_conv_bn_lrelu(2 * c, 2 * c)) for c in widths[:-1])
        self.up = nn.ModuleList(nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                              nn.Conv2d(2 * c, c, 3, padding=1, padding_mode="reflect"))
                                for c in widths[-2::-1])
        self.merge = nn.ModuleList(nn.Sequential(*_conv_bn_lrelu(2 * c, c), *_conv_bn_lrelu(c, c))
                                   for c in widths[-2::-1])
        self.last = nn.Conv2d(base, 1, 3, padding=1, padding_mode="reflect")

    def forward(self, grey: torch.Tensor) -> torch.Tensor:
        x, skips = self.first(grey), []
        for down in self.down:
            skips.append(x)
            x = down(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips)):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.last(x)


# VGG19's convolutions up to conv5_1 in torchvision's ``features.<i>`` indexing ("M": max-pool); the ReLUs follow
VGG19_PLAN = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512)
VGG19_TAPS = (1, 6, 11, 20, 29)  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class VGG19Features(nn.Module):
    """VGG19 (Simonyan & Zisserman 2015) up to relu5_1, frozen, for the perceptual loss. ``forward(x)`` with x in
    [-1, 1] -> [relu1_1, relu2_1, relu3_1, relu4_1, relu5_1]. ``imagenet_norm``: the input is mapped to [0, 1]
    and normalised with ImageNet's mean and std, as torchvision's weights expect; the authors' code feeds the
    [-1, 1] images unnormalised (``imagenet_norm=False``)."""

    def __init__(self, imagenet_norm: bool = True):
        super().__init__()
        layers, c_in = [], IMAGE_CHANNELS
        for item in VGG19_PLAN:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, item, 3, padding=1), nn.ReLU()]
                c_in = item
        self.features = nn.Sequential(*layers)
        self.imagenet_norm = imagenet_norm
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.imagenet_norm:
            x = ((x + 1) / 2 - self.mean) / self.std
        outputs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in VGG19_TAPS:
                outputs.append(x)
        return outputs


def load_vgg19(path, imagenet_norm: bool = True) -> VGG19Features:
    """VGG19Features with the weights of a torchvision VGG19 state dict saved at ``path`` (``features.<i>.weight``
    / ``.bias``; the layers past relu5_1 and the classifier are ignored). Raises FileNotFoundError or ValueError
    naming the file when it is missing, unreadable or does not fit."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VGG19 weights {path}: no such file (a torchvision vgg19 state dict is needed)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable file: say which
        raise ValueError(f"VGG19 weights {path}: not a readable torch state dict ({err})") from err
    model = VGG19Features(imagenet_norm)
    wanted = model.state_dict()
    if not isinstance(state, dict):
        raise ValueError(f"VGG19 weights {path}: holds a {type(state).__name__}, not a state dict")
    missing = [k for k in wanted if k not in state]
    wrong = [f"{k} {tuple(state[k].shape)} (need {tuple(v.shape)})" for k, v in wanted.items()
             if k in state and getattr(state[k], "shape", None) != v.shape]
    if missing or wrong:
        raise ValueError(f"VGG19 weights {path}: do not fit torchvision's vgg19 features; missing {missing}, "
                         f"wrong shape {wrong}")
    model.load_state_dict({k: state[k] for k in wanted}, strict=True)
    return model.eval()


class RestorationPath(nn.Module):
    """The inference path of Section 3.1, G_Y(T(E_R(x))): ``forward(x, mask=None)`` =
    vae2.decode(mapping(vae1.encode(x), mask)), for the cost and the evaluation. It holds only the three parts
    it runs (VAE1's encoder, T, VAE2's decoder), so its parameter count is the path's."""

    def __init__(self, vae1: VAE, mapping: Mapping, vae2: VAE):
        super().__init__()
        self.encoder, self.mapping, self.decoder = vae1.encoder, mapping, vae2.decoder

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(self.mapping(self.encoder(x), mask))
