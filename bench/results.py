"""Cost of the results layer at 100, 1,000 and 10,000 trials of 200 evaluation rows each, in one run.

Each sweep is built with the real API, trial after trial: what a trial's rank 0 does when it finished evaluating
(``store.write_trial_result``: its evaluation part and its completed row), then what the driver does when Tune
says the trial ended (``store.record_trial``: its part of ``trials`` and its ``status.json``). The task is a
synthetic one registered here (config fields of types float/int/str/bool/tuple, five declared metrics, 200
evaluation rows of image x beta). At each size N the script measures:

* trial end: the mean (and median) seconds of ``record_trial`` and of ``write_trial_result`` over a sample of
  ``--sample`` trial ends appended to the sweep that holds N trials, i.e. the cost at trial N; the sample's
  files are then removed so the sweep holds N trials again. Target: largest size / smallest size <= 1.5 for both;
* ``sql.query`` of a GROUP BY over ``evaluations`` JOIN ``trials`` (:data:`SQL`) before compaction (N parts
  per table) and after ``store.compact`` (one file per table), best of ``--repeats``, beside the same SQL run by
  plain DuckDB ``read_parquet`` over the same files (the reference for the ratio). Target after compaction at
  10,000 trials: a few seconds at most on 2 cores;
* ``store.compact``'s time, and the compacted files (size, row groups);
* the same query over the same compacted rows rewritten in pyarrow's default row groups (the reference for what
  ``compact``'s row groups cost the query);
* after compaction, ``--sample`` more trial ends, the query over the compacted file plus those parts, and the
  incremental ``compact`` that merges them (the state of a resumed sweep);
* peak memory of each phase: the peak resident set size (VmHWM of /proc/self/status, reset before each phase
  through /proc/self/clear_refs; the whole process: Python, Arrow and DuckDB allocations together), printed with
  its growth above the RSS at the phase's start.

Runs in a temporary folder on local disk (``--dir`` chooses its parent), removed at the end. The full run
takes several minutes on 2 cores (most of it building the 10,000-trial sweep); ``--smoke`` runs every phase at
20 and 60 trials in seconds, which proves the code runs and says nothing about the targets. Usage:
    .venv/bin/python bench/results.py [--sizes 100,1000,10000] [--sample 50] [--repeats 3] [--dir /tmp]
    .venv/bin/python bench/results.py --smoke
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from memory import Peak, mib, status  # bench/memory.py
from sweeplab import layout as L
from sweeplab import results, sql, store
from sweeplab.config import param
from sweeplab.storage import location
from sweeplab.task import Evaluation, Task, register_task

CATS = ("hyperprior", "factorized", "autoregressive", "jpeg")
IMAGES = tuple(f"kodim{i:02d}.png" for i in range(1, 21))
BETAS = (0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483, 0.0932, 0.18, 0.35, 0.7)  # 20 x 10 = 200 rows a trial
SQL = ("SELECT t.cat, e.beta, avg(e.psnr) AS psnr, avg(e.bpp) AS bpp "
       "FROM evaluations e JOIN trials t USING (trial_id) GROUP BY ALL")
TUNE_JUNK = {"hostname": "node-1", "pid": 4242, "node_ip": "10.0.0.1", "done": True, "time_this_iter_s": 0.1,
             "training_iteration": 40, "__sweeplab_final": 1}


@dataclass(frozen=True)
class BenchConfig:
    lr: float = param(1e-4, "learning rate", low=0.0, high=1.0)
    steps: int = param(1000, "training steps", low=1)
    cat: str = param("hyperprior", "entropy model", choices=CATS)
    augment: bool = param(False, "random crops and flips")
    channels: tuple[int, ...] = param((128, 192), "channels of the analysis transform", low=1)


TASK = register_task(Task(
    name="bench-results", config=BenchConfig, build_model=lambda cfg: None, input_shape=lambda cfg: (1, 3, 64, 64),
    load_data=lambda cfg: None, train=lambda cfg, data, ctx: None,
    evaluate=lambda cfg, state, data, ctx: Evaluation({}, []),
    metrics={"psnr": float, "bpp": float, "ms_ssim": float, "loss": float, "steps_done": int},
    eval_columns={"image": str, "beta": float, "psnr": float, "bpp": float, "index": int}))

SWEEP = "bench-results"
SMOKE = {"sizes": "20,60", "sample": 5, "repeats": 1}  # --smoke: every phase at tiny sizes, in seconds


# ---------------------------------------------------------------- one trial


def trial_inputs(i: int) -> dict:
    """Everything trial ``i`` hands the results layer (built before any timing starts)."""
    trial_id = f"bench_{i:05d}"
    values = {"lr": 10 ** (-5 + 3 * (i % 97) / 97), "steps": 100 * (1 + i % 10), "cat": CATS[i % len(CATS)],
              "augment": i % 2 == 0, "channels": (64 + 32 * (i % 5), 192)}
    base = 28.0 + (i % 13) * 0.3
    evals = [{"sweep": SWEEP, "task": TASK.name, "trial_id": trial_id, "image": image, "beta": beta,
              "psnr": base + 10 * beta ** 0.25 + k * 0.01, "bpp": 0.1 + 3 * beta ** 0.5 + k * 0.001, "index": n}
             for n, (k, image, beta) in enumerate((k, image, beta) for k, image in enumerate(IMAGES)
                                                  for beta in BETAS)]
    metrics = {"psnr": sum(r["psnr"] for r in evals) / len(evals), "bpp": sum(r["bpp"] for r in evals) / len(evals),
               "ms_ssim": 0.95, "loss": 1.0 / (1 + i % 7), "steps_done": values["steps"]}
    started = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=i)
    run = {"params": 5_000_000 + i, "gmacs": 12.5, "gmacs_convention": "fvcore", "input_shape": "1x3x64x64",
           "train_seconds": 600.0, "device": "cuda:0", "num_workers": 1, "code_version": "bench",
           "started_at": started, "ended_at": started + dt.timedelta(minutes=10)}
    row = store.trial_row(TASK, sweep=SWEEP, trial_id=trial_id, status="completed", values=values, seed=i,
                          metrics=metrics, run=run)
    return {"trial_id": trial_id, "values": values, "row": row, "evals": evals, "seed": i,
            "last": {**TUNE_JUNK, **metrics}}


def end_trial(sweep, inputs: dict) -> tuple[float, float]:
    """Rank 0's ``write_trial_result`` then the driver's ``record_trial``; their seconds."""
    t0 = time.perf_counter()
    store.write_trial_result(sweep, TASK, inputs["trial_id"], inputs["row"], inputs["evals"])
    t1 = time.perf_counter()
    store.record_trial(sweep, TASK, sweep_name=SWEEP, trial_id=inputs["trial_id"], status="completed",
                       values=inputs["values"], seed=inputs["seed"], last_metrics=inputs["last"])
    return t1 - t0, time.perf_counter() - t1


def remove_trial(sweep, trial_id: str) -> None:
    """The files of one of this script's sample trials (so the sweep holds N trials again)."""
    for table in results.TABLES:
        L.part(sweep, table, trial_id).delete()
    shutil.rmtree(L.fragment(sweep, trial_id).local_path)


# ---------------------------------------------------------------- memory and time


def timed(fn, repeats: int):
    """(best seconds, first seconds, the last result) of ``repeats`` calls."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), times[0], out


def direct_query(sweep) -> pd.DataFrame:
    """The same SQL in plain DuckDB over the same files (no pyarrow dataset, no part/compacted union)."""
    con = duckdb.connect()
    for table in results.TABLES:
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{L.table_dir(sweep, table).path}/*.parquet', "
                    "union_by_name=true)")
    return con.execute(SQL).df()


def canon(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["cat", "beta"]).reset_index(drop=True)


# ---------------------------------------------------------------- the phases


def build(root: Path, n: int) -> dict:
    """A sweep of ``n`` trials, built trial after trial through the real API."""
    sweep = location(root / f"sweep-{n}")
    # what the driver writes when a sweep starts: compaction takes the tables' schema from the task it names
    L.sweep_info(sweep).write_text(json.dumps({"name": sweep.name, "task": TASK.name}))
    print(f"\n== building {n} trials x {len(IMAGES) * len(BETAS)} evaluation rows ({sweep})", flush=True)
    every = max(n // 10, 100)
    rss0, t0, block = status("VmRSS"), time.perf_counter(), time.perf_counter()
    for i in range(n):
        end_trial(sweep, trial_inputs(i))
        if (i + 1) % every == 0 or i + 1 == n:
            now = time.perf_counter()
            done = (i + 1) % every or every
            print(f"  built {i + 1:6d}/{n}  {1e3 * (now - block) / done:6.2f} ms/trial lately  "
                  f"{now - t0:7.1f} s elapsed  RSS {mib(status('VmRSS'))}", flush=True)
            block = now
    seconds = time.perf_counter() - t0
    print(f"  build: {seconds:.1f} s ({1e3 * seconds / n:.2f} ms/trial, input rows included), "
          f"RSS {mib(rss0)} -> {mib(status('VmRSS'))}")
    return {"n": n, "sweep": sweep, "build_s": seconds}


def sample_trial_ends(figs: list[dict], count: int) -> None:
    """``count`` trial ends appended to every sweep, taking turns between the sweeps so that the disk's moods
    (fsync waits on a shared machine) fall on every size alike; then the sample's files are removed."""
    spent = {f["n"]: [] for f in figs}
    peak = {f["n"]: 0 for f in figs}
    for j in range(count):
        for f in figs:
            inputs = trial_inputs(f["n"] + j)
            c0 = time.process_time()
            with Peak() as mem:
                write, record = end_trial(f["sweep"], inputs)
            spent[f["n"]].append((write, record, time.process_time() - c0))
            peak[f["n"]] = max(peak[f["n"]], mem.peak)
    for f in figs:
        for j in range(count):
            remove_trial(f["sweep"], trial_inputs(f["n"] + j)["trial_id"])
        write, record, cpu = zip(*spent[f["n"]])
        f.update(write_ms=1e3 * statistics.mean(write), record_ms=1e3 * statistics.mean(record),
                 write_med_ms=1e3 * statistics.median(write), record_med_ms=1e3 * statistics.median(record),
                 cpu_ms=1e3 * statistics.mean(cpu), record_peak=peak[f["n"]])
        print(f"  at trial {f['n']:6d} (mean / median of {count}): record_trial {f['record_ms']:6.2f} / "
              f"{f['record_med_ms']:6.2f} ms, write_trial_result {f['write_ms']:6.2f} / {f['write_med_ms']:6.2f} ms, "
              f"CPU time of both {f['cpu_ms']:5.2f} ms; peak RSS {mib(f['record_peak'])}")


def tables_phase(f: dict, args) -> None:
    """Query, compact, query again, then a resumed sweep's few new parts and the incremental compaction."""
    n, sweep = f["n"], f["sweep"]
    print(f"\n== {n} trials: query and compaction", flush=True)
    t = time.perf_counter()
    results.table_files(sweep, "evaluations")
    f["listing_ms"] = 1e3 * (time.perf_counter() - t)

    with Peak() as mem:
        f["query_parts_s"], first, before = timed(lambda: sql.query(sweep, SQL), args.repeats)
    f["query_parts_mem"] = mem
    direct_parts, _, ref = timed(lambda: direct_query(sweep), args.repeats)
    assert len(before) == len(CATS) * len(BETAS), before
    pd.testing.assert_frame_equal(canon(before), canon(ref))
    print(f"  query before compaction ({n} parts per table): {f['query_parts_s']:.2f} s best of {args.repeats} "
          f"(first {first:.2f} s); plain DuckDB read_parquet {direct_parts:.2f} s "
          f"(ratio {f['query_parts_s'] / direct_parts:.1f}); {mem}; one listing of a table (table_files) "
          f"{f['listing_ms']:.1f} ms")

    with Peak() as mem:
        t = time.perf_counter()
        counts = store.compact(sweep)
        f["compact_s"] = time.perf_counter() - t
    f["compact_mem"] = mem
    assert counts == {"trials": n, "evaluations": n * len(IMAGES) * len(BETAS)}, counts
    files = []
    for table in results.TABLES:
        (only,) = L.table_dir(sweep, table).files(".parquet")
        meta = pq.ParquetFile(only.path).metadata
        files.append(f"{table} {os.path.getsize(only.path) / 2**20:.1f} MiB in {meta.num_row_groups} row groups")
        f[f"{table}_row_groups"] = meta.num_row_groups
        f[f"{table}_mib"] = os.path.getsize(only.path) / 2**20
    print(f"  compact: {f['compact_s']:.2f} s, {counts}; {mem}\n  compacted files: {'; '.join(files)}")

    with Peak() as mem:
        f["query_compacted_s"], first, after = timed(lambda: sql.query(sweep, SQL), args.repeats)
    f["query_compacted_mem"] = mem
    direct_compacted, _, _ = timed(lambda: direct_query(sweep), args.repeats)
    pd.testing.assert_frame_equal(canon(before), canon(after))
    print(f"  query after compaction: {f['query_compacted_s']:.2f} s best of {args.repeats} (first {first:.2f} s); "
          f"plain DuckDB read_parquet {direct_compacted:.2f} s "
          f"(ratio {f['query_compacted_s'] / direct_compacted:.1f}); {mem}")

    # reference: the same compacted rows rewritten with pyarrow's default row groups (up to 1Mi rows each)
    ref = location(sweep.local_path.with_name(f"ref-{n}"))
    for table in results.TABLES:
        (only,) = L.table_dir(sweep, table).files(".parquet")
        out = L.table_dir(ref, table) / only.name
        results.write_table(out, pq.read_table(only.path))  # pq.write_table's defaults
    f["query_ref_s"], _, rebuilt = timed(lambda: sql.query(ref, SQL), args.repeats)
    pd.testing.assert_frame_equal(canon(before), canon(rebuilt))
    groups = pq.ParquetFile(out.path).metadata.num_row_groups
    shutil.rmtree(ref.local_path)
    print(f"  reference: the same query over the same rows in {groups} row group(s) per table: "
          f"{f['query_ref_s']:.2f} s")

    new = [trial_inputs(n + j) for j in range(args.sample)]
    spent = [end_trial(sweep, s) for s in new]
    f["record_after_ms"] = 1e3 * statistics.mean(r for _, r in spent)
    f["query_mixed_s"], _, _ = timed(lambda: sql.query(sweep, SQL), args.repeats)
    t = time.perf_counter()
    counts = store.compact(sweep)
    f["compact_again_s"] = time.perf_counter() - t
    assert counts["trials"] == n + args.sample, counts
    print(f"  a resumed sweep, {args.sample} more trial ends: record_trial {f['record_after_ms']:.2f} ms (mean); "
          f"query over the compacted file + {args.sample} parts {f['query_mixed_s']:.2f} s; "
          f"compact again {f['compact_again_s']:.2f} s")
    shutil.rmtree(sweep.local_path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000,10000", help="comma-separated numbers of trials")
    ap.add_argument("--sample", type=int, default=50, help="trial ends timed at each size")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each query; the best is kept")
    ap.add_argument("--dir", default=None, help="parent of the temporary folder (local disk; default: $TMPDIR)")
    ap.add_argument("--smoke", action="store_true", help=f"tiny sizes {SMOKE}: proves the code runs, no targets")
    args = ap.parse_args()
    if args.smoke:  # the smoke values replace the defaults; options given on the command line still win
        ap.set_defaults(**SMOKE)
        args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    root = Path(tempfile.mkdtemp(prefix="bench-results-", dir=args.dir))
    print(f"{os.cpu_count()} CPUs, pyarrow {pa.__version__}, duckdb {duckdb.__version__}, folder {root}")
    print(f"query: {SQL}")
    try:
        figs = [build(root, n) for n in sizes]
        print(f"\n== trial ends appended to each sweep ({args.sample} each, taking turns)", flush=True)
        sample_trial_ends(figs, args.sample)
        for f in figs:
            tables_phase(f, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    rows = [("build (s)", "build_s", "{:.1f}"),
            ("record_trial, mean (ms)", "record_ms", "{:.2f}"),
            ("record_trial, median (ms)", "record_med_ms", "{:.2f}"),
            ("write_trial_result, mean (ms)", "write_ms", "{:.2f}"),
            ("write_trial_result, median (ms)", "write_med_ms", "{:.2f}"),
            ("CPU time of a trial end (ms)", "cpu_ms", "{:.2f}"),
            ("table_files, one listing (ms)", "listing_ms", "{:.1f}"),
            ("query before compaction (s)", "query_parts_s", "{:.2f}"), ("compact (s)", "compact_s", "{:.2f}"),
            ("row groups, compacted evaluations", "evaluations_row_groups", "{:d}"),
            ("compacted trials file (MiB)", "trials_mib", "{:.1f}"),
            ("compacted evaluations file (MiB)", "evaluations_mib", "{:.1f}"),
            ("query after compaction (s)", "query_compacted_s", "{:.2f}"),
            ("  same rows, large row groups (s)", "query_ref_s", "{:.2f}"),
            ("query, compacted + sample parts (s)", "query_mixed_s", "{:.2f}"),
            ("compact again, sample parts (s)", "compact_again_s", "{:.2f}"),
            ("peak RSS, trial ends (MiB)", "record_peak", None),
            ("peak RSS, query before (MiB)", "query_parts_mem", None),
            ("peak RSS, compact (MiB)", "compact_mem", None),
            ("peak RSS, query after (MiB)", "query_compacted_mem", None)]
    print(f"\n{'trials':38s}" + "".join(f"{f['n']:>12d}" for f in figs))
    for label, key, fmt in rows:
        cells = []
        for f in figs:
            v = f[key]
            cells.append(f"{v / 2**20:.0f}" if isinstance(v, int) and fmt is None else
                         f"{v.peak / 2**20:.0f} (+{max(v.growth, 0) / 2**20:.0f})" if fmt is None else fmt.format(v))
        print(f"{label:38s}" + "".join(f"{c:>12s}" for c in cells))
    print("(peak RSS: VmHWM of the whole process, reset before each phase; (+growth over the phase's start))")
    small, large = figs[0], figs[-1]
    for key, label in (("record_ms", "record_trial"), ("write_ms", "write_trial_result"), ("cpu_ms", "CPU time")):
        print(f"{label} at {large['n']} / at {small['n']} trials: {large[key] / small[key]:.2f} (target <= 1.5)")
    print(f"query after compaction at {large['n']} trials: {large['query_compacted_s']:.2f} s "
          f"(before: {large['query_parts_s']:.2f} s; target: a few seconds)")
    if args.smoke:
        print("smoke run: tiny sizes; the figures show that the code runs, not whether the targets hold")
    print("command: " + shlex.join([os.path.relpath(sys.executable), *sys.argv]))


if __name__ == "__main__":
    main()
