"""Configuration of the `tagging` task (Ferraro, Bogdanov, Yoon, Kim & Serra, "How low can you go? Reducing
frequency and time resolution in current CNN architectures for music auto-tagging", EUSIPCO 2020).

Paper symbols: ``sample_rate`` (12 or 16 kHz), ``n_mels`` (Slaney mel bands), ``hop_factor`` (hop = k x 256
samples, window 512), ``log`` compression (``log``: log10(1 + 10000 x), ``dB``: 10 log10 x): the grid of Table II.
``model``: VGG-CNN (Table I, Choi et al. 2016, pooling of Table III) or MUSICNN (Pons et al. 2018, Section VI-B).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sweeplab.config import param

MEL_BANDS = (128, 96, 48, 32, 24, 16, 8)  # Table II
HOP_FACTORS = (1, 2, 3, 4, 5, 10)  # Table II
SAMPLE_RATES = (12000, 16000)  # Table II
LOG_TYPES = ("log", "dB")  # Section V


@dataclass(frozen=True)
class TaggingConfig:
    model: str = param("vgg", "vgg: VGG-CNN (Table I/III); musicnn: MUSICNN (Section VI-B)",
                       choices=("vgg", "musicnn"))
    sample_rate: int = param(12000, "sample rate in Hz (Table II)", choices=SAMPLE_RATES)
    n_mels: int = param(96, "Slaney mel bands (Table II)", choices=MEL_BANDS)
    hop_factor: int = param(1, "hop size as a multiple of 256 samples (Table II)", choices=HOP_FACTORS)
    log: str = param("dB", "log compression: log = log10(1 + 10000 x), dB = 10 log10(x) (Section V)",
                     choices=LOG_TYPES)
    epochs: int = param(100, "maximum training epochs", low=1)
    patience: int = param(10, "stop when the validation ROC-AUC has not improved for this many epochs (0: never)",
                          low=0)
    batch_size: int = param(32, "mini-batch size", low=1)
    lr: float = param(1e-3, "Adam learning rate (Section IV)", low=0.0)
    n_tags: int = param(50, "number of most frequent tags (MTAT: 50)", low=1)
    data_dir: str = param("", "MagnaTagATune root (annotations_final.csv, audio folders 0..f); "
                          "empty: the embedded synthesised tagged-audio set")
    feature_dir: str = param("~/.cache/sweeplab/tagging-features", "feature store shared by the trials of a "
                             "sweep (a path all nodes see, on a cluster)")
    n_clips: int = param(600, "embedded set: number of synthesised clips", low=10)
    n_clips_limit: int = param(0, "use only the first N clips of each split (0: all); for smoke runs", low=0)

    def check(self) -> list[str]:
        problems = []
        if self.data_dir and not Path(self.data_dir).expanduser().is_dir():
            problems.append(f"data_dir: folder not found: {self.data_dir}")
        if self.model == "vgg":
            from .models import vgg_pools  # Table III: VGG-CNN's pooling exists for the Table II grid only
            try:
                vgg_pools(self.n_mels, self.sample_rate, self.hop_factor)
            except ValueError as exc:
                problems.append(f"n_mels/hop_factor: {exc}")
        return problems
