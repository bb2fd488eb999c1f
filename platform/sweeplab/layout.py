"""The sweep folder: every path of it is named here and nowhere else.

A sweep lives at ``<storage>/<name>`` (a local folder or an ``s3://`` prefix)::

    sweep.json                                  the resolved spec, its fingerprint, the plan, the runner (driver)
    driver.lock                                 the driver's lease (sweeplab.lock)
    stop-requested                              ``sweeplab stop`` asks the driver to stop cleanly
    budget-spent                                why the last driver stopped starting trials (sweeplab.budget)
    fragments/<trial_id>/status.json            the trial's state and last metrics (driver)
    fragments/<trial_id>/reports.jsonl          every progress report of the trial (driver)
    fragments/<trial_id>/trial.parquet          a completed trial's row, in sweeps of the earlier layout
    results/trials/part-<trial_id>.parquet      a finished trial's row: completed (its rank 0), failed or stopped
                                                (driver)
    results/evaluations/part-<trial_id>.parquet a completed trial's evaluation rows (its rank 0)
    results/<table>/compacted-<generation>.parquet   earlier parts merged (sweeplab.results.compact)
    results/<table>.parquet                     a table of the earliest layout (read, and migrated when compacted)
    artifacts/<trial_id>/<name>.pt, trial.json  models kept for later sweeps (sweeplab.artifacts)
    local/<trial_id>/checkpoint.pt              --local checkpoints
    train/<trial_id>/...                        Ray Train runs (checkpoints) of multi-worker Ray trials
    tuner.pkl, experiment_state-*.json, ...     Ray Tune's experiment (Tune names these itself), with the
                                                checkpoints of light Ray trials in their Tune trial folders
    extension-<k>/tuner.pkl, ...                the Tune experiment of the k-th extension (resume --extend)

Every function takes the sweep's :class:`~sweeplab.storage.Location` and returns one inside it.
"""
from __future__ import annotations

from .storage import Location

TABLES = ("trials", "evaluations")
PART, COMPACTED = "part-", "compacted-"
LOCK_NAME = "driver.lock"


def sweep_info(sweep: Location) -> Location:
    return sweep / "sweep.json"


def lock_file(sweep: Location) -> Location:
    return sweep / LOCK_NAME


def budget_spent(sweep: Location) -> Location:
    return sweep / "budget-spent"


def stop_request(sweep: Location) -> Location:
    """Written by ``sweeplab stop``; the driver stops cleanly when it sees it, and removes it."""
    return sweep / "stop-requested"


def fragments(sweep: Location) -> Location:
    return sweep / "fragments"


def fragment(sweep: Location, trial_id: str) -> Location:
    return fragments(sweep) / trial_id


def status_file(sweep: Location, trial_id: str) -> Location:
    return fragment(sweep, trial_id) / "status.json"


def legacy_completed_row(sweep: Location, trial_id: str) -> Location:
    """Where rank 0 wrote a completed trial's row before it wrote the ``trials`` part itself (read on resume)."""
    return fragment(sweep, trial_id) / "trial.parquet"


def reports(sweep: Location, trial_id: str) -> Location:
    return fragment(sweep, trial_id) / "reports.jsonl"


def results(sweep: Location) -> Location:
    return sweep / "results"


def table_dir(sweep: Location, table: str) -> Location:
    return results(sweep) / table


def part(sweep: Location, table: str, trial_id: str) -> Location:
    return table_dir(sweep, table) / f"{PART}{trial_id}.parquet"


def part_trial_id(part_file: Location) -> str:
    return part_file.name[len(PART):-len(".parquet")]


def compacted(sweep: Location, table: str, generation: int) -> Location:
    return table_dir(sweep, table) / f"{COMPACTED}{generation:06d}.parquet"


def generation(compacted_file: Location) -> int:
    return int(compacted_file.name[len(COMPACTED):].split(".")[0])


def legacy_table(sweep: Location, table: str) -> Location:
    return results(sweep) / f"{table}.parquet"


def artifacts(sweep: Location, trial_id: str) -> Location:
    return sweep / "artifacts" / trial_id


ARTIFACT_SUFFIX = ".pt"


def artifact(sweep: Location, trial_id: str, name: str) -> Location:
    return artifacts(sweep, trial_id) / f"{name}{ARTIFACT_SUFFIX}"


def artifact_index(sweep: Location, trial_id: str) -> Location:
    """The trial's ``trial.json``: its task, sweep, config and artifact names."""
    return artifacts(sweep, trial_id) / "trial.json"


def local_checkpoints(sweep: Location) -> Location:
    return sweep / "local"


def train_runs(sweep: Location) -> Location:
    return sweep / "train"


def train_run(sweep: Location, trial_id: str) -> Location:
    """A Ray trial's Train run: its checkpoints."""
    return train_runs(sweep) / trial_id


def tune_experiment(sweep: Location, part: int = 0) -> Location:
    """The folder of a Ray sweep's Tune experiment: the sweep's own (part 0), or the ``part``-th extension's
    (``resume --extend``)."""
    return sweep if part == 0 else sweep / f"extension-{part}"


def tune_search_states(experiment: Location) -> list[Location]:
    """The files where Ray Tune keeps an experiment's search state (its SearchGenerator's counter and finished
    flag), one per driver session."""
    return [f for f in experiment.files(".json") if f.name.startswith("search_gen_state-")]


def tune_state(experiment: Location) -> Location:
    """The file Ray Tune's ``Tuner.restore`` needs in an experiment's folder: in the sweep's own, it marks a sweep
    that ran on Ray."""
    return experiment / "tuner.pkl"
