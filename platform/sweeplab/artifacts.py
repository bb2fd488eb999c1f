"""Trained models reused across sweeps: a trial's named artifacts, and sweeps that start from them.

A trial saves an artifact with ``ctx.save_artifact(name, payload)`` (rank 0; ``payload`` is a ``torch.save``-able
dict: the weights and whatever is needed to rebuild the model). It lands beside the sweep's results::

    <sweep>/artifacts/<trial_id>/<name>.pt
    <sweep>/artifacts/<trial_id>/trial.json     task, sweep, trial id, the trial's config, the artifact names

A later sweep names its sources with the top-level spec key ``from_trials`` (fixed for the whole sweep, never
searched); each source is either a trial's location or a condition on an earlier sweep's ``trials`` table::

    from_trials:
      model: results/compression-single-gamma/local_00000          # <sweep folder or s3:// URI>/<trial_id>
      vaes: {sweep: s3://bucket/sweeps/restoration-stage1,         # the completed trial that
             where: "lambda_kl = 1.0", order_by: "psnr DESC"}      #   matches (SQL over `trials`)

``where`` is a DuckDB SQL condition over the earlier sweep's ``trials`` table (only completed trials are
considered); it must match exactly one trial unless ``order_by`` is given, which picks the first. A task declares
the sources it can use (``Task.sources``: which artifacts each must have, which task made it, which config values
must agree, and when it is required). The parser checks the references' form and that every required source is
given, reading nothing; :func:`resolve_sources` then finds them in storage when a sweep is run, resumed or
submitted, so a missing or incompatible artifact is a spec error (exit 2) before anything starts. Trials see their
sources as ``ctx.sources`` and the ``trials`` table records, per trial, the resolved sources (column
``started_from``).
"""
from __future__ import annotations

import dataclasses
import io
import json
from typing import Any

import torch

from . import layout as L
from . import sql, store
from .spec import Spec, SpecError, planned_configs
from .storage import Location, StorageError, location


@dataclasses.dataclass(frozen=True)
class Needs:
    """A source a task's trials can start from (spec key ``from_trials.<name>``).

    artifacts: names the source trial must have saved.
    task:      the task that made the source (None: the same task).
    same:      config fields whose value must equal the source trial's (the architecture, typically).
    when:      ``{field: value or tuple}``: the source is required under these config values (as ``param``'s
               ``when``); otherwise it is optional.
    doc:       what it is, for error messages and ``describe``.
    """
    artifacts: tuple[str, ...]
    task: str | None = None
    same: tuple[str, ...] = ()
    when: dict[str, Any] | None = None
    doc: str = ""

    def required(self, values: dict[str, Any]) -> bool:
        if self.when is None:
            return False
        return all(values.get(k) in (v if isinstance(v, (tuple, list)) else (v,)) for k, v in self.when.items())


def trial_dir(sweep: Location, trial_id: str) -> Location:
    return L.artifacts(location(sweep), trial_id)


def save(sweep: Location, *, task: str, sweep_name: str, trial_id: str, config: dict[str, Any], name: str,
         payload: dict[str, Any]) -> Location:
    """Write one artifact and the trial's ``trial.json`` (both atomically; the artifact first)."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"artifact name {name!r} must be a plain file name")
    sweep = location(sweep)
    where = trial_dir(sweep, trial_id)
    buf = io.BytesIO()
    torch.save(payload, buf)
    L.artifact(sweep, trial_id, name).write_bytes(buf.getvalue())
    names = sorted({f.name[:-len(L.ARTIFACT_SUFFIX)] for f in where.files(L.ARTIFACT_SUFFIX)} | {name})
    doc = {"task": task, "sweep": sweep_name, "trial_id": trial_id, "config": config, "artifacts": names}
    L.artifact_index(sweep, trial_id).write_text(json.dumps(doc, indent=1, default=list))
    return L.artifact(sweep, trial_id, name)


@dataclasses.dataclass(frozen=True)
class Saver:
    """``ctx.save_artifact`` of one trial (picklable: it travels to Ray Train workers)."""
    sweep: str
    task: str
    sweep_name: str
    trial_id: str
    config: dict[str, Any]

    def __call__(self, name: str, payload: dict[str, Any]) -> None:
        save(location(self.sweep), task=self.task, sweep_name=self.sweep_name, trial_id=self.trial_id,
             config=self.config, name=name, payload=payload)


@dataclasses.dataclass(frozen=True)
class Source:
    """A trial whose artifacts a trial starts from."""
    uri: str                 # <sweep>/<trial_id>
    task: str
    trial_id: str
    config: dict[str, Any]
    artifacts: tuple[str, ...]

    def load(self, name: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        if name not in self.artifacts:
            raise KeyError(f"source {self.uri} has no artifact {name!r} (it has: {', '.join(self.artifacts)})")
        sweep, trial_id = split(self.uri)
        data = L.artifact(sweep, trial_id, name).read_bytes()
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=False)


def split(uri: str) -> tuple[Location, str]:
    """``<sweep>/<trial_id>`` -> (sweep location, trial id)."""
    loc = location(uri)
    return loc.parent, loc.name


def open_source(uri: str) -> Source:
    sweep, trial_id = split(uri)
    try:
        doc = json.loads(L.artifact_index(sweep, trial_id).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{uri}: no artifacts saved by trial {trial_id!r} of {sweep} (expected "
                                f"{L.artifact_index(sweep, trial_id)})") from None
    return Source(uri=f"{sweep}/{trial_id}", task=doc["task"], trial_id=trial_id, config=doc["config"],
                  artifacts=tuple(doc["artifacts"]))


def open_sources(resolved: dict[str, str] | None) -> dict[str, Source]:
    return {name: open_source(uri) for name, uri in (resolved or {}).items()}


def _pick(name: str, ref: dict, task: str) -> str:
    """A ``{sweep, where, order_by}`` reference (its keys checked by the parser) to a sweep of ``task`` ->
    ``<sweep>/<trial_id>`` (ValueError saying why not)."""
    sweep = location(str(ref["sweep"]))
    if (info := store.read_sweep_info(sweep)) is not None and info.get("task") != task:  # its columns are another's
        raise ValueError(f"from_trials.{name}: {sweep} is a sweep of task {info.get('task')!r}, not {task!r}")
    try:
        found = sql.pick_trials(sweep, ref.get("where"), ref.get("order_by"), 2)
    except FileNotFoundError as exc:
        raise ValueError(f"from_trials.{name}: {exc}") from None
    except sql.QueryError as exc:
        raise ValueError(f"from_trials.{name}: on {sweep}'s trials table, {exc}") from None
    if not found:
        raise ValueError(f"from_trials.{name}: no completed trial of {sweep} matches {ref.get('where') or 'any'}")
    if len(found) > 1 and not ref.get("order_by"):
        raise ValueError(f"from_trials.{name}: several completed trials of {sweep} match "
                         f"{ref.get('where') or 'any'} (e.g. {', '.join(found)}): narrow `where` or give "
                         "`order_by` to pick the first")
    return f"{sweep}/{found[0]}"


def resolve_sources(spec: Spec) -> Spec:
    """The spec with its ``from_trials`` resolved: each reference (checked by the parser) found in storage, and
    checked against the task's declared sources and every planned trial's config values. The step after parsing
    that reads other sweeps; SpecError listing every problem."""
    if not spec.sources:
        return spec
    problems: list[str] = []
    resolved: dict[str, str] = {}
    needs = spec.task.sources or {}
    values_of_trials = planned_configs(spec)
    for name, ref in spec.sources.items():
        try:
            uri = _pick(name, ref, needs[name].task or spec.task.name) if isinstance(ref, dict) else str(ref)
            src = open_source(uri)
        except (ValueError, FileNotFoundError, StorageError) as exc:
            problems.append(exc.args[0] if isinstance(exc, ValueError) else f"from_trials.{name}: {exc}")
            continue
        need = needs[name]
        if src.task != (need.task or spec.task.name):
            problems.append(f"from_trials.{name}: {uri} is a trial of task {src.task!r}, not "
                            f"{need.task or spec.task.name!r}")
        if missing := [a for a in need.artifacts if a not in src.artifacts]:
            problems.append(f"from_trials.{name}: {uri} has no artifact {', '.join(missing)} (it has: "
                            f"{', '.join(src.artifacts) or 'none'})")
        for field in need.same:
            theirs = src.config.get(field)
            bad = sorted({repr(v.get(field)) for v in values_of_trials if _norm(v.get(field)) != _norm(theirs)})
            if bad:
                problems.append(f"from_trials.{name}: {uri} was trained with {field}={theirs!r}, this sweep "
                                f"sets {field}={', '.join(bad)}")
        resolved[name] = src.uri
    if problems:
        raise SpecError(spec.source, problems)
    return dataclasses.replace(spec, from_trials=resolved)


def _norm(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
