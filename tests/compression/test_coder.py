"""The lossless coder of the quantised latents: per-map probabilities fixed by an extra set (add-one estimate and
escapes), round trips, and costs against independent computations."""
import math

import numpy as np
import pytest

from sweeplab.tasks.compression.coder import SymbolCounts, code
from sweeplab.tasks.compression.metrics import map_entropies

SCALES = [[[0.3]], [[1.5]], [[4.0]]]  # three maps of different spreads
SHAPE = (3, 20, 30)


def _laplace(seed: int) -> np.ndarray:
    return np.round(np.random.default_rng(seed).laplace(0.0, SCALES, size=SHAPE)).astype(np.int64)


@pytest.fixture(scope="module")
def extra():
    """Counts of an "extra set" of four images; the 2nd and 3rd are shifted so that the range grows both ways."""
    images = [_laplace(0), _laplace(1) - 5, _laplace(2) + 5, _laplace(3)]
    counts = SymbolCounts(3)
    for image in images:
        counts.add(image)
    return counts.models(), np.concatenate([im.reshape(3, -1) for im in images], axis=1)


def _in_range(models, seed: int = 10) -> np.ndarray:
    image = _laplace(seed)
    return np.stack([np.clip(plane, m.low, m.high) for plane, m in zip(image, models)])


def test_models_are_add_one_estimates_over_the_extra_range(extra):
    models, values = extra
    unseen = 0
    for model, plane in zip(models, values):
        seen, n = np.unique(plane, return_counts=True)
        assert (model.low, model.high) == (seen.min(), seen.max())
        full = np.zeros(model.high - model.low + 1)
        full[seen - model.low] = n
        # one pseudo-count per symbol of the range and per escape (below, above)
        expected = np.append(full + 1, [1, 1]) / (plane.size + len(full) + 2)
        np.testing.assert_allclose(model.probabilities, expected)
        unseen += int((full == 0).sum())
    assert unseen > 0  # the rule was exercised: some symbols inside a map's range never occurred in the extra set


def test_in_range_image_decodes_losslessly_at_its_cost_under_the_fixed_model(extra):
    models, _ = extra
    image = _in_range(models)
    bits, decoded = code(image, models)
    np.testing.assert_array_equal(decoded, image)
    ideal = sum(-np.log2(m.probabilities[plane - m.low]).sum() for plane, m in zip(image.reshape(3, -1), models))
    # the 32-bit size header and the range coder's final words on top; no fixed code beats the image's own entropy
    assert 0.999 * ideal <= bits <= 1.001 * ideal + 32 + 64
    assert bits > image[0].size * map_entropies(image).sum()


def test_the_probabilities_do_not_depend_on_the_coded_image(extra):
    models, _ = extra
    n = SHAPE[1] * SHAPE[2]
    constant = np.zeros(SHAPE, dtype=np.int64)  # its own entropy is 0: a per-image code would cost nearly nothing
    bits, decoded = code(constant, models)
    np.testing.assert_array_equal(decoded, constant)
    ideal = n * sum(-math.log2(m.probabilities[-m.low]) for m in models)
    assert bits == pytest.approx(ideal, rel=0.001, abs=96) and bits > 0.1 * n

    in_range = _in_range(models)
    far = in_range.copy()
    far[0] += 3 * (models[0].high - models[0].low + 1)  # the whole map beyond the extra set's range
    far[1, :2] -= 1000  # a few rows far below
    far[2, 0, 0] = 10 ** 6  # one huge value
    bits_in, _ = code(in_range, models)
    bits_far, decoded = code(far, models)
    np.testing.assert_array_equal(decoded, far)
    assert bits_far > bits_in
    # each escaped value costs at least its escape symbol and its Exp-Golomb code (2 floor(log2(d + 1)) + 1 bits)
    escape_bits = 0.0
    for plane, m in zip(far.reshape(3, -1), models):
        below, above = plane[plane < m.low], plane[plane > m.high]
        for d, p in ((m.low - 1 - below, m.probabilities[-2]), (above - m.high - 1, m.probabilities[-1])):
            escape_bits += (-math.log2(p) + 2 * np.floor(np.log2(d + 1)) + 1).sum()
    assert escape_bits > bits_in and bits_far >= 0.999 * escape_bits


def test_coder_rejects_bad_input(extra):
    models, _ = extra
    with pytest.raises(ValueError, match="integer"):
        code(np.zeros(SHAPE), models)
    with pytest.raises(ValueError, match="maps"):
        code(np.zeros((2, 4, 4), dtype=np.int64), models)
    with pytest.raises(ValueError, match="at least one extra image"):
        SymbolCounts(3).models()
