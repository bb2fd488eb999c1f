import pytest
import yaml

from sweeplab import cli, store
from sweeplab.plan import Distribution, grid_points
from sweeplab.spec import SpecError, load, parse
from tests.conftest import ToyConfig, free_port


def test_valid_grid_spec(toy_spec):
    toy_spec["search"]["include"] = [{"optimizer": "adam"}]
    toy_spec["search"]["num_samples"] = 2
    toy_spec["config"] = {"steps": 3}
    spec = parse(toy_spec)
    assert spec.task.name == "toy" and spec.space == {"lr": [0.01, 0.05]} and spec.metrics == ["loss"]
    points = grid_points(spec)
    assert len(points) == 6  # (2 grid + 1 include) x 2 repeats
    assert points[:3] == points[3:] and all("_seed" not in p for p in points)
    assert points[2]["optimizer"] == "adam" and all(p["steps"] == 3 for p in points)


def test_empty_space_is_one_trial_or_the_include_points_only(toy_spec):
    toy_spec["search"] = {"algorithm": "grid", "space": {}}
    assert grid_points(parse(toy_spec)) == [{}]  # the fixed config once
    toy_spec["search"]["include"] = [{"lr": 0.01}, {"lr": 0.05, "optimizer": "adam"}]
    assert grid_points(parse(toy_spec)) == [{"lr": 0.01}, {"lr": 0.05, "optimizer": "adam"}]


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
    for override in ("task=nosuch", f"task={toy_spec['task']}"):  # was silently ignored: the spec's task ran
        with pytest.raises(SpecError, match="a spec's task cannot be overridden"):
            parse(toy_spec, [override])


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


# ---------------------------------------------------------------- conditional parameters in searches


def _conditional(toy_spec, algorithm, num_samples=8):
    toy_spec["config"] = {"steps": 1}
    toy_spec["search"] = {"algorithm": algorithm, "num_samples": num_samples,  # momentum listed before its condition
                          "space": {"momentum": {"uniform": [0.1, 0.9]}, "optimizer": ["sgd", "adam"]}}
    return parse(toy_spec)


def test_suggest_skips_fields_that_do_not_apply(toy_spec):
    import optuna
    from sweeplab.search import suggest
    from sweeplab.plan import INDEX_KEY, SEED_KEY, trial_seed
    spec = _conditional(toy_spec, "random")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(20):
        trial = study.ask()
        values = suggest(spec, trial)
        assert values.pop(SEED_KEY) == trial_seed(spec.seed, trial.number)
        assert values.pop(INDEX_KEY) == trial.number  # the trial's point in the plan: Optuna's trial number
        assert set(values) == set(trial.params)  # what Optuna recorded is what the trial gets
        assert ("momentum" in values) == (values["optimizer"] == "sgd"), values
        seen.add(values["optimizer"])
    assert seen == {"sgd", "adam"}
    toy_spec["config"] = {"optimizer": "adam"}
    toy_spec["search"]["space"].pop("optimizer")
    assert suggest(parse(toy_spec), study.ask()).keys() == {SEED_KEY, INDEX_KEY}  # the fixed config rules momentum out


@pytest.mark.parametrize("algorithm", ["tpe", "random"])
def test_local_search_never_samples_a_field_that_does_not_apply(toy_spec, algorithm):
    from sweeplab import results, store
    from sweeplab.local import run_local
    spec = _conditional(toy_spec, algorithm)
    assert run_local(spec, "test")["completed"] == 8
    trials, _ = results.read(spec.sweep_dir)
    adam, sgd = trials[trials.optimizer == "adam"], trials[trials.optimizer == "sgd"]
    assert len(adam) and len(sgd) and adam.momentum.isna().all() and sgd.momentum.between(0.1, 0.9).all()
    for trial_id in trials.trial_id:
        config = store.read_status(spec.sweep_dir, trial_id)["config"]
        assert ("momentum" in config) == (config["optimizer"] == "sgd"), config


def _tune_trials(spec, tmp_path, max_concurrent=2):
    """The trials Tune would make of a spec (no Ray started), each completed as soon as it is made, and the
    columns of Tune's progress table (the param space's domains)."""
    from ray.tune.experiment import Experiment
    from ray.tune.experimental.output import _infer_params
    from ray.tune.search import SearchGenerator
    from sweeplab.plan import Plan, planned_trials
    from sweeplab.search import tune_search
    param_space, searcher = tune_search(spec, Plan.of(spec), max_concurrent=max_concurrent)
    assert searcher.set_search_properties("loss", "min", param_space)  # as tune.run does: the space is accepted
    search = SearchGenerator(searcher)  # what Tune wraps a searcher in
    search.add_configurations([Experiment("toy", lambda config: None, config=param_space,
                                          num_samples=planned_trials(spec), storage_path=str(tmp_path))])
    trials = []
    while not search.is_finished():
        batch = list(iter(search.next_trial, None))
        assert len(batch) <= max_concurrent  # the concurrency limit
        for t in batch:
            search.on_trial_complete(t.trial_id, {"loss": 1.0})
        trials += batch
    search.searcher.save(str(tmp_path / "searcher.pkl"))  # Tune pickles the searcher with the experiment
    return trials, param_space, sorted(_infer_params(param_space))


def test_ray_search_seeds_its_trials_and_honours_conditions(toy_spec, tmp_path):
    """The Ray path's search: OptunaSearch over the define-by-run space, whatever the sampler, at most
    max_concurrent trials at once, each trial's seed that of its Optuna trial number; the progress table's columns
    name the searched fields, and a field that does not apply is shown as None but not run with."""
    from sweeplab.search import tune_trial_params
    from sweeplab.plan import trial_seed
    spec = _conditional(toy_spec, "random", num_samples=10)
    trials, param_space, columns = _tune_trials(spec, tmp_path)
    assert param_space["steps"] == 1 and columns == ["momentum", "optimizer"]
    params = [tune_trial_params(t.config, None) for t in trials]
    assert [seed for _, seed in params] == [trial_seed(0, i) for i in range(10)]
    for t, (values, _) in zip(trials, params):
        assert ("momentum" in values) == (values["optimizer"] == "sgd"), values
        assert values["steps"] == 1 and t.config["optimizer"] == values["optimizer"]
        assert t.config["momentum"] == values.get("momentum")  # None in the table where it does not apply
    assert {values["optimizer"] for values, _ in params} == {"sgd", "adam"}


def test_ray_grid_shows_fields_by_name_and_runs_each_point(toy_spec, tmp_path):
    """A grid with include points through Tune's search generator: one trial per point, in order, with its seed;
    the table's columns are the searched and included fields, None where a point does not set one; the values
    run are the point's, not the table's."""
    from sweeplab.plan import Plan, split_params
    from sweeplab.search import tune_grid, tune_trial_params
    toy_spec["search"]["include"] = [{"lr": 0.2, "steps": 3}]
    spec = parse(toy_spec)
    trials, _, columns = _tune_trials(spec, tmp_path)
    assert columns == ["lr", "steps"]
    grid = tune_grid(spec, Plan.of(spec))
    assert [tune_trial_params(t.config, grid) for t in trials] == [split_params(p) for p in grid]
    assert [(t.config["lr"], t.config["steps"]) for t in trials] == [(0.01, None), (0.05, None), (0.2, 3)]
    assert "steps" not in tune_trial_params(trials[0].config, grid)[0]  # the default applies, not None


def test_describe_shows_when_a_field_applies(capsys):
    assert cli.main(["describe", "toy"]) == 0
    lines = capsys.readouterr().out.splitlines()
    head = next(line for line in lines if line.startswith("name "))
    momentum = next(line for line in lines if line.startswith("momentum "))
    column = head.index("applies when")
    assert momentum[column:].startswith("optimizer=sgd ")
    assert next(line for line in lines if line.startswith("lr "))[column:].startswith(" ")


# ---------------------------------------------------------------- seeds


def _seeds(spec):
    from sweeplab import results, store
    from sweeplab.local import run_local
    run_local(spec, "test")
    trials, _ = results.read(spec.sweep_dir)
    status = {t: store.read_status(spec.sweep_dir, t)["seed"] for t in trials.trial_id}
    assert status == dict(zip(trials.trial_id, trials.seed))  # status.json and the table agree
    return dict(zip(trials.trial_id, trials.seed))


def test_each_trial_has_its_own_recorded_reproducible_seed(toy_spec, tmp_path):
    from sweeplab.plan import trial_seed
    toy_spec["search"]["num_samples"] = 2  # the same two grid points twice: the repeats differ by their seed
    toy_spec["config"] = {"steps": 1}
    seeds = _seeds(parse(toy_spec))
    assert len(seeds) == 4 and len(set(seeds.values())) == 4
    assert seeds == {t: trial_seed(0, i) for i, t in enumerate(sorted(seeds))}
    again = _seeds(parse(toy_spec, [f"storage={tmp_path / 'elsewhere'}"]))
    assert again == seeds  # the same spec in another folder: the same seeds
    other = _seeds(parse(toy_spec, [f"storage={tmp_path / 'seed1'}", "seed=1"]))
    assert not set(other.values()) & set(seeds.values())


# ---------------------------------------------------------------- resume safety


def test_fingerprint_covers_what_trials_depend_on(toy_spec, tmp_path):
    from sweeplab.fingerprint import changes, fingerprint, resolved
    base = parse(toy_spec)
    doc = resolved(base)
    assert set(doc) == {"task", "config", "algorithm", "space", "include", "num_samples", "metrics", "modes",
                        "scheduler", "seed"}
    assert doc["space"] == {"lr": [0.01, 0.05]} and doc["task"] == "toy"
    same = parse(toy_spec, ["resources.cpus=4", "max_concurrent=3", "retries=2", f"storage={tmp_path / 'x'}"])
    assert fingerprint(same) == fingerprint(base)
    for override in ("seed=1", "steps=3", "search.num_samples=2", "mode=max", "search.space.lr=[0.01]"):
        assert fingerprint(parse(toy_spec, [override])) != fingerprint(base), override
    assert changes(doc, resolved(parse(toy_spec, ["steps=3", "seed=2"]))) == [
        "config.steps: 5 -> 3", "seed: 0 -> 2"]  # the config is fully defaulted: steps was 5 by default
    assert "lr" not in doc["config"]  # a searched field is the space's, not the config's


def test_a_changed_default_is_a_change_and_old_fingerprints_still_resume(toy_spec, monkeypatch):
    """The fingerprint covers every default, so a default changed in the code between a run and its resume is
    refused; a sweep that stored the earlier form (only the keys its spec set, no version) is compared in it."""
    from sweeplab.fingerprint import changes_since, fingerprint, resolved, stored_fingerprint
    spec = parse(toy_spec)
    stored = stored_fingerprint(spec)
    legacy = {"fingerprint": fingerprint(spec, 1), "spec": resolved(spec, 1)}  # what sweep.json held before
    assert legacy["spec"]["config"] == {} and stored["version"] == 2
    assert changes_since(stored, spec) == [] and changes_since(legacy, spec) == []
    monkeypatch.setattr(ToyConfig.__dataclass_fields__["steps"], "default", 7)
    assert changes_since(stored, parse(toy_spec)) == ["config.steps: 5 -> 7"]
    assert changes_since(legacy, parse(toy_spec)) == []  # the earlier form cannot see defaults


def test_resume_refuses_a_changed_spec(toy_spec, tmp_path, capsys):
    from sweeplab import results, store
    toy_spec["config"] = {"steps": 1}
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(toy_spec))
    assert cli.main(["run", str(path), "--local"]) == 0
    stored = store.read_sweep_info(tmp_path / "results" / "toy-sweep")["resolved"]
    assert stored["spec"]["config"]["steps"] == 1 and len(stored["fingerprint"]) == 64 and stored["version"] == 2
    capsys.readouterr()
    assert cli.main(["resume", str(path), "--local", "--set", "steps=2", "search.space.lr=[0.01, 0.2]"]) == 2
    err = capsys.readouterr().err
    assert "the spec changed since the sweep started" in err
    assert "  - config.steps: 1 -> 2\n  - space.lr: [0.01, 0.05] -> [0.01, 0.2]\n" in err
    assert cli.main(["resume", str(path), "--local", "--set", "resources.cpus=2", "retries=1"]) == 0
    assert capsys.readouterr().out.count("already completed") == 2


def test_a_huge_plan_or_name_is_refused_without_building_it(toy_spec):
    import time
    from sweeplab.plan import MAX_TRIALS
    t0 = time.perf_counter()
    huge = [{**toy_spec, "search": {"algorithm": "grid", "space": {"lr": [0.01, 0.05]}, "num_samples": 10**9}},
            {**toy_spec, "search": {"algorithm": "random", "space": {"lr": {"uniform": [0.0, 1.0]}},
                                    "num_samples": 10**9}},
            {**toy_spec, "search": {"algorithm": "grid", "space": {"lr": [0.01 * i for i in range(1, 1001)],
                                                                    "steps": list(range(1, 1001))}}}]
    for raw in huge:  # 1e9 samples reached 17 GB in 30 s before
        with pytest.raises(SpecError, match=f"more than the {MAX_TRIALS:,} a sweep may hold"):
            parse(raw)
    assert time.perf_counter() - t0 < 10  # generous: no point was built (a correctness bound, not a benchmark)
    spec = parse({**toy_spec, "search": {"algorithm": "grid", "space": {"lr": [0.01, 0.05]}, "num_samples": 3}})
    from sweeplab.plan import Plan, planned_trials
    assert planned_trials(spec) == Plan.of(spec).samples == 6
    with pytest.raises(SpecError, match="name: 300 bytes, longer than the 200"):
        parse({**toy_spec, "name": "x" * 300})
