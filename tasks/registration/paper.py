"""Shu et al. 2021's published numbers (Section 3, Tables 1 and 2), for ``sweeplab report``.

Table 1 gives the Dice of each method (Initial, SyN, VM, VMx2, RCN, LapIRN, Ours) per region on Mindboggle101 (FL,
PL, OL, TL, CL: the frontal, parietal, occipital, temporal and cingulate groups of ``data.DKT_LOBES``) and on IXI
(LWm, RWm, LGm, RGm: the left/right white and grey matter of ``data.TISSUES``), each with its "Avg.", and in its last
two rows the Flops and parameters of the learned methods. A region's sweep value is the mean ``dice`` of the trial's
evaluation rows of that group (over test pairs and the group's labels: a pair's region Dice is the mean of its
labels', as the paper); "Avg." is the trial metric ``dice``, the mean over pairs of the mean over the region groups
(Table 1's averages are the means of its region rows). Table 2 is the additive ablation on Mindboggle101 (its
columns 1) AWE, 2) USE, 3) ML: Baseline, + accumulative warping, + uncoupled encoder, + multi-window loss), the first
four ``include`` rows of ``sweeps/registration-ablation.yaml`` (its fifth is ours); its Baseline row repeats Table
1's VM column and its last row Table 1's Ours. Every number is copied from the two tables; the figures (3 and 4)
carry none.

Methods: Ours is ``model=ulae`` with the paper's layout and loss (shared decoder: the paper's 789.56K parameters;
uncoupled, accumulative, windows (11, 9, 7), gamma 0.5, lambda 1) and the squared local NCC of the authors' code,
which produced the published figures; VM is ``voxelmorph`` trained as VoxelMorph's own code trains it (the paper
"used the original codes of VM"): squared local NCC with one window of 9, lambda 1, and VMx2 the same with
``vm_width=2`` ("we also doubled the channels of VM"), the rows of ``sweeps/registration-table1.yaml``; Table 2's
Baseline is that VM too (the first row of ``sweeps/registration-ablation.yaml``). SyN is ``syn`` (any of its
settings: the paper names none) and Initial ``identity``. RCN and LapIRN are not implemented in sweeplab: their rows
select no trial (``model`` IN an empty set) and show as not run. The Flops row's unit is the paper's "Flops"
(543.18G), with no counter named; sweeplab's ``gmacs`` counts multiply-accumulates (FLOPs / 2), so a factor of 2 may
separate them (VM's 164.74G is close to vm2's 161.7 GMAC, REFERENCES.md; VMx2's 643.67G against our 624.5 GMAC,
3% apart: doubling the channels does not double the 2-channel input, the full-resolution skip of the pair or the
3-channel flow head), and both depend on the input: the row selects trials at the paper's 160 x 192 x 160 crop only.
The cost rows select by architecture only (the loss does not change it). Parameters do not depend on the input;
the paper's VM and VMx2 counts (396.45K, 1.58M) match no vm2 layout (ours: 300,547 and 1,195,523), so compare their
cost rather than their parameters. The cost rows name no dataset.
"""
from sweeplab.api import Paper, Published

MINDBOGGLE, IXI = "Mindboggle101", "IXI"
_NOT_RUN = "not implemented in sweeplab"
_FLOPS = ("the paper says Flops and does not name its counter; sweeplab's gmacs counts multiply-accumulates "
          "(FLOPs / 2), so a factor of 2 may separate them")
_VM_PARAMS = ("vm2's layout has 300,547 parameters (x2: 1,195,523); the paper's counts match no vm2 layout, so "
              "compare the cost row")
_PAPER_SHAPE = [160, 192, 160]
_ULAE_NET = {"model": "ulae", "decoder": "shared", "uncoupled": True, "accumulative": True}
_OURS = {**_ULAE_NET, "windows": [11, 9, 7], "gamma": 0.5, "ncc": "squared", "lambda_": 1.0}
_VM_CODE = {"windows": [9], "ncc": "squared", "lambda_": 1.0}  # VoxelMorph's own loss (its code's NCC defaults)
_NONE = {"model": ()}  # no config value selects a method sweeplab lacks
# Table 1's columns: name -> (where, note, where of the cost rows: the architecture only)
_METHODS = {"Initial": ({"model": "identity"}, "", None), "SyN": ({"model": "syn"}, "", None),
            "VM": ({"model": "voxelmorph", "vm_width": 1, **_VM_CODE}, "", {"model": "voxelmorph", "vm_width": 1}),
            "VMx2": ({"model": "voxelmorph", "vm_width": 2, **_VM_CODE}, "", {"model": "voxelmorph", "vm_width": 2}),
            "RCN": (_NONE, _NOT_RUN, _NONE), "LapIRN": (_NONE, _NOT_RUN, _NONE), "Ours": (_OURS, "", _ULAE_NET)}
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
# Table 2: row -> where, Dice of FL, PL, OL, TL, CL, Avg. (the Baseline is VoxelMorph: Table 1's VM column)
_TABLE2 = (
    ("Baseline", _METHODS["VM"][0], (0.576, 0.526, 0.447, 0.583, 0.674, 0.561)),
    ("AWE", {**_OURS, "uncoupled": False, "windows": [9]}, (0.631, 0.569, 0.506, 0.624, 0.695, 0.605)),
    ("AWE+US", {**_OURS, "windows": [9]}, (0.654, 0.597, 0.541, 0.650, 0.718, 0.632)),
    ("AWE+US+ML", _OURS, (0.664, 0.607, 0.549, 0.657, 0.722, 0.640)),
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
          for (method, (where, note, _)), value in zip(_METHODS.items(), values)),
        *(Published("Table 1", f"{method}, {label}", metric, value,
                    where={**_METHODS[method][2], **({"volume_shape": _PAPER_SHAPE} if metric == "gmacs" else {})},
                    note="; ".join(n for n in (_METHODS[method][1], _FLOPS if metric == "gmacs" else "",
                                               _VM_PARAMS if metric == "params" and "VM" in method else "") if n))
          for label, metric, k in (("Flops", "gmacs", 0), ("Params.", "params", 1))
          for method, value in ((m, cost[k]) for m, cost in _COST.items())),
        *(_dice("Table 2", f"{name}, {row}", group, value, where, MINDBOGGLE)
          for name, where, values in _TABLE2
          for (row, group), value in zip(_REGIONS, values)),
    ),
    data=_dataset,
    note="Table 1's RCN and LapIRN are not implemented in sweeplab. The Flops row is compared with sweeplab's "
         "GMACs at the paper's 160 x 192 x 160 crop (the paper does not say how it counted). Mindboggle101's region "
         "grouping of the paper's reference [15] is not published (data.DKT_LOBES is ours), so its regions compare "
         "approximately.",
)
