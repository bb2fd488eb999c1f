"""IoU, per-image F-measure and pooled PR/AP of the segmentation task, against hand computations."""
import numpy as np
import pytest

from sweeplab.tasks.segmentation.metrics import (ap, average_precision, image_metrics, iou_matrix,
                                                  pool_pr)

# Predicted segments: 0 = left half (8 px), 1 = five pixels top right, 2 = three pixels bottom right.
PRED = np.array([[0, 0, 1, 1],
                 [0, 0, 1, 1],
                 [0, 0, 1, 2],
                 [0, 0, 2, 2]])
# GT segments: 0 = left half + two pixels of column 2 (10 px), 1 = the six other pixels.
GT = np.array([[0, 0, 0, 1],
               [0, 0, 0, 1],
               [0, 0, 1, 1],
               [0, 0, 1, 1]])
QUADRANTS = np.kron(np.array([[0, 1], [2, 3]]), np.ones((2, 2), dtype=int))


def test_iou_matrix_by_hand():
    # seg 0: 8/10 with GT 0; seg 1: 2/13 with GT 0, 3/8 with GT 1; seg 2: 3/6 with GT 1.
    expected = np.array([[0.8, 0.0], [2 / 13, 3 / 8], [0.0, 0.5]])
    np.testing.assert_allclose(iou_matrix(PRED, GT), expected)


def test_iou_matrix_matches_brute_force_with_sparse_label_values():
    rng = np.random.default_rng(0)
    pred = rng.choice([3, 7, 40], size=(9, 11))
    gt = rng.choice([-1, 5], size=(9, 11))
    brute = np.array([[np.sum((pred == a) & (gt == b)) / np.sum((pred == a) | (gt == b)) for b in (-1, 5)]
                      for a in (3, 7, 40)])
    np.testing.assert_allclose(iou_matrix(pred, gt), brute)
    with pytest.raises(ValueError, match="shape"):
        iou_matrix(pred, gt[:, :5])


def test_image_metrics_by_hand_with_strict_threshold():
    row = image_metrics(PRED, [GT])
    # Only seg 0 is correct (seg 2's IoU is exactly 0.5, not larger); GT 0 found, GT 1 not.
    assert row["precision"] == pytest.approx(1 / 3)
    assert row["recall"] == pytest.approx(1 / 2)
    assert row["f_measure"] == pytest.approx(0.4)
    assert (row["n_segments"], row["n_gt_segments"], row["n_annotators"]) == (3, 2.0, 1)
    assert row["pr_50_correct"] == [1.0, 0.0, 0.0]  # sizes 8, 5, 3
    assert row["pr_70_correct"] == [1.0, 0.0, 0.0]  # 0.8 > 0.7


def test_segments_are_ranked_by_decreasing_size():
    pred = np.array([[0, 1, 1, 1], [0, 1, 1, 1]])  # segment 0 (2 px) is smaller than segment 1 (6 px)
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])   # seg 1 vs GT 1: 4/6 correct at 0.5, not at 0.7
    row = image_metrics(pred, [gt])
    assert row["pr_50_correct"] == [1.0, 0.0]
    assert row["pr_70_correct"] == [0.0, 0.0]


def test_annotators_are_averaged():
    row = image_metrics(PRED, [GT, PRED])  # the second annotator agrees with the prediction
    assert row["precision"] == pytest.approx((1 / 3 + 1) / 2)
    assert row["recall"] == pytest.approx((1 / 2 + 1) / 2)
    assert row["f_measure"] == pytest.approx((0.4 + 1) / 2)
    assert row["n_gt_segments"] == 2.5 and row["n_annotators"] == 2
    assert row["pr_50_correct"] == [1.0, 0.5, 0.5]


def test_perfect_prediction_has_f_and_ap_one():
    row = image_metrics(QUADRANTS + 10, [QUADRANTS])  # label values need not agree
    assert row["f_measure"] == row["precision"] == row["recall"] == 1.0
    assert ap([row], 0.5) == pytest.approx(1.0) and ap([row], 0.7) == pytest.approx(1.0)


def test_one_segment_covering_everything():
    row = image_metrics(np.zeros((4, 4), int), [QUADRANTS])  # IoU 4/16 with each quadrant
    assert (row["precision"], row["recall"], row["f_measure"]) == (0.0, 0.0, 0.0)
    big = np.zeros((4, 4), int)
    big[:2, :2] = 1  # GT: 12 px + 4 px; the single segment has IoU 12/16 with the big one
    row = image_metrics(np.zeros((4, 4), int), [big])
    assert (row["precision"], row["recall"]) == (1.0, 0.5)
    assert row["f_measure"] == pytest.approx(2 / 3)


def test_correct_and_found_counts_match_one_to_one():
    rng = np.random.default_rng(1)
    gt = np.kron(rng.integers(0, 4, (4, 5)), np.ones((8, 8), int))
    pred = gt.copy()
    pred[rng.random(gt.shape) < 0.2] = 9  # noise: some segments survive with IoU > 0.5, some do not
    row = image_metrics(pred, [gt])
    n_correct = sum(row["pr_50_correct"])
    assert 0 < n_correct < row["n_segments"]
    assert row["precision"] * row["n_segments"] == pytest.approx(n_correct)
    assert row["recall"] * row["n_gt_segments"] == pytest.approx(n_correct)


def test_pooled_pr_and_ap_on_two_images_by_hand():
    rows = [image_metrics(PRED, [GT]), image_metrics(QUADRANTS, [QUADRANTS])]
    precision, recall = pool_pr(rows, 0.5)
    # Top-n correct: 1+1, 1+2, 1+3, 1+4 over 2, 4, 6, 7 segments (image 1 has only 3); 6 GT segments.
    np.testing.assert_allclose(precision, [1.0, 3 / 4, 4 / 6, 5 / 7])
    np.testing.assert_allclose(recall, [2 / 6, 3 / 6, 4 / 6, 5 / 6])
    expected = 2 / 6 * 1.0 + 1 / 6 * 3 / 4 + 1 / 6 * 4 / 6 + 1 / 6 * 5 / 7
    assert ap(rows, 0.5) == pytest.approx(expected)
    assert ap(rows, 0.5, interpolated=True) == pytest.approx(2 / 6 + 1 / 6 * (3 / 4 + 5 / 7 + 5 / 7))


def test_pool_pr_weighs_annotator_fractions():
    rows = [{"pr_50_correct": [0.5, 1.0], "n_gt_segments": 4.0},
            {"pr_50_correct": [0.0], "n_gt_segments": 1.0}]
    precision, recall = pool_pr(rows, 0.5)
    np.testing.assert_allclose(precision, [0.5 / 2, 1.5 / 3])
    np.testing.assert_allclose(recall, [0.5 / 5, 1.5 / 5])
    with pytest.raises(ValueError):
        pool_pr([], 0.5)


def test_pool_pr_reads_the_flags_as_stored_in_the_results_table():
    """The flags are a list column of ``evaluations``; read back through Parquet they pool the same."""
    from sweeplab import schema
    rows = [{"pr_50_correct": [0.5, 1.0, 1 / 3], "n_gt_segments": 4.0},
            {"pr_50_correct": [0.0], "n_gt_segments": 1.0}]
    table = schema.table(rows, {"pr_50_correct": list[float], "n_gt_segments": float})
    assert str(table.schema.field("pr_50_correct").type) == "list<item: double>"
    stored = table.to_pandas().to_dict("records")
    for a, b in zip(pool_pr(rows, 0.5), pool_pr(stored, 0.5)):
        np.testing.assert_array_equal(a, b)


def test_average_precision_step_area():
    assert average_precision([1.0, 0.5, 2 / 3], [0.25, 0.25, 0.5]) == pytest.approx(0.25 + 0.25 * 2 / 3)
    assert average_precision([0.5, 1.0], [0.5, 1.0], interpolated=True) == pytest.approx(1.0)


def test_low_pr_threshold_is_refused():
    with pytest.raises(ValueError, match="0.5"):
        image_metrics(PRED, [GT], thresholds=(0.3,))
