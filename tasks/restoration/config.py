"""Configuration of the `restoration` task (Wan et al., "Bringing old photos back to life", CVPR 2020, and its
journal version "Old photo restoration via deep latent space translation").

Paper symbols (Section 3): R real old photos, X synthetic degraded photos, Y clean photos; VAE1 (E_R,X, G_R,X) is
shared by R and X, VAE2 (E_Y, G_Y) encodes Y; the mapping T_Z: Z_X -> Z_Y restores in latent space, and an old
photo r is restored as G_Y(T_Z(E_R(r))). The three training stages are three kinds of trial (``stage``):

* ``vaes`` (Section 3.1, stage 1): VAE1 with its latent discriminator D_R,X and VAE2, each with a multi-scale
  image discriminator. Objective (eq. 1-3): KL + alpha x L1 + LSGAN (+ the authors' feature matching and VGG terms)
  + the latent adversarial loss.
* ``mapping`` (Section 3.1, stage 2; Section 3.2 with the partial nonlocal block): T with both VAEs frozen, started
  from a stage-1 trial (``from_trials: {vaes: ...}``). Objective (eq. 4): lambda_1 x latent L1 + LSGAN + lambda_2 x
  feature matching (+ the authors' VGG term).
* ``detector`` (Section 3.3): the scratch-detection U-Net with the class-balanced cross-entropy (eq. 7).

Training length follows the authors (REFERENCES.md): ``epochs`` at the full learning rate then ``decay_epochs`` of
linear decay to zero; null takes the stage's value from :data:`AUTHORS_EPOCHS`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sweeplab.api import param

STAGES = ("vaes", "mapping", "detector")
# stage -> (epochs, decay_epochs) of the authors' code; the detector's training code was never released, so its
# length is ours (the VAEs' schedule).
AUTHORS_EPOCHS = {"vaes": (100, 100), "mapping": (150, 100), "detector": (100, 100)}
# stage -> batch size of the authors' code (VAE1 and VAE2 are trained in one stage-1 trial, each with its own);
# the mapping with the partial nonlocal block (the scratch model) used 36; the detector's is ours.
AUTHORS_BATCH = {"mapping": 80, "mapping_scratch": 36, "detector": 16}
REFERENCE_SIZE = 256  # the paper's crops: the reference input of the cost figures
THRESHOLD = 0.4  # scratch probability above which a pixel is a scratch (the authors' detection script)

_GAN = {"stage": ("vaes", "mapping")}
_VAES = {"stage": "vaes"}
_MAPPING = {"stage": "mapping"}
_TRAINED = {"stage": ("mapping", "detector")}
_DETECTOR = {"stage": "detector"}


@dataclass(frozen=True)
class RestorationConfig:
    stage: str = param("vaes", "vaes: stage 1, VAE1 (R and X, with the latent discriminator) and VAE2 (Y); "
                       "mapping: stage 2, the latent mapping T with both VAEs frozen (needs from_trials.vaes); "
                       "detector: the scratch-detection U-Net (Section 3.3)", choices=STAGES)
    # networks (REFERENCES.md: the authors' architectures)
    ngf: int = param(64, "channels of the VAEs, and of their latent at 1/4 resolution", low=1)
    mapping_width: int = param(512, "channels of the mapping's residual blocks (512; the convolutions before and "
                               "after use 1/4 and 1/2 of it)", low=4)
    detector_width: int = param(64, "channels of the detector U-Net's first level (64; doubled at each of its 4 "
                                "levels)", low=1)
    nonlocal_block: bool = param(False, "the partial nonlocal block of Section 3.2 in T (the scratch model): holes "
                                 "of the scratch mask take global context, intact positions keep local features",
                                 when=_MAPPING)
    nonlocal_kind: str = param("partial", "with nonlocal_block: partial, the block of Section 3.2 (holes excluded "
                               "from the attention, mask fusion); plain, the nonlocal block it is compared with "
                               "(attention over every position, added to the local features everywhere, no mask)",
                               choices=("partial", "plain"), when=_MAPPING)
    # losses
    kl: float = param(1.0, "weight of the KL term (the reduced VAE of the authors' code: mean(mu^2))", low=0.0,
                      when=_VAES)
    pixel_l1: float = param(10.0, "alpha of eq. 1: L1 between a VAE's reconstruction and its input. The paper's "
                            "objective has it, the authors' code does not (0 is the code's choice); 10, the scale "
                            "of the code's feature-matching and VGG weights, keeps it from being drowned by them",
                            low=0.0, when=_VAES)
    latent_gan: float = param(1.0, "weight of the latent adversarial loss of VAE1 (eq. 2-3): E_R,X learns to fool "
                              "D_R,X, which separates Z_R from Z_X", low=0.0, when=_VAES)
    latent_fool: str = param("both", "what E_R,X's latent term pushes: both, Z_R towards Z_X and Z_X towards Z_R "
                             "(eq. 3's min-max, 0.5 x the sum); r_to_x, only Z_R judged as Z_X (the authors' code, "
                             "weight 1 on the R samples)", choices=("both", "r_to_x"), when=_VAES)
    latent_l1: float = param(60.0, "lambda_1 of eq. 4: L1 between T(E_X(x)) and E_Y(y)", low=0.0, when=_MAPPING)
    gan: float = param(1.0, "weight of the LSGAN generator loss of the image discriminators", low=0.0, when=_GAN)
    feat_match: float = param(10.0, "lambda_2 of eq. 4 (and the VAEs' weight): L1 between the discriminators' "
                              "features of the output and of the target", low=0.0, when=_GAN)
    vgg: float = param(0.0, "weight of the VGG19 perceptual loss: 10 in the authors' code (the paper-setting specs "
                       "set it); a weight needs vgg_weights, as ImageNet weights cannot be downloaded here, so the "
                       "default is 0 (a spec with a weight and no file is refused)", low=0.0, when=_GAN)
    vgg_weights: str = param("", "a torchvision-format VGG19 state dict (vgg19-dcbb9e9d.pth) on local disk, for "
                             "the perceptual loss", when=_GAN)
    vgg_input: str = param("imagenet", "what VGG19 sees: imagenet, the [-1, 1] images mapped to [0, 1] and "
                           "ImageNet-normalised (as its weights were trained); code, the [-1, 1] images as they are "
                           "(the authors' code)", choices=("imagenet", "code"), when=_GAN)
    class_weight: str = param("intact", "alpha of eq. 7 per image: intact, the share of intact pixels (scratches "
                              "weigh more, the stated aim); scratch, the share of scratch pixels (the seed text's "
                              "formula as it literally reads)", choices=("intact", "scratch"), when=_DETECTOR)
    # optimisation (Adam 2e-4, betas (0.5, 0.999), separate optimisers per network, linear decay)
    optimizer: str = param("paper", "paper: Adam lr 2e-4, betas (0.5, 0.999) for every network; ttur: the "
                           "authors' quality mapping model (T 1e-4, D 4e-4, betas (0, 0.9)); authors: each mapping "
                           "as the authors trained it, ttur without the nonlocal block (the quality model), paper "
                           "with it (the scratch model); ttur and authors apply to the mapping stage only",
                           choices=("paper", "ttur", "authors"), when=_MAPPING)
    lr: float = param(2e-4, "Adam learning rate (optimizer=paper)", low=0.0)
    beta1: float = param(0.5, "Adam beta1 (optimizer=paper)", low=0.0, high=1.0)
    beta2: float = param(0.999, "Adam beta2 (optimizer=paper)", low=0.0, high=1.0)
    spectral_norm: bool | None = param(None, "spectral normalisation in the mapping's discriminator; null: on "
                                       "with the nonlocal block (the authors' scratch model), off without",
                                       when=_MAPPING)
    epochs: int | None = param(None, "epochs at the full learning rate; null: the authors' (vaes 100, mapping 150, "
                               "detector 100, ours)", low=0)
    decay_epochs: int | None = param(None, "epochs of linear decay to zero after them; null: the authors' 100",
                                     low=0)
    epoch_images: int = param(0, "images per epoch; 0: the size of the training set (the paper's epoch; the "
                              "embedded set is a handful of photos, so its smoke specs give a number)", low=0)
    batch_vae1: int = param(100, "VAE1 batch (authors: 100 over 4 GPUs), half real old photos, half synthetic",
                            low=2, when=_VAES)
    batch_vae2: int = param(120, "VAE2 batch (authors: 120)", low=1, when=_VAES)
    batch_size: int | None = param(None, "batch of the mapping or detector; null: the authors' 80 for the mapping, "
                                   "36 with the nonlocal block; 16 for the detector (ours: never released)",
                                   low=1, when=_TRAINED)
    loader_workers: int = param(4, "data-loader processes that build the training batches (crops, degradations, "
                                "scratches) while the networks train, spawned for each network; at most the trial's "
                                "CPUs per worker (resources.cpus) but one; 0: built in the training process", low=0)
    report_every: int = param(10, "steps between progress reports", low=1)
    checkpoint_every: int = param(500, "steps between checkpoints (and one at the end of each network)", low=1)
    # data
    dataset: str = param("embedded", "embedded: photographs shipped with scikit-image as Y, X made by the "
                         "degradation pipeline, R by a different 'aged print' process (not real old photos); "
                         "files: the folders below", choices=("embedded", "files"))
    clean_dir: str = param("", "files: clean photos Y (a Pascal VOC root with JPEGImages/, or a folder)",
                           folder=True)
    old_dir: str = param("", "files: real old photos R (a folder)", folder=True)
    mask_dir: str = param("", "optional folder of scratch masks named as the old photos; empty: procedural "
                          "scratches", folder=True)
    test_dir: str = param("", "files: clean photos of the held-out synthetic test (DIV2K_valid_HR); empty: images "
                          "held out of clean_dir", folder=True)
    crop: int = param(256, "side of the random training crops and of the test crops (a multiple of 16: the "
                      "detector's U-Net halves it 4 times)", low=16, multiple_of=16)
    n_test: int = param(8, "held-out test images", low=1)
    scratch_p: float = param(0.5, "share of the scratch model's training samples with scratches pasted (the "
                             "authors' loader: about half); a mapping without the nonlocal block (the quality "
                             "model) trains on no scratches, as the authors'", low=0.0, high=1.0)
    test_scratch_p: float | None = param(None, "share of the held-out test images with scratches pasted, spread "
                                         "evenly; null: 0 for stages vaes and mapping (the authors' synthetic "
                                         "test: no scratches), 0.5 for the detector (scored on those images)",
                                         low=0.0, high=1.0)
    mask_dilation: int = param(0, "evaluation of the scratch model: 3x3 dilations of the mask before it (the "
                               "authors' test dilates the detected mask); 0: none", low=0, when=_MAPPING)
    paste_mask: bool = param(False, "evaluation of the scratch model: paste the (dilated) mask white on the input "
                             "before it, as the authors' test does; false: the input as degraded", when=_MAPPING)
    data_seed: int = param(0, "seed of the held-out test set (its crops, degradations and scratches)", low=0)
    n_examples: int = param(4, "test images kept as examples for the plot (degraded, mask, restored, clean)", low=0)

    def __post_init__(self):
        # null = the authors' value for this stage, resolved here so the trials table records what a trial used
        # (a copy made with dataclasses.replace keeps the resolved value).
        if self.test_scratch_p is None:
            object.__setattr__(self, "test_scratch_p", 0.5 if self.stage == "detector" else 0.0)
        epochs, decay = AUTHORS_EPOCHS[self.stage]
        for name, value in (("epochs", epochs), ("decay_epochs", decay)):
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if self.stage == "mapping":
            if self.batch_size is None:
                object.__setattr__(self, "batch_size", AUTHORS_BATCH["mapping_scratch" if self.nonlocal_block
                                                                      else "mapping"])
            if self.spectral_norm is None:
                object.__setattr__(self, "spectral_norm", self.nonlocal_block)
        elif self.stage == "detector" and self.batch_size is None:
            object.__setattr__(self, "batch_size", AUTHORS_BATCH["detector"])

    def check(self) -> list[str]:
        problems = []
        if self.stage in ("vaes", "mapping") and self.vgg > 0:
            if not self.vgg_weights:
                problems.append(f"vgg: weight {self.vgg} needs ImageNet VGG19 weights, which cannot be downloaded "
                                "here: set vgg_weights to a local torchvision-format VGG19 state dict, or vgg: 0")
            elif not Path(self.vgg_weights).expanduser().is_file():
                problems.append(f"vgg_weights: file not found: {self.vgg_weights}")
        if self.epochs + self.decay_epochs == 0:
            problems.append("epochs: epochs + decay_epochs is 0: nothing would train")
        if self.dataset == "files":
            from .data import layout_problems
            problems += layout_problems(self)
            if self.stage == "vaes" and not self.old_dir:
                problems.append("old_dir: stage vaes trains VAE1 on real old photos R beside the synthetic X: "
                                "give their folder")
        return problems
