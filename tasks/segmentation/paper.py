"""Kanezaki 2018's published numbers (Section 3), for ``sweeplab report``.

Section 3 gives, in its text, the best average precision of each method on the BSDS500 test set over the segments
of an image ordered by decreasing size, with an estimated segment correct at IoU > 0.5 and > 0.7: k-means
clustering (0.049, 0.0129), graph-based segmentation (0.1161, 0.0449) and the proposed method (0.1394, 0.0578). The
"best" is over each method's settings (k-means: alpha and k = 2..20; GS: beta = 100..2000; the proposed method: M),
so each row's sweep value is the best configuration's mean. The F-measures of Figure 3 and the curves of Figure 4
are figures only and are not copied.
"""
from sweeplab.api import Paper, Published

_BEST_AP = {"kmeans": ("k-means clustering", 0.049, 0.0129), "felzenszwalb": ("GS (Felzenszwalb)", 0.1161, 0.0449),
            "cnn": ("proposed method", 0.1394, 0.0578)}

PAPER = Paper(
    title="A. Kanezaki, \"Unsupervised image segmentation by backpropagation\", ICASSP 2018",
    results=tuple(Published("Section 3", f"{name}, AP at IoU {iou}", metric, value, where={"method": method},
                            best="max", data="BSDS500")
                  for method, (name, *aps) in _BEST_AP.items()
                  for iou, metric, value in zip((0.5, 0.7), ("ap50", "ap70"), aps)),
    data=lambda cfg: "BSDS500" if cfg.get("data_dir") else "embedded texture mosaics",
    note="The paper prints its AP per method in the text of Section 3; its F-measures are in Figure 3 only.",
)
