"""The ``sweeplab`` command: run, resume, submit, status, results, compact, plot, describe, tasks.

Exit codes: 0 success; 1 a sweep ran but some trials failed, or a runtime problem (cluster unreachable, missing
results, another driver running the sweep: :mod:`sweeplab.lock`); 2 invalid input (spec or ``--set`` values, a
resume whose spec changed since the sweep started), reported before anything starts.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import config as C


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted: finish the sweep with `sweeplab resume SPEC`", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sweeplab", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def sets(sp):
        sp.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        nargs="+", help="override a spec field (resources.gpus=1) or a task config value (lr=1e-3)")

    for name, helptext in (("run", "run a sweep"), ("resume", "continue an interrupted sweep")):
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument("spec", help="sweep spec (YAML)")
        sets(sp)
        sp.add_argument("--local", action="store_true", help="run every trial in this process, without Ray")
        sp.add_argument("--address", help="Ray cluster to connect to (default: start an embedded local Ray)")
        sp.set_defaults(func=_cmd_run, resume=name == "resume")

    sp = sub.add_parser("submit", help="submit a sweep to a Ray cluster as a job (what `ray job submit` does)")
    sp.add_argument("spec", help="sweep spec (YAML)")
    sets(sp)
    sp.add_argument("--address", required=True, help="the cluster's dashboard, e.g. http://HEAD:8265")
    sp.add_argument("--wait", action="store_true", help="follow the job's logs; exit non-zero if it fails")
    sp.add_argument("--resume", action="store_true", help="submit `sweeplab resume` (an interrupted sweep)")
    sp.add_argument("--py-module", action="append", default=[], metavar="DIR",
                    help="a local package folder to ship with the job (e.g. a task kept outside this repo)")
    sp.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="an environment variable for "
                    "the job and its workers (a bare KEY passes this shell's value)")
    sp.set_defaults(func=_cmd_submit)

    sp = sub.add_parser("status", help="trials running / completed / failed and the best so far, from storage")
    sp.add_argument("target", help="sweep spec or sweep folder")
    sets(sp)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=_cmd_status)

    sp = sub.add_parser("results", help="print a sweep's results table")
    sp.add_argument("target", help="sweep spec or sweep folder")
    sp.add_argument("--sql", help="SQL over the views `trials` and `evaluations` (DuckDB)")
    sp.add_argument("--csv", action="store_true", help="print CSV instead of an aligned table")
    sp.set_defaults(func=_cmd_results)

    sp = sub.add_parser("compact", help="merge a sweep's per-trial result files into one file per table (the "
                        "driver does it when a sweep ends)")
    sp.add_argument("target", help="sweep spec or sweep folder / s3:// URI")
    sp.set_defaults(func=_cmd_compact)

    sp = sub.add_parser("plot", help="draw the task's plot from a sweep's tables")
    sp.add_argument("target", help="sweep spec or sweep folder")
    sp.add_argument("--out", help="PNG path (default: <sweep>/results/<task>.png)")
    sp.set_defaults(func=_cmd_plot)

    sp = sub.add_parser("describe", help="parameters, GMACs and config of a task")
    sp.add_argument("task")
    sets(sp)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=_cmd_describe)

    sp = sub.add_parser("tasks", help="list the registered tasks")
    sp.set_defaults(func=_cmd_tasks)
    return p


def _flat(overrides: list[list[str]]) -> list[str]:
    return [item for group in overrides for item in group]


def _cmd_run(args) -> int:
    from .lock import DriverLock, LockHeld
    from .spec import SpecError, load
    try:
        spec = load(args.spec, _flat(args.overrides))
    except SpecError as exc:
        print(f"error: invalid sweep spec {exc}", file=sys.stderr)
        return 2
    from .storage import check_bucket
    if (problem := check_bucket(spec.sweep_dir)) is not None:  # a missing bucket or a dead endpoint: say so now
        print(f"error: storage {spec.storage}: {problem}", file=sys.stderr)
        return 1
    if (problem := _start_problem(spec, args)) is not None:  # at once, before any wait for the lock
        print(f"error: {problem}", file=sys.stderr)
        return 1
    if args.resume and (changed := _spec_changes(spec)):
        print(f"error: cannot resume {spec.sweep_dir}: the spec changed since the sweep started, and its trials "
              "would mix two sweeps:\n" + "".join(f"  - {c}\n" for c in changed) +
              "restore those values, or run the new spec as a new sweep (--set name=...)", file=sys.stderr)
        return 2
    try:
        lock = DriverLock(spec.sweep_dir)
    except ValueError as exc:  # a bad $SWEEPLAB_LOCK_TTL_S
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        with lock:
            if (problem := _start_problem(spec, args)) is not None:  # another driver may have run it meanwhile
                print(f"error: {problem}", file=sys.stderr)
                return 1
            return _drive(spec, args)
    except LockHeld as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _start_problem(spec, args) -> str | None:
    """Why this sweep folder cannot be run (``run`` on a started sweep) or resumed (nothing to resume)."""
    sweep = spec.sweep_dir
    started = [p.name for p in (sweep / "tuner.pkl", sweep / "fragments") if p.exists()]
    if args.resume and not started:
        return f"nothing to resume in {sweep} (start the sweep with `sweeplab run`)"
    if args.resume and not args.local and "tuner.pkl" not in started:
        return f"{sweep} was run with --local: resume it with --local"
    if not args.resume and started:
        return (f"{sweep} already holds this sweep: continue it with `sweeplab resume {args.spec}` or choose "
                "another name (--set name=...) or storage")
    return None


def _spec_changes(spec) -> list[str]:
    """How the spec differs from the one the sweep was started with (nothing for a sweep that stored none)."""
    from .results import read_sweep_info
    from .spec import changes, fingerprint, resolved
    stored = (read_sweep_info(spec.sweep_dir) or {}).get("resolved")
    if not stored or stored.get("fingerprint") == fingerprint(spec):
        return []
    return changes(stored.get("spec") or {}, resolved(spec)) or ["the resolved spec (its fingerprint) differs"]


def _drive(spec, args) -> int:
    """Run or resume the sweep (the driver lock held)."""
    from .results import code_version, write_sweep_info
    from .search import planned_trials
    from .spec import fingerprint, resolved
    version = code_version()
    write_sweep_info(spec, planned_trials(spec), fingerprint={"fingerprint": fingerprint(spec),
                                                              "spec": resolved(spec)})
    print(f"sweep {spec.name}: task {spec.task.name}, search {spec.algorithm}, results in {spec.sweep_dir}",
          flush=True)
    if args.local:
        from .local import run_local
        counts = run_local(spec, version)
    else:
        if not _init_ray(args.address):
            return 1
        from .ray_runner import run_ray
        counts = run_ray(spec, version, resume=args.resume)
    _print_table(spec.sweep_dir, spec.task)
    print(f"\ntables: {spec.sweep_dir / 'results'} ({counts.get('trials', '?')} trials)", flush=True)
    return 1 if counts.get("failed") else 0


def _cmd_submit(args) -> int:
    from .submit import submit
    return submit(args.spec, _flat(args.overrides), args.address, wait=args.wait, resume=args.resume,
                  py_modules=args.py_module, env=args.env)


def _is_spec(target: str) -> bool:
    return not target.startswith("s3://") and Path(target).is_file() and Path(target).suffix in (".yaml", ".yml")


def _cmd_status(args) -> int:
    from .results import sweep_status
    from .storage import StorageError
    target = args.target
    if _is_spec(target):
        from .spec import SpecError, load
        try:
            target = load(target, _flat(args.overrides)).sweep_dir
        except SpecError as exc:
            print(f"error: invalid sweep spec {exc}", file=sys.stderr)
            return 2
    try:
        st = sweep_status(target)
    except (FileNotFoundError, StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(st, default=str))
        return 0
    c = st["counts"]
    print(f"sweep {st['name']} (task {st['task']}): {c['running']} running, {c['completed']} completed, "
          f"{c['stopped']} stopped early, {c['failed']} failed, {c['pending']} not started "
          f"({st['planned_trials']} planned)")
    for metric, b in st["best"].items():
        shown = ", ".join(f"{k}={v}" for k, v in b["config"].items())
        print(f"best {metric} ({b['mode']}): {b['value']:.6g}  trial {b['trial_id']}" + (f"  ({shown})" if shown
                                                                                       else ""))
    if not st["best"]:
        print("best: no completed trial yet")
    rows = []
    for t in st["trials"]:
        m = t["metrics"]
        progress = m.get("progress")
        rows.append((t["trial_id"], t["status"], "" if progress is None else f"{100 * progress:.0f}%",
                     *(f"{m[k]:.6g}" if isinstance(m.get(k), (int, float)) else "" for k in st["metrics"]),
                     ", ".join(f"{k}={t['config'].get(k)}" for k in st["space"])))
    if rows:
        head = ("trial", "status", "progress", *st["metrics"], "config")
        widths = [max(len(str(r[i])) for r in (head, *rows)) for i in range(len(head) - 1)]
        for r in (head, *rows):
            print("  ".join(str(r[i]).ljust(widths[i]) for i in range(len(widths))) + "  " + str(r[-1]))
    return 0


def _reachable(address: str, timeout: float = 5.0) -> str | None:
    """None when ``host:port`` (or ``ray://host:port``) accepts a TCP connection, else the reason. Ray itself would
    retry an unreachable address for minutes; ``auto`` is left to Ray (it fails at once without a cluster)."""
    import socket
    target = address.split("://", 1)[-1]
    if address == "auto" or ":" not in target:
        return None
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return None
    except (OSError, ValueError) as exc:
        return str(exc) or type(exc).__name__


def _init_ray(address: str | None) -> bool:
    import ray
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    if address and (reason := _reachable(address)):
        print(f"error: cannot reach the Ray cluster at {address!r}: {reason}", file=sys.stderr)
        return False
    try:
        if address:
            ray.init(address=address, log_to_driver=True)
        else:
            # With the dashboard: it is where a user watches the sweep, and Ray Train's placement-group cleaner
            # asks its state API whether a trial's Train controller still lives. Without it, a trial ASHA stops
            # keeps its resources and the sweep waits forever for them.
            ray.init(include_dashboard=True, log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        print(f"error: cannot connect to the Ray cluster at {address!r}: {exc}", file=sys.stderr)
        return False
    except Exception as exc:  # noqa: BLE001 - ray.exceptions.AuthenticationError: a missing or wrong token
        if "Authentication" not in type(exc).__name__:
            raise
        from .submit import TOKEN_HELP
        print(f"error: the Ray cluster at {address!r} refused the connection: {exc}\n{TOKEN_HELP}", file=sys.stderr)
        return False
    return True


def _print_table(sweep_dir, task) -> None:
    from .results import read
    try:
        trials, _ = read(sweep_dir)
    except FileNotFoundError:
        return
    if trials.empty:
        return
    cfg_cols = [c for c in C.fields(task.config) if c in trials.columns and trials[c].nunique(dropna=False) > 1]
    metric_cols = [c for c in dict.fromkeys((*task.summary, "params", "gmacs", "train_seconds"))
                   if c in trials.columns]
    import pandas as pd
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.4g}".format):
        print(trials[["trial_id", "status", *cfg_cols, *metric_cols]].to_string(index=False))


def _cmd_results(args) -> int:
    from .results import query
    from .storage import StorageError
    try:
        frame = query(args.target, args.sql, note=lambda msg: print(msg, file=sys.stderr))
    except (FileNotFoundError, StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - DuckDB's parser and binder errors
        if type(exc).__module__.startswith("duckdb") or type(exc).__name__.endswith("Exception"):
            print(f"error: the query failed: {exc}", file=sys.stderr)
            return 2
        raise
    import pandas as pd
    if args.csv:
        frame.to_csv(sys.stdout, index=False)
    else:
        with pd.option_context("display.width", 200, "display.max_columns", 40, "display.max_rows", 500):
            print(frame.to_string(index=False))
    return 0


def _cmd_compact(args) -> int:
    """Under the sweep's driver lock, so it never runs beside a driver that is writing parts."""
    from .lock import DriverLock, LockHeld
    from .results import compact, results_dir
    from .storage import StorageError
    try:
        sweep = results_dir(args.target).parent
        with DriverLock(sweep):
            counts = compact(sweep)
    except (FileNotFoundError, StorageError, LockHeld) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"compacted {sweep}: {counts['trials']} trials, {counts['evaluations']} evaluation rows")
    return 0


def _cmd_plot(args) -> int:
    from .results import read, results_dir
    from .storage import StorageError
    from .task import get_task
    try:
        trials, evaluations = read(args.target)
    except (FileNotFoundError, StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if trials.empty:
        print("error: the trials table is empty", file=sys.stderr)
        return 1
    try:
        task = get_task(str(trials["task"].iloc[0]))
    except KeyError as exc:  # unknown here, or its package is broken
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 1
    if task.plot is None:
        print(f"error: task {task.name!r} has no plot", file=sys.stderr)
        return 1
    sweep = results_dir(args.target).parent
    out = args.out or str(sweep / "results" / f"{task.name}.png")
    if out.startswith("s3://"):  # the plot is drawn in a local folder, then its files are stored beside the tables
        import tempfile
        from .storage import location
        with tempfile.TemporaryDirectory() as tmp:
            task.plot(trials, evaluations, Path(tmp) / "plot.png", sweep)
            for made in Path(tmp).iterdir():  # the PNG and whatever the plot writes beside it (a table)
                target = location(out).parent / (Path(out).stem + made.name[len("plot"):])
                target.write_bytes(made.read_bytes())
    else:
        task.plot(trials, evaluations, Path(out), sweep)
    print(f"wrote {out}")
    return 0


def _cmd_describe(args) -> int:
    from .cost import model_cost
    from .spec import apply_overrides
    from .task import get_task
    try:
        task = get_task(args.task)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    raw: dict = {}
    problems = apply_overrides(raw, _flat(args.overrides), task)
    try:
        if problems:
            raise ValueError("\n".join(problems))
        cfg = C.build(task.config, raw.get("config", {}))
    except ValueError as exc:
        print(f"error: invalid --set for task {task.name!r}:\n  " + str(exc).replace("\n", "\n  "), file=sys.stderr)
        return 2
    cost = model_cost(task, cfg)
    if args.json:
        shape = cost.input_shape[0] if len(cost.input_shape) == 1 else cost.input_shape  # one input: its shape
        print(json.dumps({"task": task.name, "params": cost.params, "gmacs": cost.gmacs, "input_shape": shape,
                          "gmacs_convention": cost.convention, "components": cost.components,
                          "config": C.to_dict(cfg)}, default=list))
        return 0
    print(f"task         {task.name}\nparameters   {cost.params:,}\nGMACs        {cost.gmacs:.4f} "
          f"(input {cost.shape_text})\nconvention   {cost.convention}\n")
    _print_fields(task, cfg)
    return 0


def _print_fields(task, cfg) -> None:
    rows = [("name", "type", "value", "valid", "applies when", "meaning")]
    for f in C.fields(task.config).values():
        valid = (" | ".join(map(str, f.choices)) if f.choices else
                 f"[{'' if f.low is None else f.low}, {'' if f.high is None else f.high}]"
                 if f.low is not None or f.high is not None else "")
        rows.append((f.name, getattr(f.type, "__name__", str(f.type)), repr(getattr(cfg, f.name)), valid,
                     f.condition(), f.doc))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(r[i].ljust(widths[i]) for i in range(5)) + "  " + r[5])


def _cmd_tasks(args) -> int:
    from .task import broken_tasks, list_tasks
    for name, task in list_tasks().items():
        module = sys.modules[task.config.__module__]
        package = sys.modules.get(module.__package__ or "", module)  # the task's package (its docstring)
        summary = " ".join((package.__doc__ or "").strip().split("\n\n")[0].split()).split(". ")[0]
        print(f"{name:14s} {summary}")
    for name, why in broken_tasks().items():  # listed, so a broken package is not silently missing
        print(f"{name:14s} broken: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
