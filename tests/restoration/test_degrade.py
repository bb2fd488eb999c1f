"""The synthetic degradation of Wan et al. (Section 3.1, the authors' ranges): each operation on its own, the
random-order pipeline, the procedural scratches, the white paste and the embedded aged-print domain."""
from __future__ import annotations

import numpy as np
import pytest

from sweeplab.tasks.restoration import degrade as d


def rng(seed=0):
    return np.random.default_rng(seed)


def textured(size=32, seed=0):
    """A colour image with both smooth and high-frequency content."""
    r = rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    smooth = 128 + 60 * np.sin(xx / 3.0)[..., None] * np.array([1.0, 0.5, -0.7])
    return np.clip(smooth + r.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)


def flat(value, size=64):
    return np.full((size, size, 3), value, np.uint8)


def high_frequency_energy(img):
    x = img.astype(float)
    return float(np.mean(np.diff(x, axis=0) ** 2) + np.mean(np.diff(x, axis=1) ** 2))


def test_degradation_defaults_are_the_authors_and_bad_ranges_raise():
    a = d.AUTHORS
    assert (a.p, a.blur_kernels, a.blur_sigma, a.noise_sigma) == (0.7, (3, 5, 7), (1.0, 5.0), (5.0, 50.0))
    assert (a.salt_pepper_amount, a.salt_share, a.resize_scale, a.jpeg_quality, a.grey_p) == \
        ((0.0, 0.01), (0.3, 0.8), (0.5, 1.0), (40, 100), 0.1)
    with pytest.raises(ValueError, match="blur_sigma"):
        d.Degradation(blur_sigma=(5.0, 1.0))
    with pytest.raises(ValueError, match="blur kernel 4"):
        d.Degradation(blur_kernels=(3, 4))


@pytest.mark.parametrize("k", [3, 5, 7])
def test_blur_kernel_size_bounds_the_spread_and_lowers_high_frequencies(k):
    dot = np.zeros((21, 21, 3), np.uint8)
    dot[10, 10] = 255
    params = d.Degradation(blur_kernels=(k,), blur_sigma=(5.0, 5.0))
    out = d.blur(dot, rng(), params)
    rows, cols = np.nonzero(out[..., 0])
    # a wide sigma: the truncated kernel reaches exactly k // 2 pixels from the dot, and no further
    assert np.abs(rows - 10).max() == np.abs(cols - 10).max() == k // 2
    img = textured()
    assert high_frequency_energy(d.blur(img, rng(1))) < 0.5 * high_frequency_energy(img)


def test_gaussian_noise_has_the_drawn_std():
    out = d.noise(flat(128), rng(), d.Degradation(noise_sigma=(20.0, 20.0)), kind="gaussian").astype(float)
    assert abs(out.std() - 20.0) < 1.5 and abs(out.mean() - 128) < 1.5
    stds = [d.noise(flat(128), rng(s), kind="gaussian").astype(float).std() for s in range(5)]
    assert all(4.0 < s < 52.0 for s in stds) and len(set(np.round(stds, 3))) == 5  # sigma drawn in (5, 50)


def test_speckle_scales_with_intensity_and_is_zero_on_black():
    params = d.Degradation(noise_sigma=(30.0, 30.0))
    assert not d.noise(flat(0), rng(), params, kind="speckle").any()
    img = np.concatenate([flat(50), flat(150)], axis=1)
    out = d.noise(img, rng(), params, kind="speckle").astype(float)
    dark, bright = out[:, :64].std(), out[:, 64:].std()
    assert abs(dark - 50 * 30 / 255) < 1.0 and 2.6 < bright / dark < 3.4


@pytest.mark.parametrize("share", [0.3, 0.8])
def test_salt_and_pepper_sets_0_or_255_with_the_salt_share(share):
    img = flat(128)
    out = d.noise(img, rng(), d.Degradation(salt_pepper_amount=(0.05, 0.05), salt_share=(share, share)), kind="s&p")
    changed = out[out != img]
    assert set(np.unique(changed)) == {0, 255}
    assert abs(changed.size / img.size - 0.05) < 0.01 and abs(np.mean(changed == 255) - share) < 0.06
    default = d.noise(img, rng(3), kind="s&p")
    assert np.mean(default != img) <= 0.012  # amount ~ U(0, 0.01)


def test_resize_keeps_the_shape_and_changes_the_image():
    img = textured()
    out = d.resize(img, rng(), d.Degradation(resize_scale=(0.5, 0.5)))
    assert out.shape == img.shape and out.dtype == np.uint8 and np.abs(out.astype(int) - img).mean() > 5
    assert d.resize(img, rng(), d.Degradation(resize_scale=(1.0, 1.0))).shape == img.shape


def test_jpeg_changes_the_image_and_lower_quality_errs_more():
    img = textured(64)

    def error(q):
        return np.abs(d.jpeg(img, rng(), d.Degradation(jpeg_quality=(q, q))).astype(int) - img).mean()

    assert 0 < error(100) < error(70) < error(40)


def test_greyscale_is_luminance_in_three_equal_channels():
    img = textured()
    out = d.greyscale(img)
    assert out.shape == img.shape and (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert np.abs(out[..., 0] - img.astype(float) @ d.LUMA).max() <= 1.0


def test_degrade_is_seeded_and_applies_each_operation_with_p_in_random_order():
    img = textured(16)
    assert np.array_equal(d.degrade(img, rng(5)), d.degrade(img, rng(5)))
    assert not np.array_equal(d.degrade(img, rng(5)), d.degrade(img, rng(6)))
    r, n = rng(7), 400
    runs = [d.degrade_with_ops(img, r)[1] for _ in range(n)]
    for op in d.OPERATIONS:
        assert abs(sum(op in ops for ops in runs) / n - 0.7) < 0.08, op
    assert abs(sum("greyscale" in ops for ops in runs) / n - 0.1) < 0.05
    assert all(ops[-1] == "greyscale" for ops in runs if "greyscale" in ops)
    assert {ops[0] for ops in runs if ops} == set(d.OPERATIONS)  # every operation sometimes comes first
    assert len({tuple(ops) for ops in runs if len(ops) == 4}) > 5
    out, ops = d.degrade_with_ops(img, rng(0), d.Degradation(p=0.0, grey_p=0.0))
    assert ops == [] and np.array_equal(out, img)


def test_scratch_mask_is_binary_with_a_small_share_and_seeded():
    shares = []
    for seed in range(8):
        m = d.scratch_mask((64, 48), rng(seed))
        assert m.shape == (64, 48) and m.dtype == np.float32 and set(np.unique(m)) <= {0.0, 1.0}
        shares.append(m.mean())
    assert 0 < min(shares) and max(shares) < 0.15 and 0.005 < np.mean(shares) < 0.06
    assert np.array_equal(d.scratch_mask((64, 48), rng(1)), d.scratch_mask((64, 48), rng(1)))
    assert 0.002 < d.scratch_mask((256, 256), rng(0)).mean() < 0.06


def test_paste_scratches_whitens_masked_pixels_only():
    img = textured()
    mask = d.scratch_mask(img.shape[:2], rng(2))
    out = d.paste_scratches(img, mask)
    assert (out[mask == 1] == 255).all() and np.array_equal(out[mask == 0], img[mask == 0])


def test_age_print_is_seeded_and_unlike_degrade():
    grey = d.greyscale(textured(48))
    aged, mask = d.aged_print(grey, rng(3))
    assert np.array_equal(aged, d.age_print(grey, rng(3))) and not np.array_equal(aged, d.age_print(grey, rng(4)))
    assert mask.shape == grey.shape[:2] and set(np.unique(mask)) <= {0.0, 1.0} and mask.any()
    mean = aged.reshape(-1, 3).astype(float).mean(0)
    assert mean[0] > mean[2] + 15  # a sepia cast on a grey input ...
    for seed in range(3):  # ... that the synthetic pipeline never gives
        synthetic = d.degrade(grey, rng(seed)).reshape(-1, 3).astype(float).mean(0)
        assert abs(synthetic[0] - synthetic[2]) < 3
