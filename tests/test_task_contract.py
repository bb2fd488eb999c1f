"""The contract every registered task passes (the five papers and the test plugins' toy and chaos tasks), as timm's
registry-parametrised model tests: ``describe`` works, the default config is valid, a tiny in-process trial (the
task's ``tiny`` overrides) returns exactly the metrics and evaluation columns it declares with their declared
types, no name collides with a core column or another of the task's names, the plot draws a PNG from the tiny
trial's tables, every folder field naming a missing folder is refused at spec load with its name and path, the
tiny trial run over two ranks (:mod:`tests.dist_harness`) trains one model on the global batch, and a task that
runs under ``dtype: bfloat16`` runs its tiny trial under the context's autocast."""
from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import torch

from sweeplab import cli, results
from sweeplab import config as C
from sweeplab import schema as S
from sweeplab.context import LocalContext
from sweeplab.spec import SpecError, parse
from sweeplab.task import Evaluation, list_tasks
from sweeplab.trial import run_trial
from tests.dist_harness import DistributedTrialError, run_distributed

TASKS = list_tasks()  # the conftest has registered the toy and chaos tasks
NAMES = sorted(TASKS)
# Tasks whose trials differ in kind declare the union of their names; their tiny trial returns a subset.
PARTIAL = {"restoration": "each stage (vaes, mapping, detector) returns its own metrics and columns"}
FOLDER_FIELDS = [(name, field) for name in NAMES for field, info in C.fields(TASKS[name].config).items()
                 if info.folder]
# The two-rank trial: the tasks that run on several workers, with what their tiny config needs for two ranks.
NOT_DISTRIBUTED = {"chaos": "trains no model: nothing to compare across ranks"}
DISTRIBUTED = [n for n in NAMES if TASKS[n].parallel != "none" and n not in NOT_DISTRIBUTED]
TWO_RANKS = {"tagging": {"batch_size": 4, "n_clips_limit": 4}}  # its BatchNorms need 2 clips a rank
BFLOAT16 = [n for n in NAMES if TASKS[n].bfloat16 is None]
NO_FORWARD = {"chaos": "sleeps and reports: no forward pass to run in a lower precision"}


@dataclasses.dataclass
class TinyTrial:
    evaluation: Evaluation
    sweep_dir: Path


@pytest.fixture(scope="module")
def tiny_trials(tmp_path_factory):
    """name -> the task's tiny trial, run once for the tests that need it."""
    done: dict[str, TinyTrial] = {}
    monkey = pytest.MonkeyPatch()
    # the tagging feature store defaults to ~/.cache: a trial of this test keeps its files under a temporary home
    import matplotlib
    monkey.setenv("MPLCONFIGDIR", matplotlib.get_configdir())
    monkey.setenv("HOME", str(tmp_path_factory.mktemp("home")))

    def run(name: str) -> TinyTrial:
        if name not in done:
            task, seen = TASKS[name], []

            def evaluate(*args):
                seen.append(TASKS[name].evaluate(*args))
                return seen[-1]
            sweep_dir = tmp_path_factory.mktemp(name) / "contract"
            ctx = LocalContext(trial_id="tiny", seed=0, device=torch.device("cpu"), trial_dir=sweep_dir / "tiny",
                               verbose=False)
            run_trial(dataclasses.replace(task, evaluate=evaluate), dict(task.tiny), ctx, sweep="contract",
                      sweep_dir=sweep_dir, code_version="test")
            done[name] = TinyTrial(seen[0], sweep_dir)
        return done[name]
    yield run
    monkey.undo()


def _matches(value, tp) -> bool:
    """``value`` is of the declared column type ``tp`` (None is a null of any type; no bool for an int)."""
    if value is None:
        return True
    if typing.get_origin(tp) is list:
        return isinstance(value, list) and all(_matches(v, typing.get_args(tp)[0]) for v in value)
    if tp is float:
        return isinstance(value, float)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


@pytest.mark.parametrize("name", NAMES)
def test_describe_gives_the_cost_and_every_config_value(name, capsys):
    assert cli.main(["describe", name, "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["task"] == name and described["params"] >= 0 and described["gmacs"] >= 0
    assert list(described["config"]) == list(C.fields(TASKS[name].config))


@pytest.mark.parametrize("name", NAMES)
def test_the_default_and_the_tiny_configs_are_valid(name):
    task = TASKS[name]
    assert C.to_dict(C.build(task.config, {})) == C.to_dict(task.config())
    C.build(task.config, task.tiny)


@pytest.mark.parametrize("name", NAMES)
def test_no_name_collides(name):
    task = TASKS[name]
    groups = {"core column": set(S.CORE_NAMES), "config": set(C.fields(task.config)), "metric": set(task.metrics)}
    kinds = list(groups)
    for i, a in enumerate(kinds):
        for b in kinds[i + 1:]:
            assert not groups[a] & groups[b], f"{a} and {b} names shared: {sorted(groups[a] & groups[b])}"
    assert not set(task.eval_columns) & set(S.KEYS), "evaluation columns shadow the table keys"


@pytest.mark.parametrize("name", NAMES)
def test_a_tiny_trial_returns_exactly_what_the_task_declares(name, tiny_trials):
    """Every returned name is declared, with its declared type; every declared name is returned, except by the
    tasks of :data:`PARTIAL` (the names a trial leaves out are null in its row)."""
    task, ev = TASKS[name], tiny_trials(name).evaluation
    assert ev.metrics and ev.rows, "no metric or no evaluation row"
    returned, columns = set(ev.metrics), set().union(*ev.rows)
    assert returned <= set(task.metrics) and columns <= set(task.eval_columns)
    if name not in PARTIAL:
        assert returned == set(task.metrics) and columns == set(task.eval_columns)
    wrong = {k: type(v).__name__ for k, v in ev.metrics.items() if not _matches(v, task.metrics[k])}
    assert not wrong, f"metrics of the wrong type: {wrong} (declared {task.metrics})"
    wrong = {k: type(v).__name__ for r in ev.rows for k, v in r.items() if not _matches(v, task.eval_columns[k])}
    assert not wrong, f"evaluation columns of the wrong type: {wrong} (declared {task.eval_columns})"
    trials, evaluations = results.read(tiny_trials(name).sweep_dir)
    assert list(trials.status) == ["completed"] and len(evaluations) == len(ev.rows)


@pytest.mark.parametrize("name", NAMES)
def test_the_plot_draws_a_png_from_the_tiny_trial(name, tiny_trials, tmp_path):
    task = TASKS[name]
    if task.plot is None:
        pytest.skip(f"task {name!r} has no plot (a test plugin)")
    sweep_dir = tiny_trials(name).sweep_dir
    trials, evaluations = results.read(sweep_dir)
    out = tmp_path / f"{name}.png"
    task.draw(trials, evaluations, out, sweep_dir)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("name", "field"), FOLDER_FIELDS, ids=[f"{n}.{f}" for n, f in FOLDER_FIELDS])
def test_a_missing_folder_is_refused_at_spec_load(name, field, tmp_path):
    missing = tmp_path / "no-such-folder"
    raw = {"name": "contract", "task": name, "metric": next(iter(TASKS[name].metrics)), "mode": "max",
           "storage": str(tmp_path), "config": {field: str(missing)}}
    with pytest.raises(SpecError) as err:
        parse(raw)
    assert any(field in p and str(missing) in p for p in err.value.problems), err.value.problems
    (tmp_path / "there").mkdir()
    assert not any("folder not found" in p for p in _problems({**raw, "config": {field: str(tmp_path / "there")}}))


def _problems(raw: dict) -> list[str]:
    try:
        parse(raw)
    except SpecError as exc:
        return exc.problems
    return []


def test_registering_the_tasks_imports_no_plotting_library():
    """A plot is named (``plot="plot:..."``), so listing the tasks (every command does) does not import matplotlib."""
    code = "import sys; from sweeplab.task import list_tasks; list_tasks(); print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("name", [n for n in NAMES if TASKS[n].config.__module__.startswith("sweeplab.tasks.")])
def test_a_task_package_imports_only_the_api(name):
    package = Path(sys.modules[TASKS[name].config.__module__].__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                       [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            found += [f"{path.name}: {m}" for m in modules
                      if m and m.split(".")[0] == "sweeplab" and m != "sweeplab.api"]
    assert not found, f"imports of sweeplab modules other than sweeplab.api: {found}"


@pytest.mark.parametrize("name", DISTRIBUTED)
def test_a_tiny_trial_over_two_ranks_trains_one_model_on_the_global_batch(name, tiny_trials):
    """``parallel="data"``: every rank ends training with the same parameters (the gradients were averaged), and
    with one ``batch_field`` applying to the trial every step's shares add up to that global batch. ``"split"``:
    rank 0 evaluates what one process does."""
    task = TASKS[name]
    values = {**task.tiny, **TWO_RANKS.get(name, {})}
    applies = C.active(task.config, values)
    fields = [f for f in task.batch_fields if applies[f]]  # the trial's global batches
    for field in fields:
        if (batch := getattr(C.build(task.config, values), field)) % 2:
            values[field] = 2 * batch  # the core refuses a global batch two workers cannot share
    ranks = run_distributed(name, values, world_size=2)
    if task.parallel == "data":
        assert ranks[0]["params"], "no model went through ctx.prepare_model"
        for i, (a, b) in enumerate(zip(*(r["params"] for r in ranks))):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-7), \
                f"model {i}: parameters differ across ranks by up to {float((a - b).abs().max()):.3g}"
    if len(fields) == 1:  # one batch for every step (a task training networks on batches of their own: 2+)
        batch = getattr(C.build(task.config, values), fields[0])
        steps = [r["samples"] for r in ranks]
        assert steps[0] and len(steps[0]) == len(steps[1]), steps
        assert [a + b for a, b in zip(*steps)] == [batch] * len(steps[0]), f"per rank and step: {steps}"
    if task.parallel == "split":
        assert ranks[0]["evaluation"].metrics == pytest.approx(tiny_trials(name).evaluation.metrics)


def test_a_failing_rank_raises_with_its_traceback():
    with pytest.raises(DistributedTrialError, match=r"(?s)rank \d of a 2-rank trial of task 'toy'.*asked to fail"):
        run_distributed("toy", {"fail": True})


class _CountingAutocast(LocalContext):
    entered = 0

    def autocast(self):
        self.entered += 1
        return super().autocast()


@pytest.mark.parametrize("name", BFLOAT16)
def test_a_tiny_trial_runs_under_bfloat16(name, tmp_path, monkeypatch):
    """A task that does not refuse ``dtype: bfloat16`` (``Task.bfloat16`` None) runs its tiny trial on the CPU
    under it, through the context's autocast, and its row and reports record the dtype."""
    import matplotlib
    monkeypatch.setenv("MPLCONFIGDIR", matplotlib.get_configdir())
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the tagging feature store defaults to ~/.cache
    task = TASKS[name]
    ctx = _CountingAutocast(trial_id="t", seed=0, device=torch.device("cpu"), dtype="bfloat16", verbose=False)
    run_trial(task, dict(task.tiny), ctx, sweep="bf16", sweep_dir=tmp_path / "bf16", code_version="test")
    if name not in NO_FORWARD:
        assert ctx.entered, "the trial never entered ctx.autocast()"
    assert {r["dtype"] for r in ctx.reports} == {"bfloat16"}
    trials, _ = results.read(tmp_path / "bf16")
    assert list(trials.dtype) == ["bfloat16"] and list(trials.status) == ["completed"]
