"""SyN through antspyx: the axis and sign convention of the flow (a known translation), and the labels ANTs warps
agree with our warp by that flow."""
from __future__ import annotations

import numpy as np
import torch

from sweeplab.tasks.registration.metrics import warp_labels
from sweeplab.tasks.registration.syn import register_syn


def blob(shape, centre, sigma=3.0):
    grid = np.indices(shape, dtype=np.float32)
    return np.exp(-sum((g - c) ** 2 for g, c in zip(grid, centre)) / (2 * sigma ** 2)).astype(np.float32)


def test_syn_recovers_a_translation_in_our_flow_convention():
    shape = (24, 28, 24)
    fixed = blob(shape, (12, 14, 12))
    moving = blob(shape, (14, 14, 11))  # the moving blob sits +2 along axis 0 and -1 along axis 2
    labels = (moving > 0.5).astype(np.int32) * 7
    warped, warped_labels, flow = register_syn(fixed, moving, labels, iterations=(40, 20, 10))
    assert flow.shape == (3, *shape) and warped.shape == shape
    inside = fixed > 0.5
    # warp(M, flow)(x) = M(x + flow(x)) = F(x): flow ~ (+2, 0, -1) where the blob is
    assert abs(flow[0][inside].mean() - 2.0) < 0.5 and abs(flow[1][inside].mean()) < 0.5
    assert abs(flow[2][inside].mean() + 1.0) < 0.5
    assert np.abs(warped - fixed).max() < np.abs(moving - fixed).max() / 2
    ours = warp_labels(torch.as_tensor(labels)[None, None], torch.as_tensor(flow)[None])[0, 0].numpy()
    assert (ours == warped_labels).mean() > 0.99
