"""Configuration of the `segmentation` task (Kanezaki, "Unsupervised image segmentation by backpropagation",
ICASSP 2018).

Paper symbols: ``M`` convolutional components with ``p`` filters each, a 1x1 classifier to ``q`` responses, ``T``
iterations per image, ``K`` superpixels (Section 2, Algorithm 1; Section 3: T = 500, p = q = 100, M = 1..5).
Baselines of Section 3: k-means on the RGB values of an ``alpha`` x ``alpha`` window with ``k`` clusters, and
Felzenszwalb's graph-based segmentation (GS) with similarity ``threshold`` (the paper's beta).
Beside the method's settings: ``keep_label_maps`` (the label maps a trial keeps for the plot's Figure 2-like
panel, ``label_maps.py``) and ``plot_selection`` (which configuration of each method ``sweeplab plot`` draws,
``plot.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

from sweeplab.api import param

# Conditions (``param(when=...)``): the network, SLIC and training fields are read by ``method.py`` only (the
# baselines use neither superpixels nor a network); alpha/k by the k-means baseline, threshold by GS.
_CNN = {"method": "cnn"}
PAPER_LR = 0.1  # Section 2.4: "setting the learning rate to 0.1 (with momentum 0.9) yielded the best results"
# plot_selection -> (what ranks the configurations of a method, whether the proposed method is drawn at PAPER_LR
# only). Section 3 reports "the best average precision scores for each method", lr fixed at 0.1 by Section 2.4.
PLOT_SELECTIONS = {"paper": ("ap", True), "ap": ("ap", False), "f_measure": ("f_measure", False)}


@dataclass(frozen=True)
class SegmentationConfig:
    method: str = param("cnn", "cnn: the paper's method; kmeans or felzenszwalb: the baselines of Section 3",
                        choices=("cnn", "kmeans", "felzenszwalb"))
    # the proposed method (``method.py``): network, SLIC superpixels, per-image training
    M: int = param(3, "number of convolutional components (conv 3x3, ReLU, batch norm)", low=1, when=_CNN)
    p: int = param(100, "filters of each convolutional component", low=1, when=_CNN)
    q: int = param(100, "responses of the 1x1 classifier (maximum number of labels)", low=2, when=_CNN)
    T: int = param(500, "iterations per image", low=1, when=_CNN)
    lr: float = param(PAPER_LR, "SGD learning rate", low=0.0, when=_CNN)
    momentum: float = param(0.9, "SGD momentum", low=0.0, high=1.0, when=_CNN)
    K: int = param(10000, "number of SLIC superpixels", low=1, when=_CNN)
    compactness: float = param(100.0, "SLIC compactness (authors' code: 100)", low=0.0, when=_CNN)
    min_labels: int = param(0, "stop early when the image has at most this many labels (authors' code: 3; "
                            "the paper runs all T iterations: 0)", low=0, when=_CNN)
    # the baselines (``baselines.py``)
    alpha: int = param(1, "k-means: side of the RGB window of each pixel (Section 3: 1, 3, 5, 7)", low=1,
                       when={"method": "kmeans"})
    k: int = param(10, "k-means: number of clusters (Section 3: 2..20, the best reported)", low=2,
                   when={"method": "kmeans"})
    threshold: float = param(500.0, "Felzenszwalb: similarity threshold, the paper's beta (100..2000)", low=0.0,
                             when={"method": "felzenszwalb"})
    data_dir: str = param("", "BSDS500 root (images/{split}/*.jpg, groundTruth/{split}/*.mat); "
                          "empty: the embedded texture mosaics", folder=True)
    split: str = param("test", "BSDS500 split", choices=("train", "val", "test"))
    n_images: int = param(0, "use only the first N images (0: all)", low=0)
    mosaic_size: int = param(160, "side of the embedded texture mosaics", low=32)
    n_mosaics: int = param(12, "number of embedded texture mosaics", low=1)
    # what a trial keeps for the plot, and what the plot draws
    keep_label_maps: int = param(3, "keep the label maps of the trial's first N images (lossless PNG inside the "
                                 "artifact label_maps) for the plot's Figure 2-like panel; 0: none", low=0)
    plot_selection: str = param("paper", "configurations `sweeplab plot` draws: paper (the proposed method at "
                                "lr 0.1, each method's best AP), ap (best AP, any lr), f_measure (best mean "
                                "F-measure, any lr)", choices=tuple(PLOT_SELECTIONS))

    def check(self) -> list[str]:
        problems = []
        if self.alpha % 2 == 0:
            problems.append(f"alpha: {self.alpha} must be odd (a window centred on its pixel)")
        return problems
