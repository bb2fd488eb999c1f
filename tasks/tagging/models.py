"""The two auto-tagging CNNs of Ferraro et al. 2020 ("How low can you go?", EUSIPCO), Sections IV and VI.

Inputs are mel spectrograms shaped ``(B, 1, n_mels, frames)`` (frequency first, as in Table I); both models
return **logits** ``(B, n_tags)``: the paper's sigmoid output is applied by the loss
(``BCEWithLogitsLoss``) or by the caller (``torch.sigmoid``) for scoring.

* ``VGGCNN``: Choi et al. 2016 as used in Table I, with the max-pooling sizes of Table III (``vgg_pools``).
  It reads the whole 29.1 s clip.
* ``MusiCNN``: Pons et al. 2018 as re-implemented by the authors (``andrebola/EUSIPCO2020``,
  ``mtat-tagging/autotagging.py``), fed 3 s patches (Section VI-B); a clip's score is the mean over its patches.

MUSICNN's geometry: the authors' script applies kernels shaped for (frames, mel) data to (mel, frames) arrays, so,
read literally, its timbral filters span 7 mel bands x 86 frames (at 96 bands) rather than 86 bands x 7 frames
(REFERENCES.md). We follow the paper's shapes, frequency x time (Section IV: 38x1 ... 86x7 timbral and 1x32 ...
1x165 temporal filters; Section VI-B: 90% and 40% of the mel bands), which are the intended ones; the literal
reading is not offered as an option.
"""
from __future__ import annotations

import math

import torch
from torch import nn

FRAMES_X1 = {12000: 1366, 16000: 1820}  # 29.1 s at hop 256 (Section V)
HOP = 256  # reference hop in samples (Table II)
PATCH_SECONDS = 3.0  # MUSICNN segment length (Section VI-B)
VGG_FILTERS = (128, 384, 768, 2048)  # Table I

# Table III. Time pools depend on the sample rate and hop factor, frequency pools on the mel bands only.
# The table gives one time row per (sample rate, hop) for every mel count, so the 32/24/16/8-band models use
# the x1 row; the authors' scripts use other x1 time pools for those (e.g. 4, 5, 8, 7 for 32 bands), which
# reduce to 1x1 too. The 16 kHz x10 row is 4, 5, 9, 1; the authors' 128-band script uses 4, 5, 4, 1 there,
# which leaves 2 time steps (182 -> 45 -> 9 -> 2 -> 2) that Keras' Flatten hides; we follow the table.
TIME_POOLS = {
    12000: {1: (4, 5, 8, 8), 2: (4, 5, 8, 4), 3: (4, 5, 8, 2), 4: (4, 5, 8, 2), 5: (4, 5, 8, 1), 10: (4, 5, 4, 1)},
    16000: {1: (4, 5, 9, 10), 2: (4, 5, 9, 5), 3: (4, 5, 9, 3), 4: (4, 5, 9, 2), 5: (4, 5, 9, 2), 10: (4, 5, 9, 1)},
}
FREQ_POOLS = {128: (2, 4, 4, 4), 96: (2, 4, 3, 4), 48: (2, 4, 3, 2), 32: (2, 2, 3, 2), 24: (2, 2, 3, 2),
              16: (2, 2, 2, 2), 8: (2, 2, 2, 1)}


def input_frames(cfg) -> int:
    """Frames of one model input: the 29.1 s clip for VGG-CNN (Section V: 1366 / 1820 frames at x1; every k-th
    frame at xk, i.e. ceil(frames / k): 137 / 182 at x10), a 3 s patch for MUSICNN (Section VI-B)."""
    if cfg.model == "musicnn":
        return patch_frames(cfg.sample_rate, cfg.hop_factor)
    return math.ceil(FRAMES_X1[cfg.sample_rate] / cfg.hop_factor)


def patch_frames(sample_rate: int, hop_factor: int = 1) -> int:
    """Frames in a 3 s MUSICNN patch: floor(3 s * sample_rate / (hop_factor * 256)); 187 at 16 kHz as in Pons et
    al. 2018, 140 at 12 kHz. (The authors' script cuts 128-frame patches; the paper states 3 s.)"""
    return int(PATCH_SECONDS * sample_rate / (hop_factor * HOP))


def vgg_pools(n_mels: int, sample_rate: int, hop_factor: int) -> list[tuple[int, int]]:
    """The four (frequency, time) max-pooling windows of VGG-CNN for one Table II configuration (Table III).

    >>> vgg_pools(96, 12000, 1)  # Table I
    [(2, 4), (4, 5), (3, 8), (4, 8)]
    """
    try:
        freq, time = FREQ_POOLS[n_mels], TIME_POOLS[sample_rate][hop_factor]
    except KeyError:
        raise ValueError(f"no Table III pooling for n_mels={n_mels}, sample_rate={sample_rate}, "
                         f"hop_factor={hop_factor}; valid: n_mels {sorted(FREQ_POOLS)}, sample_rate "
                         f"{sorted(TIME_POOLS)}, hop_factor {sorted(TIME_POOLS[12000])}") from None
    return list(zip(freq, time))


def pooled_size(size: int, pools) -> int:
    """Size left after floor-mode max pooling (Keras ``MaxPooling2D`` 'valid', as in the authors' code)."""
    for p in pools:
        size //= p
    return size


class VGGCNN(nn.Module):
    """VGG-CNN (Choi et al. 2016; Ferraro et al. 2020 Table I, pooling of Table III).

    x -> BN -> 4 x [conv 3x3 'same' (128, 384, 768, 2048 filters) -> BN -> ELU -> max-pool pools[i]]
      -> flatten (1 x 1 x 2048) -> dense n_tags (logits; sigmoid in the loss).

    Pooling is floor mode (Keras 'valid', the authors' code): with Table III every Table II input reduces to
    exactly 1 x 1, so no padding is needed; a configuration that would not is refused at construction.
    """

    def __init__(self, n_mels: int, frames: int, pools, n_tags: int = 50):
        super().__init__()
        pools = [tuple(p) for p in pools]
        out = (pooled_size(n_mels, [p[0] for p in pools]), pooled_size(frames, [p[1] for p in pools]))
        if out != (1, 1):
            raise ValueError(f"pools {pools} reduce a {n_mels}x{frames} input to {out[0]}x{out[1]}, not 1x1")
        self.n_mels, self.frames, self.pools, self.n_tags = n_mels, frames, pools, n_tags
        layers: list[nn.Module] = [nn.BatchNorm2d(1)]  # input BN over the single channel, as the authors
        c_in = 1
        for c_out, pool in zip(VGG_FILTERS, pools):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ELU(), nn.MaxPool2d(pool)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c_in, n_tags)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, n_mels, frames) mel spectrogram -> (B, n_tags) logits."""
        return self.classifier(self.features(x).flatten(1))


class MusiCNN(nn.Module):
    """MUSICNN (Pons et al. 2018) as the authors of Ferraro et al. 2020 ran it (Sections IV, VI-B).

    Front-end, on BN(x):
      timbral: conv (f x w), f = 90% and 40% of the mel bands (86 and 38 at 96 bands), w = 7, 3, 1 frames with
        64, 128, 256 filters, 'same' in time -> ReLU -> BN -> max over frequency;
      temporal: mean over frequency -> conv1d 1x165, 1x128, 1x64, 1x32 (32 filters each, 'same') -> ReLU -> BN;
      concatenated: 896 + 128 = 1024 channels x T.
    Mid-end: three conv1d (kernel 7, 512 filters, 'same') -> ReLU -> BN; layers 2 and 3 residual, a max-pool of 2
      in time before layer 3 (as the authors' code, whose first mid-end conv is unpadded: T - 6 steps; we pad it
      so that any patch length works and the residual sums line up the same way).
    Back-end: max and mean over time (1024) -> dropout 0.5 -> dense 500 -> ReLU -> BN -> dropout 0.5 -> dense
      n_tags (logits).
    Filter counts, 512 / 500 and the dropout follow ``andrebola/EUSIPCO2020`` (Pons' own MTT model,
    ``jordipons/musicnn-training``, uses 64 mid-end filters and 200 dense units). Kernel shapes are the paper's,
    frequency x time; the authors' script, read literally, swaps them (module docstring).
    """

    TIMBRAL = ((7, 64), (3, 128), (1, 256))  # (width in frames, filters) per frequency extent
    TEMPORAL = (165, 128, 64, 32)  # kernel lengths in frames
    TEMPORAL_FILTERS = 32
    MID_FILTERS = 512
    DENSE_UNITS = 500

    def __init__(self, n_mels: int, frames: int, n_tags: int = 50, dropout: float = 0.5):
        super().__init__()
        self.n_mels, self.frames, self.n_tags = n_mels, frames, n_tags
        self.input_bn = nn.BatchNorm2d(1)
        heights = (max(1, int(0.9 * n_mels)), max(1, int(0.4 * n_mels)))  # Section VI-B: same 90% / 40%
        self.timbral = nn.ModuleList(
            nn.Sequential(nn.Conv2d(1, c, (h, w), padding=(0, w // 2)), nn.ReLU(), nn.BatchNorm2d(c))
            for h in heights for w, c in self.TIMBRAL)
        self.temporal = nn.ModuleList(
            nn.Sequential(nn.ConstantPad1d(((k - 1) // 2, k // 2), 0.0),  # 'same' as Keras (extra on the right)
                          nn.Conv1d(1, self.TEMPORAL_FILTERS, k), nn.ReLU(), nn.BatchNorm1d(self.TEMPORAL_FILTERS))
            for k in self.TEMPORAL)
        c_front = 2 * sum(c for _, c in self.TIMBRAL) + len(self.TEMPORAL) * self.TEMPORAL_FILTERS
        self.mid = nn.ModuleList(
            nn.Sequential(nn.Conv1d(c, self.MID_FILTERS, 7, padding=3), nn.ReLU(), nn.BatchNorm1d(self.MID_FILTERS))
            for c in (c_front, self.MID_FILTERS, self.MID_FILTERS))
        # ceil_mode keeps one step for a 1-frame input; the authors' Keras pool floors (same for T >= 2 even)
        self.mid_pool = nn.MaxPool1d(2, ceil_mode=True)
        self.backend = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(2 * self.MID_FILTERS, self.DENSE_UNITS), nn.ReLU(),
            nn.BatchNorm1d(self.DENSE_UNITS), nn.Dropout(dropout), nn.Linear(self.DENSE_UNITS, n_tags))

    def front_end(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, n_mels, T) -> (B, 1024, T)."""
        x = self.input_bn(x)
        maps = [block(x).amax(dim=2) for block in self.timbral]  # max over the remaining frequency positions
        mean_f = x.mean(dim=2)  # (B, 1, T): the temporal filters see the frequency-averaged spectrogram
        maps += [block(mean_f) for block in self.temporal]
        return torch.cat(maps, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, n_mels, T) patch -> (B, n_tags) logits."""
        h1 = self.mid[0](self.front_end(x))
        h2 = self.mid_pool(h1 + self.mid[1](h1))
        h3 = h2 + self.mid[2](h2)
        pooled = torch.cat([h3.amax(dim=2), h3.mean(dim=2)], dim=1)
        return self.backend(pooled)


def build_model(cfg) -> nn.Module:
    """The model named by ``cfg.model`` for the configuration's input (constructible on the meta device)."""
    frames = input_frames(cfg)
    if cfg.model == "vgg":
        return VGGCNN(cfg.n_mels, frames, vgg_pools(cfg.n_mels, cfg.sample_rate, cfg.hop_factor), cfg.n_tags)
    if cfg.model == "musicnn":
        return MusiCNN(cfg.n_mels, frames, cfg.n_tags)
    raise ValueError(f"unknown model {cfg.model!r}; valid: 'vgg', 'musicnn'")


def input_shape(cfg) -> tuple[int, int, int, int]:
    """Shape of one model input, ``(1, 1, n_mels, input_frames(cfg))`` (for the cost count)."""
    return (1, 1, cfg.n_mels, input_frames(cfg))
