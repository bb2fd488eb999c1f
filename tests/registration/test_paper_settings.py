"""Issue 22's settings of the registration task: each Table 1 method trained with its own loss (VoxelMorph as its
code, ULAE-net as the authors'), Table 2's baseline is VoxelMorph, VMx2's cost, Fig. 3 / Fig. 4 from a trial's
example, the chained final warp and SyN's metric and levels reached from the config, the IXI spec, the plain NCC
default."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from sweeplab import cli, results
from sweeplab.config import build
from sweeplab.context import LocalContext
from sweeplab.cost import count
from sweeplab.plan import grid_points
from sweeplab.spec import load
from sweeplab.tasks.registration import data, networks, plot, testing, train
from sweeplab.tasks.registration.config import RegistrationConfig
from sweeplab.tasks.registration.layers import compose, warp

SWEEPS = Path(__file__).parents[2] / "sweeps"
VM_CODE = {"windows": (9,), "ncc": "squared", "lambda_": 1.0, "lr": 1e-4, "batch_size": 1}  # VoxelMorph's own


def _configs(name: str, sets: list[str]) -> list[RegistrationConfig]:
    return [build(RegistrationConfig, point) for point in grid_points(load(SWEEPS / f"{name}.yaml", sets))]


def _fields(cfg, names) -> dict:
    return {k: getattr(cfg, k) for k in names}


@pytest.fixture(scope="module")
def mindboggle(tmp_path_factory):
    return testing.write_mindboggle_fixture(tmp_path_factory.mktemp("mindboggle"), subjects_per_group=1)


def test_table1_trains_each_method_with_its_own_loss(mindboggle):
    by_method = {(c.model, c.vm_width): c for c in _configs("registration-table1", [f"data_dir={mindboggle}"])}
    assert set(by_method) == {("ulae", 1), ("voxelmorph", 1), ("voxelmorph", 2), ("syn", 1), ("identity", 1)}
    for width in (1, 2):  # VM and VMx2: VoxelMorph's code's single window-9 squared NCC, lambda 1
        assert _fields(by_method["voxelmorph", width], VM_CODE) == VM_CODE
    ulae = by_method["ulae", 1]
    assert _fields(ulae, ("windows", "gamma", "ncc", "lambda_")) == {"windows": (11, 9, 7), "gamma": 0.5,
                                                                     "ncc": "squared", "lambda_": 1.0}
    assert by_method["voxelmorph", 1].iterations == ulae.iterations == 160_000
    syn = by_method["syn", 1]
    assert (syn.syn_metric, syn.syn_sampling, syn.syn_iterations) == ("CC", 4, (100, 70, 50, 20))
    # the smoke spec keeps the methods' losses
    smoke = {(c.model, c.vm_width): c for c in _configs("registration-table1-smoke", [])}
    assert _fields(smoke["voxelmorph", 2], VM_CODE) == VM_CODE and smoke["ulae", 1].windows == (11, 9, 7)


def test_table2_baseline_is_table1s_voxelmorph(mindboggle):
    rows = _configs("registration-ablation", [f"data_dir={mindboggle}"])
    vm = next(c for c in _configs("registration-table1", [f"data_dir={mindboggle}"])
              if c.model == "voxelmorph" and c.vm_width == 1)
    applies = [f.name for f in dataclasses.fields(RegistrationConfig) if not f.name.startswith("syn_")]
    assert _fields(rows[0], applies) == _fields(vm, applies)  # Table 1's VM trial (SyN's fields do not apply)
    ulae = [(c.uncoupled, c.accumulative, c.windows, c.ncc) for c in rows[1:]]
    assert ulae == [(False, True, (9,), "squared"), (True, True, (9,), "squared"), (True, True, (11, 9, 7), "squared"),
                    (False, False, (9,), "squared")]  # the last: ours, the ULAE-style network with both off


def _vm_macs(size, width: int) -> float:
    """VoxelMorph's convolutions counted by hand (module docstring of networks.py): 3^3 kernels, MACs = 27 c_in c_out
    per output voxel."""
    n = np.prod(size)
    enc, dec = [width * c for c in (16, 32, 32, 32)], [width * c for c in (32, 32, 32, 32, 32, 16, 16)]
    macs = sum(27 * a * b * n / 8 ** (k + 1) for k, (a, b) in enumerate(zip((2, *enc[:-1]), enc)))
    ins = (enc[3], dec[0] + enc[2], dec[1] + enc[1], dec[2] + enc[0], dec[3], dec[4] + 2, dec[5])
    scale = (1 / 16 ** 3, 1 / 8 ** 3, 1 / 4 ** 3, 1 / 2 ** 3, 1 / 2 ** 3, 1, 1)  # resolution of each decoder conv
    macs += sum(27 * a * b * n * s for a, b, s in zip(ins, dec, scale))
    return (macs + 27 * dec[6] * 3 * n) / 1e9


def test_vmx2_cost():
    params, gmacs, _ = count(lambda: networks.VoxelMorph((16, 32, 16), width=2), ((1, 1, 16, 32, 16),) * 2)
    assert gmacs == pytest.approx(_vm_macs((16, 32, 16), 2), rel=1e-9)  # the counter agrees with the hand count
    assert params == 1_195_523
    assert _vm_macs((160, 192, 160), 1) == pytest.approx(161.7, abs=0.1)  # the counter's figure for vm2 (test_task)
    full = _vm_macs((160, 192, 160), 2)
    assert full == pytest.approx(624.5, abs=0.1)
    # the paper's VMx2: 643.67G (its VM: 164.74G against vm2's 161.7): 3.0% more, not within 1% (README)
    assert abs(full / 643.67 - 1) < 0.03 and abs(full / 643.67 - 1) > 0.01


def test_figures_3_and_4_from_a_trials_example(tmp_path):
    cfg = build(RegistrationConfig, {"volume_shape": (16, 32, 16), "n_subjects": 3, "n_test_subjects": 2,
                                     "deformation": 10.0, "n_test_pairs": 1})
    ds = data.load_data(cfg)
    torch.manual_seed(0)
    net = networks.build(cfg)
    with torch.no_grad():
        for head in net.heads:
            head.weight.normal_(0.0, 0.05)  # steps that move the image
    ctx = LocalContext(trial_dir=tmp_path, verbose=False)
    train.evaluate(cfg, net, ds, ctx)
    example = ctx.artifacts[train.EXAMPLE]
    # independently: the network's steps on the first test pair, warped here step by step, middle axial slice
    moving, fixed = (torch.as_tensor(s.load()[0], dtype=torch.float32)[None, None] for s in ds.test[:2])
    with torch.no_grad():
        flows = net(moving, fixed)["flows"]
    m1 = warp(moving, flows[0])
    m2 = warp(m1, flows[1])
    final = warp(moving, compose(compose(flows[0], flows[1]), flows[2]))
    stages = [s[0, 0, ..., 8].numpy() for s in (moving, m1, m2, final)]  # the middle axial slice
    np.testing.assert_allclose(example["steps_warped"], np.stack(stages[1:]), atol=1e-5)
    np.testing.assert_allclose(example["steps_flow"], np.stack([f[0, :2, ..., 8].numpy() for f in flows]),
                               atol=1e-6)
    fig = Figure()
    plot.figures_3_and_4(fig, example, 5)
    images = {a.get_title(): a.images[0].get_array() for a in fig.axes if a.images}
    assert {"Fig. 3: M", "Fig. 3: M_1", "Fig. 3: M_2", "Fig. 3: final", "Fig. 3: F"} <= set(images)
    assert sum(a.get_title().startswith("Fig. 3: phi_") for a in fig.axes) == 3
    for title, (a, b) in {"|M_1 - M|": (0, 1), "|M_2 - M_1|": (1, 2), "|final - M_2|": (2, 3)}.items():
        np.testing.assert_allclose(images[f"Fig. 4(c): {title}"], np.abs(stages[b] - stages[a]).T, atol=1e-5)
        assert np.abs(stages[b] - stages[a]).max() > 1e-3  # the steps do move the image


def test_chained_final_warp_reached_from_the_config():
    size = (16, 32, 16)
    nets = {}
    for final in ("composed", "chained"):
        torch.manual_seed(3)
        nets[final] = networks.build(RegistrationConfig(volume_shape=size, final_warp=final)).eval()
        with torch.no_grad():
            for head in nets[final].heads:
                head.weight.normal_(0.0, 0.05)
    g = torch.Generator().manual_seed(0)
    moving, fixed = (torch.nn.functional.avg_pool3d(torch.rand(1, 1, *size, generator=g), 5, 1, 2) for _ in "mf")
    with torch.no_grad():
        composed, chained = nets["composed"](moving, fixed), nets["chained"](moving, fixed)
    torch.testing.assert_close(composed["flow"], chained["flow"])  # the same weights and flows
    torch.testing.assert_close(chained["warped"], warp(chained["warped_steps"][1], chained["flows"][2]))
    assert float((chained["warped"] - composed["warped"]).abs().max()) > 1e-3


def test_syn_metric_and_levels_reach_ants(monkeypatch):
    import ants
    calls, real = [], ants.registration

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(ants, "registration", spy)
    cfg = RegistrationConfig(model="syn", volume_shape=(16, 16, 16), syn_metric="CC", syn_sampling=2,
                             syn_iterations=(4, 2, 1))
    image = torch.nn.functional.avg_pool3d(torch.rand(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(0)),
                                           3, 1, 1)
    labels = (image > image.mean()).long()
    ctx = LocalContext(verbose=False)
    warped_labels, flow, _ = train._register(cfg, None, image, image.roll(1, 2), labels, ctx)
    assert flow.shape == (1, 3, 16, 16, 16) and warped_labels.shape == labels.shape
    assert [(c["syn_metric"], c["syn_sampling"], c["reg_iterations"]) for c in calls] == [("CC", 2, (4, 2, 1))]


def test_ixi_table1_spec_takes_the_ixi_layout(mindboggle, tmp_path, capsys):
    ixi = testing.write_ixi_fixture(tmp_path / "ixi")
    spec = load(SWEEPS / "registration-table1-ixi.yaml", [f"data_dir={ixi}"])
    table1 = load(SWEEPS / "registration-table1.yaml", [f"data_dir={mindboggle}"])
    assert spec.config == {**table1.config, "dataset": "ixi", "data_dir": str(ixi)}
    assert spec.include == table1.include and spec.space == table1.space
    code = cli.main(["run", str(SWEEPS / "registration-table1-ixi.yaml"), "--local", "--set", f"storage={tmp_path}",
                     f"data_dir={ixi}", "volume_shape=[16,16,16]", "search.space.model=[identity]",
                     "search.include=[]"])
    assert code == 0, capsys.readouterr().err[-2000:]
    trials, evaluations = results.read(tmp_path / "registration-table1-ixi")
    assert list(trials.status) == ["completed"] and set(evaluations.group) == {"LWm", "RWm", "LGm", "RGm"}


def test_ncc_default_is_the_papers_plain_ncc():
    assert RegistrationConfig().ncc == "plain" and train.similarity(RegistrationConfig()).squared is False
    assert train.similarity(RegistrationConfig(ncc="squared")).squared is True


def test_plot_labels_tell_vm_from_vmx2():
    trials = pd.DataFrame({"trial_id": ["a", "b", "c"], "model": ["voxelmorph", "voxelmorph", "ulae"],
                           "vm_width": [1.0, 2.0, None], "lambda_": [0.5, 1.0, 1.0]})  # gaps: read as floats
    assert plot.labels(trials) == {"a": "voxelmorph (vm_width=1, lambda_=0.5)",
                                   "b": "voxelmorph (vm_width=2, lambda_=1)", "c": "ulae (lambda_=1)"}
