"""The in-process runner (``sweeplab run --local``) on the toy task: tables, retries, resume, Optuna."""
import pandas as pd
import yaml

from sweeplab import cli, results, store
from sweeplab.local import run_local
from sweeplab.spec import parse


def test_local_grid_writes_both_tables(toy_spec):
    toy_spec["search"]["include"] = [{"lr": 0.2, "sizes": [1, 2, 3]}]
    spec = parse(toy_spec)
    counts = run_local(spec, "test")
    assert counts == {"completed": 3, "failed": 0, "skipped": 0, "trials": 3, "evaluations": 7}
    trials, evals = results.read(spec.sweep_dir)
    assert list(trials.trial_id) == ["local_00000", "local_00001", "local_00002"]
    assert list(trials.lr) == [0.01, 0.05, 0.2] and set(trials.status) == {"completed"}
    for col in ("params", "gmacs", "gmacs_convention", "input_shape", "train_seconds", "device", "seed",
                "code_version", "started_at", "ended_at", "steps", "width", "optimizer", "loss", "lr_times_two"):
        assert col in trials.columns, col
    assert trials.params.iloc[0] == 3 * 4 + 4 + 4 + 1  # Linear(3,4) + Linear(4,1)
    assert trials.gmacs.iloc[0] == (8 * 3 * 4 + 8 * 4 * 1) / 1e9
    assert len(evals) == 2 + 2 + 3 and set(evals.trial_id) == set(trials.trial_id)
    assert pd.api.types.is_datetime64_any_dtype(trials.started_at)


def test_failures_are_recorded_and_resume_skips_completed(toy_spec, capsys):
    toy_spec["search"]["include"] = [{"fail": True}]
    toy_spec["retries"] = 1
    spec = parse(toy_spec)
    assert run_local(spec, "test") == {"completed": 2, "failed": 1, "skipped": 0, "trials": 3, "evaluations": 4}
    assert capsys.readouterr().out.count("failed:") == 2  # one attempt plus one retry
    trials, _ = results.read(spec.sweep_dir)
    failed = trials[trials.status == "failed"].iloc[0]
    assert "toy trial asked to fail" in failed.error and bool(failed.fail)
    again = run_local(spec, "test")
    assert again == {"completed": 0, "failed": 1, "skipped": 2, "trials": 3, "evaluations": 4}
    trials, evals = results.read(spec.sweep_dir)
    assert len(trials) == 3 and trials.trial_id.is_unique and len(evals) == 4


def test_local_tpe_search_and_cli(toy_spec, tmp_path, capsys):
    toy_spec["search"] = {"algorithm": "tpe", "space": {"lr": {"loguniform": [0.001, 0.5]},
                                                         "optimizer": ["sgd", "adam"]}, "num_samples": 4}
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(toy_spec))
    assert cli.main(["run", str(path), "--local", "--set", "steps=2"]) == 0
    out = capsys.readouterr().out
    assert "[4/4] local_00003" in out and "tables:" in out
    trials, _ = results.read(tmp_path / "results" / "toy-sweep")
    assert len(trials) == 4 and trials.lr.between(0.001, 0.5).all() and (trials.steps == 2).all()
    assert trials.lr.nunique() == 4
    assert cli.main(["resume", str(path), "--local", "--set", "steps=2"]) == 0
    assert capsys.readouterr().out.count("already completed") == 4
    assert cli.main(["run", str(path), "--local"]) == 1  # never silently mixes two runs in one folder
    assert "already holds this sweep" in capsys.readouterr().err
    assert cli.main(["resume", str(path)]) == 1  # a --local sweep has no Tune state to restore
    assert "was run with --local" in capsys.readouterr().err
    toy_spec["name"] = "never-run"
    path.write_text(yaml.safe_dump(toy_spec))
    assert cli.main(["resume", str(path), "--local"]) == 1
    assert "nothing to resume" in capsys.readouterr().err


def test_final_report_is_rebuilt_from_the_trial_row(toy_spec, tmp_path):
    """What a resumed Ray sweep reports for a trial that had completed: the same as the trial's own last report."""
    from sweeplab.local import LocalContext
    from sweeplab.trial import FINAL_KEY, final_report, run_trial
    spec = parse(toy_spec)
    ctx = LocalContext(trial_id="t0", seed=0, trial_dir=tmp_path / "t0")
    final = run_trial(spec.task, {"lr": 0.05}, ctx, sweep=spec.name, sweep_dir=spec.sweep_dir, code_version="test")
    rebuilt = final_report(spec.task, store.completed_trial(spec.sweep_dir, "t0"))
    assert rebuilt == {**final, FINAL_KEY: 1} and {"loss", "lr_times_two", "params", "gmacs"} <= rebuilt.keys()
    assert "lr" not in rebuilt and "steps" not in rebuilt  # config values are not metrics
