"""Ferraro et al. 2020's published numbers (Section VIII, Tables IV and V), for ``sweeplab report``.

Table IV gives the ROC AUC and PR AUC (macro over the 50 tags, in percent) of MUSICNN on MTAT with dB compression
at the reference hop (x 1), for 128, 96 and 48 mel bands at 12 and 16 kHz. Table V gives the same on the Million
Song Dataset (MSD), all with dB compression: (a) VGG-CNN at 128/96/48 mel bands, hop x 1 and x 2, 12 and 16 kHz;
(b) MUSICNN at 128/96/48 mel bands, hop x 1, 12 and 16 kHz. sweeplab has no MSD loader, so Table V's rows show as
not run on MSD (a trial on the embedded set still fills the rows its config matches, marked as other data). The
sweep's ``roc_auc`` and ``pr_auc`` are fractions, hence ``scale=100``. The paper repeated each VGG-CNN
configuration three times (Section VIII) and prints no best-of: every matching trial is a repeat (mean and
spread). Table II lists the configurations of the MTAT grid only: their AUCs and GMACs are in Figure 1, which is
not copied, so Table II has no rows; nor do the differences the text of Section VIII derives from Figure 1 and
Table V (e.g. "1.4 and 1.8%", "0.16%").
"""
from sweeplab.api import Paper, Published

MTAT, MSD = "MTAT", "MSD"
_NO_MSD = "sweeplab has no MSD loader"
# (table, data, model, n_mels, hop_factor, sample_rate in Hz, ROC AUC %, PR AUC %), in the tables' order
_ROWS = (
    ("Table IV", MTAT, "musicnn", 128, 1, 12000, 90.40, 38.54),
    ("Table IV", MTAT, "musicnn", 96, 1, 12000, 90.50, 37.70),
    ("Table IV", MTAT, "musicnn", 48, 1, 12000, 90.33, 37.80),
    ("Table IV", MTAT, "musicnn", 128, 1, 16000, 90.83, 38.92),
    ("Table IV", MTAT, "musicnn", 96, 1, 16000, 90.60, 38.09),
    ("Table IV", MTAT, "musicnn", 48, 1, 16000, 90.50, 37.70),
    ("Table V(a)", MSD, "vgg", 128, 1, 12000, 86.48, 27.56),
    ("Table V(a)", MSD, "vgg", 96, 1, 12000, 86.67, 27.70),
    ("Table V(a)", MSD, "vgg", 48, 1, 12000, 86.53, 27.27),
    ("Table V(a)", MSD, "vgg", 128, 2, 12000, 86.28, 27.24),
    ("Table V(a)", MSD, "vgg", 96, 2, 12000, 86.18, 26.93),
    ("Table V(a)", MSD, "vgg", 48, 2, 12000, 85.86, 26.42),
    ("Table V(a)", MSD, "vgg", 128, 1, 16000, 86.84, 28.10),
    ("Table V(a)", MSD, "vgg", 96, 1, 16000, 86.71, 28.06),
    ("Table V(a)", MSD, "vgg", 48, 1, 16000, 86.73, 27.78),
    ("Table V(a)", MSD, "vgg", 128, 2, 16000, 86.34, 27.06),
    ("Table V(a)", MSD, "vgg", 96, 2, 16000, 86.63, 27.70),
    ("Table V(a)", MSD, "vgg", 48, 2, 16000, 86.41, 26.83),
    ("Table V(b)", MSD, "musicnn", 128, 1, 12000, 87.10, 26.97),
    ("Table V(b)", MSD, "musicnn", 96, 1, 12000, 87.16, 27.10),
    ("Table V(b)", MSD, "musicnn", 48, 1, 12000, 86.99, 26.66),
    ("Table V(b)", MSD, "musicnn", 128, 1, 16000, 87.21, 26.91),
    ("Table V(b)", MSD, "musicnn", 96, 1, 16000, 87.21, 26.96),
    ("Table V(b)", MSD, "musicnn", 48, 1, 16000, 87.10, 26.64),
)
_MODEL = {"vgg": "VGG-CNN", "musicnn": "MUSICNN"}

PAPER = Paper(
    title="A. Ferraro, D. Bogdanov, J. Yoon, K. Kim, X. Serra, \"How low can you go? Reducing frequency and time "
          "resolution in current CNN architectures for music auto-tagging\", EUSIPCO 2020",
    results=tuple(
        Published(table, f"{_MODEL[model]}, {mels} mel, hop x{hop}, {rate // 1000} kHz", metric, value,
                  where={"model": model, "n_mels": mels, "sample_rate": rate, "hop_factor": hop, "log": "dB"},
                  scale=100, data=data, note=_NO_MSD if data == MSD else "")
        for table, data, model, mels, hop, rate, *aucs in _ROWS
        for metric, value in zip(("roc_auc", "pr_auc"), aucs)),
    data=lambda cfg: MTAT if cfg.get("data_dir") else "embedded synthesised clips",
    note="Table II lists the MTAT configurations only; their ROC AUC, PR AUC and GMACs (VGG-CNN, three runs each) "
         "are in Figure 1, which is not copied. Table V is on MSD, which sweeplab cannot load.",
)
