"""Accuracy-against-cost figure of the tagging task (after Fig. 1) from synthetic results tables."""
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sweeplab.tasks.tagging.plot import pareto_front, plot_tagging, summarise


def test_pareto_front_by_hand():
    gmacs = [1.0, 2.0, 2.0, 4.0, 8.0, 3.0, np.nan, 0.5]
    auc = [0.80, 0.85, 0.84, 0.85, 0.90, 0.83, 0.99, 0.70]
    # 0.5/0.70 cheapest; 1/0.80; 2/0.85; 2/0.84 dominated by 2/0.85; 4/0.85 dominated by 2/0.85 (cheaper, equal);
    # 8/0.90 best; 3/0.83 dominated by 2/0.85; NaN never on the front
    assert pareto_front(gmacs, auc).tolist() == [True, True, False, False, True, False, False, True]
    assert pareto_front([1.0, 1.0], [0.5, 0.5]).tolist() == [True, True]  # duplicates: neither dominates
    assert pareto_front([], []).tolist() == []


def _trials():
    rows = []
    configs = [("vgg", 12000, 96, 1, "dB", 10.0, 0.90), ("vgg", 12000, 48, 1, "dB", 5.0, 0.89),
               ("vgg", 12000, 48, 2, "log", 2.5, 0.85), ("vgg", 16000, 96, 1, "dB", 13.0, 0.88),
               ("musicnn", 16000, 96, 1, "log", 3.0, 0.87)]
    for i, (model, sr, mels, hop, log, g, auc) in enumerate(configs):
        for seed, delta in enumerate((-0.01, 0.0, 0.01)):  # three repetitions, mean = auc
            rows.append(dict(trial_id=f"t{i}_{seed}", status="completed", model=model, sample_rate=sr, n_mels=mels,
                             hop_factor=hop, log=log, seed=seed, gmacs=g, roc_auc=auc + delta,
                             pr_auc=auc - 0.5 + delta))
    rows.append(dict(trial_id="failed", status="failed", model="vgg", sample_rate=12000, n_mels=8, hop_factor=10,
                     log="dB", seed=0, gmacs=0.1, roc_auc=0.99, pr_auc=0.99))
    rows.append(dict(trial_id="running", status="running", model="vgg", sample_rate=12000, n_mels=16,
                     hop_factor=10, log="dB", seed=0, gmacs=0.2, roc_auc=np.nan, pr_auc=np.nan))
    return pd.DataFrame(rows)


def test_summarise_averages_seeds_and_drops_failed_trials():
    table = summarise(_trials())
    assert len(table) == 6  # 5 configs + the running one (no metric: not drawn), the failed one dropped
    row = table[(table.model == "vgg") & (table.n_mels == 48) & (table.hop_factor == 2)].iloc[0]
    assert row.n == 3 and row.roc_auc == pytest.approx(0.85) and row.gmacs == pytest.approx(2.5)
    assert (row.roc_auc_min, row.roc_auc_max) == pytest.approx((0.84, 0.86))
    drawn = table[np.isfinite(table.roc_auc)]
    front = drawn[pareto_front(drawn.gmacs, drawn.roc_auc)]
    assert sorted(front.gmacs) == [2.5, 3.0, 5.0, 10.0]  # 16 kHz/96 (13 GMACs, 0.88) is dominated


def test_metric_missing_from_trials_comes_from_evaluations():
    trials = _trials()
    evaluations = pd.DataFrame({"trial_id": trials.trial_id.repeat(2).values,
                                "pr_auc": np.repeat(trials.pr_auc.values, 2) + np.tile([-0.1, 0.1], len(trials))})
    table = summarise(trials.drop(columns=["pr_auc"]), evaluations)
    assert table.set_index(["n_mels", "hop_factor", "model"]).loc[(48, 2, "vgg"), "pr_auc"] == pytest.approx(0.35)


def test_plot_writes_a_png(tmp_path):
    out = tmp_path / "figs" / "tagging.png"
    plot_tagging(_trials(), pd.DataFrame(), out)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > im.size[1] > 300


@pytest.mark.parametrize("trials", [
    pd.DataFrame(),
    pd.DataFrame({"trial_id": ["a"], "status": ["failed"]}),
    _trials().drop(columns=["log", "pr_auc", "sample_rate"]),  # defaults and an empty panel
    _trials().drop(columns=["gmacs"]),
])
def test_plot_survives_missing_columns_and_failed_trials(tmp_path, trials):
    out = tmp_path / "f.png"
    plot_tagging(trials, None, out)
    assert out.stat().st_size > 1000
