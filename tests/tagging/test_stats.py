"""Section VII's t-tests of the tagging task (Student's, over the seeds of each configuration), checked against the
t statistic computed by hand, and their place in the plot (a panel and ``<stem>-ttest.csv``)."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sweeplab.tasks.tagging.plot import plot_tagging, significance
from sweeplab.tasks.tagging.stats import student_p, t_tests

# per configuration (n_mels, hop_factor): ROC-AUC of three seeds, with unequal spreads (Student's and Welch's differ)
RUNS = {(96, 1): [0.900, 0.905, 0.910], (48, 1): [0.880, 0.910, 0.905], (48, 2): [0.860, 0.862, 0.858],
        (96, 2): [0.870, 0.850, 0.875], (16, 1): [0.850]}


def _student_by_hand(a, b) -> float:
    """Pooled variance, t = (mean a - mean b) / sqrt(s_p^2 (1/n_a + 1/n_b)), two-sided with n_a + n_b - 2 dof."""
    na, nb = len(a), len(b)
    sp2 = ((na - 1) * np.var(a, ddof=1) + (nb - 1) * np.var(b, ddof=1)) / (na + nb - 2)
    t = (np.mean(a) - np.mean(b)) / math.sqrt(sp2 * (1 / na + 1 / nb))
    return 2 * stats.t.sf(abs(t), na + nb - 2)


def _trials():
    rows = [dict(trial_id=f"{mels}-{hop}-{seed}", status="completed", model="vgg", sample_rate=12000, n_mels=mels,
                 hop_factor=hop, log="dB", seed=seed, gmacs=mels * 0.1 / hop, roc_auc=auc, pr_auc=auc - 0.5)
            for (mels, hop), aucs in RUNS.items() for seed, auc in enumerate(aucs)]
    rows.append(dict(trial_id="bad", status="failed", model="vgg", sample_rate=12000, n_mels=96, hop_factor=1,
                     log="dB", seed=9, gmacs=9.6, roc_auc=0.1, pr_auc=0.1))  # a failed trial is no seed
    return pd.DataFrame(rows)


def test_p_values_are_students_against_the_best_and_96_mel_bands():
    trials = _trials()
    tests = t_tests(trials[trials.status == "completed"], "roc_auc").set_index(["n_mels", "hop_factor"])
    best = RUNS[(96, 1)]  # highest mean
    assert tests["best"].tolist() == [(m, h) == (96, 1) for m, h in tests.index]
    for key, runs in RUNS.items():
        row = tests.loc[key]
        assert row.n == len(runs) and row["mean"] == pytest.approx(np.mean(runs))
        expect_best = math.nan if key == (96, 1) or len(runs) < 2 else _student_by_hand(runs, best)
        reference = RUNS.get((96, key[1]))
        expect_96 = math.nan if key[0] == 96 or len(runs) < 2 else _student_by_hand(runs, reference)
        assert row.p_best == pytest.approx(expect_best, nan_ok=True, rel=1e-9)
        assert row.p_96 == pytest.approx(expect_96, nan_ok=True, rel=1e-9)
    welch = stats.ttest_ind(RUNS[(48, 2)], RUNS[(96, 2)], equal_var=False).pvalue
    assert abs(tests.loc[(48, 2), "p_96"] - welch) > 1e-3  # Student's, not Welch's
    assert math.isnan(student_p([0.9, 0.9], [0.9, 0.9])) and math.isnan(student_p([0.9], [0.8, 0.7]))


def test_plot_draws_the_t_tests_and_writes_them_beside_the_png(tmp_path):
    out = tmp_path / "tagging.png"
    plot_tagging(_trials(), pd.DataFrame(), out)
    table = pd.read_csv(tmp_path / "tagging-ttest.csv").set_index(["n_mels", "hop_factor"])
    assert set(table.index) == set(RUNS)
    assert table.loc[(48, 1), "roc_auc_p_96"] == pytest.approx(_student_by_hand(RUNS[(48, 1)], RUNS[(96, 1)]))
    pr = {k: [v - 0.5 for v in runs] for k, runs in RUNS.items()}
    assert table.loc[(48, 2), "pr_auc_p_best"] == pytest.approx(_student_by_hand(pr[(48, 2)], pr[(96, 1)]))
    assert table.loc[(96, 1), "roc_auc_n"] == 3  # the failed trial is left out
    assert table.loc[(96, 1), "gmacs"] == pytest.approx(9.6)
    assert significance(pd.DataFrame()).empty
    one_seed = significance(_trials().drop_duplicates(["n_mels", "hop_factor"]))  # no t-test possible
    assert len(one_seed) == len(RUNS) and one_seed[["roc_auc_p_best", "roc_auc_p_96"]].isna().all().all()
