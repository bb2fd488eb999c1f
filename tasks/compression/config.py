"""Configuration of the `compression` task (Dumas, Roumy & Guillemot, ICASSP 2018).

Paper symbols: ``gamma`` weighs the rate in eq. (1)/(4); ``delta_i`` is the quantisation step of feature map i;
``beta`` scales the steps at test time (Section 4); ``m`` is the number of feature maps of Y (Section 3).
The three cases of Section 4 map onto config values:

* case 1 (gamma set):        ``quantization=fixed-step``, one trial per gamma in S, evaluated at beta = 1 only
* case 2 (learned step):     ``quantization=learned-step, gamma=10000``, evaluated over beta in B
* case 3 (single gamma):     ``quantization=fixed-step, gamma=10000``, evaluated over beta in B

``codec=jpeg`` / ``codec=jpeg2000`` / ``codec=hevc`` are the anchors of Figure 5: no training, evaluated at every
quality (``hevc``: x265 through the optional pillow-heif, with the recorded ``hevc_preset``/``hevc_tune``;
:mod:`.anchors`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from sweeplab.api import param

from .anchors import X265_PRESETS, X265_TUNES, hevc_missing

GAMMA_SET = (10000.0, 12000.0, 16000.0, 24000.0, 40000.0, 72000.0, 96000.0)  # S, Section 4
BETA_SET = (1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0)  # B, Section 4


class Schedule(NamedTuple):
    """One band of gamma of the authors' training schedule."""
    below: float  # the band holds gamma < below (and >= the previous band's bound)
    drops: tuple[int, int]  # iterations at which the transform's learning rate is divided by 10, then by 100
    length: int  # iterations their released models trained for (after the density warm-up)


# The authors' code and released models (/work/shared/REFERENCES.md, "Dumas et al. 2018"): the learning-rate drop
# points are derived from gamma, and training ran in phases of 80 epochs x 2,400 mini-batches: 10 phases for
# gamma <= 40000 (only the first drop is reached), 7 for 72000 and 6 for 96000 (both drops reached). A gamma outside
# S gets the length of the band its drop points come from, so its learning rate drops as those models' did.
AUTHORS_SCHEDULE = (
    Schedule(60000.0, (1_500_000, 2_000_000), 10 * 80 * 2400),  # gamma in S up to 40000: 1.92 M iterations
    Schedule(80000.0, (900_000, 950_000), 7 * 80 * 2400),  # 72000: 1.344 M
    Schedule(math.inf, (750_000, 800_000), 6 * 80 * 2400),  # 96000: 1.152 M
)


def authors_schedule(gamma: float) -> Schedule:
    """The band of :data:`AUTHORS_SCHEDULE` that ``gamma`` falls in."""
    return next(band for band in AUTHORS_SCHEDULE if gamma < band.below)


def _schedule_text() -> str:
    bounds = [0.0] + [band.below for band in AUTHORS_SCHEDULE]
    return "; ".join(f"gamma in [{low:g}, {band.below:g}): drops at {band.drops[0]:,} and {band.drops[1]:,}, "
                     f"{band.length:,} iterations" for low, band in zip(bounds, AUTHORS_SCHEDULE))

# Conditions (``param(when=...)``): the fields of the autoencoder (model, training, training/extra data) do not apply
# to the anchors, whose trials neither train nor read the training crops or the extra images; the step fields only
# to learned-step (a condition chained on ``quantization``, itself autoencoder-only). ``train_dir``/``extra_dir``
# stay unconditional: every trial's ``load_data`` lists (and ``check`` validates) them, anchors included, and a
# sweep sets them once for all its trials.
_AUTOENCODER = {"codec": "autoencoder"}
_LEARNED_STEP = {"quantization": "learned-step"}


@dataclass(frozen=True)
class CompressionConfig:
    codec: str = param("autoencoder", "autoencoder (the paper's method) or an anchor: jpeg, jpeg2000, hevc (H.265 "
                       "intra by x265; needs the optional extra sweeplab[hevc])",
                       choices=("autoencoder", "jpeg", "jpeg2000", "hevc"))
    quantization: str = param("fixed-step", "fixed-step: GDN/IGDN bit allocation, step 1 (cases 1 and 3); "
                              "learned-step: one learned delta_i per map + piecewise-linear density (case 2)",
                              choices=("fixed-step", "learned-step"), when=_AUTOENCODER)
    gamma: float = param(10000.0, "rate weight gamma of eq. (1)/(4)", low=0.0, when=_AUTOENCODER)
    m: int = param(128, "number of feature maps of Y (Section 3: m = 128)", low=1, when=_AUTOENCODER)
    betas: tuple[float, ...] = param(BETA_SET, "test-time step multipliers beta (Section 4, set B)", low=0.0,
                                     when=_AUTOENCODER)
    # training (Section 3 and the authors' code)
    iterations: int | None = param(None, "training iterations (mini-batches) after the density warm-up; null: the "
                                   "length of the authors' models for this gamma (see lr_schedule), which the "
                                   "trials table then records", low=0, when=_AUTOENCODER)
    batch_size: int = param(10, "mini-batch size", low=1, when=_AUTOENCODER)
    crop_size: int = param(256, "side of the random luminance training crops (multiple of 16)", low=16,
                           when=_AUTOENCODER)
    n_train_crops: int = param(24000, "number of training crops extracted once from the training images", low=1,
                               when=_AUTOENCODER)
    lr: float = param(1e-4, "Adam learning rate of the transform (encoder + decoder + GDN)", low=0.0, when=_AUTOENCODER)
    lr_density: float = param(0.2, "plain gradient-descent learning rate of the density parameters", low=0.0,
                              when=_AUTOENCODER)
    lr_delta: float = param(2e-8, "plain gradient-descent learning rate of the steps delta_i (authors' LR_BW: the "
                            "rate gradient gamma / (delta ln 2) is ~1e4 per map)", low=0.0, when=_LEARNED_STEP)
    delta_init: float = param(0.5, "initial steps delta_i of learned-step (authors' released case-2 model: 0.5; "
                              "projected onto [0.8, 4] at the first update)", low=0.01, when=_LEARNED_STEP)
    weight_decay: float = param(5e-4, "weight of the l2 penalty sum ||W||^2 / 2 over the six convolution kernels "
                                "(authors' WEIGHT_DECAY_P)", low=0.0, when=_AUTOENCODER)
    lr_schedule: str = param("authors", "authors: lr divided by 10, then by 100, at the authors' drop points ("
                             + _schedule_text() + "); constant: lr throughout",
                             choices=("authors", "constant"), when=_AUTOENCODER)
    density_warmup_epochs: int = param(1, "epochs over the training crops fitting only the density first", low=0,
                                       when=_AUTOENCODER)
    report_every: int = param(100, "iterations between progress reports", low=1, when=_AUTOENCODER)
    checkpoint_every: int = param(10000, "iterations between checkpoints", low=1, when=_AUTOENCODER)
    # data
    train_dir: str = param("", "folder of training images (ImageNet-style, searched recursively); "
                           "empty: images shipped with scikit-image", folder=True)
    test_dir: str = param("", "Kodak-style folder of test images; empty: images shipped with scikit-image",
                          folder=True)
    extra_dir: str = param("", "folder of extra images for the latent means mu_i (Section 3.1) and the coded "
                           "rate's probabilities; empty: the training images", folder=True)
    n_extra_images: int = param(1000, "number of extra images (centre crops) for the latent means and the coder's "
                                "probabilities (authors: 1000)", low=1, when=_AUTOENCODER)
    extra_crop: int = param(384, "side of the centre crops of the extra images (authors: 384)", low=16,
                            when=_AUTOENCODER)
    data_seed: int = param(0, "seed of the training-crop extraction: the same for every trial, so that methods are "
                           "trained on the same crops", low=0, when=_AUTOENCODER)
    n_test_images: int = param(0, "use only the first N test images (0: all)", low=0)
    test_crop: int = param(0, "centre-crop test images to this side (0: full image, cropped to a multiple of 16)",
                           low=0)
    # anchors
    jpeg_qualities: tuple[int, ...] = param((5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
                                            "JPEG qualities of the anchor curve", low=1, high=100,
                                            when={"codec": "jpeg"})
    jpeg2000_rates: tuple[float, ...] = param((0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0),
                                              "JPEG 2000 target rates in bits per pixel", low=0.0,
                                              when={"codec": "jpeg2000"})
    hevc_qualities: tuple[int, ...] = param((5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
                                            "H.265 (x265) qualities of the anchor curve (-1: lossless)", low=-1,
                                            high=100, when={"codec": "hevc"})
    hevc_preset: str = param("veryslow", "x265 preset of the H.265 anchor (veryslow: the nearest to the paper's HM "
                             "reference encoder)", choices=X265_PRESETS, when={"codec": "hevc"})
    hevc_tune: str = param("psnr", "x265 tune of the H.265 anchor (psnr: no psycho-visual tuning, as HM)",
                           choices=X265_TUNES, when={"codec": "hevc"})

    def __post_init__(self):
        # iterations = null means the authors' length for this gamma: resolved here so that every user of the
        # config (the trainer, ``describe``, the trials table) sees the number of iterations the trial trains for.
        # A copy made with ``dataclasses.replace`` keeps the resolved number: give iterations=None to re-derive it.
        if self.iterations is None:
            object.__setattr__(self, "iterations", authors_schedule(self.gamma).length)

    def check(self) -> list[str]:
        problems = []
        if self.crop_size % 16:
            problems.append(f"crop_size: {self.crop_size} is not a multiple of 16 (the encoder downsamples by 16)")
        if self.test_crop % 16:
            problems.append(f"test_crop: {self.test_crop} is not a multiple of 16")
        if self.codec == "hevc" and (missing := hevc_missing()):
            problems.append(f"codec: {missing}")
        return problems
