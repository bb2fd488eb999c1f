"""Running a sweep on Ray: Tune schedules the trials; each trial runs light or under Ray Train.

A trial with one worker is a light trial (:mod:`sweeplab.ray_light`): it runs in its Tune trial's own actor,
actors reused from trial to trial. A trial with ``workers > 1`` runs a Ray Train data-parallel group
(:mod:`sweeplab.ray_train`). Each trial's rank 0 writes its evaluation rows to storage; the sweep's driver process
keeps each trial's records (:mod:`sweeplab.ray_records`), stops starting trials once ``budget.gpu_hours`` is spent
(:mod:`sweeplab.budget`) and compacts the tables when the sweep ends; each extension of the sweep is a Tune
experiment of its own (:func:`build_tuner`). Storage is a shared folder or an ``s3://`` prefix: the core builds the
filesystem (:mod:`sweeplab.storage`) and hands it to Tune and Train.

Ray is imported inside the functions that use it (deferred: a heavy import that ``--local`` sweeps and the other
commands never need).
"""
from __future__ import annotations

import math
import os
import pickle
from typing import Callable

from . import progress, ray_light, ray_train, store
from . import layout as L
from .plan import Plan
from .ray_cluster import AUTOSCALER_ENV, RayOutput, cluster_nodes, init_ray, log_file, unplaceable
from .ray_records import results_callback
from .search import open_gate, tune_search, warm_study
from .service import SweepError
from .spec import Spec
from .storage import Location, ray_storage


REUSE_ACTORS = True  # light trials reuse Tune's actors (bench/overhead.py measures them without, too)


def trial_kind(spec: Spec) -> str:
    """The Tune trainable a new experiment of the sweep runs: light with one worker, Ray Train with more."""
    return ray_light.NAME if spec.workers == 1 else ray_train.NAME


def _stored_kind(where: Location) -> str:
    """The trainable a saved Tune experiment was started with (a sweep started before light trials: Ray Train)."""
    try:
        state = pickle.loads(L.tune_state(where).read_bytes())  # the Tuner's state (a dict)
    except (OSError, pickle.UnpicklingError, AttributeError, ImportError):
        return ray_train.NAME
    return (state.get("__trainable_name") if isinstance(state, dict) else None) or ray_train.NAME


def _reopen_search(where: Location) -> None:
    """Let a saved experiment's search go on: one that a spent budget ended (its searcher said it had finished,
    :func:`sweeplab.search.close_gate`) suggests its remaining trials again; one that ran out of trials says so
    again at once."""
    import ray.cloudpickle as cloudpickle
    for saved in L.tune_search_states(where):
        state = cloudpickle.loads(saved.read_bytes())
        if isinstance(state, dict) and state.get("finished"):
            saved.write_bytes(cloudpickle.dumps({**state, "finished": False}))


def _trainable(kind: str, spec: Spec, plan: Plan, code_version: str):
    make = ray_light.make_light_trainable if kind == ray_light.NAME else ray_train.make_train_trainable
    return make(spec, plan, code_version)


def _scheduler(spec: Spec):
    if spec.scheduler["type"] != "asha":
        return None
    from ray.tune.schedulers import ASHAScheduler
    s = spec.scheduler  # every ASHA setting filled in by the parser (spec.ASHA_DEFAULTS)
    metric, mode = s.get("metric", spec.metrics[0]), s.get("mode", spec.modes[0])
    if not spec.multi_objective and (metric, mode) == (spec.metrics[0], spec.modes[0]):
        metric = mode = None  # Tune refuses a scheduler that repeats the TuneConfig's metric and mode
    return ASHAScheduler(metric=metric, mode=mode, time_attr=s["time_attr"], max_t=s["max_t"],
                         grace_period=s["grace_period"], reduction_factor=s["reduction_factor"])


def _max_concurrent(spec: Spec) -> int:
    import ray
    if spec.max_concurrent:
        return spec.max_concurrent
    avail = ray.cluster_resources()
    per_trial = [avail.get("CPU", 1) / max(spec.cpus * spec.workers, 1e-9)]
    if spec.gpus:
        per_trial.append(avail.get("GPU", 0) / (spec.gpus * spec.workers))
    return max(1, math.floor(min(per_trial)))


def build_tuner(spec: Spec, plan: Plan, code_version: str, part: int = 0, first: int = 0,
                stop: int | None = None, say: Callable[[str], None] = print):
    """The Tune experiment of the sweep's trials ``first`` to ``stop - 1``: part 0 (the sweep's own, in its folder)
    or the ``part``-th extension (``sweeplab resume --extend``: Ray's ``Tuner.restore`` cannot add trials, so each
    extension is an experiment of its own). Restored when Tune saved it, so a resume continues it."""
    from ray import tune
    stop = plan.samples if stop is None else stop
    study = None
    if plan.points is None and part > 0:  # a sampler told the finished trials: TPE continues from them
        study = warm_study(spec, sorted(store.trial_rows(spec.sweep_dir).values(), key=lambda r: r["trial_id"]))
    param_space, search_alg = tune_search(spec, plan, _max_concurrent(spec), first=first, study=study)
    where = L.tune_experiment(spec.sweep_dir, part)
    if L.tune_state(where).exists():  # without it Tune never saved the experiment: start it afresh
        # An experiment is resumed with the kind of trials it started with (Tune keeps each trial's resource
        # request): a sweep started before light trials goes on under Ray Train, its extensions run light.
        trainable = _trainable(_stored_kind(where), spec, plan, code_version)
        _reopen_search(where)
        restore = {"path": where.path, "storage_filesystem": where.fs} if where.is_s3 else {"path": where.path}
        tuner = tune.Tuner.restore(**restore, trainable=trainable, resume_errored=True, param_space=param_space)
        # The restored RunConfig holds the callback pickled (by value) when the sweep started, whose code calls the
        # core as it was then; this code's callback records the trials instead (Tuner.restore takes no callbacks,
        # so the restored run config is updated in place).
        tuner._local_tuner.get_run_config().callbacks = [results_callback(spec, plan, say)]
        return tuner
    multi, kind = spec.multi_objective, trial_kind(spec)
    tune_config = tune.TuneConfig(
        search_alg=search_alg, scheduler=_scheduler(spec), num_samples=stop - first,
        metric=None if multi else spec.metrics[0], mode=None if multi else spec.modes[0],
        reuse_actors=REUSE_ACTORS and kind == ray_light.NAME)
    run_config = tune.RunConfig(name=where.name, **ray_storage(where.parent),
                                failure_config=tune.FailureConfig(max_failures=spec.retries),
                                checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.checkpoints["keep"]),
                                callbacks=[results_callback(spec, plan, say)], verbose=1)
    return tune.Tuner(_trainable(kind, spec, plan, code_version), param_space=param_space, tune_config=tune_config,
                      run_config=run_config)


def run_ray(spec: Spec, code_version: str, plan: Plan | None = None, extensions: list[dict] = (),
            say: Callable[[str], None] = print) -> dict[str, int]:
    """Run (or continue) the sweep's Tune experiments in order: its own, then one per extension (each
    ``{"first": trial index, ...}`` as :mod:`sweeplab.service` records it); then compact the tables."""
    # The sweep's objective is reported once, after evaluation; intermediate reports carry training metrics only.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    plan = plan or Plan.of(spec)
    bounds = [0, *(e["first"] for e in extensions), plan.samples]
    failed, stop = 0, progress.StopRequest(spec.sweep_dir)
    open_gate(str(spec.sweep_dir))
    for part in range(len(bounds) - 1):
        if stop.file.exists() or store.budget_stop(spec.sweep_dir) is not None:
            break
        if bounds[part + 1] > bounds[part]:
            grid = build_tuner(spec, plan, code_version, part, bounds[part], bounds[part + 1], say).fit()
            failed += sum(1 for r in grid if r.error is not None)
    counts = store.compact(spec.sweep_dir)
    counts["failed"] = failed
    return counts


class RayBackend:
    """:class:`sweeplab.service.Backend` running trials on Ray Tune: an embedded local Ray, or the cluster at
    ``address`` (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``)."""
    name = "ray"

    def __init__(self, address: str | None = None, verbose: bool = False):
        self.address, self.verbose = address, verbose
        self.output: RayOutput | None = None
        self.say: Callable[[str], None] = print

    def start(self, spec: Spec, say: Callable[[str], None]) -> None:
        """Send Ray's and Tune's output to a log file (unless ``verbose``: :class:`sweeplab.ray_cluster.RayOutput`),
        reach Ray, then check that one trial's resources fit the cluster's nodes: a request that can never be
        met would wait forever (Tune keeps the trial pending). A cluster that grows on demand
        (``SWEEPLAB_AUTOSCALER=1``) is only warned about."""
        self.say = say
        if not self.verbose:
            self.output = RayOutput(log_file(spec.name)).__enter__()
            self.say = self.output.say
            self.say(f"Ray's and Tune's output: {self.output.path} (--verbose shows it here)")
        say = self.say
        if (problem := init_ray(self.address)) is not None:
            raise SweepError(problem)
        if (problem := unplaceable(cluster_nodes(), spec.cpus, spec.gpus, spec.workers)) is None:
            return
        if self.address and os.environ.get(AUTOSCALER_ENV):
            say(f"warning: {problem.removesuffix(': no trial could ever start')}; waiting for the autoscaler "
                f"({AUTOSCALER_ENV} is set)")
            return
        where = "this machine" if not self.address else f"the cluster at {self.address}"
        raise SweepError(f"{problem} on {where}; change `resources`"
                         + (f" (or set {AUTOSCALER_ENV}=1 when it autoscales)" if self.address else ""), code=2)

    def run(self, spec: Spec, plan: Plan, code_version: str, resume: bool, extensions: list[dict]) -> dict[str, int]:
        return run_ray(spec, code_version, plan, extensions, say=self.say)

    def stop(self) -> None:
        if self.output is not None:
            self.output.__exit__(None, None, None)
            self.output = None


