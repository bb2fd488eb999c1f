"""``sweeplab dashboard``: a sweep shown live in optuna-dashboard, built from the sweep's own records.

optuna-dashboard serves any Optuna storage; here the storage is an in-memory Optuna study rebuilt from the sweep's
store (:func:`sweeplab.store.sweep_status`, the ``trials`` rows, each trial's reports) every :data:`REFRESH_S`
seconds, so it works while the sweep runs, on a local folder or an ``s3://`` sweep, and never keeps a second copy of
the sweep's state. Trial ``n`` of the study is the plan's trial ``n`` (its ``point``), planned trials not yet
started are *waiting*, so numbers stay put across refreshes. States: completed -> complete, stopped early -> pruned,
failed -> fail, running -> running, interrupted (no live driver) -> waiting, with ``sweeplab_status`` saying which.
Parameters are the config values that vary between trials (searched, or set by ``include`` rows), present only
where they apply; tuples are text. The objective(s) are the sweep's metrics (a multi-objective sweep shows its
Pareto front); intermediate values are the reports of the metric the scheduler watches (else ``loss``). User
attributes: ``trial_id``, ``params``, ``gmacs``, the compute columns, ``device``, ``started_from`` and a failed
trial's one-line cause. The study's note says how to draw the task's figure, which is attached as a study artifact
when ``sweeplab plot`` has drawn it.

optuna-dashboard and Optuna are imported inside the functions (deferred: heavy imports only this command needs).
The server is the standard library's WSGI server; the JSON API the tests read is optuna-dashboard's own, which is
not documented, so its version range is pinned in ``pyproject.toml``.
"""
from __future__ import annotations

import datetime as dt
import math
import tempfile
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from . import config as C
from . import layout as L
from . import progress, store
from .schema import COMPUTE_COLUMNS, TrialState, error_cause
from .storage import Location, location
from .task import get_task

REFRESH_S = 5.0  # seconds between rebuilds of the study: a report shows within this plus status.json's 2 s
USER_ATTRS = ("trial_id", "params", "gmacs", "device", "started_from", "train_seconds", *COMPUTE_COLUMNS)


def _param_value(value: Any) -> Any:
    """A config value as an Optuna parameter value: numbers and text as they are, anything else as text."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return str(value) if not isinstance(value, (list, tuple)) else ",".join(map(str, value))
    return value


def _full_config(config_cls: type | None, values: dict[str, Any]) -> dict[str, Any]:
    """A trial's whole config as its row has it (defaults filled in, a field that does not apply None, tuples as
    text), or its values as given where the task is not installed here (``config_cls`` None)."""
    try:
        return C.scalar_columns(C.build(config_cls, values)) if config_cls is not None else dict(values)
    except ValueError:
        return dict(values)


def _distributions(configs: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """One distribution per parameter, from every value it takes in the sweep (so all trials agree)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    out = {}
    for name in names:
        values = [v for c in configs if (v := c.get(name)) is not None]
        if not values:  # no trial has it yet
            continue
        if all(isinstance(v, int) for v in values):
            out[name] = IntDistribution(min(values), max(values))
        elif all(isinstance(v, (int, float)) for v in values):
            out[name] = FloatDistribution(float(min(values)), float(max(values)))
        else:
            out[name] = CategoricalDistribution(sorted(set(map(str, values)), key=str))
    return out


def _numeric(distribution) -> bool:
    return type(distribution).__name__ in ("IntDistribution", "FloatDistribution")


def _naive(when: Any) -> dt.datetime | None:
    """A row's timestamp as the local naive datetime Optuna keeps (None when there is none)."""
    if not isinstance(when, dt.datetime) or when != when:  # NaT is not equal to itself
        return None
    return when.astimezone().replace(tzinfo=None) if when.tzinfo else when


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _trial(number: int, t: dict[str, Any] | None, row: dict[str, Any] | None, params: dict[str, Any],
           dists: dict[str, Any], info: dict, watched: str, sweep: Location, cache: dict[str, dict]):
    """The Optuna FrozenTrial of the plan's trial ``number`` (``t`` its status entry, None when not started;
    ``cache``: finished trials' intermediate values, by trial id)."""
    from optuna.trial import FrozenTrial, TrialState as OptunaState
    state = {TrialState.COMPLETED: OptunaState.COMPLETE, TrialState.STOPPED: OptunaState.PRUNED,
             TrialState.FAILED: OptunaState.FAIL, TrialState.RUNNING: OptunaState.RUNNING}.get(
        t["status"] if t else None, OptunaState.WAITING)
    values = None
    if state == OptunaState.COMPLETE:
        values = [(row or {}).get(m, t["metrics"].get(m)) for m in info["metrics"]]
        if not all(_finite(v) for v in values):  # Optuna needs every objective of a complete trial
            state, values = OptunaState.FAIL, None
    attrs: dict[str, Any] = {"sweeplab_status": t["status"] if t else "pending"}
    for key in USER_ATTRS:
        value = (row or {}).get(key, (t or {}).get("metrics", {}).get(key))
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            attrs[key] = value if isinstance(value, (int, float, str, bool)) else str(value)
    if t and t.get("error"):
        attrs["error"] = error_cause(t["error"])
    steps = cache.get(t["trial_id"]) if t else {}
    if steps is None:  # read once a trial has finished (its reports no longer change)
        reports = progress.read_reports(sweep, t["trial_id"])
        steps = {i: float(r[watched]) for i, r in enumerate(r for r in reports if _finite(r.get(watched)))}
        if state.is_finished():
            cache[t["trial_id"]] = steps
    started, ended = ((row or {}).get(k) for k in ("started_at", "ended_at"))  # a completed trial's times
    started = _naive(started) or (dt.datetime.now() if state != OptunaState.WAITING else None)
    return FrozenTrial(number=number, state=state, value=None, values=values, datetime_start=started,
                       datetime_complete=(_naive(ended) or started) if state.is_finished() else None,
                       params={k: v if _numeric(dists[k]) else str(v) for k, v in params.items() if k in dists},
                       distributions={k: d for k, d in dists.items() if k in params},
                       user_attrs=attrs, system_attrs={}, intermediate_values=steps, trial_id=number)


def build_study(sweep: str | Location, storage=None, cache: dict[str, dict] | None = None):
    """An Optuna storage holding the sweep as one study (see the module docstring); ``storage``: a fresh
    ``InMemoryStorage`` when None; ``cache``: the intermediate values of finished trials, kept between builds."""
    import optuna
    from optuna.study import StudyDirection
    sweep = location(sweep)
    rows = store.trial_rows(sweep)
    st = store.sweep_status(sweep, rows)
    storage = storage or optuna.storages.InMemoryStorage()
    directions = [StudyDirection.MINIMIZE if m == "min" else StudyDirection.MAXIMIZE for m in st["modes"]]
    study_id = storage.create_new_study(directions, study_name=st["name"])
    storage.set_study_user_attr(study_id, "task", st["task"])
    storage.set_study_system_attr(study_id, "dashboard:objective_names", list(st["metrics"]))  # not "Objective 0"
    try:
        config_cls = get_task(st["task"]).config
    except (KeyError, ImportError):
        config_cls = None
    configs = {t["trial_id"]: {k: _param_value(v) for k, v in _full_config(config_cls, t["config"]).items()
                               if v is not None} for t in st["trials"]}
    keys = set().union(*configs.values())  # a parameter: a value that differs between trials, or is searched
    varied = sorted({k for k in keys if len({str(c.get(k)) for c in configs.values()}) > 1} | set(st["space"]))
    dists = _distributions(list(configs.values()), varied)
    scheduler = (st.get("resolved") or {}).get("scheduler") or {}
    watched = scheduler.get("metric") or "loss"  # a task that reports no loss shows none
    by_point: dict[int, dict] = {}
    rest = []
    for t in st["trials"]:
        point = t.get("point")
        (rest.append(t) if point is None or point in by_point else by_point.__setitem__(int(point), t))
    numbered = [by_point.get(i) for i in range(max(st["planned_trials"], max(by_point, default=-1) + 1))]
    free = iter([i for i, t in enumerate(numbered) if t is None])
    for t in rest:  # a trial recorded without its point (an earlier version's): the first free numbers
        if (i := next(free, None)) is None:
            numbered.append(t)
        else:
            numbered[i] = t
    for number, t in enumerate(numbered):
        params = {k: v for k, v in configs.get(t["trial_id"], {}).items() if k in varied} if t else {}
        frozen = _trial(number, t, rows.get(t["trial_id"]) if t else None, params, dists, st, watched, sweep,
                        {} if cache is None else cache)
        storage.create_new_trial(study_id, template_trial=frozen)
    return storage


class LiveStorage:
    """An Optuna storage that is the sweep's study as last rebuilt: every call goes to the current copy, which a
    background thread replaces every ``every`` seconds (a failed rebuild keeps the last one and says why)."""

    def __init__(self, sweep: str | Location, every: float = REFRESH_S, on_change=None, say=print):
        self.sweep, self.every, self.on_change, self.say = location(sweep), every, on_change, say
        self.cache: dict[str, dict] = {}
        self.current = build_study(self.sweep, cache=self.cache)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sweeplab-dashboard-refresh", daemon=True)

    def start(self) -> "LiveStorage":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def refresh(self) -> None:
        old, self.current = self.current, build_study(self.sweep, cache=self.cache)
        study_id = self.current.get_all_studies()[0]._study_id
        kept = old.get_study_system_attrs(old.get_all_studies()[0]._study_id)
        for key, value in kept.items():  # the note and the artifacts attached to the study before
            if key not in self.current.get_study_system_attrs(study_id):
                self.current.set_study_system_attr(study_id, key, value)
        if self.on_change is not None:
            self.on_change()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 - the page keeps the last study; the console says why
                self.say(f"warning: the sweep could not be read again ({exc}); showing the last reading")


def live_storage_class():
    """:class:`LiveStorage` as an Optuna ``BaseStorage`` (every abstract method delegated to the current copy)."""
    import optuna

    def delegate(name: str):
        def method(self, *args, **kwargs):
            return getattr(self.current, name)(*args, **kwargs)
        method.__name__ = name
        return method
    methods = {name: delegate(name) for name in optuna.storages.BaseStorage.__abstractmethods__}
    return type("SweepStorage", (LiveStorage, optuna.storages.BaseStorage), methods)


def attach_figure(storage, sweep: Location, artifact_dir: str, attached: bytes | None) -> bytes | None:
    """Write the study's note (how to draw the task's figure) and attach the figure as a study artifact when
    ``sweeplab plot`` has drawn it and it differs from ``attached`` (the figure attached before); returns the
    figure attached now."""
    import optuna
    from optuna.artifacts import FileSystemArtifactStore, upload_artifact
    from optuna_dashboard import save_note
    study = optuna.load_study(study_name=storage.get_all_studies()[0].study_name, storage=storage)
    task = study.user_attrs.get("task", "")
    figure = L.results(sweep) / f"{task}.png"
    png = figure.read_bytes() if figure.exists() else None
    note = [f"# {study.study_name}", f"Sweep folder: `{sweep}` (task `{task}`), read every {REFRESH_S:g} s."]
    if png is None:
        note.append(f"The task's figure is not drawn yet: `sweeplab plot {sweep}` draws it.")
    else:
        note.append(f"The task's figure, `{figure}`, is this study's artifact (below).")
        if png != attached:
            local = f"{tempfile.mkdtemp(prefix='sweeplab-figure-')}/{figure.name}"
            with open(local, "wb") as f:
                f.write(png)
            upload_artifact(artifact_store=FileSystemArtifactStore(artifact_dir), file_path=local,
                            study_or_trial=study)
    save_note(study, "\n\n".join(note))
    return png


def serve(sweep: str | Location, host: str = "127.0.0.1", port: int = 8080, every: float = REFRESH_S,
          say=print, ready=None) -> None:
    """Serve the sweep's study until interrupted (``ready(server)`` is called once it listens)."""
    import optuna_dashboard
    from optuna.artifacts import FileSystemArtifactStore

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):  # one line per request would bury the console
            pass
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per rebuilt study
    sweep = location(sweep)
    artifacts = tempfile.mkdtemp(prefix="sweeplab-dashboard-")
    storage = live_storage_class()(sweep, every, say=say)
    app = optuna_dashboard.wsgi(storage, artifact_store=FileSystemArtifactStore(artifacts))

    attached: list[bytes | None] = [None]

    def changed() -> None:
        attached[0] = attach_figure(storage, sweep, artifacts, attached[0])
        app._inmemory_cache.clear()  # a trial may have changed state: the page reads the new study whole
    changed()
    storage.on_change = changed
    storage.start()
    server = make_server(host, port, app, handler_class=Quiet)
    say(f"dashboard of {sweep}: http://{host}:{server.server_port}/dashboard (read every {every:g} s; Ctrl-C stops)")
    if ready is not None:
        ready(server)
    try:
        server.serve_forever()
    finally:
        storage.stop()
        server.server_close()
