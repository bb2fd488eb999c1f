"""Bad input answered in one line with the right exit code (2: bad input, 1: a sweep that cannot be used), never a
traceback, and nothing half-written: storage that cannot hold a sweep, specs and folders mixed up, corrupt table
files, plots that cannot be drawn or written, hints that name the sweep that was run, sources of another task."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from sweeplab import cli, results, service
from sweeplab import task as T
from sweeplab.local import LocalBackend
from sweeplab.spec import parse
from tests.conftest import TOY


def _write(tmp_path: Path, raw: dict, name: str = "toy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_storage_that_cannot_hold_a_sweep_is_refused_before_anything_starts(toy_spec, tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    spec = _write(tmp_path, toy_spec)
    assert cli.main(["run", str(spec), "--local", "--set", f"storage={tmp_path / 'a-file'}"]) == 2
    assert "is a file, not a folder" in _one_line(capsys)
    assert cli.main(["run", str(spec), "--local", "--set", "storage=/proc/sweeplab-nope"]) == 2
    assert "cannot create the sweep folder" in _one_line(capsys)
    assert cli.main(["run", str(spec), "--local"]) == 0  # a sweep, then one asked inside its results folder
    capsys.readouterr()
    inner = f"storage={tmp_path / 'results' / 'toy-sweep' / 'results'}"
    assert cli.main(["run", str(spec), "--local", "--set", inner]) == 2
    assert "is inside the sweep" in _one_line(capsys)
    assert not (tmp_path / "results" / "toy-sweep" / "results" / "toy-sweep").exists()


def test_a_folder_given_as_a_spec_and_an_invalid_spec_given_to_read_commands(toy_spec, tmp_path, capsys):
    assert cli.main(["run", str(tmp_path), "--local"]) == 2
    assert "is a folder, not a spec file" in capsys.readouterr().err
    bad = _write(tmp_path, {**toy_spec, "task": "nosuch"}, "bad.yaml")
    for command in ("status", "results", "plot", "compact"):
        assert cli.main([command, str(bad)]) == 2, command
        assert "invalid sweep spec" in capsys.readouterr().err


def test_a_corrupt_part_is_named_and_compaction_loses_nothing(toy_spec, tmp_path, capsys):
    spec = parse(toy_spec)
    assert service.run_sweep(spec, LocalBackend(), say=lambda m: None).code == 0
    sweep = Path(spec.sweep_dir.path)
    trials_dir = sweep / "results" / "trials"
    results.write_table(results.location(str(trials_dir / "part-local_00000.parquet")),
                        results.read_arrow(sweep, "trials", ["local_00000"]))  # a good part beside the bad one
    (trials_dir / "part-local_00009.parquet").write_bytes(b"not parquet")
    before = {p.name: p.read_bytes() for p in trials_dir.iterdir()}
    capsys.readouterr()
    for command in ("status", "results", "compact"):
        assert cli.main([command, str(sweep)]) == 1, command
        err = _one_line(capsys)
        assert "part-local_00009.parquet is not a readable Parquet file" in err and "nothing was changed" in err
    assert {p.name: p.read_bytes() for p in trials_dir.iterdir()} == before  # every part kept
    (trials_dir / "part-local_00009.parquet").unlink()  # moved away, as the message says: the rest reads
    assert cli.main(["compact", str(sweep)]) == 0 and len(results.read(sweep)[0]) == 2


def test_plots_that_cannot_be_drawn_or_written(toy_spec, tmp_path, capsys, monkeypatch):
    def plot(trials, evaluations, out, sweep):
        Path(out).write_bytes(b"\x89PNG")
    monkeypatch.setitem(T._REGISTRY, "toy", dataclasses.replace(TOY, plot=plot))
    failed = parse({**toy_spec, "name": "all-failed", "retries": 0,
                    "search": {"algorithm": "grid", "space": {}, "include": [{"fail": True}]}})
    assert service.run_sweep(failed, LocalBackend(), say=lambda m: None).code == 1
    capsys.readouterr()
    assert cli.main(["plot", str(failed.sweep_dir)]) == 1  # wrote an empty figure with exit 0 before
    assert "nothing to plot: none of the 1 trial(s)" in _one_line(capsys)
    assert not list(Path(failed.sweep_dir.path, "results").glob("*.png"))
    good = parse(toy_spec)
    service.run_sweep(good, LocalBackend(), say=lambda m: None)
    capsys.readouterr()
    assert cli.main(["plot", str(good.sweep_dir), "--out", "/proc/sweeplab/plot.png"]) == 2
    assert "cannot write the plot to /proc/sweeplab/plot.png" in _one_line(capsys)
    assert cli.main(["plot", str(good.sweep_dir), "--out", str(tmp_path / "new" / "p.png")]) == 0
    assert (tmp_path / "new" / "p.png").read_bytes() == b"\x89PNG"


def test_hints_name_the_sweep_that_was_run(toy_spec, tmp_path, capsys, monkeypatch):
    spec = _write(tmp_path, toy_spec)
    assert cli.main(["run", str(spec), "--local", "--set", "name=other", "steps=2"]) == 0
    capsys.readouterr()
    assert cli.main(["run", str(spec), "--local", "--set", "name=other", "steps=2"]) == 1
    assert f"`sweeplab resume {spec} --local --set name=other steps=2`" in capsys.readouterr().err
    assert cli.main(["resume", str(spec), "--set", "name=other", "steps=2"]) == 1  # on Ray: the other runner
    assert f"`sweeplab resume {spec} --local --set name=other steps=2`" in capsys.readouterr().err

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(service, "run_sweep", interrupted)
    assert cli.main(["resume", str(spec), "--local", "--set", "name=other", "steps=2"]) == 130
    assert f"finish the sweep with `sweeplab resume {spec} --local --set name=other steps=2`" in \
        capsys.readouterr().err
    quoted = "sweeplab resume 'my spec.yaml' --set 'name=a b'"
    assert service.resume_command("my spec.yaml", False, ["name=a b"]) == quoted


def test_describe_takes_config_values_only_and_lists_every_problem(capsys):
    assert cli.main(["describe", "toy", "--set", "name=x", "steps=abc", "width=-3", "nosuch=1"]) == 2
    err = capsys.readouterr().err
    assert "--set name: a spec key" in err and "steps: expected an integer" in err and "width" in err
    assert "--set nosuch" in err


def test_a_source_of_another_task_is_named(toy_spec, tmp_path, monkeypatch):
    from sweeplab import store
    from sweeplab.artifacts import resolve_sources
    from sweeplab.spec import SpecError
    source = parse({**toy_spec, "name": "source", "config": {"keep_model": True}})
    service.run_sweep(source, LocalBackend(), say=lambda m: None)
    info = store.read_sweep_info(source.sweep_dir)
    store.L.sweep_info(source.sweep_dir).write_text(__import__("json").dumps({**info, "task": "segmentation"}))
    later = parse({**toy_spec, "name": "later", "search": {"algorithm": "grid", "space": {}},
                   "from_trials": {"init": {"sweep": str(source.sweep_dir), "where": "M = 2"}}})
    with pytest.raises(SpecError, match="is a sweep of task 'segmentation', not 'toy'"):
        resolve_sources(later)  # a DuckDB "Binder Error" on M before


def test_ray_that_cannot_start_is_one_line(toy_spec, tmp_path, capsys, monkeypatch):
    import ray
    from sweeplab import ray_cluster

    def no_ray(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", no_ray)
    assert ray_cluster.init_ray(None).startswith("cannot start an embedded Ray on this machine: [Errno 28] No space")
    spec = _write(tmp_path, toy_spec)
    assert cli.main(["run", str(spec)]) == 1
    assert "cannot start an embedded Ray" in _one_line(capsys)


def test_an_unreadable_status_file_is_named(toy_spec, capsys):
    spec = parse(toy_spec)
    service.run_sweep(spec, LocalBackend(), say=lambda m: None)
    status = Path(spec.sweep_dir.path) / "fragments" / "local_00000" / "status.json"
    status.write_text('{"trial_id": "local_00000", "sta')  # torn
    capsys.readouterr()
    assert cli.main(["status", str(spec.sweep_dir)]) == 1
    assert "status.json is not valid JSON" in _one_line(capsys)
