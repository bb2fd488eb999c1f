"""Turning a spec's search section into trials: the explicit grid, and Optuna samplers for the rest.

The samplers' space is define-by-run (:class:`ConditionalSpace`): a field is suggested only where its ``when``
conditions hold, as in Optuna's own conditional spaces, so no trial carries a value that does not apply to it. The
same space serves the in-process runner (``study.ask()`` then :func:`suggest`) and Ray Tune (``OptunaSearch``).
Optuna and Ray are imported inside the functions that use them (deferred: heavy imports a grid sweep, the parser
and the other commands never need).
"""
from __future__ import annotations

import importlib
import pickle
import warnings
from typing import Any

from . import config as C
from .plan import INDEX_KEY, SEED_KEY, Distribution, Plan, split_params, trial_index, trial_seed
from .spec import Spec


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
        return {**values, SEED_KEY: trial_seed(self.seed, trial.number), INDEX_KEY: trial.number}


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


# How a Tune trial's config carries its values. Tune's progress table takes its columns from the param space's
# domains, so the space holds one domain per shown field (:func:`shown_fields`), for the table only: the searcher
# behind :func:`_named_limiter` sets every shown field of each trial it suggests, and :func:`tune_trial_params` reads
# back the values the trial runs with. A grid trial carries its index into the plan (:meth:`Plan.seeded`) under
# ``POINT_KEY`` (a grid with include points is not a product of per-field grids); a sampled trial carries its
# suggested values, the shown fields that do not apply to it (conditions) set to None for the table and listed
# under ``ABSENT_KEY``.
POINT_KEY = "_point"
ABSENT_KEY = "_absent"


def shown_fields(spec: Spec) -> list[str]:
    """The fields Tune's progress table shows by name: the searched ones, then the others the include points set."""
    names = list(spec.space)
    for point in spec.include:
        names += [k for k in point if k not in names]
    return names


def tune_grid(spec: Spec, plan: Plan) -> list[dict[str, Any]] | None:
    """The grid a Tune trial's ``POINT_KEY`` indexes (the plan's points with their seeds); None for a sampler."""
    return plan.seeded(spec.seed) if plan.points is not None else None


def _tune_domain(dist: Distribution):
    from ray import tune
    if dist.kind == "choice":
        return tune.choice(list(dist.args))
    return {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}[dist.kind](*dist.args)


def _grid_searcher(first: int, stop: int):
    """A Tune searcher suggesting the plan's trials ``first`` to ``stop - 1`` in order, each as its index; saved
    and restored with the experiment (for ``sweeplab resume``)."""
    from ray.tune.search import Searcher

    class GridSearcher(Searcher):
        def __init__(self):
            super().__init__()
            self.next = first

        def suggest(self, trial_id: str):
            if self.next >= stop:
                return Searcher.FINISHED
            self.next += 1
            return {POINT_KEY: self.next - 1}

        def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
            pass

        def save(self, checkpoint_path: str) -> None:
            with open(checkpoint_path, "wb") as f:
                pickle.dump(self.next, f)

        def restore(self, checkpoint_path: str) -> None:
            with open(checkpoint_path, "rb") as f:
                self.next = pickle.load(f)

    return GridSearcher()


def _named_limiter(searcher, max_concurrent: int, shown: list[str], grid: list[dict[str, Any]] | None,
                   gate: str):
    """A ConcurrencyLimiter whose param space holds the shown fields' domains for the table: the wrapped searcher
    sees the fixed config only (a define-by-run space is its own; the grid searcher has none), and each suggestion
    is given every shown field's value (from its grid point, or as suggested). It suggests nothing while the sweep
    ``gate`` (its storage URI) is closed (:func:`close_gate`)."""
    from ray.tune.search import ConcurrencyLimiter, Searcher

    class NamedLimiter(ConcurrencyLimiter):
        def set_search_properties(self, metric, mode, config, **spec) -> bool:
            super().set_search_properties(metric, mode, {k: v for k, v in config.items() if k not in shown}, **spec)
            return True  # the domains of the shown fields are for the table, not for the searcher

        def suggest(self, trial_id: str):
            # the registry of this process, looked up at run time: the class is pickled with the experiment
            if importlib.import_module("sweeplab.search").gate_closed(gate):
                # the budget is spent: wait for the running trials, then end the experiment (a resume reopens it,
                # sweeplab.ray_runner._reopen_search)
                return None if self.live_trials else Searcher.FINISHED
            values = super().suggest(trial_id)
            if not isinstance(values, dict):  # None (wait) or Searcher.FINISHED
                return values
            if POINT_KEY in values:
                return {**values, **{k: grid[values[POINT_KEY]].get(k) for k in shown}}
            absent = [k for k in shown if k not in values]
            return {**values, **dict.fromkeys(absent), ABSENT_KEY: absent}

    return NamedLimiter(searcher, max_concurrent=max_concurrent)


_CLOSED: set[str] = set()  # sweeps (by storage URI) whose searchers suggest no more trials in this process


def close_gate(sweep: str) -> None:
    """Let the searchers of ``sweep`` start no more trials (its GPU budget is spent, :mod:`sweeplab.budget`)."""
    _CLOSED.add(str(sweep))


def open_gate(sweep: str) -> None:
    _CLOSED.discard(str(sweep))


def gate_closed(sweep: str) -> bool:
    return str(sweep) in _CLOSED


def tune_search(spec: Spec, plan: Plan, max_concurrent: int, first: int = 0, study: tuple | None = None):
    """(param_space, search_alg) for Ray Tune: the fixed config, the shown fields' domains, and a searcher (the
    plan's grid trials from ``first`` on, in order; or Optuna over :class:`ConditionalSpace`, continuing the
    ``study`` of :func:`warm_study` when given) limited to ``max_concurrent`` trials at once."""
    shown = shown_fields(spec)
    if plan.points is not None:
        grid = tune_grid(spec, plan)
        values = {k: tuple({repr(v): v for v in (p.get(k) for p in grid)}.values()) for k in shown}
        return ({k: _tune_domain(Distribution("choice", v)) for k, v in values.items()},
                _named_limiter(_grid_searcher(first, len(grid)), max_concurrent, shown, grid,
                               str(spec.sweep_dir)))
    from ray.tune.search.optuna import OptunaSearch
    multi = spec.multi_objective
    storage, name = study or (None, None)
    searcher = OptunaSearch(space=ConditionalSpace(spec), metric=spec.metrics if multi else spec.metrics[0],
                            mode=spec.modes if multi else spec.modes[0], sampler=optuna_sampler(spec),
                            storage=storage, study_name=name)
    space = {**spec.config, **{k: _tune_domain(spec.space[k]) for k in shown}}
    return space, _named_limiter(searcher, max_concurrent, shown, None, str(spec.sweep_dir))


def _optuna_distribution(dist: Distribution):
    """The Optuna distribution :func:`_suggest_one` draws ``dist`` from (a choice of non-scalars: their index)."""
    import optuna
    if dist.kind == "choice":
        choices = list(dist.args)
        scalar = all(c is None or isinstance(c, (bool, int, float, str)) for c in choices)
        return optuna.distributions.CategoricalDistribution(choices if scalar else list(range(len(choices))))
    low, high = dist.args
    if dist.kind == "randint":
        return optuna.distributions.IntDistribution(low, high - 1)
    return optuna.distributions.FloatDistribution(low, high, log=dist.kind == "loguniform")


def warm_study(spec: Spec, rows: list[dict[str, Any]]) -> tuple:
    """(storage, study name) of an Optuna study holding a sweep's finished trials, in trial order: what an
    extension's sampler continues from (TPE models them; the next trial number, and so seed, follows theirs).
    ``rows`` are the trials' rows of the ``trials`` table (completed ones give their objective values, stopped
    ones are pruned, failed ones failed)."""
    import optuna
    storage = optuna.storages.InMemoryStorage()
    name = f"sweeplab-{spec.name}"
    study = optuna.create_study(storage=storage, study_name=name, sampler=optuna_sampler(spec),
                                directions=["maximize" if m == "max" else "minimize" for m in spec.modes])
    state = optuna.trial.TrialState
    for row in rows:
        params, dists = {}, {}
        for key, dist in spec.space.items():
            value = row.get(key)
            if value is None:
                continue  # the field did not apply to this trial
            if dist.kind == "choice" and not all(c is None or isinstance(c, (bool, int, float, str))
                                                 for c in dist.args):
                value = [",".join(map(str, c)) if isinstance(c, tuple) else c for c in dist.args].index(value)
            params[key], dists[key] = value, _optuna_distribution(dist)
        values = [row.get(m) for m in spec.metrics]
        done = row["status"] == "completed" and all(v is not None for v in values)
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=dists, values=values if done else None,
            state=state.COMPLETE if done else state.PRUNED if row["status"] == "stopped" else state.FAIL))
    return storage, name


def tune_trial_point(config: dict[str, Any], grid: list[dict[str, Any]] | None) -> int | None:
    """A Tune trial's index in the plan (its ``point``), from its config as :func:`tune_search` encodes it."""
    return config[POINT_KEY] if POINT_KEY in config else trial_index(config)


def tune_trial_params(config: dict[str, Any], grid: list[dict[str, Any]] | None) -> tuple[dict[str, Any], int]:
    """A Tune trial's (config values, seed) from its config as :func:`tune_search` encodes it; ``grid`` is the
    plan's seeded points (:func:`tune_grid`; None for a sampler)."""
    if POINT_KEY in config:
        return split_params(grid[config[POINT_KEY]])
    absent = set(config.get(ABSENT_KEY, ()))
    return split_params({k: v for k, v in config.items() if k not in absent})
