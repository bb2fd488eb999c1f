"""Resuming a sweep whose driver was killed, and growing a sweep (``resume --extend``).

The matrix: the driver killed at four points (before any trial, mid-trial, between a trial's end and its record,
during compaction) x three resumes (the spec unchanged, a grid value added, ``num_samples`` raised for a TPE
search). After the resume every planned trial is in ``trials`` exactly once with its planned seed, no trial that
had completed ran again (the chaos task logs every attempt), and ``status`` agrees with ``results``. The whole
matrix runs ``--local``; three of its cases, and a stop, run on Ray, chained on one sweep.

A kill is ``os._exit`` from inside the driver, at the first (or n-th) call of the function that marks the point:
the killed run is a subprocess whose ``sweeplab`` functions are wrapped before the command runs.
"""
import json
import subprocess
import sys
import textwrap

import pytest
import yaml

from sweeplab import cli, results, store
from sweeplab.plan import trial_seed
from tests.conftest import PLUGIN_ENV, run_cli, wait_for

KILLED = 9
# point -> (module, attribute, the call that kills): each fires once the sweep has work on both sides of it
POINTS = {
    "before-any-trial": ("sweeplab.progress", "Progress.started", 1),
    "mid-trial": ("sweeplab.progress", "Progress.report", 5),          # trial 1's first report (trial 0 made 4)
    "end-before-record": ("sweeplab.store", "record_trial", 2),      # trial 1 wrote its row, the driver died
    "during-compaction": ("sweeplab.storage", "Location.delete", 1),  # compacted file written, parts not deleted
}
VARIANTS = ("unchanged", "grid-extended", "samples-raised")


def _spec(tmp_path, variant: str, grown: bool) -> dict:
    config = {"steps": 3, "step_seconds": 0.0, "marker_dir": str(tmp_path / "marks")}
    if variant == "samples-raised":
        search = {"algorithm": "tpe", "space": {"x": {"uniform": [0.0, 1.0]}}, "num_samples": 4 if grown else 3}
    else:
        search = {"algorithm": "grid", "space": {"x": [0.1, 0.5, 0.9, 0.7] if grown and variant == "grid-extended"
                                                     else [0.1, 0.5, 0.9]}}
    return {"name": "matrix", "task": "chaos", "metric": "loss", "mode": "min", "seed": 3, "max_concurrent": 1,
            "storage": str(tmp_path / "results"), "config": config, "search": search}


KILLER = """
import importlib, os, sys
module, attr, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
owner = importlib.import_module(module)
holder, _, name = attr.rpartition(".")
target = getattr(owner, holder) if holder else owner
original = getattr(target, name)
calls = [0]
def killer(*args, **kwargs):
    calls[0] += 1
    table_file = "/matrix/results/" in str(args[0])  # Location.delete: only a table's files count
    if name == "delete" and not table_file:
        calls[0] -= 1
    elif calls[0] == nth:
        os._exit({killed})
    return original(*args, **kwargs)
setattr(target, name, killer)
from sweeplab.cli import main
sys.exit(main(sys.argv[4:]))
""".format(killed=KILLED)


def _killed_run(tmp_path, point: str, argv: list[str]) -> None:
    module, attr, nth = POINTS[point]
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLER), module, attr, str(nth), *argv],
                          cwd=tmp_path, env=PLUGIN_ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == KILLED, proc.stdout[-2000:] + proc.stderr[-3000:]  # it died where we said


def _starts(tmp_path) -> dict[str, list[int]]:
    """Each trial's attempts so far: the step each one started from (the chaos task logs them)."""
    return {f.stem: [json.loads(line)["start_step"] for line in f.read_text().splitlines()]
            for f in (tmp_path / "marks").glob("*.jsonl")}


def _completed(tmp_path, sweep, done: dict[str, int] | None = None) -> dict[str, int]:
    """The trials whose completed row is in storage (what a resume must not run again), each with its number of
    attempts when first seen completed, added to ``done``."""
    done = {} if done is None else done
    attempts = _starts(tmp_path)
    for t, row in store.trial_rows(sweep).items():
        if row["status"] == "completed":
            done.setdefault(t, len(attempts.get(t, [])))
    return done


def _check(tmp_path, sweep, planned: int, done_before: dict[str, int]):
    trials = results.read(sweep)[0]
    assert len(trials) == planned and trials.trial_id.is_unique, trials[["trial_id", "status"]]
    assert set(trials.status) == {"completed"}
    st = store.sweep_status(sweep)
    assert {t["trial_id"]: t["status"] for t in st["trials"]} == dict(zip(trials.trial_id, trials.status))
    assert st["counts"]["completed"] == planned and st["counts"]["pending"] == 0
    starts = _starts(tmp_path)
    assert sorted(starts) == sorted(trials.trial_id)
    assert all(s.count(0) == 1 for s in starts.values()), starts  # each trial started from scratch once
    # a completed one never again: no attempt after the one that completed it
    assert all(len(starts[t]) == n for t, n in done_before.items()), (done_before, starts)
    return trials


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("point", list(POINTS))
def test_local_driver_killed_then_resumed(tmp_path, point, variant):
    (tmp_path / "marks").mkdir()
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump(_spec(tmp_path, variant, grown=False)))
    _killed_run(tmp_path, point, ["run", str(path), "--local"])
    sweep = tmp_path / "results" / "matrix"
    assert not store.sweep_status(sweep)["driver_alive"]
    done_before = _completed(tmp_path, sweep)
    assert len(done_before) == {"before-any-trial": 0, "mid-trial": 1, "end-before-record": 2}.get(point, 3)
    if variant != "unchanged":
        path.write_text(yaml.safe_dump(_spec(tmp_path, variant, grown=True)))
    argv = ["resume", str(path), "--local"] + (["--extend"] if variant != "unchanged" else [])
    assert cli.main(argv) == 0
    planned = 3 if variant == "unchanged" else 4
    trials = _check(tmp_path, sweep, planned, done_before)
    assert dict(zip(trials.trial_id, trials.seed)) == {f"local_{i:05d}": trial_seed(3, i) for i in range(planned)}
    assert dict(zip(trials.trial_id, trials.point)) == {f"local_{i:05d}": i for i in range(planned)}
    if variant == "grid-extended":  # the new value is the new, last trial; the others kept their index
        assert dict(zip(trials.trial_id, trials.x)) == {"local_00000": 0.1, "local_00001": 0.5, "local_00002": 0.9,
                                                        "local_00003": 0.7}


@pytest.mark.ray
def test_ray_driver_killed_stopped_extended_and_resumed(tmp_path):
    """Three cases of the matrix, and a stop, on Ray, chained on one sweep (each Ray start costs the suite time):
    the run killed mid-trial; `resume --extend` (a grid value added: a Tune experiment of its own) killed between
    a trial's end and its record; `resume` asked to stop (`sweeplab stop`: Tune saves the experiment, as on
    Ctrl-C); `resume` killed during compaction; a last `resume`. Then every planned trial is in `trials` once with
    its planned seed, no completed trial ran again, and status agrees with results."""
    (tmp_path / "marks").mkdir()
    path = tmp_path / "matrix.yaml"
    raw = {**_spec(tmp_path, "grid-extended", grown=False), "max_concurrent": 2, "resources": {"cpus": 1}}
    raw["search"]["space"]["x"] = [0.1, 0.5]
    raw["config"]["step_seconds"] = 0.5
    path.write_text(yaml.safe_dump(raw))
    sweep = tmp_path / "results" / "matrix"
    done: dict[str, int] = {}
    _killed_run(tmp_path, "mid-trial", ["run", str(path)])
    st = store.sweep_status(sweep)  # the killed driver's trial is not shown running (the hardening issue's item 5)
    assert not st["driver_alive"] and st["counts"]["running"] == 0 and st["counts"]["interrupted"] >= 1, st["counts"]
    _completed(tmp_path, sweep, done)
    raw["search"]["space"]["x"] = [0.1, 0.5, 0.9]
    path.write_text(yaml.safe_dump(raw))
    _killed_run(tmp_path, "end-before-record", ["resume", str(path), "--extend"])
    assert store.read_sweep_info(sweep)["planned_trials"] == 3
    _completed(tmp_path, sweep, done)
    driver = subprocess.Popen([sys.executable, "-m", "sweeplab.cli", "resume", str(path)], cwd=tmp_path,
                              env=PLUGIN_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: store.sweep_status(sweep)["driver_alive"] and
                 (store.read_sweep_info(sweep) or {}).get("runner"), 300, "the resumed driver", every=0.5)
        assert cli.main(["stop", str(sweep)]) == 0
        out, _ = driver.communicate(timeout=600)
    finally:
        driver.kill()
    assert driver.returncode == 0 and "stopped on request" in out, out[-3000:]
    assert store.sweep_status(sweep)["counts"]["running"] == 0  # stopped as on Ctrl-C: nothing left running
    _completed(tmp_path, sweep, done)
    _killed_run(tmp_path, "during-compaction", ["resume", str(path)])
    _completed(tmp_path, sweep, done)
    run_cli(["resume", path], tmp_path, env=PLUGIN_ENV)
    trials = _check(tmp_path, sweep, 3, done)
    assert sorted(trials.point) == [0, 1, 2]  # each trial knows its planned point, and has that point's seed
    assert [trial_seed(3, p) for p in trials.point] == list(trials.seed)
    assert dict(zip(trials.point, trials.x)) == {0: 0.1, 1: 0.5, 2: 0.9}


def test_extend_refuses_what_changes_finished_trials(tmp_path, capsys):
    (tmp_path / "marks").mkdir()
    path = tmp_path / "matrix.yaml"
    raw = _spec(tmp_path, "grid-extended", grown=False)
    path.write_text(yaml.safe_dump(raw))
    assert cli.main(["run", str(path), "--local"]) == 0
    capsys.readouterr()
    changed = {**raw, "config": {**raw["config"], "steps": 4}, "search": {**raw["search"], "space": {"x": [0.1, 0.3]}}}
    path.write_text(yaml.safe_dump(changed))
    assert cli.main(["resume", str(path), "--local", "--extend"]) == 2
    err = capsys.readouterr().err
    assert "cannot extend" in err and "config.steps: 3 -> 4" in err
    path.write_text(yaml.safe_dump({**raw, "search": {**raw["search"], "space": {"x": [0.1, 0.3]}}}))
    assert cli.main(["resume", str(path), "--local", "--extend"]) == 2
    assert "removes 2 planned trial(s)" in capsys.readouterr().err
    path.write_text(yaml.safe_dump({**raw, "search": {**raw["search"], "space": {"x": [0.1, 0.5, 0.9, 0.2]}}}))
    assert cli.main(["resume", str(path), "--local"]) == 2  # without --extend a grown spec is still a change
    assert "--extend" in capsys.readouterr().err
    assert cli.main(["resume", str(path), "--local", "--extend"]) == 0
    assert "extension: 1 new trial(s), 4 planned in all" in capsys.readouterr().out
    info = store.read_sweep_info(tmp_path / "results" / "matrix")
    assert info["planned_trials"] == 4 and [e["first"] for e in info["extensions"]] == [3]
    assert cli.main(["resume", str(path), "--local"]) == 0  # the grown spec is now the sweep's
    assert capsys.readouterr().out.count("already completed") == 4


def test_an_extended_ray_sampler_continues_from_the_finished_trials(toy_spec):
    """What an extension's Tune experiment searches with (no Ray cluster needed): Optuna over the sweep's space,
    continuing a study that holds the finished trials, so TPE models them and trial numbers, and seeds, go on."""
    import optuna
    from sweeplab.plan import Plan
    from sweeplab.search import tune_search, tune_trial_params, warm_study
    from sweeplab.spec import parse
    toy_spec["search"] = {"algorithm": "tpe", "space": {"lr": {"loguniform": [0.001, 0.5]},
                                                        "optimizer": ["sgd", "adam"]}, "num_samples": 3}
    spec = parse(toy_spec)
    rows = [{"trial_id": "a", "status": "completed", "lr": 0.01, "optimizer": "sgd", "loss": 1.0},
            {"trial_id": "b", "status": "failed", "lr": 0.1, "optimizer": "adam", "loss": None},
            {"trial_id": "c", "status": "stopped", "lr": 0.2, "optimizer": "sgd", "loss": 2.0}]
    storage, name = warm_study(spec, rows)
    space, searcher = tune_search(spec, Plan(None, 5), max_concurrent=2, study=(storage, name))
    assert searcher.set_search_properties("loss", "min", space)
    first, second = (tune_trial_params(searcher.suggest(t), None) for t in ("t3", "t4"))
    assert [first[1], second[1]] == [trial_seed(spec.seed, 3), trial_seed(spec.seed, 4)]
    assert 0.001 <= first[0]["lr"] <= 0.5 and first[0]["optimizer"] in ("sgd", "adam")
    study = optuna.load_study(study_name=name, storage=storage)
    S = optuna.trial.TrialState
    assert [t.state for t in study.trials] == [S.COMPLETE, S.FAIL, S.PRUNED, S.RUNNING, S.RUNNING]
    assert study.trials[0].params == {"lr": 0.01, "optimizer": "sgd"} and study.trials[0].value == 1.0
