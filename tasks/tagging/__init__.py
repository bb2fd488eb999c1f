"""Task `tagging`: Ferraro, Bogdanov, Yoon, Kim & Serra, "How low can you go? Reducing frequency and time
resolution in current CNN architectures for music auto-tagging", EUSIPCO 2020.

Features and their shared store (``features.py``), VGG-CNN and MUSICNN (``models.py``), MagnaTagATune and the
embedded synthesised set (``data.py``), training and evaluation (``train.py``), Figure 1 (``plot.py``);
configuration in ``config.py``.
"""
from sweeplab.task import Task, register_task

from . import data, train
from .config import TaggingConfig
from .models import build_model, input_shape


def plot(trials, evaluations, out_path, sweep=None) -> None:
    """Figure 1 (``plot.py``), imported on use: matplotlib is slow to import."""
    from .plot import plot_tagging
    plot_tagging(trials, evaluations, out_path)


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
    plot=plot,
    summary=("roc_auc", "pr_auc", "gmacs"),
))
