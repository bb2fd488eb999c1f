"""Conditional config fields of the compression task: a field that does not apply to a trial is null in its row."""
from sweeplab.config import active, build, scalar_columns
from sweeplab.tasks.compression.config import CompressionConfig

AUTOENCODER_ONLY = ("quantization", "gamma", "m", "betas", "iterations", "batch_size", "crop_size", "n_train_crops",
                    "lr", "lr_density", "weight_decay", "lr_schedule", "density_warmup_epochs", "report_every",
                    "checkpoint_every", "n_extra_images", "extra_crop", "data_seed")
LEARNED_STEP_ONLY = ("lr_delta", "delta_init")
EVERY_TRIAL = ("codec", "train_dir", "test_dir", "extra_dir", "n_test_images", "test_crop")  # anchors read them too


def test_anchor_rows_null_the_autoencoder_fields():
    settings = {"jpeg": ("jpeg_qualities",), "jpeg2000": ("jpeg2000_rates",),
                "hevc": ("hevc_qualities", "hevc_preset", "hevc_tune")}
    for codec, own in settings.items():
        other = tuple(f for c, fields in settings.items() if c != codec for f in fields)
        row = scalar_columns(build(CompressionConfig, {"codec": codec}))
        assert all(row[f] is None for f in AUTOENCODER_ONLY + LEARNED_STEP_ONLY + other), row
        assert all(row[f] is not None for f in own + EVERY_TRIAL)
    hevc = scalar_columns(build(CompressionConfig, {"codec": "hevc"}))  # the x265 settings a trial records
    assert (hevc["hevc_preset"], hevc["hevc_tune"]) == ("veryslow", "psnr")


def test_step_fields_apply_to_learned_step_only():
    fixed = scalar_columns(CompressionConfig())
    assert fixed["gamma"] == 10000.0 and fixed["betas"].startswith("1.0,1.25")
    assert all(fixed[f] is None for f in LEARNED_STEP_ONLY + ("jpeg_qualities", "jpeg2000_rates"))
    learned = scalar_columns(build(CompressionConfig, {"quantization": "learned-step"}))
    assert learned["lr_delta"] == 2e-8 and learned["delta_init"] == 0.5
    # the chain: learned-step set, but an anchor has no quantisation, so the step fields do not apply either
    applies = active(CompressionConfig, {"codec": "jpeg", "quantization": "learned-step"})
    assert not applies["quantization"] and not applies["lr_delta"] and not applies["delta_init"]


def test_trials_row_records_the_iterations_a_trial_trains_for():
    """iterations omitted (or null): the authors' length for gamma, resolved in the config so the trials table shows
    it; a gamma outside S takes the length of the band of drop points it falls in; an explicit value wins."""
    lengths = {gamma: scalar_columns(build(CompressionConfig, {"gamma": gamma, "iterations": None}))["iterations"]
               for gamma in (10000.0, 59999.0, 60000.0, 72000.0, 79999.0, 80000.0, 96000.0, 500000.0)}
    assert lengths == {10000.0: 1_920_000, 59999.0: 1_920_000, 60000.0: 1_344_000, 72000.0: 1_344_000,
                       79999.0: 1_344_000, 80000.0: 1_152_000, 96000.0: 1_152_000, 500000.0: 1_152_000}
    assert scalar_columns(build(CompressionConfig, {"gamma": 96000.0, "iterations": 20}))["iterations"] == 20
    assert scalar_columns(build(CompressionConfig, {"codec": "jpeg"}))["iterations"] is None
