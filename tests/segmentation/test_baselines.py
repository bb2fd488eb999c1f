"""The k-means and Felzenszwalb baselines and the connected-component segments of the segmentation task."""
import numpy as np
import pytest
from skimage import data

from sweeplab.tasks.segmentation.baselines import (connected_segments, felzenszwalb_segment, kmeans_clusters,
                                                   kmeans_segment, window_features)


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when the two label maps define the same regions, whatever the label values."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return pairs.shape[1] == len(np.unique(a)) == len(np.unique(b))


def test_connected_segments_split_separate_blobs():
    labels = np.array([[5, 5, 0, 5],
                       [5, 5, 0, 5],
                       [0, 0, 0, 0]])
    segments = connected_segments(labels)
    assert segments.dtype == np.int64 and segments.shape == labels.shape
    np.testing.assert_array_equal(segments, [[0, 0, 1, 2], [0, 0, 1, 2], [1, 1, 1, 1]])


def test_connected_segments_use_4_connectivity():
    labels = np.array([[0, 1], [1, 0]])  # diagonal neighbours only: four segments
    np.testing.assert_array_equal(connected_segments(labels), [[0, 1], [2, 3]])
    assert connected_segments(np.full((3, 3), -7)).tolist() == [[0] * 3] * 3  # any label value, even negative


def test_window_features_replicate_the_border():
    image = np.arange(12, dtype=np.uint8).reshape(3, 4)
    x = window_features(image, 3)
    assert x.shape == (12, 9) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0], [0, 0, 1, 0, 0, 1, 4, 4, 5])  # top-left pixel, edge padded
    np.testing.assert_array_equal(window_features(image, 1)[:, 0], np.arange(12))
    with pytest.raises(ValueError, match="odd"):
        window_features(image, 2)


def _two_colour_image() -> tuple[np.ndarray, np.ndarray]:
    """Blue | red | blue vertical stripes with noise; the regions as integers 0, 1, 2.

    The boundaries are straight, so every window of alpha <= 7 has a majority of its own colour (at a region's
    convex corner it would not: window features round corners off).
    """
    regions = np.zeros((24, 30), dtype=int)
    regions[:, 9:20] = 1
    regions[:, 20:] = 2
    image = np.where((regions == 1)[..., None], [200, 30, 30], [20, 40, 180]).astype(np.uint8)
    noise = np.random.default_rng(0).integers(-10, 11, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8), regions


@pytest.mark.parametrize("alpha", [1, 3, 7])
def test_kmeans_recovers_two_colours_as_three_segments(alpha):
    image, regions = _two_colour_image()
    clusters = kmeans_clusters(image, alpha=alpha, k=2, seed=0)
    assert clusters.shape == regions.shape and len(np.unique(clusters)) == 2
    segments = kmeans_segment(image, alpha=alpha, k=2, seed=0)
    assert segments.max() == 2  # the blue cluster is two stripes, both touching the image border
    assert _same_partition(segments, regions)


def test_kmeans_is_seeded():
    image = data.astronaut()[::8, ::8]
    a = kmeans_segment(image, alpha=3, k=6, seed=3, n_fit=500)
    np.testing.assert_array_equal(a, kmeans_segment(image, alpha=3, k=6, seed=3, n_fit=500))
    assert np.array_equal(np.unique(a), np.arange(a.max() + 1))


def test_felzenszwalb_threshold_is_on_0_255_scale():
    # Two flat 100-pixel halves at RGB distance 10: without smoothing they merge iff 10 < threshold / 100.
    image = np.zeros((10, 20, 3), np.uint8)
    image[:, 10:] = (6, 8, 0)
    for img in (image, image / 255.0):
        assert felzenszwalb_segment(img, 900, sigma=0.0, min_size=1).max() == 1
        assert felzenszwalb_segment(img, 1100, sigma=0.0, min_size=1).max() == 0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        felzenszwalb_segment(image.astype(float), 900)


def test_felzenszwalb_gives_more_segments_for_smaller_threshold():
    image = data.chelsea()  # 300 x 451, about BSDS500's size
    fine, coarse = felzenszwalb_segment(image, 100), felzenszwalb_segment(image, 1000)
    assert fine.shape == coarse.shape == image.shape[:2]
    assert fine.max() + 1 > 2 * (coarse.max() + 1) > 2
    assert np.array_equal(np.unique(fine), np.arange(fine.max() + 1))
    assert np.bincount(fine.ravel()).min() >= 20  # min_size
