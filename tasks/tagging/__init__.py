"""Task `tagging`: Ferraro, Bogdanov, Yoon, Kim & Serra, "How low can you go? Reducing frequency and time
resolution in current CNN architectures for music auto-tagging", EUSIPCO 2020.

Features and their shared store (``features.py``), VGG-CNN and MUSICNN (``models.py``), MagnaTagATune and the
embedded synthesised set (``data.py``), training and evaluation (``train.py``), Figure 1 (``plot.py``), an
MTAT fixture writer (``testing.py``); configuration in ``config.py``.
"""
from sweeplab.api import Task, register_task

from . import data, train
from .config import TaggingConfig
from .models import build_model, input_shape
from .paper import PAPER


TASK = register_task(Task(
    name="tagging",
    config=TaggingConfig,
    build_model=build_model,
    input_shape=input_shape,  # one input: a whole clip (VGG-CNN) or one 3 s patch (MUSICNN)
    load_data=data.load_data,
    train=train.train,
    evaluate=train.evaluate,
    metrics=train.METRIC_TYPES,  # roc_auc, pr_auc, tags_evaluated, feature_frames, feature_bytes_per_clip
    eval_columns=train.ROW_TYPES,  # one row per tag: tag, roc_auc, pr_auc, n_positive, n_test
    reports=train.REPORTS,  # epoch, progress, loss, val_roc_auc, lr
    trained_config=train.trained_config,  # the cost of the model trained: n_tags = len(data.tags)
    plot="plot:plot_tagging",  # Figure 1
    summary=("roc_auc", "pr_auc", "gmacs"),
    paper=PAPER,  # Tables IV and V: MUSICNN on MTAT, VGG-CNN and MUSICNN on MSD
    batch_field="batch_size",  # the global batch, in equal shares over the workers (train.epoch_batches)
    tiny={"n_mels": 8, "hop_factor": 10, "n_clips": 20, "n_clips_limit": 2, "epochs": 1, "batch_size": 2,
          "epoch_limit": 1},  # epoch_limit: the authors' protocol's fixed epochs, tiny too
))
