"""The run service and the store around it: one lifecycle for both runners, a driver's death told apart from a
running trial, a resume with the other runner refused, and the core's layering (no import cycle, every path of
the sweep folder named in one module)."""
import ast
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sweeplab import cli, layout, progress, service, store
from sweeplab.local import LocalBackend
from sweeplab.spec import SpecError, parse
from sweeplab.storage import location
from tests.conftest import PLUGIN_ENV, run_cli, wait_for

CORE = Path(service.__file__).parent


def _chaos(tmp_path, **config) -> dict:
    return {"name": "slow", "task": "chaos", "metric": "loss", "mode": "min", "storage": str(tmp_path / "results"),
            "config": {"steps": 6, "step_seconds": 0.4, "marker_dir": str(tmp_path / "marks"), **config},
            "search": {"algorithm": "grid", "space": {"x": [0.1, 0.5, 0.9]}}}


def test_a_killed_local_driver_leaves_interrupted_trials_that_resume_runs_once(tmp_path):
    """--local trials report progress to the store as Ray trials do; after SIGKILL the trial last seen running
    is `interrupted` (its driver's lock names a dead pid), and the resume runs each planned trial exactly once:
    the completed one is not run again, the interrupted one restarts from its checkpoint."""
    (tmp_path / "marks").mkdir()
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump(_chaos(tmp_path)))
    sweep = location(tmp_path / "results" / "slow")
    driver = subprocess.Popen([sys.executable, "-m", "sweeplab.cli", "run", str(path), "--local"], cwd=tmp_path,
                              env=PLUGIN_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def second_trial_reported():
            status = store.read_status(sweep, "local_00001")
            return status and status["last_metrics"].get("progress", 0) > 0 and status
        running = wait_for(second_trial_reported, 120, "the second trial's first progress report", every=0.1)
        live = store.sweep_status(sweep)
        assert running["status"] == "running" and live["driver_alive"] and live["counts"]["running"] == 1
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    st = store.sweep_status(sweep)
    assert not st["driver_alive"]
    assert {t["trial_id"]: t["status"] for t in st["trials"]} == {"local_00000": "completed",
                                                                  "local_00001": "interrupted"}
    out = run_cli(["status", sweep], tmp_path, env=PLUGIN_ENV).stdout
    assert "1 interrupted" in out and "sweeplab resume" in out
    run_cli(["resume", path, "--local"], tmp_path, env=PLUGIN_ENV)
    trials = store.sweep_status(sweep)["trials"]
    assert sorted((t["trial_id"], t["status"]) for t in trials) == [
        ("local_00000", "completed"), ("local_00001", "completed"), ("local_00002", "completed")]
    starts = {p.stem: [json.loads(ln)["start_step"] for ln in p.read_text().splitlines()]
              for p in (tmp_path / "marks").glob("*.jsonl")}
    assert starts["local_00000"] == [0] and starts["local_00002"] == [0]  # completed before the kill: not rerun
    assert len(starts["local_00001"]) == 2 and starts["local_00001"][1] > 0  # resumed from its checkpoint
    history = progress.read_reports(sweep, "local_00000")  # every report, for learning curves
    assert [r["progress"] for r in history if "progress" in r] == pytest.approx([(i + 1) / 6 for i in range(6)])
    assert history[-1]["final_report"] == 1 and "params" in history[-1]  # the final report, with the cost
    assert len(progress.read_reports(sweep, "local_00001")) > 6  # both attempts of the interrupted trial


class _Fake:
    """A backend that records what the service asked of it."""
    def __init__(self, name):
        self.name, self.calls = name, []

    def start(self, spec, say):
        self.calls.append("start")

    def run(self, spec, plan, code_version, resume, extensions):
        self.calls.append(("run", resume, plan.samples, len(extensions)))
        return {"trials": 0}

    def stop(self):
        self.calls.append("stop")


def test_the_service_owns_the_lifecycle_and_refuses_the_other_runner(toy_spec):
    spec = parse(toy_spec)
    ray_like = _Fake("ray")
    assert service.run_sweep(spec, ray_like, say=lambda m: None).code == 0
    assert ray_like.calls == ["start", ("run", False, 2, 0), "stop"]
    info = store.read_sweep_info(spec.sweep_dir)
    assert info["runner"] == "ray" and info["resolved"]["version"] == 2 and info["planned_trials"] == 2
    assert not layout.lock_file(spec.sweep_dir).exists()  # the lock was released
    with pytest.raises(service.SweepError, match="already holds this sweep"):
        service.run_sweep(spec, _Fake("ray"))
    local = _Fake("local")
    with pytest.raises(service.SweepError, match="was run on Ray.*without --local"):
        service.run_sweep(spec, local, resume=True)
    assert local.calls == []  # refused before anything started
    with pytest.raises(service.SweepError, match="spec changed") as err:
        service.run_sweep(parse(toy_spec, ["steps=2"]), _Fake("ray"), resume=True)
    assert err.value.code == 2
    with pytest.raises(service.SweepError, match="nothing to resume"):
        service.run_sweep(parse(toy_spec, ["name=other"]), LocalBackend(), resume=True)


def test_a_sweep_of_the_earlier_layout_is_resumed_by_the_runner_it_ran_on(toy_spec):
    """sweep.json written before the runner was recorded: Tune's experiment file marks a Ray sweep, fragments
    alone a --local one."""
    spec = parse(toy_spec)
    layout.fragment(spec.sweep_dir, "local_00000").local_path.mkdir(parents=True)
    assert store.sweep_runner(spec.sweep_dir) == "local"
    layout.tune_state(spec.sweep_dir).write_bytes(b"tune")
    assert store.sweep_runner(spec.sweep_dir) == "ray"
    assert "resume it without --local" in service.start_problem(spec, LocalBackend(), resume=True)


# ---------------------------------------------------------------- the core's shape


def _core_modules() -> dict[str, Path]:
    return {("sweeplab." + ".".join(p.relative_to(CORE).with_suffix("").parts)).removesuffix(".__init__"): p
            for p in CORE.rglob("*.py")}


DEFERRABLE = {"ray", "duckdb", "optuna", "optuna_dashboard", "matplotlib", "boto3", "botocore"}  # heavy imports


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, inside a function) for each import in ``path``; relative imports as ``sweeplab.<name>``."""
    out: list[tuple[str, bool]] = []

    class Visitor(ast.NodeVisitor):
        depth = 0

        def visit_FunctionDef(self, node):
            self.depth += 1
            self.generic_visit(node)
            self.depth -= 1

        visit_AsyncFunctionDef = visit_FunctionDef

        def visit_Import(self, node):
            out.extend((a.name, self.depth > 0) for a in node.names)

        def visit_ImportFrom(self, node):
            if node.level:
                base = "sweeplab" + (f".{node.module}" if node.module else "")
                out.extend((f"{base}.{a.name}" if not node.module else base, self.depth > 0) for a in node.names)
            else:
                out.append((node.module, self.depth > 0))

    Visitor().visit(ast.parse(path.read_text()))
    return out


def test_core_imports_go_one_way_and_only_heavy_optional_ones_are_deferred():
    modules = _core_modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for target, nested in _imports(path):
            while target and target not in modules and target.startswith("sweeplab."):
                target = target.rpartition(".")[0]
            if target in modules and target != name and target != "sweeplab":
                graph[name].add(target)
                assert not nested, f"{name} imports {target} inside a function: import it at the top"
            elif nested and not target.startswith("sweeplab"):
                assert target.split(".")[0] in DEFERRABLE, \
                    f"{name} defers `import {target}`: only heavy optional packages ({sorted(DEFERRABLE)}) may be"
    seen: dict[str, int] = {}

    def visit(node, path):
        if seen.get(node) == 1:
            raise AssertionError("import cycle: " + " -> ".join([*path, node]))
        if seen.get(node) == 2:
            return
        seen[node] = 1
        for nxt in sorted(graph[node]):
            visit(nxt, [*path, node])
        seen[node] = 2

    for module in sorted(graph):
        visit(module, [])


PATH_WORDS = ("sweep.json", "driver.lock", "status.json", "trial.parquet", "trial.json", "tuner.pkl", "compacted-",
              "part-", '"fragments"')


def test_every_path_of_the_sweep_folder_is_named_in_layout_only():
    for name, path in _core_modules().items():
        if name == "sweeplab.layout":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings \
                    and not any(c.isspace() for c in node.value):  # a path, not prose or a message
                assert not any(word.strip('"') in node.value for word in PATH_WORDS), \
                    f"{name} spells a sweep path: {node.value!r}"


def test_core_modules_stay_small():
    for name, path in _core_modules().items():
        lines = len(path.read_text().splitlines())
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        assert lines <= 320 or "Longer than" in doc, f"{name} has {lines} lines and its docstring gives no reason"


def test_the_cli_has_no_lifecycle_of_its_own():
    """`run`/`resume` go through service.run_sweep: the CLI module neither takes the lock nor writes sweep.json."""
    source = (CORE / "cli.py").read_text()
    assert "write_sweep_info" not in source and "DriverLock(spec" not in source and "service.run_sweep(" in source


def test_a_sweep_interrupted_under_the_earlier_layout_still_resumes(toy_spec, tmp_path, capsys):
    """What the earlier code left when its driver died mid-sweep: a sweep.json with a fingerprint of the keys the
    spec set (no version, no runner), trial 0's completed row only in its fragment (rank 0 wrote it, the driver
    never recorded it), trial 1 last seen running, no table yet. The resume takes trial 0 as completed and runs
    trial 1 only; each planned trial is then in the table once."""
    from sweeplab import cli, results
    from sweeplab.fingerprint import fingerprint, resolved
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(toy_spec))
    assert cli.main(["run", str(path), "--local"]) == 0
    spec = parse(toy_spec)
    sweep = spec.sweep_dir
    done = results.read_arrow(sweep, "trials", ["local_00000"])
    results.write_table(layout.legacy_completed_row(sweep, "local_00000"), done)
    for table in layout.TABLES:
        for f in layout.table_dir(sweep, table).files():
            f.delete()
    info = store.read_sweep_info(sweep)
    info.pop("runner")
    info["resolved"] = {"fingerprint": fingerprint(spec, 1), "spec": resolved(spec, 1)}
    layout.sweep_info(sweep).write_text(json.dumps(info))
    for trial_id in ("local_00000", "local_00001"):  # the driver died before recording either
        store.write_status(sweep, trial_id, "running", {"lr": 0.05}, seed=1)
    assert store.sweep_runner(sweep) == "local"
    capsys.readouterr()
    assert cli.main(["resume", str(path), "--local"]) == 0
    out = capsys.readouterr().out
    assert "local_00000: already completed, skipped" in out and "[2/2] local_00001: lr=0.05" in out
    trials = results.read(sweep)[0]
    assert sorted(trials.trial_id) == ["local_00000", "local_00001"] and set(trials.status) == {"completed"}
    assert trials.set_index("trial_id").loss["local_00000"] == done.column("loss")[0].as_py()
    assert store.read_sweep_info(sweep)["resolved"]["version"] == 2  # the resume stored the current form


def _stop_while_second_trial_runs(tmp_path, argv, env=PLUGIN_ENV, timeout=180):
    """Runs the sweep in a subprocess, asks it to stop once its second trial started (the driver sees the request
    within 2 s, at a report), returns the driver's exit code and output."""
    sweep = location(tmp_path / "results" / "slow")
    driver = subprocess.Popen([sys.executable, "-m", "sweeplab.cli", *argv], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: len(layout.fragments(sweep).folders()) > 1, timeout, "the second trial's start", every=0.1)
        assert cli.main(["stop", str(sweep)]) == 0  # in-process: a CLI subprocess takes seconds to start
        out, _ = driver.communicate(timeout=timeout)
    finally:
        driver.kill()
    return driver.returncode, out


def test_stop_then_resume_on_the_local_runner(tmp_path):
    (tmp_path / "marks").mkdir()
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump(_chaos(tmp_path, steps=12, step_seconds=0.3)))
    sweep = location(tmp_path / "results" / "slow")
    assert run_cli(["stop", sweep], tmp_path, env=PLUGIN_ENV, rc=1).stderr.startswith("error: no sweep under")
    rc, out = _stop_while_second_trial_runs(tmp_path, ["run", str(path), "--local"])
    assert rc == 0 and "stopped on request" in out and f"sweeplab resume {path} --local" in out
    assert not layout.stop_request(sweep).exists()  # the request was served
    st = store.sweep_status(sweep)
    assert {t["trial_id"]: t["status"] for t in st["trials"]} == {"local_00000": "completed",
                                                                  "local_00001": "interrupted"}
    assert [f.name for f in layout.table_dir(sweep, "trials").files()] == ["compacted-000000.parquet"]
    assert run_cli(["stop", sweep], tmp_path, env=PLUGIN_ENV, rc=1).stderr.startswith("error: no driver")
    run_cli(["resume", path, "--local"], tmp_path, env=PLUGIN_ENV)
    assert [t["status"] for t in store.sweep_status(sweep)["trials"]] == ["completed"] * 3
    marks = (tmp_path / "marks" / "local_00001.jsonl").read_text().splitlines()
    starts = [json.loads(ln)["start_step"] for ln in marks]
    assert len(starts) == 2 and starts[1] > 0  # continued from the checkpoint of its last report


def test_checkpoints_of_completed_trials_can_be_dropped(tmp_path):
    """`checkpoints.keep_after_completion: false`: a completed trial's checkpoints are deleted once its row is
    recorded; a failed one keeps them for its retry on resume. Bad values are spec errors."""
    raw = {**_chaos(tmp_path), "checkpoints": {"keep_after_completion": False}, "retries": 0,
           "search": {"algorithm": "grid", "space": {"x": [0.1]}, "include": [{"x": 0.2, "fail_attempts": 1}]}}
    raw["config"].update(steps=3, step_seconds=0.0, marker_dir="")
    spec = parse(raw)
    assert spec.checkpoints == {"keep": 2, "keep_after_completion": False}
    assert service.run_sweep(spec, LocalBackend(), say=lambda m: None).code == 1  # the x = 0.2 trial failed
    local = layout.local_checkpoints(spec.sweep_dir).local_path
    assert not (local / "local_00000").exists() and (local / "local_00001" / "checkpoint.pt").exists()
    kept = parse({**raw, "name": "kept", "checkpoints": {}})
    service.run_sweep(kept, LocalBackend(), say=lambda m: None)
    assert (layout.local_checkpoints(kept.sweep_dir).local_path / "local_00000" / "checkpoint.pt").exists()
    with pytest.raises(SpecError, match=r"keep_after_completion: expected true or false[\s\S]*keep: 0 is below"):
        parse({**raw, "checkpoints": {"keep": 0, "keep_after_completion": "no"}})


def test_a_trial_that_no_node_can_hold_is_named_before_anything_starts():
    from sweeplab.ray_cluster import unplaceable
    two_nodes = [{"CPU": 4.0, "GPU": 1.0}, {"CPU": 2.0}]
    assert unplaceable(two_nodes, 1, 0.25, 4) is None  # four quarters of the one GPU
    assert unplaceable(two_nodes, 2, 0, 3) is None  # spread over both nodes
    assert unplaceable([{"CPU": 2.0}], 1, 0, 1) is None
    problem = unplaceable([{"CPU": 2.0}], 1, 2, 1)  # resources.gpus: 2 without a GPU hung forever before
    assert "1 worker(s) of 1 CPU(s) and 2 GPU(s)" in problem and "0 GPU(s) in all" in problem
    assert unplaceable(two_nodes, 1, 0.5, 3) is not None and unplaceable(two_nodes, 4, 0, 2) is not None
    assert unplaceable(two_nodes, 0, 1, 2) is not None  # two whole GPUs, one in the cluster


def test_local_says_which_resources_it_does_not_use(toy_spec):
    said = []
    LocalBackend().start(parse(toy_spec), said.append)
    assert said == []
    LocalBackend().start(parse(toy_spec, ["resources.gpus=0.5", "resources.workers=2"]), said.append)
    assert len(said) == 1 and "workers 2, gpus 0.5 apply on Ray only" in said[0]
