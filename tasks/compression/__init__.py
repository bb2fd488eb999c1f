"""Task `compression`: Dumas, Roumy & Guillemot, "Autoencoder based image compression: can the learning be
quantization independent?", ICASSP 2018. Model in ``model.py`` (layers, density), training in ``train.py``,
data / evaluation / anchors / plot in their modules; configuration in ``config.py``.
"""
from sweeplab.api import Needs, Paper, Task, register_task

from . import data, evaluate
from .config import CompressionConfig
from .model import build_model
from .train import ARTIFACT, REPORTS, train

TASK = register_task(Task(
    name="compression",
    config=CompressionConfig,
    build_model=build_model,  # None for the jpeg / jpeg2000 anchors
    input_shape=lambda cfg: (1, 1, 512, 768),  # one Kodak luminance image
    load_data=data.load_data,
    train=train,  # None for the anchors: nothing to train
    evaluate=evaluate.evaluate,
    metrics=evaluate.METRIC_TYPES,  # psnr, bpp, bpp_coded, rate_gap_bpp, mean_rate_gap_bpp
    eval_columns=evaluate.ROW_TYPES,  # method, beta, quality, image, bpp, bpp_coded, rate_gap_bpp, ...
    reports=REPORTS,  # iteration, progress, loss, distortion, rate, psnr_train (autoencoder only)
    sources={"model": Needs((ARTIFACT,), same=("codec", "quantization", "m"),
                            doc="a trained autoencoder to evaluate without training")},
    paper=Paper(title="T. Dumas, A. Roumy, C. Guillemot, \"Autoencoder based image compression: can the learning be "
                      "quantization independent?\", ICASSP 2018",
                note="The paper's text (the seed text sweeplab follows) prints no table of results: its "
                     "rate-distortion comparisons are figures only (Figure 5), and the report never reads numbers off "
                     "a figure. It shows the sweep's own figures and costs."),
    plot="plot:plot_rate_distortion",  # Figure 5
    summary=("psnr", "bpp", "bpp_coded"),
    batch_field="batch_size",  # the global mini-batch: batch_size / workers crops per rank (train.py)
    tiny={"m": 16, "iterations": 2, "batch_size": 2, "crop_size": 32, "n_train_crops": 4, "betas": (1.0,),
          "n_extra_images": 1, "extra_crop": 64, "n_test_images": 1, "test_crop": 64},
))
