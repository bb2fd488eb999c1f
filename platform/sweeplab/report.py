"""``sweeplab report SWEEP``: what a sweep found beside what its paper published, as one self-contained HTML page
(images embedded) and its Markdown twin (:mod:`sweeplab.page`).

The sections: what ran (the resolved spec, runner, code version, hardware, seeds, time), the paper beside the
sweep (:func:`sweeplab.paper.compare` over the task's :attr:`~sweeplab.task.Task.paper`: per published number the
sweep's mean and spread over its repeats, or the best configuration's where the paper reports a best, the
difference, the data each ran on, and the trials it comes from), the task's figures (drawn now from the tables),
the cost (parameters, GMACs, training time, GPU-hours, wall time) with the quality-vs-GMACs Pareto front of the
sweep's first objective, and the failed trials' causes. Everything is read through the sweep's store (its tables and
``sweep.json``), local or ``s3://``.
"""
from __future__ import annotations

import io
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from . import config as C
from . import layout as L
from . import paper as P
from . import results, store
from .render import varying_fields
from .page import Code, Heading, Image, Section, Table, Text, to_html, to_markdown
from .schema import error_cause, metric_column
from .storage import Location, location
from .task import get_task

SHOWN_IDS = 8  # trial ids listed per row (the condition beside them selects all of them)


class ReportError(ValueError):
    """The sweep cannot be reported (no trial in its table, an unknown task)."""


def _num(value: Any, signed: bool = False) -> str:
    if value is None or isinstance(value, float) and math.isnan(value):
        return "-"
    return f"{value:+.4g}" if signed else f"{value:.4g}"


def _distinct(column: pd.Series) -> str:
    counts = column.dropna().astype(str).value_counts()
    return ", ".join(f"{v} ({n})" if len(counts) > 1 else str(v) for v, n in counts.items()) or "-"


def _ids(ids: list[str]) -> str:
    return ", ".join(ids[:SHOWN_IDS]) + (f" ... ({len(ids)} in all)" if len(ids) > SHOWN_IDS else "")


def _column(task, metric: str) -> str:
    """The ``trials`` column of an objective or published metric: a task metric's, or a core column as it is."""
    return metric_column(task, metric) if metric in task.metrics else metric


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.3g} h" if seconds >= 360 else f"{seconds:.3g} s"


class OutputError(ReportError):
    """The report or plot cannot be written where it was asked to go."""


def _draw(task, trials: pd.DataFrame, evaluations: pd.DataFrame, sweep: Location) -> dict[str, bytes]:
    """The files of the task's plot (:meth:`~sweeplab.task.Task.draw`: ``<task>.png`` and whatever it writes beside
    it with the same stem), drawn in a temporary folder: name -> bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        task.draw(trials, evaluations, Path(tmp) / f"{task.name}.png", sweep)
        return {f.name: f.read_bytes() for f in sorted(Path(tmp).iterdir()) if f.is_file()}


def _read(target) -> tuple[Location, dict, pd.DataFrame, pd.DataFrame, Any]:
    """The sweep, its ``sweep.json``, its two tables and its task; ReportError when there is nothing to read."""
    sweep = results.results_dir(target).parent
    trials, evaluations = results.read(sweep)
    if trials.empty:
        raise ReportError(f"the trials table of {sweep} is empty")
    try:
        task = get_task(str(trials["task"].iloc[0]))
    except KeyError as exc:  # unknown here, or its package is broken
        raise ReportError(exc.args[0]) from None
    return sweep, store.read_sweep_info(sweep) or {}, trials, evaluations, task


def _write(where: Location, data: bytes, what: str) -> None:
    try:
        where.write_bytes(data)
    except OSError as exc:
        raise OutputError(f"cannot write {what} to {where}: {exc.strerror or exc}") from None


def plot(target, out: str | None = None) -> Location:
    """``sweeplab plot``: draw the task's plot into ``out`` (default ``<sweep>/results/<task>.png``), the files it
    draws beside it named from ``out``'s stem; returns ``out``."""
    sweep, _, trials, evaluations, task = _read(target)
    if not (trials["status"] == "completed").any():
        raise ReportError(f"nothing to plot: none of the {len(trials)} trial(s) of {sweep} completed "
                          "(`sweeplab status` says why they failed)")
    if task.plot is None:
        raise ReportError(f"task {task.name!r} has no plot")
    out_loc = location(out) if out else L.results(sweep) / f"{task.name}.png"
    stem = out_loc.name.rsplit(".", 1)[0]
    for name, data in _draw(task, trials, evaluations, sweep).items():
        _write(out_loc if name == f"{task.name}.png" else out_loc.parent / (stem + name[len(task.name):]), data,
               "the plot")
    return out_loc


def _what_ran(sweep: Location, info: dict, trials: pd.DataFrame, task) -> Section:
    spec = (info.get("resolved") or {}).get("spec") or {}
    states = trials["status"].value_counts()
    done = trials[trials["status"] == "completed"]
    seeds = sorted(trials["seed"].dropna().astype(int).unique())
    seed_text = f"spec seed {spec.get('seed', '-')}; trial seeds " + (
        ", ".join(map(str, seeds)) if len(seeds) <= SHOWN_IDS else f"{len(seeds)} distinct, {seeds[0]}..{seeds[-1]}")
    started, ended = done["started_at"].min(), done["ended_at"].max()
    wall = (ended - started).total_seconds() if len(done) and pd.notna(started) and pd.notna(ended) else None
    gpu_seconds = pd.to_numeric(trials["gpu_seconds"], errors="coerce").sum()
    training = f"training {_hours(pd.to_numeric(trials['train_seconds'], errors='coerce').sum())} summed over trials"
    planned = info.get("planned_trials", len(trials))
    counts = ", ".join(f"{states.get(s, 0)} {s}" for s in ("completed", "stopped", "failed"))
    rows = [
        ("sweep", f"{info.get('name', sweep.name)} at `{sweep}`"),
        ("task", f"`{task.name}`: {task.paper.title if task.paper else '(no paper declared)'}"),
        ("spec", f"`{info.get('source') or '-'}` (resolved below), runner `{info.get('runner') or '-'}`"),
        ("objective", ", ".join(f"{m} ({mode})" for m, mode in zip(info.get("metrics", []), info.get("modes", [])))),
        ("trials", f"{planned} planned: {counts}, {max(planned - len(trials), 0)} without a result"),
        ("repeats and seeds", f"num_samples {spec.get('num_samples', 1)}; {seed_text}"),
        ("code version", _distinct(trials["code_version"])),
        ("hardware", f"device {_distinct(trials['device'])}; GPU {_distinct(trials['gpu_name'])}; "
                     f"workers {_distinct(trials['num_workers'])}; dtype {_distinct(trials['dtype'])}"),
        ("software", f"torch {_distinct(trials['torch_version'])}; CUDA {_distinct(trials['cuda_version'])}; "
                     f"Ray {_distinct(trials['ray_version'])}"),
        ("time", f"{started:%Y-%m-%d %H:%M:%S} to {ended:%Y-%m-%d %H:%M:%S} UTC (wall {_hours(wall)})"
         if wall is not None else "-"),
        ("compute", f"{training}; " + (f"GPU-hours {gpu_seconds / 3600:.3g}" if gpu_seconds else "no GPU")),
    ]
    return Section("What ran", [Table(["what", "this sweep"], [[k, v] for k, v in rows]),
                                Text("The resolved spec, every default filled in, is the last section.")])


def _paper_section(task, trials: pd.DataFrame, evaluations: pd.DataFrame) -> Section:
    paper = task.paper
    if paper is None:
        return Section("The paper beside the sweep", [Text(f"Task `{task.name}` declares no paper.")])
    blocks = [Text(f"Paper: {paper.title}.")] + ([Text(paper.note)] if paper.note else [])
    if not paper.results:
        blocks.append(Text("The paper's text has no table to compare: the sections below give the sweep's own "
                           "figures and cost."))
        return Section("The paper beside the sweep", blocks)
    rows = P.compare(paper, trials, evaluations, list(C.fields(task.config)),
                     column=lambda m: _column(task, m))
    other_data = False
    for table in dict.fromkeys(r["table"] for r in rows):
        lines = []
        for r in (r for r in rows if r["table"] == table):
            spread = f" ± {_num(r['spread'])}" if r["spread"] is not None else ""
            sweep = f"{_num(r['sweep'])}{spread}" if r["n"] else "not run"
            configs = f"{r['configurations']} configuration" + "s" * (r["configurations"] > 1)
            how = "" if not r["n"] else f"n={r['n']}, best of {configs}" if r["best"] else \
                f"n={r['n']}" + (f" over {configs}" if r["configurations"] > 1 else "")
            mark = r["n"] and r["sweep_data"] != r["paper_data"]
            other_data = other_data or bool(mark)
            data = f"{r['paper_data'] or '-'} / {r['sweep_data'] or '-'}" + (" (other data)" if mark else "")
            lines.append([r["row"], r["metric"], "figure only" if r["published"] is None else _num(r["published"]),
                          sweep, _num(r["difference"], signed=True), how, data,
                          f"{r['condition']}: {_ids(r['trials'])}" if r["n"] else r["condition"], r["note"]])
        blocks += [Heading(table), Table(["row", "metric", "paper", "sweep (mean ± sd)", "difference",
                                                 "trials used", "data: paper / sweep", "trials", "note"], lines)]
    blocks.append(Text("The sweep's value is the mean over the completed trials that match the row's condition "
                       "(± the sample standard deviation over its repeats); where the paper reports its best "
                       "setting, the mean of the best configuration. Difference: sweep - paper."))
    if other_data:
        blocks.append(Text("Other data: the row's trials ran on other data than the paper's, so its difference "
                           "checks the pipeline, not the paper's result."))
    return Section("The paper beside the sweep", blocks)


def pareto_front(points: pd.DataFrame, metric: str, mode: str) -> pd.DataFrame:
    """The rows no other row beats on both cost (``gmacs``, lower) and ``metric`` (by ``mode``)."""
    sign = 1 if mode == "max" else -1
    ordered = points.assign(_q=sign * points[metric]).sort_values(["gmacs", "_q"], ascending=[True, False])
    keep, best = [], -math.inf
    for index, q in ordered["_q"].items():
        if q > best:
            keep.append(index)
            best = q
    return points.loc[keep]


def _pareto_png(points: pd.DataFrame, front: pd.DataFrame, metric: str) -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.scatter(points["gmacs"], points[metric], s=14, c="#999", label="completed trials")
    ax.plot(front["gmacs"], front[metric], "o-", c="#c33", label="Pareto front")
    ax.set_xlabel("GMACs (one forward pass)")
    ax.set_ylabel(metric)
    ax.grid(alpha=.3)
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _cost_section(info: dict, trials: pd.DataFrame, task) -> Section:
    done = trials[trials["status"] == "completed"]
    fields = varying_fields(done, task)
    blocks = [Table(["", "min", "max", "sum"], [
        [name, _num(done[col].min()), _num(done[col].max()), _num(done[col].sum(min_count=1)) if summed else ""]
        for name, col, summed in (("parameters", "params", False), ("GMACs", "gmacs", False),
                                  ("training seconds", "train_seconds", True), ("GPU seconds", "gpu_seconds", True))
    ])]
    metrics, modes = info.get("metrics") or [], info.get("modes") or []
    if not metrics or not len(done):
        return Section("Cost", blocks + [Text("No completed trial with an objective: no Pareto front.")])
    metric, mode = metrics[0], modes[0]
    column = _column(task, metric)
    points = done[["trial_id", "gmacs", "params", "train_seconds", column, *fields]].copy()
    points[column] = pd.to_numeric(points[column], errors="coerce")
    points = points.dropna(subset=["gmacs", column])
    if points.empty:
        return Section("Cost", blocks + [Text(f"No completed trial has both GMACs and {metric}: no Pareto front.")])
    front = pareto_front(points, column, mode)
    blocks += [Text(f"Quality ({metric}, {mode}) against cost (GMACs): the {len(front)} of {len(points)} completed "
                    "trials no other trial beats on both."),
               Image("pareto.png", _pareto_png(points, front, column), f"{metric} against GMACs, Pareto front"),
               Table(["trial", *fields, metric, "GMACs", "parameters", "training s"],
                     [[r["trial_id"], *("-" if P.missing(r[k]) else str(r[k]) for k in fields), _num(r[column]),
                       _num(r["gmacs"]),
                       _num(r["params"]), _num(r["train_seconds"])] for r in front.to_dict("records")])]
    return Section("Cost and the quality-vs-GMACs Pareto front", blocks)


def build(target) -> tuple[Location, str, list[Section]]:
    """The sweep, the report's title and its sections."""
    sweep, info, trials, evaluations, task = _read(target)
    sections = [_what_ran(sweep, info, trials, task), _paper_section(task, trials, evaluations)]
    if not (trials["status"] == "completed").any():
        figures = [Text("No trial completed: no figure.")]
    elif task.plot is None:
        figures = [Text(f"Task `{task.name}` has no plot.")]
    else:
        try:
            figures = [Image(name, data, name) for name, data in
                       _draw(task, trials, evaluations, sweep).items() if name.endswith(".png")]
        except Exception as exc:  # noqa: BLE001 - a plot that fails must not lose the rest of the report
            figures = [Text(f"The task's plot failed: {type(exc).__name__}: {exc}")]
    sections += [Section("The task's figures", figures), _cost_section(info, trials, task)]
    spec = (info.get("resolved") or {}).get("spec")
    failed = trials[trials["status"] == "failed"]
    if len(failed):
        sections.append(Section("Failed trials", [Table(["trial", "cause"], [
            [r["trial_id"], error_cause(r["error"])] for r in failed.to_dict("records")])]))
    sections.append(Section("The resolved spec", [Code(json.dumps(spec, indent=1, default=str)) if spec else
                                                  Text("`sweep.json` holds no resolved spec (an older sweep).")]))
    return sweep, f"Report of sweep {info.get('name', sweep.name)} ({task.name})", sections


def write(target, out: str | None = None) -> tuple[Location, Location]:
    """Write the HTML page (default ``<sweep>/results/report.html``) and its Markdown twin beside it (same stem,
    ``.md``; its images in ``<stem>_files/``); returns their locations."""
    sweep, title, sections = build(target)
    page = location(out) if out else L.results(sweep) / "report.html"
    stem = page.name[:-5] if page.name.endswith(".html") else page.name
    twin, files = page.parent / f"{stem}.md", f"{stem}_files"
    images = [b for s in sections for b in s.blocks if isinstance(b, Image)]
    for index, image in enumerate(images):
        image.name = f"{index:02d}-{image.name}"
        _write(page.parent / files / image.name, image.png, "the report's images")
    _write(twin, to_markdown(title, sections, lambda image: f"{files}/{image.name}").encode(), "the report")
    _write(page, to_html(title, sections).encode(), "the report")
    return page, twin
