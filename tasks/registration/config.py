"""Configuration of the `registration` task (Shu et al., "Medical image registration based on uncoupled learning
and accumulative enhancement", MICCAI 2021: ULAE-net).

Paper symbols: F the fixed and M the moving volume, phi the deformation (Section 2.1, eq. 1); the accumulative
steps phi_1..phi_3 at 1/4, 1/2 and full resolution (Section 2.3, eq. 2); the multi-window loss
L_sim = -sum_i gamma^(i-1) NCC_{w_i} with ``windows`` (w_1, w_2, w_3) = (11, 9, 7) and gamma = 0.5 (Section 2.4,
eq. 3); the smoothness weight ``lambda_`` of eq. 5 (lambda = 1). Baselines of Table 1: VoxelMorph, SyN (ANTs),
and the initial alignment (``identity``). The ablation of Table 2 is the switches ``accumulative``, ``uncoupled``
and ``windows`` of ``model=ulae``: all off is a U-shaped network on the concatenated pair with a single window-9
NCC (ours: Table 2's Baseline row is VoxelMorph, whose figures it repeats from Table 1). VMx2 (Table 1: "we also
doubled the channels of VM") is ``model=voxelmorph`` with ``vm_width=2``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sweeplab.api import param

MODELS = ("ulae", "voxelmorph", "syn", "identity")
DATASETS = ("embedded", "mindboggle", "ixi", "folder")
LEARNED = ("ulae", "voxelmorph")  # the models that train (the others register without training)
_LEARNED = {"model": LEARNED}
_ULAE = {"model": "ulae"}
_SYN = {"model": "syn"}


@dataclass(frozen=True)
class RegistrationConfig:
    model: str = param("ulae", "ulae: ULAE-net (the paper); voxelmorph: VoxelMorph (vm2, as the paper compares it); "
                       "syn: ANTs SyN (classical, CPU, no training); identity: no deformation (Table 1 'Initial')",
                       choices=MODELS)
    # ULAE-net (Sections 2.1-2.3) and its Table 2 ablation
    decoder: str = param("shared", "shared: one decoder for the three steps with three output heads (the paper's "
                         "789.56K parameters); per-step: a decoder per step (the authors' public code)",
                         choices=("shared", "per-step"), when=_ULAE)
    uncoupled: bool = param(True, "uncoupled spatial encoder (Section 2.2); false: one encoder on the concatenated "
                            "pair (Table 2 baseline)", when=_ULAE)
    accumulative: bool = param(True, "three accumulative warping steps (Section 2.3); false: one full-resolution "
                               "flow (Table 2 baseline)", when=_ULAE)
    final_warp: str = param("composed", "composed: the final image is M o phi, one resampling by the composed flow "
                            "(Section 2.3: 'W can be acquired by M o phi'); chained: M_2 o phi_3, the image of the "
                            "second step warped again (the authors' code; two resamplings)",
                            choices=("composed", "chained"), when=_ULAE)
    # VoxelMorph (Table 1's VM and VMx2)
    vm_width: int = param(1, "VoxelMorph's channels times this: 1 is vm2 (Table 1's VM), 2 the paper's VMx2 "
                          "('we also doubled the channels of VM')", low=1, when={"model": "voxelmorph"})
    # loss (Section 2.4)
    windows: tuple[int, ...] = param((11, 9, 7), "NCC windows w_i of the multi-window loss (eq. 3); one window: "
                                     "single-window local NCC", low=1, when=_LEARNED)
    gamma: float = param(0.5, "weight gamma^(i-1) of window i (eq. 3)", low=0.0, when=_LEARNED)
    ncc: str = param("plain", "plain: negative local NCC, as the paper's eq. 3 writes it; squared: negative "
                     "squared local NCC (the authors' code and VoxelMorph's: the published tables come from it, so "
                     "the paper-setting specs choose it)", choices=("plain", "squared"), when=_LEARNED)
    lambda_: float = param(1.0, "smoothness weight lambda of eq. 5: mean squared forward differences of the final "
                           "flow, averaged over the axes (the authors' code; eq. 4 writes a sum)", low=0.0,
                           when=_LEARNED)
    # training (Section 3: Adam 1e-4, batch 1)
    iterations: int = param(160_000, "training iterations (one random ordered training pair each; the authors' "
                            "code: 160,001; the paper gives none)", low=0, when=_LEARNED)
    lr: float = param(1e-4, "Adam learning rate", low=0.0, when=_LEARNED)
    batch_size: int = param(1, "pairs per iteration", low=1, when=_LEARNED)
    cache_mb: float = param(1024.0, "MB of decoded training images kept in memory, least recently used dropped "
                            "first (a 160x192x160 image is 19.7 MB): images are not read again while held, and a "
                            "dataset larger than this is never all held; 0: read every image every time", low=0.0,
                            when=_LEARNED)
    report_every: int = param(50, "iterations between progress reports", low=1, when=_LEARNED)
    checkpoint_every: int = param(1000, "iterations between checkpoints", low=1, when=_LEARNED)
    # SyN (ANTs through antspyx)
    syn_iterations: tuple[int, ...] = param((40, 20, 0), "SyN iterations per level, coarse to fine (ANTs' default "
                                            "for SyN: 40x20x0); the levels are their number, each shrinking the "
                                            "volumes by 2 more (ANTsPy): (100, 70, 50, 20) is antsRegistrationSyN.sh's "
                                            "8x4x2x1 with a non-zero finest level", low=0, when=_SYN)
    syn_metric: str = param("mattes", "SyN's similarity metric (ANTs' names): mattes (Mattes mutual information, "
                            "ANTsPy's default), CC (local cross-correlation), meansquares, demons; the paper names "
                            "none", choices=("mattes", "CC", "meansquares", "demons"), when=_SYN)
    syn_sampling: int = param(32, "the metric's parameter (ANTsPy's syn_sampling): histogram bins for mattes, the "
                              "window radius for CC (antsRegistrationSyN.sh: 4); unused by meansquares and demons",
                              low=1, when=_SYN)
    # data (Section 3): volumes affinely aligned to MNI152, cropped or padded, divided by their maximum
    dataset: str = param("embedded", "embedded: synthetic subjects made from nilearn's MNI152 template; "
                         "mindboggle: Mindboggle101 (DKT31 labels); ixi: IXI processed with FreeSurfer; "
                         "folder: *_image.nii.gz / *_labels.nii.gz with split.json", choices=DATASETS)
    data_dir: str = param("", "root of the dataset (mindboggle, ixi, folder)", folder=True)
    volume_shape: tuple[int, ...] = param((160, 192, 160), "crop or pad every volume to this shape (Section 3); "
                                          "every side a multiple of 16: the encoders halve it four times",
                                          low=16, multiple_of=16)
    n_test_pairs: int = param(0, "evaluate only the first N ordered test pairs (0: all)", low=0)
    # the embedded default (no download): one real anatomy, synthetic subjects
    n_subjects: int = param(12, "embedded: number of synthetic subjects", low=3)
    n_test_subjects: int = param(4, "embedded: subjects held out for testing", low=2)
    deformation: float = param(4.0, "embedded: standard deviation (mm of the 1 mm MNI152 grid, scaled to "
                               "volume_shape) of the control displacements of the random smooth deformations that "
                               "make the subjects", low=0.0)
    data_seed: int = param(0, "embedded: seed of the subjects' deformations and intensity changes", low=0)

    def check(self) -> list[str]:
        problems = []
        if len(self.volume_shape) != 3:
            problems.append(f"volume_shape: {self.volume_shape} must have three sides")
        if self.dataset != "embedded" and not self.data_dir:
            problems.append(f"data_dir: dataset {self.dataset!r} needs its root folder")
        if self.data_dir and Path(self.data_dir).expanduser().is_dir():  # a missing one is refused by its field
            from .data import layout_problems
            problems += layout_problems(self)
        if self.n_test_subjects >= self.n_subjects:
            problems.append("n_test_subjects: must be below n_subjects (some subjects must train)")
        return problems
