"""Per-trial overhead of sweeplab against bare Ray Tune + Ray Train, in one run.

Both sides run the same trivial training function (``--reports`` SGD steps on a 10x1 linear model, each reported;
5 by default) in N trials with the same resources (1 CPU per Train worker, one worker, the same concurrency), on
the same embedded Ray:

* baseline: the documented Ray pattern written by hand: a Tune function per trial that starts a ``TorchTrainer``
  with ``TuneReportCallback`` (Ray Train V2);
* sweeplab: the same function registered as a task and run by ``sweeplab``'s Ray runner (spec validation, config
  building, cost counting, fragments, Parquet tables included).

Prints seconds per trial for both and the ratio (target: at most 1.10). The full run takes a few minutes on 2
cores (starting each trial's Train worker, and each report, dominate both sides); ``--smoke`` runs one trial of one
report per side, once, on a one-CPU Ray (under a minute), which proves both paths run and says nothing about the
target. Usage:
    .venv/bin/python bench/overhead.py [--trials 4] [--repeats 2] [--reports 5] [--cpus N]
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

SMOKE = {"trials": 1, "repeats": 1, "reports": 1, "cpus": 1}  # --smoke: one trial a side, one CPU


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


def _baseline(storage: str, lrs: list[float], steps: int, concurrency: int) -> float:
    import ray.train
    from ray import tune
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    def worker(config):
        _fit(config["lr"], config["steps"], ray.train.report)

    def driver(config):
        trial_id = tune.get_context().get_trial_id()
        TorchTrainer(worker, train_loop_config=config,
                     scaling_config=ray.train.ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
                     run_config=ray.train.RunConfig(name=trial_id, storage_path=os.path.join(storage, "train"),
                                                    callbacks=[TuneReportCallback()])).fit()

    tuner = tune.Tuner(tune.with_resources(driver, {"cpu": 0, "memory": 2**20}),
                       param_space={"lr": tune.grid_search(lrs), "steps": steps},
                       tune_config=tune.TuneConfig(max_concurrent_trials=concurrency),
                       run_config=tune.RunConfig(name="baseline", storage_path=storage, verbose=0))
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


def _sweeplab(storage: str, lrs: list[float], steps: int, concurrency: int) -> float:
    from sweeplab.spec import parse
    t0 = time.perf_counter()
    spec = parse({"name": "sweeplab", "task": "bench-trivial", "config": {"steps": steps},
                  "search": {"space": {"lr": lrs}}, "metric": "final_loss", "mode": "min",
                  "max_concurrent": concurrency, "storage": storage})
    counts = run_sweeplab(spec)
    assert counts["trials"] == len(lrs) and not counts["failed"], counts
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2, help="alternating runs of each side; the best is kept")
    ap.add_argument("--reports", type=int, default=5, help="SGD steps of each trial, each reported")
    ap.add_argument("--cpus", type=int, default=None, help="CPUs of the embedded Ray (default: all)")
    ap.add_argument("--smoke", action="store_true", help=f"tiny run {SMOKE}: proves both paths run, no target")
    args = ap.parse_args()
    if args.smoke:  # the smoke values replace the defaults; options given on the command line still win
        ap.set_defaults(**SMOKE)
        args = ap.parse_args()
    import ray
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    # With the dashboard, as sweeplab's embedded Ray (ray_runner.init_ray): Ray Train's placement-group cleaner asks
    # its state API whether a trial's Train controller lives; without it, trials here lost their workers mid-run.
    ray.init(num_cpus=args.cpus, include_dashboard=True, log_to_driver=False)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    lrs = [0.01 * (i + 1) for i in range(args.trials)]
    best = {"baseline": float("inf"), "sweeplab": float("inf")}
    for rep in range(args.repeats):
        for name, fn in (("baseline", _baseline), ("sweeplab", _sweeplab)):
            storage = tempfile.mkdtemp(prefix=f"bench-{name}-")
            try:
                seconds = fn(storage, lrs, args.reports, cpus)
            finally:
                shutil.rmtree(storage, ignore_errors=True)
            print(f"repeat {rep + 1}: {name:8s} {seconds:7.2f} s for {args.trials} trials", flush=True)
            best[name] = min(best[name], seconds)
    base, ours = best["baseline"] / args.trials, best["sweeplab"] / args.trials
    print(f"\nper trial (best of {args.repeats}, {args.trials} trials, {cpus} CPUs, concurrency {cpus}):")
    print(f"  bare Ray Tune + Train  {base:7.2f} s\n  sweeplab               {ours:7.2f} s")
    print(f"  ratio sweeplab / bare  {ours / base:7.3f}  (target <= 1.10)")
    if args.smoke:
        print("smoke run: one trial per side; the figures show that both paths run, not whether the target holds")


if __name__ == "__main__":
    main()
