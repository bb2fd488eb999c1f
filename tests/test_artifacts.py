"""Trained models reused across sweeps (``from_trials``), in-process and on a real Ray."""
import json

import pytest

from sweeplab import results
from sweeplab.artifacts import resolve_sources
from sweeplab.local import run_local
from sweeplab.spec import SpecError, parse


def _resolved(raw: dict):
    """A spec dict parsed, then its from_trials resolved (the step after parsing that reads storage)."""
    return resolve_sources(parse(raw))
from tests.conftest import PLUGIN_ENV


def _source_sweep(toy_spec, **config):
    """Two toy trials (lr 0.01 and 0.05) that keep their trained model."""
    toy_spec = {**toy_spec, "name": "source", "config": {"keep_model": True, "steps": 3, **config}}
    spec = parse(toy_spec)
    run_local(spec, "test")
    return spec


def _eval_spec(toy_spec, source, ref, **config):
    return {**toy_spec, "name": "eval", "search": {"algorithm": "grid", "space": {}},
            "config": {"steps": 0, **config}, "from_trials": {"init": ref}}


def test_a_sweep_evaluates_the_models_an_earlier_sweep_trained(toy_spec):
    source = _source_sweep(toy_spec)
    trials, _ = results.read(source.sweep_dir)
    trained = trials.set_index("lr").loc[0.05]
    assert (source.sweep_dir / "artifacts" / trained.trial_id / "model.pt").exists()
    # by a condition on the earlier sweep's trials table
    spec = _resolved(_eval_spec(toy_spec, source, {"sweep": str(source.sweep_dir), "where": "lr = 0.05"}))
    assert spec.from_trials == {"init": f"{source.sweep_dir}/{trained.trial_id}"}
    run_local(spec, "test")
    evaluated, _ = results.read(spec.sweep_dir)
    assert len(evaluated) == 1
    row = evaluated.iloc[0]
    assert row.loss == pytest.approx(trained.loss)  # no training step: the loss of the model it loaded
    assert json.loads(row.started_from) == {"init": f"{source.sweep_dir}/{trained.trial_id}"}
    # by location, and with order_by picking the best of several
    direct = _resolved(_eval_spec(toy_spec, source, f"{source.sweep_dir}/{trained.trial_id}"))
    assert direct.from_trials == spec.from_trials
    best = _resolved(_eval_spec(toy_spec, source, {"sweep": str(source.sweep_dir), "order_by": "loss ASC"}))
    assert best.from_trials["init"].endswith(trials.sort_values("loss").trial_id.iloc[0])


def test_missing_or_incompatible_sources_are_spec_errors(toy_spec, tmp_path):
    source = _source_sweep(toy_spec)
    trials, _ = results.read(source.sweep_dir)
    some = trials.trial_id.iloc[0]
    cases = {
        "no artifacts saved by trial 'nope'": f"{source.sweep_dir}/nope",
        "several completed trials": {"sweep": str(source.sweep_dir)},
        "no completed trial": {"sweep": str(source.sweep_dir), "where": "lr > 1"},
        "`where` is not an expression over the trials table": {"sweep": str(source.sweep_dir),
                                                                "where": "no_such_column = 1"},
        "`order_by` is not a list of ORDER BY terms": {"sweep": str(source.sweep_dir), "order_by": "loss; SELECT 1"},
        "no results under": {"sweep": str(tmp_path / "never-ran")},
    }
    for message, ref in cases.items():
        with pytest.raises(SpecError, match=message):
            _resolved(_eval_spec(toy_spec, source, ref))
    with pytest.raises(SpecError, match=r"trained with width=4, this sweep sets width=8"):
        _resolved(_eval_spec(toy_spec, source, f"{source.sweep_dir}/{some}", width=8))
    bad = _eval_spec(toy_spec, source, f"{source.sweep_dir}/{some}")
    bad["from_trials"] = {"weights": f"{source.sweep_dir}/{some}"}
    with pytest.raises(SpecError, match="uses no source 'weights'"):
        _resolved(bad)
    plain = _source_sweep({**toy_spec, "storage": str(tmp_path / "plain")}, keep_model=False)
    other = results.read(plain.sweep_dir)[0].trial_id.iloc[0]
    with pytest.raises(SpecError, match="no artifacts saved"):
        _resolved(_eval_spec(toy_spec, plain, f"{plain.sweep_dir}/{other}"))


def test_a_specs_condition_cannot_write_or_read_files(toy_spec, tmp_path, capsys):
    import yaml
    from sweeplab import cli
    source = _source_sweep(toy_spec)
    out = tmp_path / "written.csv"
    for ref in ({"sweep": str(source.sweep_dir), "where": f"lr = 0.05); COPY (SELECT 1) TO '{out}'; SELECT (1"},
                {"sweep": str(source.sweep_dir), "where": f"lr IN (SELECT * FROM read_csv('{out}'))"},
                {"sweep": str(source.sweep_dir), "order_by": f"loss; ATTACH '{tmp_path / 'x.db'}'"}):
        path = tmp_path / "eval.yaml"
        path.write_text(yaml.safe_dump(_eval_spec(toy_spec, source, ref)))
        assert cli.main(["status", str(path)]) == 1  # parsing the spec reads no source: the sweep never ran
        assert cli.main(["run", str(path), "--local"]) == 2  # resolving the source refuses the condition
        assert "from_trials.init" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "x.db").exists()


@pytest.mark.ray
def test_a_ray_sweep_starts_from_an_earlier_trial(toy_spec, tmp_path, sweeplab_cli):
    import yaml
    source = _source_sweep(toy_spec)
    trained = results.read(source.sweep_dir)[0].set_index("lr").loc[0.01]
    spec = _eval_spec(toy_spec, source, {"sweep": str(source.sweep_dir), "where": "lr = 0.01"})
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(spec))
    sweeplab_cli(["run", path], tmp_path, env=PLUGIN_ENV)
    row = results.read(tmp_path / "results" / "eval")[0].iloc[0]
    assert row.loss == pytest.approx(trained.loss) and row.status == "completed"
    assert json.loads(row.started_from)["init"].endswith(trained.trial_id)
