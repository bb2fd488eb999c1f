"""Turning a spec's search section into trials: the explicit grid, and Optuna samplers for the rest."""
from __future__ import annotations

import itertools
from typing import Any

from .spec import Spec
from .trial import SEED_KEY


def grid_points(spec: Spec) -> list[dict[str, Any]]:
    """Every trial of a grid sweep, in a fixed order: the product of the listed values, then the ``include``
    points; each repeated ``num_samples`` times with seeds ``seed, seed + 1, ...``."""
    keys = list(spec.space)
    combos = [dict(zip(keys, vals)) for vals in itertools.product(*(spec.space[k] for k in keys))]
    points = combos + [dict(p) for p in spec.include]
    return [{**spec.config, **p, SEED_KEY: spec.seed + rep} for rep in range(spec.num_samples) for p in points]


def planned_trials(spec: Spec) -> int:
    """How many trials the sweep runs: every grid point, or ``num_samples`` draws of a sampler."""
    return len(grid_points(spec)) if spec.algorithm == "grid" else spec.num_samples


def optuna_sampler(spec: Spec):
    import optuna
    if spec.algorithm == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed)
    if spec.algorithm == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=spec.seed)
    return optuna.samplers.TPESampler(seed=spec.seed, multivariate=True)


def optuna_space(spec: Spec) -> dict[str, Any]:
    return {k: d.to_optuna() for k, d in spec.space.items()}


def tune_search(spec: Spec, max_concurrent: int):
    """(param_space, search_alg) for Ray Tune, the search algorithm limiting trials running at once."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator
    if spec.algorithm == "grid":
        return {"_point": tune.grid_search(grid_points(spec))}, BasicVariantGenerator(max_concurrent=max_concurrent)
    space = {**spec.config, SEED_KEY: spec.seed, **{k: d.to_tune() for k, d in spec.space.items()}}
    if spec.algorithm == "random":
        return space, BasicVariantGenerator(random_state=spec.seed, max_concurrent=max_concurrent)
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch
    multi = spec.multi_objective
    searcher = OptunaSearch(metric=spec.metrics if multi else spec.metrics[0],
                            mode=spec.modes if multi else spec.modes[0], sampler=optuna_sampler(spec))
    return space, ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)
