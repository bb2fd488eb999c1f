"""Task `restoration`: Wan, Zhang, Chen, Zhang, Chen, Liao & Wen, "Bringing old photos back to life", CVPR 2020
(old photo restoration by latent space translation; Section 3).

The VAEs, discriminators, the latent mapping with the partial nonlocal block, the scratch-detection U-Net and VGG19
(``networks.py``), their losses (``losses.py``), the authors' synthetic degradations and the embedded "aged
print" domain (``degrade.py``), the loaders and batches (``data.py``), the three training stages (``train.py``),
the evaluation with its baselines (``evaluate.py``), the figures (``plot.py``) and fixture writers
(``testing.py``); configuration in ``config.py``.
The stages are trials of one task (``stage``): a mapping sweep names its stage-1 trial with ``from_trials.vaes``.
"""
from sweeplab.api import Needs, Paper, Task, register_task

from . import data, evaluate, networks, train
from .config import REFERENCE_SIZE, RestorationConfig

_IMAGE = (1, 3, REFERENCE_SIZE, REFERENCE_SIZE)
_MASK = (1, 1, REFERENCE_SIZE, REFERENCE_SIZE)


def inference_path(cfg) -> networks.RestorationPath:
    """G_Y(T(E_R(r))): an old photo's restoration (Section 3.1), with the nonlocal block when the config has it."""
    return networks.RestorationPath(networks.VAE(cfg.ngf), train.build_mapping(cfg), networks.VAE(cfg.ngf))


def input_shape(cfg):
    return (_IMAGE, _MASK) if cfg.nonlocal_block else _IMAGE


def components(cfg) -> dict:
    """Each network at the reference 256x256 input: the VAEs (encode + decode), T on the 64x64 latent (with the
    mask when it has the block), the detector on a grey image, and the discriminators."""
    latent = (1, cfg.ngf, REFERENCE_SIZE // 4, REFERENCE_SIZE // 4)
    mapping_shape = (latent, _MASK) if cfg.nonlocal_block else latent
    pair = (1, 6, REFERENCE_SIZE, REFERENCE_SIZE)
    return {"vae1": (lambda: networks.VAE(cfg.ngf), _IMAGE),
            "vae2": (lambda: networks.VAE(cfg.ngf), _IMAGE),
            "mapping": (lambda: train.build_mapping(cfg), mapping_shape),
            "detector": (lambda: networks.ScratchUNet(base=cfg.detector_width), (1, 1, REFERENCE_SIZE, REFERENCE_SIZE)),
            "image_discriminator": (lambda: networks.MultiscaleDiscriminator(3), _IMAGE),
            "latent_discriminator": (lambda: networks.latent_discriminator(cfg.ngf), latent),
            "mapping_discriminator": (lambda: networks.MultiscaleDiscriminator(6), pair)}


TASK = register_task(Task(
    name="restoration",
    config=RestorationConfig,
    build_model=inference_path,
    input_shape=input_shape,
    load_data=data.load_data,
    train=train.train,
    evaluate=evaluate.evaluate,
    metrics=evaluate.METRICS,
    eval_columns=evaluate.ROWS,
    reports=train.REPORTS,
    components=components,
    sources={train.VAES: Needs((train.VAES,), same=("ngf",), when={"stage": "mapping"},
                               doc="the stage-1 trial whose VAE1 and VAE2 the mapping is trained between"),
             train.DETECTOR: Needs((train.DETECTOR,), doc="a detector trial whose masks the mapping's evaluation "
                                   "uses (default: the true masks of the synthetic scratches)")},
    paper=Paper(title="Z. Wan, B. Zhang, D. Chen, P. Zhang, D. Chen, J. Liao, F. Wen, \"Bringing old photos back to "
                      "life\", CVPR 2020",
                note="The paper's text (the seed text sweeplab follows) prints no table of results to compare: its "
                     "comparisons are figures and examples only, and the report never reads numbers off a figure. It "
                     "shows the sweep's own figures and costs."),
    plot="plot:plot_restoration",  # PSNR/SSIM per method and a grid of examples
    batch_field=("batch_vae1", "batch_vae2", "batch_size"),  # each network's global batch (those of its stage)
    summary=("psnr", "ssim", "psnr_degraded", "f1"),
    tiny={"crop": 32, "epochs": 1, "decay_epochs": 0, "epoch_images": 2, "batch_vae1": 2, "batch_vae2": 2,
          "n_test": 2, "n_examples": 1, "loader_workers": 0},
))
