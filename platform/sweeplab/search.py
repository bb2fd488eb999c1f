"""Turning a spec's search section into trials: the explicit grid, and Optuna samplers for the rest.

The samplers' space is define-by-run (:class:`ConditionalSpace`): a field is suggested only where its ``when``
conditions hold, as in Optuna's own conditional spaces, so no trial carries a value that does not apply to it. The
same space serves the in-process runner (``study.ask()`` then :func:`suggest`) and Ray Tune (``OptunaSearch``).
"""
from __future__ import annotations

import itertools
import warnings
from typing import Any

from . import config as C
from .spec import Distribution, Spec
from .trial import SEED_KEY, trial_seed


def grid_points(spec: Spec) -> list[dict[str, Any]]:
    """Every trial of a grid sweep, in a fixed order: the product of the listed values, then the ``include``
    points; all repeated ``num_samples`` times. An empty space is one trial of the fixed config, or none when
    there are ``include`` points (a sweep of listed trials only, e.g. the rows of an ablation table). Config values
    only (see :func:`seeded_grid` for the seeds)."""
    keys = list(spec.space)
    combos = ([dict(zip(keys, vals)) for vals in itertools.product(*(spec.space[k] for k in keys))]
              if keys or not spec.include else [])
    points = combos + [dict(p) for p in spec.include]
    return [{**spec.config, **p} for _ in range(spec.num_samples) for p in points]


def seeded_grid(spec: Spec) -> list[dict[str, Any]]:
    """The grid's trials, each with its seed under ``SEED_KEY`` (trial i gets ``trial_seed(spec.seed, i)``)."""
    return [{**p, SEED_KEY: trial_seed(spec.seed, i)} for i, p in enumerate(grid_points(spec))]


def planned_trials(spec: Spec) -> int:
    """How many trials the sweep runs: every grid point, or ``num_samples`` draws of a sampler."""
    return len(grid_points(spec)) if spec.algorithm == "grid" else spec.num_samples


def _extremes(dist: Distribution) -> tuple:
    """The values of a dimension that cross-field checks must see: each choice, or a range's two bounds."""
    if dist.kind == "choice":
        return dist.args
    low, high = dist.args
    return (low, high - 1) if dist.kind == "randint" else (low, high)


_MISSING = object()


def trial_points(spec: Spec) -> list[dict[str, Any]]:
    """The distinct config values a spec's trials can have, for checks before anything starts: each grid point;
    for a sampler, the fixed config with one dimension at a time set to each of its choices or range bounds."""
    if spec.algorithm == "grid":
        points = grid_points(spec)
    else:
        points = [{**spec.config, k: v} for k, d in spec.space.items() for v in _extremes(d)] or [spec.config]
    return list({tuple(sorted(p.items())): p for p in points}.values())


def check_points(spec: Spec) -> list[str]:
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


def _dependency_order(infos: dict[str, C.FieldInfo], names: list[str]) -> list[str]:
    """``names`` ordered so that every field comes after the fields its conditions name (through fields that are
    not searched too). A cycle is reported by :func:`sweeplab.config.active`."""
    order: list[str] = []

    def visit(name: str, path: tuple = ()) -> None:
        if name in order or name in path:
            return
        for other in infos[name].when:
            visit(other, path + (name,))
        if name in names:
            order.append(name)

    for name in names:
        visit(name)
    return order


def _suggest_one(trial, name: str, dist: Distribution) -> Any:
    if dist.kind == "choice":
        choices = list(dist.args)
        if all(c is None or isinstance(c, (bool, int, float, str)) for c in choices):
            return trial.suggest_categorical(name, choices)
        # Optuna keeps only scalar choices (tuples draw a warning, and cannot be stored): it picks an index
        return choices[trial.suggest_categorical(name, list(range(len(choices))))]
    low, high = dist.args
    if dist.kind == "randint":
        return trial.suggest_int(name, low, high - 1)  # Tune's randint excludes high, Optuna's includes it
    return trial.suggest_float(name, low, high, log=dist.kind == "loguniform")


class ConditionalSpace:
    """A spec's search space as an Optuna define-by-run function: ``space(trial)`` suggests the searched fields
    in dependency order, skipping a field whose conditions do not hold given the fixed config, the defaults and
    the values suggested so far, and returns the suggested values. Picklable (Tune saves its searcher with the
    experiment, for resume), so it holds the config class and plain data, not the task."""

    def __init__(self, spec: Spec):
        self.config_cls, self.fixed, self.space = spec.task.config, dict(spec.config), dict(spec.space)
        self.order = _dependency_order(C.fields(self.config_cls), list(self.space))
        self.seed = spec.seed

    def __call__(self, trial) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in self.order:
            if C.active(self.config_cls, {**self.fixed, **values})[name]:
                values[name] = _suggest_one(trial, name, self.space[name])
        # a constant of the define-by-run result: the seed of Optuna's trial number (counted on after a resume)
        return {**values, SEED_KEY: trial_seed(self.seed, trial.number)}


def suggest(spec: Spec, trial) -> dict[str, Any]:
    """One trial's searched values (an ``optuna.Trial``): only the fields that apply to it, plus its seed under
    ``SEED_KEY``."""
    return ConditionalSpace(spec)(trial)


def optuna_sampler(spec: Spec):
    import optuna
    if spec.algorithm == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed)
    if spec.algorithm == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=spec.seed)
    infos = C.fields(spec.task.config)
    # A conditional space changes from trial to trial: grouped multivariate TPE models each sub-space apart
    # instead of falling back to independent sampling (with a warning per trial).
    group = any(infos[k].when for k in spec.space)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # `group` is "experimental"
        return optuna.samplers.TPESampler(seed=spec.seed, multivariate=True, group=group)


def tune_search(spec: Spec, max_concurrent: int):
    """(param_space, search_alg) for Ray Tune, the search algorithm limiting trials running at once. A sampler's
    param_space holds only the fixed config; the searched values come from :class:`ConditionalSpace`."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator
    if spec.algorithm == "grid":
        return {"_point": tune.grid_search(seeded_grid(spec))}, BasicVariantGenerator(max_concurrent=max_concurrent)
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch
    multi = spec.multi_objective
    searcher = OptunaSearch(space=ConditionalSpace(spec), metric=spec.metrics if multi else spec.metrics[0],
                            mode=spec.modes if multi else spec.modes[0], sampler=optuna_sampler(spec))
    return dict(spec.config), ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)
