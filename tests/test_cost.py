"""Model cost: several inputs, several components, the model a trial actually trains."""
import dataclasses
import json

import pytest
import torch

from sweeplab import cost, results, store
from sweeplab.context import LocalContext
from sweeplab.trial import run_trial
from tests.conftest import TOY, ToyConfig


class Pair(torch.nn.Module):
    """Two inputs (a fixed and a moving volume): one 3D convolution over their concatenation."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(2, 4, 3, padding=1)

    def forward(self, fixed, moving):
        return self.conv(torch.cat([fixed, moving], 1))


def test_several_inputs_and_components_are_counted():
    task = dataclasses.replace(
        TOY, build_model=lambda cfg: Pair(), input_shape=lambda cfg: ((1, 1, 4, 4, 4), (1, 1, 4, 4, 4)),
        components=lambda cfg: {"pair": (Pair, ((1, 1, 4, 4, 4), (1, 1, 4, 4, 4))),
                                "head": (lambda: torch.nn.Linear(3, cfg.width), (2, 3))})
    c = cost.model_cost(task, ToyConfig(width=5))
    conv_macs = 4 * 2 * 27 * 64  # out channels x in channels x kernel x output voxels
    assert c.params == 4 * 2 * 27 + 4 and c.gmacs * 1e9 == pytest.approx(conv_macs)
    assert c.shape_text == "1x1x4x4x4+1x1x4x4x4"
    assert c.components["pair"] == {"params": c.params, "gmacs": c.gmacs, "input_shape": c.shape_text}
    assert c.components["head"]["params"] == 3 * 5 + 5 and c.components["head"]["gmacs"] * 1e9 == pytest.approx(2 * 3 * 5)


def test_the_trial_reports_the_cost_of_the_model_it_trains(tmp_path):
    """``trained_config`` turns the config into the one the data made (here: a wider model), and the trials table
    carries that model's figures, its components' too."""
    task = dataclasses.replace(TOY, trained_config=lambda cfg, data: dataclasses.replace(cfg, width=cfg.width * 2),
                               components=lambda cfg: {"net": (lambda: TOY.build_model(cfg), (8, 3))})
    ctx = LocalContext(trial_id="t0", trial_dir=tmp_path / "ckpt", verbose=False)
    run_trial(task, {"width": 4, "steps": 1}, ctx, sweep="s", sweep_dir=tmp_path, code_version="test")
    row = store.completed_trial(tmp_path, "t0")
    assert row["params"] == 3 * 8 + 8 + 8 + 1  # Linear(3, 8) + Linear(8, 1): the trained width, 8
    assert row["width"] == 4  # the config column keeps what the spec asked for
    assert json.loads(row["components"])["net"]["params"] == row["params"]  # components: the trained model too
