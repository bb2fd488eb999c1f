"""Every spec in sweeps/ validates; the compression smoke sweeps run end to end, in-process and on a real Ray."""
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from sweeplab import cli, results
from sweeplab.spec import load
from sweeplab.specfile import read
from sweeplab.task import get_task
from tests.conftest import run_cli

SWEEPS = sorted((Path(__file__).parents[1] / "sweeps").glob("*.yaml"))


SMOKE_SOURCE = ["iterations=2", "n_train_crops=4", "betas=[1.0]", "search.space.quantization=[learned-step]",
                "search.include=[]", "n_test_images=1", "test_crop=64", "n_extra_images=1", "extra_crop=64"]


@pytest.fixture(scope="module")
def compression_source(tmp_path_factory):
    """A tiny run of compression-single-gamma-smoke (one learned-step autoencoder), for the specs that start
    from its trained model (``from_trials``)."""
    where = tmp_path_factory.mktemp("source")
    run_cli(["run", SWEEPS[0].parent / "compression-single-gamma-smoke.yaml", "--local", "--set",
             f"storage={where}", *SMOKE_SOURCE], where)
    return where / "compression-single-gamma-smoke"


@pytest.fixture(scope="module")
def mindboggle_fixture(tmp_path_factory):
    """A small Mindboggle101 tree, for the registration specs with the paper's data (checked at spec load)."""
    from sweeplab.tasks.registration.testing import write_mindboggle_fixture
    return write_mindboggle_fixture(tmp_path_factory.mktemp("mindboggle"), subjects_per_group=2)


@pytest.fixture(scope="module")
def restoration_source(tmp_path_factory):
    """Two-step stage-1 trials of restoration-stage1-smoke, one per pixel_l1 of restoration-stage1.yaml, for the
    mapping specs (``from_trials.vaes``: restoration-mapping.yaml selects 10, restoration-mapping-code-vaes.yaml 0)."""
    where = tmp_path_factory.mktemp("vaes")
    run_cli(["run", SWEEPS[0].parent / "restoration-stage1-smoke.yaml", "--local", "--set", f"storage={where}",
             "crop=32", "epochs=1", "decay_epochs=0", "epoch_images=2", "batch_vae1=2", "batch_vae2=2",
             "n_test=1", "search={space: {pixel_l1: [10.0, 0.0]}}"], where)
    return where / "restoration-stage1-smoke"


@pytest.fixture(scope="module")
def restoration_files(tmp_path_factory):
    """Folders of the restoration paper specs' layouts (VOC, old photos with masks, DIV2K) and a VGG19 file."""
    from sweeplab.tasks.restoration.testing import write_div2k_fixture, write_old_fixture, write_voc_fixture
    root = tmp_path_factory.mktemp("restoration")
    old, masks = write_old_fixture(root / "old", size=256)
    from sweeplab.tasks.restoration.networks import VGG19Features
    torch.save(VGG19Features().state_dict(), root / "vgg19.pth")  # torchvision's layout, random weights
    return [f"clean_dir={write_voc_fixture(root / 'VOC2012', size=256)}", f"old_dir={old}", f"mask_dir={masks}",
            f"test_dir={write_div2k_fixture(root / 'DIV2K', n=2, size=256)}", "n_test=2",
            f"vgg_weights={root / 'vgg19.pth'}"]


SOURCES = {"compression": "compression_source", "restoration": "restoration_source"}  # task -> source fixture


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_every_spec_validates(path, request):
    doc = read(path)  # with the specs it extends merged in
    spec = load(path, _data_sets(doc, request))
    assert spec.name == path.stem and spec.task.name in path.stem


# the paper-setting specs: every spec but the smoke ones (a spec extending a paper spec, as the IXI Table 1 or the
# mapping from the code's VAEs, is one too)
PAPER_SPECS = [p for p in SWEEPS if not p.stem.endswith("-smoke")]


def _data_sets(doc: dict, request) -> list[str]:
    """The --set values that give a spec what it reads: its from_trials sources and the real layouts' fixtures."""
    sets = [f"from_trials.{name}.sweep={request.getfixturevalue(SOURCES[doc['task']])}"
            for name in (doc.get("from_trials") or {})]
    if (doc.get("config") or {}).get("dataset") == "mindboggle":
        sets.append(f"data_dir={request.getfixturevalue('mindboggle_fixture')}")
    if (doc.get("config") or {}).get("dataset") == "ixi":
        from sweeplab.tasks.registration.testing import write_ixi_fixture
        sets.append(f"data_dir={write_ixi_fixture(request.getfixturevalue('tmp_path_factory').mktemp('ixi'))}")
    if doc["task"] == "restoration" and doc["config"].get("dataset") == "files":
        sets += request.getfixturevalue("restoration_files")
    return sets


@pytest.mark.parametrize("path", PAPER_SPECS, ids=[p.stem for p in PAPER_SPECS])
def test_every_paper_spec_runs_tiny(path, request, tmp_path, capsys):
    """Each paper spec as written, made tiny by --set alone: its task's tiny sizes (``Task.tiny``), the first value
    of each grid axis (or the first listed row), one draw of a sampler; in-process. The spec's other settings
    (its method, losses, schedule, data layout, sources) run as the paper spec has them."""
    doc = read(path)
    task = get_task(doc["task"])
    sets = [f"storage={tmp_path}", *_data_sets(doc, request)]
    # a source's architecture (Needs.same) is the source trial's: the tiny sizes leave it alone
    fixed_by_source = {f for name in (doc.get("from_trials") or {}) for f in task.sources[name].same}
    tiny = {k: v for k, v in task.tiny.items() if k not in fixed_by_source}
    sets += [f"{k}={json.dumps(list(v) if isinstance(v, tuple) else v)}" for k, v in tiny.items()]
    search = doc.get("search") or {}
    space = {k: v for k, v in (search.get("space") or {}).items() if k not in tiny}
    if search.get("algorithm", "grid") == "grid":
        sets += [f"search.space.{k}={json.dumps(v[:1])}" for k, v in space.items()]
        include = search.get("include") or []
        sets += ["search.num_samples=1", f"search.include={json.dumps([] if space else include[:1])}"]
    else:
        sets.append("search.num_samples=1")
    code = cli.main(["run", str(path), "--local", "--set", *sets])
    out = capsys.readouterr()
    assert code == 0, out.out[-3000:] + out.err[-2000:]
    trials = results.read(tmp_path / path.stem)[0]
    assert len(trials) == 1 and set(trials.status) == {"completed"}


def test_compression_eval_reuses_the_trained_model(compression_source, tmp_path, sweeplab_cli):
    """sweeps/compression-eval.yaml evaluates the source sweep's autoencoder without training it: on the source's
    own test crop it gives the source's figures exactly, and on full-size images other ones."""
    source = results.read(compression_source)[0].iloc[0]
    spec = SWEEPS[0].parent / "compression-eval.yaml"
    common = ["--local", "--set", f"from_trials.model.sweep={compression_source}", "betas=[1.0]",
              "n_test_images=1"]
    sweeplab_cli(["run", spec, *common, f"storage={tmp_path}", "test_crop=64"], tmp_path)
    same = results.read(tmp_path / "compression-eval")[0].iloc[0]
    assert same.psnr == source.psnr and same.bpp == source.bpp and same.train_seconds < source.train_seconds
    assert json.loads(same.started_from) == {"model": f"{compression_source}/{source.trial_id}"}
    sweeplab_cli(["run", spec, *common, f"storage={tmp_path / 'full'}"], tmp_path)
    full = results.read(tmp_path / "full" / "compression-eval")
    assert full[0].iloc[0].psnr != source.psnr and len(full[1]) == 1  # one beta x one full-size image
    wrong = run_cli(["run", spec, *common, f"storage={tmp_path / 'wrong'}", "m=64"], tmp_path, rc=2)
    assert "was trained with m=128, this sweep sets m=64" in wrong.stderr


def test_paper_settings_in_full_specs():
    gamma_set = load(SWEEPS[0].parent / "compression-gamma-set.yaml")
    assert gamma_set.space["gamma"] == [10000.0, 12000.0, 16000.0, 24000.0, 40000.0, 72000.0, 96000.0]
    assert gamma_set.config["betas"] == (1.0,) and gamma_set.config["quantization"] == "fixed-step"
    single = load(SWEEPS[0].parent / "compression-single-gamma.yaml")
    assert single.config["betas"] == (1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0)
    assert single.space["quantization"] == ["learned-step", "fixed-step"] and single.config["gamma"] == 10000.0
    assert {p["codec"] for p in single.include} == {"jpeg", "jpeg2000"}


def test_local_smoke_sweep(tmp_path, sweeplab_cli):
    spec = SWEEPS[0].parent / "compression-single-gamma-smoke.yaml"
    sweeplab_cli(["run", str(spec), "--local", "--set", f"storage={tmp_path}", "iterations=4", "n_train_crops=8",
          "betas=[1.0, 4.0]", "search.space.quantization=[learned-step]", "n_test_images=1"], tmp_path)
    trials = pd.read_parquet(tmp_path / "compression-single-gamma-smoke/results/trials")
    evals = pd.read_parquet(tmp_path / "compression-single-gamma-smoke/results/evaluations")
    assert list(trials.codec) == ["autoencoder", "jpeg", "jpeg2000"] and set(trials.status) == {"completed"}
    ae = trials.iloc[0]
    assert ae.quantization == "learned-step" and ae.params > 0 and ae.gmacs > 0 and ae.device == "cpu"
    ae_rows = evals[evals.trial_id == ae.trial_id]
    assert sorted(ae_rows.beta) == [1.0, 4.0]  # one row per beta x test image
    assert (ae_rows.sort_values("beta").bpp.diff().dropna() <= 0).all()  # coarser steps never cost more bits
    jpeg = evals[evals.method == "jpeg"]
    assert len(jpeg) == 7 and jpeg.bpp.is_monotonic_increasing
    sweep = tmp_path / "compression-single-gamma-smoke"
    sweeplab_cli(["plot", sweep, "--out", tmp_path / "rd.png"], tmp_path)
    assert (tmp_path / "rd.png").stat().st_size > 10_000


@pytest.mark.ray
def test_ray_smoke_sweep_two_trials(tmp_path, sweeplab_cli):
    """Two trials of the gamma-set smoke spec on a real embedded Ray (Tune + Train V2), each trained data-parallel
    by two Ray Train workers (resources.workers = 2: DDP over gloo); tables read back; Tune's progress table names
    the grid's field."""
    spec = SWEEPS[0].parent / "compression-gamma-set-smoke.yaml"
    proc = sweeplab_cli(["run", str(spec), "--set", f"storage={tmp_path}", "search.include=[]", "iterations=4",
                         "n_train_crops=8", "resources.workers=2", "--verbose"], tmp_path)  # Tune's table too
    sweep = tmp_path / "compression-gamma-set-smoke"
    trials = pd.read_parquet(sweep / "results/trials")
    evals = pd.read_parquet(sweep / "results/evaluations")
    assert sorted(trials.gamma) == [10000.0, 40000.0] and set(trials.status) == {"completed"}
    assert trials.trial_id.is_unique and len(evals) == 2 * 2  # 2 trials x 1 beta x 2 test images
    assert (trials.num_workers == 2).all() and trials.psnr.notna().all() and "tables:" in proc.stdout
    header = next(line for line in proc.stdout.splitlines() if "Trial name" in line).split()
    assert "gamma" in header and "_point" not in header
    # the Train runs checkpointed under the sweep, named after their Tune trials
    assert sorted(p.name for p in (sweep / "train").iterdir()) == sorted(trials.trial_id)
    out = sweeplab_cli(["results", str(sweep), "--csv", "--sql", "SELECT count(*) AS n FROM evaluations"], tmp_path)
    assert out.stdout.split() == ["n", "4"]


def test_describe_json(capsys):
    assert cli.main(["describe", "compression", "--json"]) == 0
    fixed = json.loads(capsys.readouterr().out)
    assert {"task", "params", "gmacs", "input_shape"} <= set(fixed) and fixed["input_shape"] == [1, 1, 512, 768]
    assert cli.main(["describe", "compression", "--set", "quantization=learned-step", "--json"]) == 0
    learned = json.loads(capsys.readouterr().out)
    assert fixed["params"] > learned["params"] > 0 and fixed["gmacs"] > learned["gmacs"] > 0
    assert cli.main(["describe", "compression", "--set", "codec=jpeg", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == 0
    assert cli.main(["describe", "compression", "--set", "gamma=-1"]) == 2
    assert "gamma: -1.0 is below the minimum 0.0" in capsys.readouterr().err


def test_multi_objective_optuna(tmp_path, sweeplab_cli):
    """Multi-objective Optuna (PSNR vs GMACs), in-process (tests/tagging runs a multi-objective search through
    Tune on the embedded Ray): trials differ in m, GMACs follow m."""
    spec = SWEEPS[0].parent / "compression-pareto-smoke.yaml"
    sweeplab_cli(["run", str(spec), "--local", "--set", f"storage={tmp_path}", "search.num_samples=3",
                  "iterations=2", "n_train_crops=8", "n_test_images=1", "search.space.m=[16, 32]"], tmp_path)
    trials = pd.read_parquet(tmp_path / "compression-pareto-smoke/results/trials")
    assert len(trials) == 3 and set(trials.status) == {"completed"}
    assert trials.gamma.between(10000.0, 100000.0).all() and set(trials.m) <= {16, 32}
    by_m = trials.groupby("m").gmacs.first()
    assert by_m.is_monotonic_increasing and (trials.gmacs > 0).all()


def test_missing_data_folder_is_a_spec_error(tmp_path, capsys):
    spec = SWEEPS[0].parent / "compression-gamma-set-smoke.yaml"
    missing = tmp_path / "no-such-imagenet"
    assert cli.main(["run", str(spec), "--local", "--set", f"train_dir={missing}", f"storage={tmp_path}"]) == 2
    assert f"train_dir: folder not found: {missing}" in capsys.readouterr().err
    assert not (tmp_path / "compression-gamma-set-smoke").exists()
    # the refused value is the one problem: the cross-field checks do not then judge the default in its place
    table1 = SWEEPS[0].parent / "registration-table1.yaml"
    assert cli.main(["run", str(table1), "--local", "--set", f"data_dir={missing}", f"storage={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert f"data_dir: folder not found: {missing}" in err and "1 problem(s)" in err, err


def test_tasks_lists_the_papers(capsys):
    assert cli.main(["tasks"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert {"compression", "segmentation"} <= set(lines)  # (and the tests' toy task)
    assert "Dumas" in lines["compression"] and "Kanezaki" in lines["segmentation"]


@pytest.mark.ray
def test_embedded_ray_serves_the_state_api():
    """The embedded Ray of `sweeplab run` has its dashboard. Ray Train's placement-group cleaner asks the state API
    whether a stopped trial's Train controller is gone before it frees the trial's resources; without the API an
    ASHA sweep on one machine waited forever for the resources of the trials it had stopped."""
    import subprocess
    code = ("import ray; from ray.util.state import list_nodes; from sweeplab.ray_cluster import init_ray; "
            "assert init_ray(None) is None; print('nodes', len(list_nodes())); ray.shutdown()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "nodes 1" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-3000:]
