"""Task `segmentation`: Kanezaki, "Unsupervised image segmentation by backpropagation", ICASSP 2018.

The method (``model.py``, ``method.py``), the baselines of Section 3 (``baselines.py``), the evaluation of
Section 3 (``metrics.py``), BSDS500 and the embedded texture mosaics (``data.py``), Figures 3 and 4 (``plot.py``)
and a Figure 2-like panel (``figure2.py``) from the label maps trials keep (``label_maps.py``); how images are spread
over a trial's workers in ``train.py``; a BSDS500 fixture writer in ``testing.py``; configuration in ``config.py``.
"""
from sweeplab.api import Task, register_task

from . import data, train
from .paper import PAPER
from .config import SegmentationConfig
from .model import build_model


TASK = register_task(Task(
    name="segmentation",
    config=SegmentationConfig,
    build_model=build_model,  # None for the baselines
    input_shape=lambda cfg: (1, 3, 321, 481),  # one BSDS500 image
    load_data=data.load_data,
    train=train.train,
    evaluate=train.evaluate,
    metrics=train.METRIC_TYPES,  # f_measure, precision, recall, ap50, ap70, segments_per_image
    eval_columns=train.ROW_TYPES,  # one row per image: image, method, height, width, seconds, f_measure, ...
    reports=train.REPORTS,  # images_done, progress, mean_f_measure
    plot="plot:plot_segmentation",  # Figures 3 and 4, and the Figure 2-like panel from the kept label maps
    summary=("f_measure", "ap50", "ap70"),
    parallel="split",  # the images are shared out over the workers (train.py); one network per image
    paper=PAPER,  # Section 3's average precision per method
    tiny={"n_mosaics": 2, "mosaic_size": 32, "T": 2, "M": 1, "p": 8, "q": 8, "K": 50, "keep_label_maps": 1},
))
