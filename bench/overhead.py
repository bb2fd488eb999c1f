"""Per-trial overhead of sweeplab's Ray trials against bare Ray Tune, in one run.

Every arm runs the same trivial training function (``--reports`` SGD steps on a 10x1 linear model, each reported;
5 by default) in N trials, one at a time (concurrency 1: what is measured is each trial's own start-up and
bookkeeping), 1 CPU per worker, on the same embedded Ray, timed end to end (``Tuner.fit`` or the run service):

* ``bare``: a plain Tune function trainable (Ray Tune's own examples), actors not reused (Tune's default);
* ``bare-reuse``: the same with ``reuse_actors=True``;
* ``bare-train``: a Tune function per trial that starts a one-worker ``TorchTrainer`` with ``TuneReportCallback``
  (Ray Train V2): the documented Tune + Train pattern, sweeplab's path before light trials;
* ``light``: the function registered as a task, run by sweeplab's Ray runner as light trials (spec validation,
  config building, cost counting, compute columns, the store's records, Parquet tables included), actors reused;
* ``light-noreuse``: the same with actor reuse off, against ``bare``;
* ``multi``: sweeplab with ``resources.workers: 2`` (a Ray Train group of two gloo ranks per trial).

Prints seconds per trial for each arm (the best of ``--repeats`` alternating runs) and the ratios the targets are
about: ``light / bare-reuse`` and ``light-noreuse / bare`` (target: at most 1.2 each). ``--arms`` picks arms (the
Train ones take ~15 s a trial on 2 cores). ``--smoke`` runs one trial of one report per arm, once (about a
minute): it proves every path runs and says nothing about the targets. Usage:
    .venv/bin/python bench/overhead.py [--trials 20] [--repeats 3] [--reports 5] [--arms bare,light,...]
    .venv/bin/python bench/overhead.py --smoke
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import dataclass

import torch

from sweeplab.config import param
from sweeplab.task import Evaluation, Task, register_task

SMOKE = {"trials": 1, "repeats": 1, "reports": 1}  # --smoke: one trial an arm
ARMS = ("bare", "bare-reuse", "bare-train", "light", "light-noreuse", "multi")
TARGETS = (("light", "bare-reuse"), ("light-noreuse", "bare"))  # (ours, anchor): ratio at most 1.2
TARGET = 1.2


@dataclass(frozen=True)
class TrivialConfig:
    lr: float = param(0.1, "learning rate", low=0.0)
    steps: int = param(5, "SGD steps, each reported", low=1)


def _fit(lr: float, steps: int, report) -> float:
    torch.manual_seed(0)
    model = torch.nn.Linear(10, 1)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    x, y = torch.randn(64, 10), torch.randn(64, 1)
    for step in range(steps):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        report({"loss": float(loss)})
    return float(loss)


def _train(cfg, data, ctx):
    return _fit(cfg.lr, cfg.steps, ctx.report)


TASK = register_task(Task(
    name="bench-trivial", config=TrivialConfig, build_model=lambda cfg: torch.nn.Linear(10, 1),
    input_shape=lambda cfg: (1, 10), load_data=lambda cfg: None, train=_train,
    evaluate=lambda cfg, state, data, ctx: Evaluation({"final_loss": state}, [{"loss": state}]),
    metrics={"final_loss": float}, eval_columns={"loss": float}, reports=("loss",)))


def _bare(storage: str, lrs: list[float], steps: int, reuse: bool = False, train: bool = False) -> float:
    import ray.train
    from ray import tune

    def trial(config):
        _fit(config["lr"], config["steps"], tune.report)

    def driver(config):
        from ray.train.torch import TorchTrainer
        from ray.tune.integration.ray_train import TuneReportCallback

        def worker(cfg):
            _fit(cfg["lr"], cfg["steps"], ray.train.report)
        TorchTrainer(worker, train_loop_config=config,
                     scaling_config=ray.train.ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
                     run_config=ray.train.RunConfig(name=tune.get_context().get_trial_id(),
                                                    storage_path=os.path.join(storage, "train"),
                                                    callbacks=[TuneReportCallback()])).fit()

    trainable = tune.with_resources(driver, {"cpu": 0, "memory": 2**20}) if train else \
        tune.with_resources(trial, {"cpu": 1})
    tuner = tune.Tuner(trainable, param_space={"lr": tune.grid_search(lrs), "steps": steps},
                       tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=reuse),
                       run_config=tune.RunConfig(name="bare", storage_path=storage, verbose=0))
    t0 = time.perf_counter()
    grid = tuner.fit()
    assert not grid.errors, grid.errors
    return time.perf_counter() - t0


def run_sweeplab(spec) -> dict[str, int]:
    """The sweeplab side's one call: the run service with the Ray backend, on the Ray this script started (what
    ``sweeplab run`` does: the lock, ``sweep.json``, the trials, compaction)."""
    from sweeplab.ray_runner import RayBackend
    from sweeplab.service import run_sweep
    return run_sweep(spec, RayBackend(), say=lambda message: None).counts


def _sweeplab(storage: str, lrs: list[float], steps: int, workers: int = 1, reuse: bool = True) -> float:
    from sweeplab import ray_runner
    from sweeplab.spec import parse
    ray_runner.REUSE_ACTORS = reuse
    t0 = time.perf_counter()
    spec = parse({"name": "sweeplab", "task": "bench-trivial", "config": {"steps": steps},
                  "search": {"space": {"lr": lrs}}, "metric": "final_loss", "mode": "min",
                  "resources": {"cpus": 1, "workers": workers}, "max_concurrent": 1, "storage": storage})
    counts = run_sweeplab(spec)
    assert counts["trials"] == len(lrs) and not counts["failed"], counts
    return time.perf_counter() - t0


RUN = {"bare": lambda s, lrs, n: _bare(s, lrs, n), "bare-reuse": lambda s, lrs, n: _bare(s, lrs, n, reuse=True),
       "bare-train": lambda s, lrs, n: _bare(s, lrs, n, train=True), "light": _sweeplab,
       "light-noreuse": lambda s, lrs, n: _sweeplab(s, lrs, n, reuse=False),
       "multi": lambda s, lrs, n: _sweeplab(s, lrs, n, workers=2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3, help="alternating runs of each arm; the best is kept")
    ap.add_argument("--reports", type=int, default=5, help="SGD steps of each trial, each reported")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of {', '.join(ARMS)}")
    ap.add_argument("--smoke", action="store_true", help=f"tiny run {SMOKE}: proves every path runs, no target")
    args = ap.parse_args()
    if args.smoke:  # the smoke values replace the defaults; options given on the command line still win
        ap.set_defaults(**SMOKE)
        args = ap.parse_args()
    arms = [a for a in args.arms.split(",") if a]
    if unknown := sorted(set(arms) - set(ARMS)):
        ap.error(f"unknown arms {unknown}: choose among {', '.join(ARMS)}")
    import ray
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    # As sweeplab's embedded Ray (ray_cluster.init_ray): with the dashboard, whose state API Ray Train's
    # placement-group cleaner asks whether a trial's Train controller lives. Two CPUs: the multi-worker arm's two.
    ray.init(num_cpus=max(2, os.cpu_count() or 2), include_dashboard=True, log_to_driver=False)
    lrs = [0.01 * (i + 1) for i in range(args.trials)]
    best = dict.fromkeys(arms, float("inf"))
    for rep in range(args.repeats):
        for name in arms:
            storage = tempfile.mkdtemp(prefix=f"bench-{name}-")
            try:
                seconds = RUN[name](storage, lrs, args.reports)
            finally:
                shutil.rmtree(storage, ignore_errors=True)
            print(f"repeat {rep + 1}: {name:13s} {seconds:7.2f} s for {args.trials} trials", flush=True)
            best[name] = min(best[name], seconds)
    per = {name: s / args.trials for name, s in best.items()}
    print(f"\nper trial (best of {args.repeats}, {args.trials} trials, concurrency 1, {args.reports} reports):")
    for name in arms:
        print(f"  {name:13s} {per[name]:7.3f} s")
    for ours, anchor in TARGETS:
        if ours in per and anchor in per:
            print(f"  ratio {ours} / {anchor}  {per[ours] / per[anchor]:7.3f}  (target <= {TARGET})")
    if "bare-train" in per and "light" in per:
        print(f"  light trials vs Tune + TorchTrainer: {per['bare-train'] / per['light']:.1f}x faster per trial")
    if args.smoke:
        print("smoke run: one trial per arm; the figures show that every path runs, not whether a target holds")


if __name__ == "__main__":
    main()
