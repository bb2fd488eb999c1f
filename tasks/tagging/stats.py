"""Section VII's significance test for the `tagging` task (Ferraro et al., EUSIPCO 2020).

Section VII: 48 mel bands score slightly above 96 in most configurations, "however no statistically significant
difference was found (P > 0.08 for all corresponding configurations in an independent samples t-test)", each
configuration having been run three times (Figure 1). An independent samples t-test without further qualification
is Student's (equal variances, two-sided): ``scipy.stats.ttest_ind(a, b, equal_var=True)`` over the per-trial
metric of the two configurations' seeds. :func:`t_tests` gives, per configuration, two such p-values:

* ``p_best``: against the configuration with the highest mean (none for that one): which configurations are not
  significantly worse than the best;
* ``p_96``: against the same configuration (model, sample rate, hop, log) with 96 mel bands, the paper's pairing
  (it reports 48 against 96; every other mel count gets it too).

A p-value needs at least two trials in each group; it is NaN otherwise, and where both groups have no spread.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

CONFIG_COLUMNS = ("model", "sample_rate", "n_mels", "hop_factor", "log")  # what makes a configuration
REFERENCE_MELS = 96  # Section VII compares 48 mel bands against 96


def student_p(a, b) -> float:
    """Two-sided p-value of Student's independent samples t-test (equal variances); NaN with fewer than two
    finite values in a group or no spread in either."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    with warnings.catch_warnings():  # identical values: scipy warns and returns NaN, which is the answer
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(a, b, equal_var=True).pvalue)


def t_tests(per_trial: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per configuration of ``per_trial`` (one row per trial, with :data:`CONFIG_COLUMNS` and ``metric``):
    the config columns, ``n`` (trials with a finite metric), ``mean``, ``best`` (the highest mean), ``p_best`` and
    ``p_96`` (module docstring). Empty without trials."""
    columns = [*CONFIG_COLUMNS, "n", "mean", "best", "p_best", "p_96"]
    values = per_trial.dropna(subset=[metric]) if len(per_trial) else per_trial
    if values.empty:
        return pd.DataFrame(columns=columns)
    groups = {key: g[metric].to_numpy() for key, g in values.groupby(list(CONFIG_COLUMNS), sort=True)}
    means = {key: float(np.mean(v)) for key, v in groups.items()}
    best = max(means, key=means.get)
    mels = CONFIG_COLUMNS.index("n_mels")
    rows = []
    for key, v in groups.items():
        reference = key[:mels] + (REFERENCE_MELS,) + key[mels + 1:]
        rows.append([*key, len(v), means[key], key == best,
                     float("nan") if key == best else student_p(v, groups[best]),
                     student_p(v, groups[reference]) if reference in groups and reference != key else float("nan")])
    return pd.DataFrame(rows, columns=columns)
