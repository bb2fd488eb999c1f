import pytest
import yaml

from sweeplab import cli
from sweeplab.search import grid_points
from sweeplab.spec import Distribution, SpecError, load, parse
from tests.conftest import free_port


def test_valid_grid_spec(toy_spec):
    toy_spec["search"]["include"] = [{"optimizer": "adam"}]
    toy_spec["search"]["num_samples"] = 2
    toy_spec["config"] = {"steps": 3}
    spec = parse(toy_spec)
    assert spec.task.name == "toy" and spec.space == {"lr": [0.01, 0.05]} and spec.metrics == ["loss"]
    points = grid_points(spec)
    assert len(points) == 6  # (2 grid + 1 include) x 2 repeats
    assert [p["_seed"] for p in points] == [0, 0, 0, 1, 1, 1]
    assert points[2]["optimizer"] == "adam" and all(p["steps"] == 3 for p in points)


def test_every_problem_reported_at_once(toy_spec):
    toy_spec.update(bogus=1, mode="up", retries=-1)
    toy_spec["config"] = {"nope": 1, "steps": "many"}
    toy_spec["search"] = {"algorithm": "grid", "space": {"lr": [0.1, 99.0], "depth": [1]}, "extra": 1}
    toy_spec["resources"] = {"gpus": "one"}
    with pytest.raises(SpecError) as err:
        parse(toy_spec)
    text = "\n".join(err.value.problems)
    for expected in ("unknown key 'bogus'", "mode: 'up' is not 'min' or 'max'", "retries: -1 is below the minimum",
                     "config: 'nope' is not a config name", "steps: expected an integer",
                     "search: unknown key 'extra'", "lr: 99.0 is above the maximum 10.0",
                     "'depth' is not a config name", "resources.gpus: expected a number"):
        assert expected in text, expected
    assert len(err.value.problems) == 9


def test_unknown_task_and_missing_metric():
    with pytest.raises(SpecError) as err:
        parse({"task": "nonexistent", "name": "x"})
    text = "\n".join(err.value.problems)
    assert "unknown task 'nonexistent'" in text and "missing key 'metric'" in text


def test_distributions_need_a_sampling_algorithm(toy_spec):
    toy_spec["search"]["space"] = {"lr": {"loguniform": [1e-3, 1.0]}}
    with pytest.raises(SpecError, match="needs search.algorithm random, tpe or nsga2"):
        parse(toy_spec)
    toy_spec["search"]["algorithm"] = "tpe"
    spec = parse(toy_spec)
    assert spec.space["lr"] == Distribution("loguniform", (1e-3, 1.0))
    toy_spec["search"]["space"] = {"lr": {"loguniform": [0.0, 1.0]}}
    with pytest.raises(SpecError, match="loguniform needs low > 0"):
        parse(toy_spec)


def test_multi_objective_needs_optuna(toy_spec):
    toy_spec.update(metric=["loss", "gmacs"], mode=["min", "min"])
    with pytest.raises(SpecError, match="multi-objective"):
        parse(toy_spec)
    toy_spec["search"] = {"algorithm": "nsga2", "space": {"width": {"randint": [1, 9]}}, "num_samples": 4}
    assert parse(toy_spec).multi_objective


def test_set_overrides_spec_and_config(toy_spec):
    spec = parse(toy_spec, ["resources.gpus=0.5", "steps=7", "lr=0.2", "config.width=9"])
    assert spec.gpus == 0.5 and spec.config == {"steps": 7, "lr": 0.2, "width": 9}
    assert "lr" not in spec.space  # a fixed --set value replaces the searched one
    with pytest.raises(SpecError) as err:
        parse(toy_spec, ["nosuch=1", "steps=abc", "novalue"])
    text = "\n".join(err.value.problems)
    assert "--set nosuch" in text and "steps: expected an integer" in text and "expected key=value" in text


def test_cli_exits_2_with_all_problems(toy_spec, tmp_path, capsys):
    toy_spec["config"] = {"nope": 1}
    toy_spec["metric"] = []
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(toy_spec))
    assert cli.main(["run", str(path), "--local"]) == 2
    err = capsys.readouterr().err
    assert "2 problem(s)" in err and "'nope' is not a config name" in err and "missing key 'metric'" in err
    assert not (tmp_path / "results").exists()  # nothing started


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(SpecError, match="spec file not found"):
        load(tmp_path / "absent.yaml")
    bad = tmp_path / "broken.yaml"
    bad.write_text("task: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load(bad)


def test_unreachable_cluster_fails_fast(toy_spec, tmp_path, capsys):
    port = free_port()
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(toy_spec))
    assert cli.main(["run", str(path), "--address", f"127.0.0.1:{port}"]) == 1
    assert f"cannot reach the Ray cluster at '127.0.0.1:{port}'" in capsys.readouterr().err
    assert not (tmp_path / "results" / "toy-sweep" / "results").exists()


def test_non_finite_numbers_are_named_as_such(toy_spec):
    toy_spec["resources"] = {"cpus": float("inf")}
    with pytest.raises(SpecError, match=r"resources.cpus: expected a finite number, got inf"):
        parse(toy_spec)
