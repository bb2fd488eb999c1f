"""GPU paths (skipped without CUDA): the compression and registration trials train and evaluate on the GPU
in-process."""
import pytest
import torch

from sweeplab.context import LocalContext
from sweeplab.task import get_task
from sweeplab.trial import run_trial

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_compression_trial_on_gpu(tmp_path):
    task = get_task("compression")
    ctx = LocalContext(trial_id="gpu", device=torch.device("cuda"), trial_dir=tmp_path / "t", verbose=False)
    final = run_trial(task, {"iterations": 3, "batch_size": 2, "crop_size": 64, "n_train_crops": 4,
                             "n_extra_images": 2, "extra_crop": 64, "n_test_images": 1, "test_crop": 64,
                             "betas": [1.0, 2.0], "quantization": "learned-step"},
                      ctx, sweep="gpu", sweep_dir=tmp_path, code_version="test")
    assert final["psnr"] > 0 and final["gmacs"] > 0
    assert ctx.reports[-1]["final_report"] == 1


def test_registration_trial_on_gpu(tmp_path):
    task = get_task("registration")
    ctx = LocalContext(trial_id="gpu", device=torch.device("cuda"), trial_dir=tmp_path / "t", verbose=False)
    final = run_trial(task, {"model": "ulae", "volume_shape": [32, 48, 32], "iterations": 3, "n_subjects": 4,
                             "n_test_subjects": 2},
                      ctx, sweep="gpu", sweep_dir=tmp_path, code_version="test")
    assert 0 < final["dice"] < 1 and final["pairs"] == 2 and final["params"] == 789_561
