"""Shu et al. 2021's published numbers (Section 3, Tables 1 and 2), for ``sweeplab report``.

Table 1 gives the Dice of each method (Initial, SyN, VM, VMx2, RCN, LapIRN, Ours) per region on Mindboggle101 (FL,
PL, OL, TL, CL: the frontal, parietal, occipital, temporal and cingulate groups of ``data.DKT_LOBES``) and on IXI
(LWm, RWm, LGm, RGm: the left/right white and grey matter of ``data.TISSUES``), each with its "Avg.", and in its last
two rows the Flops and parameters of the learned methods. A region's sweep value is the mean ``dice`` of the trial's
evaluation rows of that group (over test pairs and the group's labels: a pair's region Dice is the mean of its
labels', as the paper); "Avg." is the trial metric ``dice``, the mean over pairs of the mean over the region groups
(Table 1's averages are the means of its region rows). Table 2 is the additive ablation on Mindboggle101 (its
columns 1) AWE, 2) USE, 3) ML: Baseline, + accumulative warping, + uncoupled encoder, + multi-window loss), the four
``include`` rows of ``sweeps/registration-ablation.yaml``; its Baseline row repeats Table 1's VM column and its last
row Table 1's Ours. Every number is copied from the two tables; the figures (3 and 4) carry none.

Methods: Ours is ``model=ulae`` with the paper's layout and loss (shared decoder: the paper's 789.56K parameters;
uncoupled, accumulative, windows (11, 9, 7), gamma 0.5, lambda 1); VM is ``voxelmorph`` (any of its trials: the
paper ran VoxelMorph's own code and gives none of its loss settings), SyN is ``syn`` and Initial ``identity``.
VMx2 (VoxelMorph with doubled channels), RCN and LapIRN are not implemented in sweeplab: their rows select no trial
(``model`` IN an empty set) and show as not run. The Flops row's unit is the paper's "Flops" (543.18G), with no
counter named; sweeplab's ``gmacs`` counts multiply-accumulates (FLOPs / 2), so a factor of 2 may separate them
(VM's 164.74G is close to vm2's 161.7 GMAC, REFERENCES.md), and both depend on the input: the row selects trials at
the paper's 160 x 192 x 160 crop only. Parameters do not depend on it. The cost rows name no dataset.
"""
from sweeplab.api import Paper, Published

MINDBOGGLE, IXI = "Mindboggle101", "IXI"
_NOT_RUN = "not implemented in sweeplab"
_FLOPS = ("the paper says Flops and does not name its counter; sweeplab's gmacs counts multiply-accumulates "
          "(FLOPs / 2), so a factor of 2 may separate them")
_PAPER_SHAPE = [160, 192, 160]
_OURS = {"model": "ulae", "decoder": "shared", "uncoupled": True, "accumulative": True, "windows": [11, 9, 7],
         "gamma": 0.5, "lambda_": 1.0}
_NONE = {"model": ()}  # no config value selects a method sweeplab lacks
# Table 1's columns: name -> (where, note)
_METHODS = {"Initial": ({"model": "identity"}, ""), "SyN": ({"model": "syn"}, ""), "VM": ({"model": "voxelmorph"}, ""),
            "VMx2": (_NONE, _NOT_RUN), "RCN": (_NONE, _NOT_RUN), "LapIRN": (_NONE, _NOT_RUN), "Ours": (_OURS, "")}
# Table 1's rows: (dataset, row, evaluation group or None for "Avg."), then one Dice per method in _METHODS' order
_TABLE1 = (
    (MINDBOGGLE, "FL", "frontal", 0.327, 0.521, 0.576, 0.605, 0.623, 0.626, 0.664),
    (MINDBOGGLE, "PL", "parietal", 0.312, 0.452, 0.526, 0.555, 0.564, 0.566, 0.607),
    (MINDBOGGLE, "OL", "occipital", 0.269, 0.402, 0.447, 0.479, 0.493, 0.507, 0.549),
    (MINDBOGGLE, "TL", "temporal", 0.352, 0.543, 0.583, 0.609, 0.624, 0.616, 0.657),
    (MINDBOGGLE, "CL", "cingulate", 0.456, 0.630, 0.674, 0.698, 0.695, 0.696, 0.722),
    (MINDBOGGLE, "Avg.", None, 0.343, 0.510, 0.561, 0.589, 0.600, 0.602, 0.640),
    (IXI, "LWm", "LWm", 0.664, 0.788, 0.839, 0.841, 0.843, 0.847, 0.860),
    (IXI, "RWm", "RWm", 0.663, 0.788, 0.839, 0.842, 0.844, 0.847, 0.862),
    (IXI, "LGm", "LGm", 0.495, 0.661, 0.792, 0.806, 0.808, 0.813, 0.817),
    (IXI, "RGm", "RGm", 0.493, 0.660, 0.792, 0.806, 0.807, 0.812, 0.820),
    (IXI, "Avg.", None, 0.579, 0.724, 0.815, 0.824, 0.826, 0.830, 0.840),
)
# Table 1's last two rows (Initial and SyN have none): method -> (Flops in G, parameters)
_COST = {"VM": (164.74, 396.45e3), "VMx2": (643.67, 1.58e6), "RCN": (494.76, 1.19e6), "LapIRN": (588.57, 923.75e3),
         "Ours": (543.18, 789.56e3)}
# Table 2: row -> (uncoupled, accumulative, windows), Dice of FL, PL, OL, TL, CL, Avg.
_TABLE2 = (
    ("Baseline", (False, False, [9]), (0.576, 0.526, 0.447, 0.583, 0.674, 0.561)),
    ("AWE", (False, True, [9]), (0.631, 0.569, 0.506, 0.624, 0.695, 0.605)),
    ("AWE+US", (True, True, [9]), (0.654, 0.597, 0.541, 0.650, 0.718, 0.632)),
    ("AWE+US+ML", (True, True, [11, 9, 7]), (0.664, 0.607, 0.549, 0.657, 0.722, 0.640)),
)
_REGIONS = tuple((row, group) for data, row, group, *_ in _TABLE1 if data == MINDBOGGLE)


def _dice(table: str, row: str, group, value: float, where: dict, data: str, note: str = "") -> Published:
    return Published(table, row, "dice", value, where=where, rows={"group": group} if group else {}, data=data,
                     note=note)


def _dataset(cfg) -> str:
    name = cfg.get("dataset")
    return {"mindboggle": MINDBOGGLE, "ixi": IXI, "embedded": "embedded synthetic MNI152 subjects"}.get(
        name, f"the user's folder dataset ({name})")


PAPER = Paper(
    title="J. Shu, H. Wang, Y. Xiao, J. Bi, B. Li, \"Medical image registration based on uncoupled learning and "
          "accumulative enhancement\", MICCAI 2021",
    results=(
        *(_dice("Table 1", f"{method}, {row}", group, value, where, data, note)
          for data, row, group, *values in _TABLE1
          for (method, (where, note)), value in zip(_METHODS.items(), values)),
        *(Published("Table 1", f"{method}, {label}", metric, value,
                    where={**_METHODS[method][0], **({"volume_shape": _PAPER_SHAPE} if metric == "gmacs" else {})},
                    note="; ".join(n for n in (_METHODS[method][1], _FLOPS if metric == "gmacs" else "") if n))
          for label, metric, k in (("Flops", "gmacs", 0), ("Params.", "params", 1))
          for method, value in ((m, cost[k]) for m, cost in _COST.items())),
        *(_dice("Table 2", f"{name}, {row}", group, value,
                {**_OURS, "uncoupled": uncoupled, "accumulative": accumulative, "windows": windows}, MINDBOGGLE)
          for name, (uncoupled, accumulative, windows), values in _TABLE2
          for (row, group), value in zip(_REGIONS, values)),
    ),
    data=_dataset,
    note="Table 1's VMx2, RCN and LapIRN are not implemented in sweeplab. The Flops row is compared with sweeplab's "
         "GMACs at the paper's 160 x 192 x 160 crop (the paper does not say how it counted). Mindboggle101's region "
         "grouping of the paper's reference [15] is not published (data.DKT_LOBES is ours), so its regions compare "
         "approximately.",
)
