"""Task `registration`: Shu, Wang, Xiao, Bi & Li, "Medical image registration based on uncoupled learning and
accumulative enhancement", MICCAI 2021 (ULAE-net), with the baselines of its Table 1: VoxelMorph, SyN, identity.

The spatial transformer, flow composition and Jacobian (``layers.py``), the multi-window NCC and smoothness losses
(``losses.py``), ULAE-net and VoxelMorph (``networks.py``), SyN through antspyx (``syn.py``), Mindboggle101, IXI,
a generic layout and the embedded MNI152-based subjects (``data.py``), Dice and region groups (``metrics.py``),
training and evaluation (``train.py``), the figures (``plot.py``), fixture writers (``testing.py``);
configuration in ``config.py``.
"""
from sweeplab.api import Task, register_task

from . import data, train
from .config import RegistrationConfig
from .networks import build
from .paper import PAPER

TASK = register_task(Task(
    name="registration",
    config=RegistrationConfig,
    build_model=build,  # None for syn and identity
    input_shape=lambda cfg: ((1, 1, *cfg.volume_shape), (1, 1, *cfg.volume_shape)),  # a moving and a fixed volume
    load_data=data.load_data,
    train=train.train,
    evaluate=train.evaluate,
    metrics=train.METRICS,
    eval_columns=train.ROWS,
    reports=train.REPORTS,
    plot="plot:plot_registration",  # Dice per region group, the Table 1-like table, one pair's slices
    summary=("dice", "folding_percent", "seconds_per_pair"),
    paper=PAPER,  # Tables 1 and 2: Dice per method and region, Flops and parameters, the ablation
    batch_field="batch_size",  # the global batch: each rank registers batch_size / workers pairs of it
    tiny={"volume_shape": (32, 32, 32), "n_subjects": 4, "n_test_subjects": 2, "deformation": 10.0,
          "iterations": 1, "report_every": 1, "n_test_pairs": 1},
))
