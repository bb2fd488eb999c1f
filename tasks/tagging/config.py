"""Configuration of the `tagging` task (Ferraro, Bogdanov, Yoon, Kim & Serra, "How low can you go? Reducing
frequency and time resolution in current CNN architectures for music auto-tagging", EUSIPCO 2020).

Paper symbols: ``sample_rate`` (12 or 16 kHz), ``n_mels`` (Slaney mel bands), ``hop_factor`` (hop = k x 256
samples, window 512), ``log`` compression (``log``: log10(1 + 10000 x), ``dB``: 10 log10 x): the grid of Table II.
``model``: VGG-CNN (Table I, Choi et al. 2016, pooling of Table III) or MUSICNN (Pons et al. 2018, Section VI-B).

Training (``protocol``): the paper gives the optimiser and the loss only (Section IV: Adam, learning rate 0.001,
binary cross-entropy, "following their authors") and says nothing of epochs, batch size or stopping. Our default,
``early-stopping``, trains up to ``epochs`` epochs of ``batch_size`` clips and stops after ``patience`` epochs
without a better validation ROC-AUC, keeping the best weights. ``authors`` is what the authors' training scripts do
(REFERENCES.md): VGG-CNN with batch 64 for exactly 13 epochs; MUSICNN for 720 passes of one random 3 s window per
clip, the learning rate x 0.1 every 100 passes; no early stopping, and the weights of the last pass are the ones
evaluated (REFERENCES.md records no selection on the validation set). Its figures live in :data:`AUTHORS` only:
under ``authors`` the fields ``epochs``, ``batch_size`` and ``patience`` do not apply (null in the trials table)
and :meth:`TaggingConfig.schedule` gives what the loop runs. ``epoch_limit`` caps the epochs of either protocol,
for smoke runs only (the authors' 720 MUSICNN passes would not be tiny otherwise).
"""
from __future__ import annotations

from dataclasses import dataclass

from sweeplab.api import param

MEL_BANDS = (128, 96, 48, 32, 24, 16, 8)  # Table II
HOP_FACTORS = (1, 2, 3, 4, 5, 10)  # Table II
SAMPLE_RATES = (12000, 16000)  # Table II
LOG_TYPES = ("log", "dB")  # Section V
PROTOCOLS = ("early-stopping", "authors")
BATCH_SIZE = 32  # our default mini-batch (the paper gives none)
EARLY_STOPPING = {"protocol": "early-stopping"}  # the condition of the fields the authors' protocol fixes
# The authors' training scripts (REFERENCES.md, Ferraro et al. 2020). Their MUSICNN batch size is not recorded
# there (None): MUSICNN keeps our default batch.
AUTHORS = {"vgg": {"epochs": 13, "batch_size": 64, "lr_step": 0},
           "musicnn": {"epochs": 720, "batch_size": None, "lr_step": 100}}
_AUTHORS_TEXT = "; ".join(f"{model}: {a['epochs']} epochs of batch {a['batch_size'] or f'{BATCH_SIZE} (ours)'}"
                          + (f", lr x 0.1 every {a['lr_step']}" if a["lr_step"] else "")
                          for model, a in AUTHORS.items())


@dataclass(frozen=True)
class Schedule:
    """What the training loop runs: ``epochs`` passes over the training clips (MUSICNN: one random 3 s window per
    clip each pass) in mini-batches of ``batch_size``, stopped after ``patience`` passes without a better validation
    ROC-AUC (0: never), the learning rate ``lr`` x 0.1 every ``lr_step`` passes (0: constant); ``keep_best``: the
    weights of the best validation ROC-AUC are the model trained (else those of the last pass)."""
    epochs: int
    batch_size: int
    patience: int
    lr: float
    lr_step: int = 0
    keep_best: bool = True

    def lr_at(self, p: int) -> float:
        """Learning rate of pass ``p`` (0-based): ``lr * 0.1 ** (p // lr_step)``, or ``lr`` with no decay."""
        return self.lr * 0.1 ** (p // self.lr_step) if self.lr_step else self.lr


@dataclass(frozen=True)
class TaggingConfig:
    model: str = param("vgg", "vgg: VGG-CNN (Table I/III); musicnn: MUSICNN (Section VI-B)",
                       choices=("vgg", "musicnn"))
    sample_rate: int = param(12000, "sample rate in Hz (Table II)", choices=SAMPLE_RATES)
    n_mels: int = param(96, "Slaney mel bands (Table II)", choices=MEL_BANDS)
    hop_factor: int = param(1, "hop size as a multiple of 256 samples (Table II)", choices=HOP_FACTORS)
    log: str = param("dB", "log compression: log = log10(1 + 10000 x), dB = 10 log10(x) (Section V)",
                     choices=LOG_TYPES)
    protocol: str = param("early-stopping", "training protocol. early-stopping: up to `epochs` epochs of "
                          "`batch_size` clips, stopped by `patience`, best weights kept (ours: the paper names "
                          f"none, Section IV); authors: the authors' scripts ({_AUTHORS_TEXT}; no early stopping, "
                          "last weights), which replace epochs, batch_size and patience",
                          choices=PROTOCOLS)
    epochs: int = param(100, "maximum training epochs (MUSICNN: passes of one random 3 s window per clip)", low=1,
                        when=EARLY_STOPPING)
    patience: int = param(10, "stop when the validation ROC-AUC has not improved for this many epochs (0: never)",
                          low=0, when=EARLY_STOPPING)
    batch_size: int = param(BATCH_SIZE, "mini-batch size", low=1, when=EARLY_STOPPING)
    lr: float = param(1e-3, "Adam learning rate (Section IV; under protocol=authors, MUSICNN's initial rate)",
                      low=0.0)
    n_tags: int = param(50, "number of most frequent tags (MTAT: 50)", low=1)
    data_dir: str = param("", "MagnaTagATune root (annotations_final.csv, audio folders 0..f); "
                          "empty: the embedded synthesised tagged-audio set", folder=True)
    feature_dir: str = param("~/.cache/sweeplab/tagging-features", "feature store shared by the trials of a "
                             "sweep (a path all nodes see, on a cluster)")
    n_clips: int = param(600, "embedded set: number of synthesised clips", low=10)
    n_clips_limit: int = param(0, "use only the first N clips of each split (0: all); for smoke runs", low=0)
    epoch_limit: int = param(0, "train at most N epochs (passes), whatever the protocol (0: no cap); for smoke runs",
                             low=0)

    def schedule(self) -> Schedule:
        """The epochs, batch size, patience and learning-rate decay the training loop runs (``protocol``)."""
        if self.protocol == "authors":
            a = AUTHORS[self.model]
            return Schedule(self._capped(a["epochs"]), a["batch_size"] or BATCH_SIZE, patience=0, lr=self.lr,
                            lr_step=a["lr_step"], keep_best=False)
        return Schedule(self._capped(self.epochs), self.batch_size, self.patience, self.lr)

    def _capped(self, epochs: int) -> int:
        return min(epochs, self.epoch_limit) if self.epoch_limit else epochs

    def check(self) -> list[str]:
        problems = []
        if self.model == "vgg":
            from .models import vgg_pools  # Table III: VGG-CNN's pooling exists for the Table II grid only
            try:
                vgg_pools(self.n_mels, self.sample_rate, self.hop_factor)
            except ValueError as exc:
                problems.append(f"n_mels/hop_factor: {exc}")
        return problems
