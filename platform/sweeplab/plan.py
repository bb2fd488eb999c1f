"""The plan of a sweep: which trials it runs and with which seeds, from its search section alone.

Pure functions over a parsed spec's search data (``config``, ``algorithm``, ``space``, ``include``,
``num_samples``, ``seed``, ``task.config``): no Optuna, no Ray, no storage. The parser checks every planned point
with them (:func:`check_points`), the runners number their trials by them, and the seeds that make a trial
reproducible live here (:func:`trial_seed`). A trial's planned identity is its point: its config values and, for a
grid, its index in :func:`grid_points`' order (repeats included).
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
from typing import Any

import numpy as np

from . import config as C

DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")


@dataclasses.dataclass(frozen=True)
class Distribution:
    """A random search dimension: ``{uniform: [lo, hi]}``, ``{loguniform: [lo, hi]}``, ``{randint: [lo, hi]}``
    (hi exclusive, like Tune), or ``{choice: [a, b, ...]}``."""
    kind: str
    args: tuple


SEED_KEY = "_seed"  # a trial's seed travels with its config under this key (not a config name)
INDEX_KEY = "_index"  # and its index in the plan (the ``point`` column) under this one


def trial_seed(spec_seed: int, number: int) -> int:
    """The seed of the sweep's trial ``number`` (the grid's order, or the sampler's trial number): different for
    every trial, and the same for the same spec seed and trial on both runners (numpy's ``SeedSequence`` mixes the
    two, so nearby spec seeds do not share trial seeds)."""
    return int(np.random.SeedSequence([spec_seed, number]).generate_state(1)[0])


def split_params(params: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """A trial's params -> (config values, seed)."""
    return {k: v for k, v in params.items() if not k.startswith("_")}, int(params[SEED_KEY])


def trial_index(params: dict[str, Any]) -> int | None:
    """A trial's index in the plan, from its params (None for params made before it was carried)."""
    index = params.get(INDEX_KEY)
    return None if index is None else int(index)


# Every function below takes a parsed spec (:class:`sweeplab.spec.Spec`) by its attributes only, so this module stays
# below the parser that uses it.


def grid_points(spec: "Spec", repeats: int | None = None) -> list[dict[str, Any]]:
    """Every trial of a grid sweep, in a fixed order: the product of the listed values, then the ``include``
    points; all repeated ``num_samples`` times. An empty space is one trial of the fixed config, or none when
    there are ``include`` points (a sweep of listed trials only, e.g. the rows of an ablation table). Config values
    only (:meth:`Plan.seeded` adds the seeds). ``repeats`` replaces ``num_samples``."""
    keys = list(spec.space)
    combos = ([dict(zip(keys, vals)) for vals in itertools.product(*(spec.space[k] for k in keys))]
              if keys or not spec.include else [])
    points = combos + [dict(p) for p in spec.include]
    return [{**spec.config, **p} for _ in range(spec.num_samples if repeats is None else repeats) for p in points]


MAX_TRIALS = 100_000  # the most trials a sweep may plan (its plan is kept in sweep.json; the README says so)


def planned_trials(spec: "Spec") -> int:
    """How many trials the sweep runs: every grid point, or ``num_samples`` draws of a sampler, counted without
    building a point (a space of a billion is refused in no time and no memory)."""
    if spec.algorithm != "grid":
        return spec.num_samples
    combos = math.prod(len(spec.space[k]) for k in spec.space) if spec.space or not spec.include else 0
    return (combos + len(spec.include)) * spec.num_samples


def plan_problem(spec: "Spec") -> str | None:
    """Why the sweep plans too many trials (:data:`MAX_TRIALS`), or None."""
    if (planned := planned_trials(spec)) > MAX_TRIALS:
        return (f"search: {planned:,} trials planned, more than the {MAX_TRIALS:,} a sweep may hold (narrow the space "
                "or split it over several sweeps)")
    return None


def _extremes(dist: Distribution) -> tuple:
    """The values of a dimension that cross-field checks must see: each choice, or a range's two bounds."""
    if dist.kind == "choice":
        return dist.args
    low, high = dist.args
    return (low, high - 1) if dist.kind == "randint" else (low, high)


_MISSING = object()


def trial_points(spec: "Spec") -> list[dict[str, Any]]:
    """The distinct config values a spec's trials can have, for checks before anything starts: each grid point;
    for a sampler, the fixed config with one dimension at a time set to each of its choices or range bounds."""
    if spec.algorithm == "grid":
        points = grid_points(spec, repeats=1)  # repeats add no distinct point
    else:
        points = [{**spec.config, k: v} for k, d in spec.space.items() for v in _extremes(d)] or [spec.config]
    return list({tuple(sorted(p.items())): p for p in points}.values())


def check_points(spec: "Spec") -> list[str]:
    """The config's cross-field problems (its ``check``) on every point of :func:`trial_points`. Each distinct
    problem is reported once: as a ``config`` problem when every point has it, else with the values of the first
    point that has it."""
    if getattr(spec.task.config, "check", None) is None:
        return []
    unique = trial_points(spec)
    found: dict[str, list[dict]] = {}
    for point in unique:  # values already coerced: the dataclass's own check is all that is left of C.build
        for problem in spec.task.config(**point).check():
            found.setdefault(problem, []).append(point)
    out = []
    for problem, where in found.items():
        varied = {k: v for k, v in where[0].items() if spec.config.get(k, _MISSING) != v}
        if len(where) == len(unique) or not varied:
            out.append(f"config: {problem}")
        else:
            out.append(f"search: {problem} (in the trial with {', '.join(f'{k}={v}' for k, v in varied.items())})")
    return out


# ---------------------------------------------------------------- the stored plan, and growing it


def _canonical(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=list)


def identity(config_cls: type, values: dict[str, Any]) -> str:
    """What makes two planned points the same trial: the full config they run (defaults filled in, a field that
    does not apply null), as canonical JSON: the config columns of the trial's row. Setting a value to its default
    explicitly does not make another trial."""
    return _canonical(C.scalar_columns(C.build(config_cls, values)))


@dataclasses.dataclass(frozen=True)
class Plan:
    """The trials a sweep runs, in trial order: trial ``i`` is the ``i``-th point (a grid) or sampler draw, with
    the seed ``trial_seed(spec.seed, i)``. A trial's identity is its point: its config values and, among points
    with the same values (repeats of ``num_samples``, an ``include`` row equal to a grid point), which occurrence
    it is. ``sweep.json`` keeps the plan, so a sweep whose spec grew (``sweeplab resume --extend``) keeps every
    existing trial's index and seed and appends the new points."""
    points: tuple[dict[str, Any], ...] | None  # a grid's points (config values); None for a sampler
    samples: int                               # how many trials: len(points) for a grid, num_samples for a sampler

    @classmethod
    def of(cls, spec: "Spec") -> "Plan":
        if spec.algorithm == "grid":
            points = tuple(grid_points(spec))
            return cls(points, len(points))
        return cls(None, spec.num_samples)

    def seeded(self, seed: int) -> list[dict[str, Any]]:
        """The grid's trials, each with its seed under ``SEED_KEY`` and its index under ``INDEX_KEY``."""
        return [{**p, SEED_KEY: trial_seed(seed, i), INDEX_KEY: i} for i, p in enumerate(self.points or ())]

    def to_json(self) -> dict[str, Any]:
        return {"points": json.loads(_canonical(list(self.points))) if self.points is not None else None,
                "samples": self.samples}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "Plan":
        points = doc.get("points")
        return cls(tuple(points) if points is not None else None, int(doc["samples"]))

    def extend(self, new: "Plan", config_cls: type) -> tuple["Plan", list[str]]:
        """This plan with the points of ``new`` it lacks appended (each existing point keeps its index and so its
        seed), or the problems that forbid it: an extension only adds trials. Points are compared by
        :func:`identity` and, among equal ones, by occurrence (the repeats of ``num_samples``)."""
        if (self.points is None) != (new.points is None):
            return self, ["search.algorithm: an extension keeps the search algorithm"]
        if self.points is None:
            if new.samples < self.samples:
                return self, [f"search.num_samples: {self.samples} -> {new.samples} (an extension only adds trials)"]
            return new, []
        wanted: dict[tuple[str, int], dict[str, Any]] = {}
        seen: dict[str, int] = {}
        for point in new.points:
            key = identity(config_cls, point)
            seen[key] = seen.get(key, 0) + 1
            wanted[(key, seen[key])] = point
        kept, seen = [], {}
        for point in self.points:
            key = identity(config_cls, point)
            seen[key] = seen.get(key, 0) + 1
            kept.append((key, seen[key]))
        missing = [k for k in kept if k not in wanted]
        if missing:
            return self, [f"the edit removes {len(missing)} planned trial(s), e.g. {missing[0][0]} (an extension "
                          "only adds trials: add values, include rows or repeats)"]
        old = set(kept)
        added = tuple(point for key, point in wanted.items() if key not in old)
        return Plan(tuple(self.points) + added, len(self.points) + len(added)), []
