"""The ``sweeplab`` command: run, resume, submit, stop, status, results, compact, plot, dashboard, describe, tasks.

Exit codes: 0 success; 1 a sweep ran but some trials failed, or a runtime problem (cluster unreachable, missing
results, another driver running the sweep: :mod:`sweeplab.lock`); 2 invalid input (spec or ``--set`` values, a
resume whose spec changed since the sweep started), reported before anything starts.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys

import pandas as pd

from . import config as C
from . import layout as L
from . import dashboard, progress, render, report, results, service, sql, store
from .cost import model_cost
from .local import LocalBackend
from .lock import DriverLock, LockHeld, driver_alive
from .ray_runner import RayBackend
from .service import SweepError
from .spec import SpecError, apply_overrides
from .storage import Location, StorageError
from .submit import submit
from .task import broken_tasks, get_task, list_tasks


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:  # the hint repeats the sweep's own spec, runner and --set items
        hint = f": finish the sweep with `{service.resume_command(args.spec, args.local, _flat(args.overrides))}`" \
            if args.command in ("run", "resume") else ""
        print(f"interrupted{hint}", file=sys.stderr)
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
        sp.add_argument("--verbose", action="store_true", help="show Ray's and Tune's output (default: a log file)")
        if name == "resume":
            sp.add_argument("--extend", action="store_true", help="run what an edit of the spec adds (grid values, "
                            "include rows, num_samples); every finished trial is kept")
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

    sp = sub.add_parser("stop", help="ask a running sweep's driver to stop cleanly (`resume` continues it)")
    sp.add_argument("target", help="sweep spec or sweep folder / s3:// URI")
    sets(sp)
    sp.set_defaults(func=_cmd_stop)

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

    sp = sub.add_parser("report", help="the sweep beside its paper's published numbers: one HTML page and a Markdown "
                        "twin")
    sp.add_argument("target", help="sweep spec or sweep folder / s3:// URI")
    sp.add_argument("--out", help="HTML path or s3:// URI (default: <sweep>/results/report.html); the .md beside it")
    sp.set_defaults(func=_cmd_report)

    sp = sub.add_parser("dashboard", help="serve a sweep in optuna-dashboard, read from its storage while it runs")
    sp.add_argument("target", help="sweep spec or sweep folder / s3:// URI")
    sets(sp)
    for flag, kind, default, text in (("--port", int, 8080, "0: any free port"), ("--host", str, "127.0.0.1", "this "
                                      "machine only"), ("--every", float, 5.0, "seconds between readings")):
        sp.add_argument(flag, type=kind, default=default, help=f"default {default} ({text})")
    sp.set_defaults(func=_cmd_dashboard)

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


def _error(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _cmd_run(args) -> int:
    try:
        spec = service.prepare(args.spec, _flat(args.overrides))
        backend = LocalBackend() if args.local else RayBackend(args.address, args.verbose)
        outcome = service.run_sweep(spec, backend, resume=args.resume, extend=getattr(args, "extend", False),
                                    say=lambda m: print(m, flush=True))
    except SpecError as exc:
        return _error(f"invalid sweep spec {exc}", 2)
    except (SweepError, LockHeld) as exc:
        return _error(str(exc), getattr(exc, "code", 1))
    with contextlib.suppress(FileNotFoundError):  # no trial ended
        print(render.trials_table(results.read(spec.sweep_dir)[0], spec.task))
    print(f"\ntables: {L.results(spec.sweep_dir)} ({outcome.counts.get('trials', '?')} trials)\n"
          f"dashboard: sweeplab dashboard {spec.sweep_dir}\nreport:    sweeplab report {spec.sweep_dir}", flush=True)
    return outcome.code


def _cmd_submit(args) -> int:
    return submit(args.spec, _flat(args.overrides), args.address, wait=args.wait, resume=args.resume,
                  py_modules=args.py_module, env=args.env)


def _reads_a_sweep(command):
    """A command on a sweep: a bad spec exits 2; a missing sweep or unreachable storage exits 1."""
    @functools.wraps(command)
    def run(args) -> int:
        try:
            return command(args)
        except SpecError as exc:
            return _error(f"invalid sweep spec {exc}", 2)
        except (FileNotFoundError, StorageError) as exc:
            return _error(str(exc), 1)
    return run


def _sweep(target: str, overrides: list[list[str]] = ()) -> Location:
    """The sweep a command names (a spec file, with its --set values, or a sweep folder); SpecError for a bad
    spec."""
    return service.sweep_of(target, _flat(overrides))


@_reads_a_sweep
def _cmd_stop(args) -> int:
    """Leave the driver a request; it stops at the next report of its running trials (each keeps its last
    checkpoint), compacts the tables and ends."""
    sweep = _sweep(args.target, args.overrides)
    if store.read_sweep_info(sweep) is None:
        return _error(f"no sweep under {sweep} (has it started?)", 1)
    if not driver_alive(sweep):
        return _error(f"no driver is running {sweep}: nothing to stop", 1)
    progress.StopRequest(sweep).ask()
    print(f"asked the driver of {sweep} to stop: its running trials stop at their next report (each keeps its last "
          "checkpoint), the tables are compacted; `sweeplab resume` continues the sweep")
    return 0


@_reads_a_sweep
def _cmd_status(args) -> int:
    st = store.sweep_status(_sweep(args.target, args.overrides))
    if args.json:
        print(json.dumps(st, default=str))
        return 0
    print(render.status(st))
    return 0


@_reads_a_sweep
def _cmd_results(args) -> int:
    try:
        frame = sql.query(_sweep(args.target), args.sql, note=lambda msg: print(msg, file=sys.stderr))
    except sql.QueryError as exc:
        return _error(str(exc), 2)
    if args.csv:
        frame.to_csv(sys.stdout, index=False)
    else:
        with pd.option_context("display.width", 200, "display.max_columns", 40, "display.max_rows", 500):
            print(frame.to_string(index=False))
    return 0


@_reads_a_sweep
def _cmd_compact(args) -> int:
    """Under the sweep's driver lock, so it never runs beside a driver that is writing parts."""
    try:
        sweep = results.results_dir(_sweep(args.target)).parent
        with DriverLock(sweep):
            counts = store.compact(sweep)
    except LockHeld as exc:
        return _error(str(exc), 1)
    print(f"compacted {sweep}: {counts['trials']} trials, {counts['evaluations']} evaluation rows")
    return 0


@_reads_a_sweep
def _cmd_plot(args) -> int:
    try:
        print(f"wrote {report.plot(_sweep(args.target), args.out)}")
    except report.OutputError as exc:  # an unwritable --out
        return _error(str(exc), 2)
    except report.ReportError as exc:
        return _error(str(exc), 1)
    return 0


@_reads_a_sweep
def _cmd_report(args) -> int:
    try:
        page, twin = report.write(_sweep(args.target), args.out)
    except report.OutputError as exc:  # an unwritable --out
        return _error(str(exc), 2)
    except report.ReportError as exc:
        return _error(str(exc), 1)
    print(f"wrote {page} and {twin}")
    return 0


@_reads_a_sweep
def _cmd_dashboard(args) -> int:
    try:
        dashboard.serve(_sweep(args.target, args.overrides), args.host, args.port, args.every,
                        say=lambda m: print(m, flush=True))  # "no sweep under ..." (FileNotFoundError) first
    except KeyboardInterrupt:  # how a user stops it
        return 0
    except (FileNotFoundError, StorageError):  # no sweep there, or its storage unreachable: exit 1 (_reads_a_sweep)
        raise
    except OSError as exc:  # the port is taken, or the address is not this machine's
        return _error(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}", 2)
    return 0


def _cmd_describe(args) -> int:
    try:
        task = get_task(args.task)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    raw: dict = {}
    problems = apply_overrides(raw, _flat(args.overrides), task)
    problems += [f"--set {key}: a spec key; describe takes the task's config values only" for key in raw
                 if key != "config"]
    try:  # every problem at once: those of the --set items, then the config's own
        cfg = C.build(task.config, raw.get("config", {}))
    except ValueError as exc:
        problems += str(exc).split("\n")
    if problems:
        print(f"error: invalid --set for task {task.name!r}:\n  " + "\n  ".join(problems), file=sys.stderr)
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
    print(render.fields(task, cfg))
    return 0


def _cmd_tasks(args) -> int:
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
