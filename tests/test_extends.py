"""Specs that extend specs (``extends:``, :mod:`sweeplab.specfile`): the merge rules, problems in the chain as spec
errors, ``--set`` after the merge, the resume fingerprint over the chain, the job's copy of a merged spec, and the
smoke specs in sweeps/ written as their paper specs made small."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from sweeplab import cli
from sweeplab.fingerprint import fingerprint, resolved
from sweeplab.spec import SpecError, load
from sweeplab.specfile import chain, merge, read
from sweeplab.submit import build_job

SWEEPS = Path(__file__).parents[1] / "sweeps"
SMOKES = sorted(SWEEPS.glob("*-smoke.yaml"))


def write(path: Path, doc: dict | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def base(tmp_path, toy_spec):
    """A toy paper spec: fixed config values, a searched lr, a list, resources and a description."""
    return write(tmp_path / "paper.yaml", {
        **toy_spec, "name": "paper", "description": "the paper's grid",
        "config": {"width": 8, "optimizer": "sgd", "momentum": 0.5, "sizes": [1, 2, 3]},
        "search": {"algorithm": "grid", "space": {"lr": [0.01, 0.05]}, "num_samples": 2},
        "resources": {"cpus": 4, "gpus": 0, "workers": 2}, "retries": 2})


def test_mappings_merge_lists_and_scalars_are_replaced_and_null_removes(base, tmp_path):
    child = write(tmp_path / "small.yaml", {"extends": "paper.yaml", "config": {"width": 2, "sizes": [5],
                                            "momentum": None}, "resources": {"cpus": 1}, "retries": None})
    raw = read(child)
    assert raw["config"] == {"width": 2, "optimizer": "sgd", "sizes": [5]}  # merged; list replaced; null removed
    assert raw["resources"] == {"cpus": 1, "gpus": 0, "workers": 2} and "retries" not in raw
    assert raw["search"] == {"algorithm": "grid", "space": {"lr": [0.01, 0.05]}, "num_samples": 2}
    assert raw["description"] == "the paper's grid" and "extends" not in raw and "name" not in raw
    spec = load(child)
    assert spec.config == {"width": 2, "optimizer": "sgd", "sizes": (5,)}
    assert (spec.cpus, spec.workers, spec.retries, spec.num_samples) == (1.0, 2, 0, 2)
    assert spec.space == {"lr": [0.01, 0.05]}


def test_merge_leaves_its_inputs_alone():
    base, child = {"a": {"b": [1], "c": 1}}, {"a": {"b": [2], "d": None}}
    assert merge(base, child) == {"a": {"b": [2], "c": 1}}
    assert base == {"a": {"b": [1], "c": 1}} and child == {"a": {"b": [2], "d": None}}
    assert merge({"a": {"b": 1}}, {"a": [1]}) == {"a": [1]}  # a mapping replaced by a list: whole


def test_name_is_never_inherited(base, tmp_path):
    assert load(write(tmp_path / "child.yaml", {"extends": "paper.yaml"})).name == "child"
    assert load(write(tmp_path / "other.yaml", {"extends": "paper.yaml", "name": "mine"})).name == "mine"
    assert load(base).name == "paper"


def test_chain_of_two(base, tmp_path):
    mid = write(tmp_path / "mid.yaml", {"extends": "paper.yaml", "config": {"width": 4}, "seed": 7})
    top = write(tmp_path / "top.yaml", {"extends": "mid.yaml", "config": {"optimizer": "adam", "momentum": None}})
    spec = load(top)
    assert spec.config == {"width": 4, "optimizer": "adam", "sizes": (1, 2, 3)}  # paper, then mid, then top
    assert (spec.seed, spec.name, spec.retries) == (7, "top", 2)
    assert chain(top) == [top, tmp_path / "mid.yaml", base]


def test_a_cycle_is_an_error_naming_the_files(tmp_path, toy_spec):
    a = write(tmp_path / "a.yaml", {**toy_spec, "extends": "b.yaml"})
    write(tmp_path / "b.yaml", {"extends": "a.yaml"})
    with pytest.raises(SpecError, match="a cycle") as err:
        load(a)
    assert f"{a} -> {tmp_path / 'b.yaml'} -> {tmp_path / 'a.yaml'}" in str(err.value)
    itself = write(tmp_path / "self.yaml", {**toy_spec, "extends": "./self.yaml"})
    with pytest.raises(SpecError, match="a cycle"):
        load(itself)


def test_problems_in_a_base_name_the_file_and_exit_2(tmp_path, toy_spec, capsys):
    child = write(tmp_path / "child.yaml", {"extends": "gone.yaml"})
    with pytest.raises(SpecError, match=re.escape(f"spec file not found: {tmp_path / 'gone.yaml'} (extended by "
                                                  f"{child})")):
        load(child)
    assert cli.main(["run", str(child), "--local"]) == 2
    assert "spec file not found" in capsys.readouterr().err and not (tmp_path / "results").exists()
    write(tmp_path / "gone.yaml", "task: [unclosed")
    with pytest.raises(SpecError, match=re.escape(f"{tmp_path / 'gone.yaml'} ") + ".*not valid YAML"):
        load(child)
    write(tmp_path / "gone.yaml", "- a list\n")
    with pytest.raises(SpecError, match=re.escape(f"{tmp_path / 'gone.yaml'} ") + ".*must be a mapping"):
        load(child)
    write(tmp_path / "child.yaml", {"extends": ["gone.yaml"]})
    with pytest.raises(SpecError, match="extends: expected the path of one spec file"):
        load(child)


def test_paths_are_relative_to_the_file_that_names_them(tmp_path, toy_spec, monkeypatch):
    write(tmp_path / "paper" / "common.yaml", {**toy_spec, "config": {"width": 16}})
    write(tmp_path / "paper" / "paper.yaml", {"extends": "common.yaml", "seed": 3})
    write(tmp_path / "smoke" / "deep" / "common.yaml", {**toy_spec, "config": {"width": 99}})  # not the one meant
    child = write(tmp_path / "smoke" / "deep" / "small.yaml", {"extends": "../../paper/paper.yaml"})
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    spec = load(child)
    assert (spec.config, spec.seed, spec.name) == ({"width": 16}, 3, "small")


def test_set_applies_after_the_merge(base, tmp_path):
    child = write(tmp_path / "child.yaml", {"extends": "paper.yaml", "config": {"width": 2}})
    spec = load(child, ["lr=0.3", "width=5", "resources.workers=1"])
    assert spec.config == {"width": 5, "optimizer": "sgd", "momentum": 0.5, "sizes": (1, 2, 3), "lr": 0.3}
    assert spec.space == {} and spec.workers == 1  # the base's searched lr gave way to the --set


def test_a_change_in_the_base_changes_the_childs_fingerprint(base, tmp_path):
    child = write(tmp_path / "child.yaml", {"extends": "paper.yaml", "config": {"width": 2}})
    before = fingerprint(load(child))
    base.write_text("# a comment changes nothing\n" + base.read_text())
    assert fingerprint(load(child)) == before
    base.write_text(base.read_text().replace("momentum: 0.5", "momentum: 0.9"))
    after = load(child)
    assert fingerprint(after) != before and resolved(after)["config"]["momentum"] == 0.9


def test_the_job_gets_the_merged_spec(tmp_path, toy_spec, monkeypatch):
    monkeypatch.setenv("SWEEPLAB_TASK_MODULES", "")
    write(tmp_path / "paper" / "paper.yaml", {**toy_spec, "name": "paper", "storage": "/mnt/sweeps",
                                              "config": {"width": 8}})
    child = write(tmp_path / "smoke" / "small.yaml", {"extends": "../paper/paper.yaml", "config": {"width": 2}})
    job = build_job(load(child, ["lr=0.5"]), ["lr=0.5"], tmp_path / "stage", resume=False, py_modules=[], env=[])
    workdir = Path(job["runtime_env"]["working_dir"])
    assert [p.name for p in workdir.iterdir()] == ["small.yaml"]  # no base file needed
    shipped = workdir / "small.yaml"
    assert "extends" not in yaml.safe_load(shipped.read_text()) and "paper.yaml" in shipped.read_text()
    assert fingerprint(load(shipped, ["lr=0.5"])) == fingerprint(load(child, ["lr=0.5"]))
    assert load(shipped).name == "small" and job["metadata"]["storage"] == "/mnt/sweeps/small"


def test_submit_checks_the_merged_storage(tmp_path, toy_spec, capsys):
    write(tmp_path / "paper.yaml", {**toy_spec, "storage": "/mnt/sweeps"})
    child = write(tmp_path / "child.yaml", {"extends": "paper.yaml"})
    assert cli.main(["submit", str(child), "--address", "127.0.0.1:1"]) == 1  # the base's absolute storage
    assert "cannot reach the Ray dashboard" in capsys.readouterr().err
    assert cli.main(["submit", str(child), "--address", "127.0.0.1:1", "--set", "storage=rel"]) == 2
    assert "relative path" in capsys.readouterr().err


@pytest.mark.parametrize("path", SMOKES, ids=[p.stem for p in SMOKES])
def test_smoke_specs_extend_their_paper_spec_and_validate(path):
    """A smoke spec with a paper spec (its name without -smoke) is that spec made small: it extends it and
    validates without data or a GPU."""
    paper = path.with_name(path.name.replace("-smoke", ""))
    doc = yaml.safe_load(path.read_text())
    spec = load(path)
    assert spec.name == path.stem and spec.gpus == 0
    if paper.exists():
        assert doc["extends"] == paper.name
        assert "task" not in doc and spec.task.name == read(paper)["task"]
    else:
        assert "extends" not in doc
