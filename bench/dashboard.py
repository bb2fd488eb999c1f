"""What `sweeplab dashboard` costs on a large sweep, and how soon a report shows, in one run.

The sweep is the results benchmark's synthetic one (``bench/results.py``: N completed trials of 200 evaluation rows,
written through the real API), plus one trial kept running under a live driver lock. The script serves it with
``sweeplab.dashboard.serve`` (optuna-dashboard over the study rebuilt from the sweep's records) and prints:

* the seconds to build the study from the sweep's records (what every refresh costs), best of ``--repeats``;
* the page load: the dashboard's HTML and the study's JSON (``/api/studies/<id>``, every trial: what the page
  fetches when it opens), first and best of ``--repeats``;
* report to page: seconds from a report of the running trial reaching storage (its ``status.json`` and
  ``reports.jsonl`` written, which a live driver does at most every 2 s) until the JSON shows it, with the
  refresh at ``--every`` seconds (the command's default, 5). The target is 15 s for a 100-trial sweep.

Usage: ``.venv/bin/python bench/dashboard.py [--trials 1000] [--repeats 3] [--every 5]``; ``--smoke`` runs it at
20 trials with a 0.5 s refresh, in seconds (no target).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import results as synthetic  # noqa: E402 - bench/results.py: the synthetic task and trials

from sweeplab import dashboard, progress  # noqa: E402
from sweeplab import layout as L  # noqa: E402
from sweeplab.lock import DriverLock  # noqa: E402
from sweeplab.storage import location  # noqa: E402

SMOKE = {"trials": 20, "repeats": 1, "every": 0.5}


def fetch(url: str) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as response:
        body = response.read()
    return time.perf_counter() - t0, body


def build_sweep(root: Path, n: int):
    sweep = location(root / "dashboard-bench")
    for i in range(n):
        synthetic.end_trial(sweep, synthetic.trial_inputs(i))
    info = {"name": sweep.name, "task": synthetic.TASK.name, "metrics": ["psnr"], "modes": ["max"],
            "planned_trials": n + 1, "space": ["lr", "steps", "cat", "augment", "channels"], "resolved": None,
            "source": "bench", "runner": "local", "extensions": [], "plan": None, "budget": {}}
    L.sweep_info(sweep).write_text(json.dumps(info))
    return sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--every", type=float, default=dashboard.REFRESH_S)
    parser.add_argument("--smoke", action="store_true", help=f"tiny run {SMOKE}: proves the code runs, no target")
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(SMOKE)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        sweep = build_sweep(Path(tmp), args.trials)
        print(f"built a sweep of {args.trials} completed trials in {time.perf_counter() - t0:.1f} s")
        with DriverLock(sweep):
            live = progress.Progress(sweep, "live", {"lr": 0.001}, 7, args.trials).started()
            live.report({"loss": 1.0})
            live.flush()
            dashboard.build_study(sweep)  # Optuna's imports, once
            builds = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                dashboard.build_study(sweep)
                builds.append(time.perf_counter() - t0)
            print(f"study built from the records: {min(builds):.3f} s (best of {args.repeats}; every refresh)")
            servers, ready = [], threading.Event()
            threading.Thread(target=dashboard.serve, args=(sweep,), daemon=True, kwargs=dict(
                port=0, every=args.every, say=lambda m: None,
                ready=lambda s: (servers.append(s), ready.set()))).start()
            assert ready.wait(120), "the dashboard did not start"
            base = f"http://127.0.0.1:{servers[0].server_port}"
            html = [fetch(base + "/dashboard")[0] for _ in range(args.repeats)]
            study = json.loads(fetch(base + "/api/studies")[1])["study_summaries"][0]["study_id"]
            loads = []
            for _ in range(args.repeats):
                seconds, body = fetch(f"{base}/api/studies/{study}")
                loads.append(seconds)
            trials = json.loads(body)["trials"]
            assert len(trials) == args.trials + 1, len(trials)
            print(f"page load: HTML {min(html):.3f} s, study JSON ({len(trials)} trials, {len(body) / 2**20:.1f} MiB) "
                  f"{loads[0]:.3f} s first, {min(loads):.3f} s best of {args.repeats}")
            live.report({"loss": 0.5})
            live.flush()
            t0, seen = time.perf_counter(), None
            while time.perf_counter() - t0 < 10 * args.every + 60:
                got = json.loads(fetch(f"{base}/api/studies/{study}")[1])["trials"]
                if len(got[args.trials]["intermediate_values"]) == 2:
                    seen = time.perf_counter() - t0
                    break
                time.sleep(0.05)
            assert seen is not None, "the report never showed"
            print(f"report to page: {seen:.2f} s with a {args.every:g} s refresh (plus up to 2.0 s before a live "
                  "driver writes a report)")
            servers[0].shutdown()


if __name__ == "__main__":
    main()
