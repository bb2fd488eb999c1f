"""Running one sweep: the lifecycle every runner shares, behind one small backend interface.

``sweeplab run`` and ``resume``, the benchmarks and the tests all go through :func:`run_sweep`; the command line
only parses arguments and renders. The steps, in order:

1. :func:`prepare`: read and parse the spec (no I/O beyond the file), then resolve ``from_trials`` in storage and
   check the bucket of an ``s3://`` sweep. Problems are a :class:`~sweeplab.spec.SpecError` (exit 2) or a
   :class:`SweepError` naming the storage (exit 1).
2. :func:`run_sweep`: refuse a ``run`` over an existing sweep, a ``resume`` of nothing, a resume with the other
   runner (the sweep's trial ids are that runner's) and a resume whose spec changed (exit 2, every change listed);
   take the driver lock (:mod:`sweeplab.lock`) and check again under it; start the backend; write ``sweep.json``
   (:func:`sweeplab.store.write_sweep_info`: the plan, the fingerprint, the runner); run the trials; the backend
   compacts the tables at the end.

A backend (submitit's debug and cluster executors are the model: one interface, the in-process one being the
cluster one minus the cluster) is :class:`sweeplab.local.LocalBackend` (every trial in this process, pdb works)
or :class:`sweeplab.ray_runner.RayBackend` (Ray Tune, embedded or on a cluster).
"""
from __future__ import annotations

import dataclasses
import os
import shlex
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Protocol, Sequence

from . import budget, progress, store
from . import layout as L
from .artifacts import resolve_sources
from .lock import DriverLock
from .plan import Plan
from .results import sweep_location
from .fingerprint import changes_since, fingerprint, stored_fingerprint
from .spec import Spec, SpecError, load
from .storage import Location, check_bucket


class SweepError(Exception):
    """A sweep that cannot start or go on; ``code`` is the exit code (1 a runtime problem, 2 bad input)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


class Backend(Protocol):
    """What runs a sweep's trials. ``name`` (``local`` or ``ray``) is recorded in ``sweep.json``: trial ids are a
    runner's own, so a sweep is resumed by the runner that started it."""
    name: str

    def start(self, spec: Spec, say: Callable[[str], None]) -> None:
        """Get ready to run the spec's trials (connect to or start a cluster, check that a trial's resources can be
        met); :class:`SweepError` when it cannot, ``say`` for a warning."""

    def run(self, spec: Spec, plan: Plan, code_version: str, resume: bool, extensions: list[dict]) -> dict[str, int]:
        """Run (or continue) every trial of ``plan`` that has not completed (trial ``i`` with the seed
        ``trial_seed(spec.seed, i)``), record each one's end, compact the tables; returns counts (``trials``,
        ``failed``, ...). ``extensions`` (``sweep.json``'s) say where each growth of the plan starts."""

    def stop(self) -> None:
        """After :meth:`start` (whether or not the run succeeded): give the console back."""


@dataclasses.dataclass
class Outcome:
    counts: dict[str, int]

    @property
    def code(self) -> int:
        """The exit code: 1 when some trial failed."""
        return 1 if self.counts.get("failed") else 0


def is_spec_file(target: str | Path) -> bool:
    text = str(target)
    return not text.startswith("s3://") and Path(text).is_file() and Path(text).suffix in (".yaml", ".yml")


def sweep_of(target: str | Path | Location, overrides: list[str] = ()) -> Location:
    """A spec file (with its ``--set`` values, which may move the sweep: ``name``, ``storage``), a sweep folder or
    URI, or its ``results`` folder -> the sweep's location. Parsing reads nothing but the file."""
    if not isinstance(target, Location) and is_spec_file(target):
        return load(target, list(overrides)).sweep_dir
    return sweep_location(target)


def prepare(path: str | Path, overrides: list[str] = ()) -> Spec:
    """The spec of ``path`` ready to run: parsed, its ``from_trials`` resolved, its bucket reachable."""
    spec = resolve_sources(load(path, list(overrides)))
    if (problem := check_bucket(spec.sweep_dir)) is not None:  # a missing bucket or a dead endpoint: say so now
        raise SweepError(f"storage {spec.storage}: {problem}")
    return spec


def _storage_problem(sweep: Location) -> str | None:
    """Why the sweep's folder cannot hold a sweep (bad input: exit 2): inside another sweep's folder, or (local
    storage) under a file or where this user cannot create it."""
    folder = sweep
    while (folder := folder.parent).path not in ("", "/"):  # every folder above it (up to the root or bucket)
        if L.sweep_info(folder).exists():
            return f"storage: {sweep} is inside the sweep {folder}; give each sweep a folder of its own"
    if sweep.is_s3:
        return None  # a missing bucket or dead endpoint is refused by storage_problem in the spec's step
    path = Path(sweep.path)
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        return f"storage: {existing} is a file, not a folder (from the sweep folder {sweep})"
    try:  # a folder made and removed where the sweep's would be made (root passes every permission check)
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".sweeplab-probe-"))
    except OSError as exc:
        return f"storage: cannot create the sweep folder {sweep} under {existing}: {exc.strerror or exc}"
    return None


def resume_command(source: str, local: bool, overrides: Sequence[str] = ()) -> str:
    """The command that continues a sweep: its spec, the runner's flag and the --set items it was started with
    (``name`` or ``storage`` among them choose its folder)."""
    sets = f" --set {' '.join(map(shlex.quote, overrides))}" if overrides else ""
    return f"sweeplab resume {shlex.quote(source)}{' --local' if local else ''}{sets}"


def start_problem(spec: Spec, backend: Backend, resume: bool) -> str | None:
    """Why this sweep folder cannot be run (``run`` on a started sweep) or resumed (nothing to resume, or it was
    started by the other runner)."""
    sweep = spec.sweep_dir
    runner = store.sweep_runner(sweep)
    source = spec.source if spec.source != "<spec>" else "SPEC"
    hint = resume_command(source, runner == "local", spec.overrides)
    if resume and runner is None:
        return f"nothing to resume in {sweep} (start the sweep with `sweeplab run`)"
    if resume and runner != backend.name:  # trial ids are the runner's own: the other one would rerun every trial
        if runner == "local":
            return f"{sweep} was run with --local, whose trial ids it holds: resume it with --local (`{hint}`)"
        return f"{sweep} was run on Ray, whose trial ids it holds: resume it without --local (`{hint}`)"
    if not resume and runner is not None:
        return (f"{sweep} already holds this sweep: continue it with `{hint}` or choose another "
                "name (--set name=...) or storage")
    return None


GROWABLE = {"grid": ("space", "include", "num_samples"), "sampler": ("num_samples",)}  # what --extend may change


def _stored_plan(spec: Spec, info: dict) -> Plan:
    """The plan a sweep holds: stored in ``sweep.json``, or, for a sweep of the earlier layout, the grid of the spec
    it stored (its resolved form has the search section) or the spec's own."""
    if info.get("plan"):
        return Plan.from_json(info["plan"])
    stored = (info.get("resolved") or {}).get("spec")
    if stored and spec.algorithm == "grid":
        return Plan.of(SimpleNamespace(algorithm="grid", config=stored["config"], space=stored["space"],
                                       include=stored["include"], num_samples=stored["num_samples"]))
    return Plan.of(spec)


def plan_of(spec: Spec, info: dict | None, resume: bool, extend: bool) -> tuple[Plan, list[dict]]:
    """(the plan to run, the sweep's extensions): the spec's plan for a new sweep; the stored one for a resume,
    grown by what the spec adds for ``--extend``. SweepError (exit 2) with every change that would alter
    finished trials' meaning, or every trial the edit would drop."""
    info = info or {}
    if not resume:
        return Plan.of(spec), []
    extensions = list(info.get("extensions") or [])
    stored = info.get("resolved")
    allowed = GROWABLE["grid" if spec.algorithm == "grid" else "sampler"] if extend else ()
    if changed := changes_since(stored, spec, allowed):
        hint = ("an extension may only add grid values, include rows or repeats (num_samples) to a grid, or "
                "samples to a sampler" if extend else
                "restore those values, extend the sweep if the edit only adds trials (--extend), or run the new "
                "spec as a new sweep (--set name=...)")
        raise SweepError(f"cannot {'extend' if extend else 'resume'} {spec.sweep_dir}: the spec changed since the "
                         "sweep started, and its trials would mix two sweeps:\n" +
                         "".join(f"  - {c}\n" for c in changed) + hint, code=2)
    plan = _stored_plan(spec, info)
    if not extend:
        return plan, extensions
    grown, problems = plan.extend(Plan.of(spec), spec.task.config)
    if problems:
        raise SweepError(f"cannot extend {spec.sweep_dir}:\n" + "".join(f"  - {p}\n" for p in problems), code=2)
    if grown.samples > plan.samples:
        extensions.append({"first": plan.samples, "added": grown.samples - plan.samples, "at": store.now(),
                           "fingerprint": fingerprint(spec)})
    return grown, extensions


def run_sweep(spec: Spec, backend: Backend, *, resume: bool = False, extend: bool = False,
              say: Callable[[str], None] = print) -> Outcome:
    """Run, resume or extend one sweep (see the module docstring for the steps). :class:`SweepError` for what
    stops it before any trial runs; :class:`sweeplab.lock.LockHeld` when another driver holds the sweep."""
    if extend and not resume:
        raise SweepError("--extend grows a sweep that exists: use it with `sweeplab resume`", code=2)
    if (problem := _storage_problem(spec.sweep_dir)) is not None:
        raise SweepError(problem, code=2)
    if (problem := start_problem(spec, backend, resume)) is not None:  # at once, before any wait for the lock
        raise SweepError(problem)
    plan_of(spec, store.read_sweep_info(spec.sweep_dir), resume, extend)  # a refused edit: before the lock
    try:
        lock = DriverLock(spec.sweep_dir)
    except ValueError as exc:  # a bad $SWEEPLAB_LOCK_TTL_S
        raise SweepError(str(exc), code=2) from None
    with lock:
        stop = progress.StopRequest(spec.sweep_dir)
        stop.clear()  # a request left for a driver that died before it saw it: `stop` asks live drivers only
        budget.clear(spec.sweep_dir)  # this driver checks the (maybe changed) budget again
        if (problem := start_problem(spec, backend, resume)) is not None:  # another driver may have run it meanwhile
            raise SweepError(problem)
        info = store.read_sweep_info(spec.sweep_dir)
        plan, extensions = plan_of(spec, info, resume, extend)
        say(f"sweep {spec.name}: task {spec.task.name}, search {spec.algorithm}, results in {spec.sweep_dir}")
        if extend:
            say(f"extension: {plan.samples - info['planned_trials']} new trial(s), {plan.samples} planned in all")
        try:
            backend.start(spec, say)
            store.write_sweep_info(spec, plan, stored_fingerprint(spec), backend.name, extensions)
            counts = backend.run(spec, plan, store.code_version(), resume, extensions)
        finally:
            backend.stop()
        if stop.file.exists():
            stop.clear()
            say(f"stopped on request (sweeplab stop): the running trials keep their last checkpoint; "
                f"`{resume_command(spec.source, backend.name == 'local', spec.overrides)}` continues")
        if (why := store.budget_stop(spec.sweep_dir)) is not None:
            say(f"stopped: {why}")
        return Outcome(counts)


__all__ = ["Backend", "Outcome", "SpecError", "SweepError", "prepare", "resume_command", "run_sweep", "start_problem",
           "sweep_of"]
