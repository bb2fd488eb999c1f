"""What a sweep's trials depend on (:func:`resolved`) and its fingerprint, which guards ``sweeplab resume``.

``sweep.json`` keeps both (:func:`stored_fingerprint`); a resume whose spec resolves differently is refused with
the list of changes (:func:`changes_since`). Functions take a parsed :class:`sweeplab.spec.Spec` by its attributes.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from . import config as C

FINGERPRINT_VERSION = 2  # 2: every config value, defaults filled in; 1 (sweeps that stored none): the spec's keys


def resolved(spec: "Spec", version: int = FINGERPRINT_VERSION) -> dict[str, Any]:
    """What a sweep's trials depend on, as canonical JSON data (sorted keys, tuples as lists): ``sweeplab resume``
    refuses a spec whose resolved form differs from the stored one. ``config`` holds every config value that is
    not searched, defaults included, so a default changed in the code between a run and its resume is a change
    too (``version`` 1, the form sweeps stored before, held only the values the spec set). Resources,
    ``max_concurrent``, ``retries``, ``budget`` and ``storage`` may change between a run and its resume."""
    config = spec.config
    if version >= 2:
        defaults = {name: info.default for name, info in C.fields(spec.task.config).items() if name not in spec.space}
        config = {**defaults, **spec.config}
    doc = {"task": spec.task.name, "config": config, "algorithm": spec.algorithm,
           "space": {k: v if isinstance(v, list) else {v.kind: list(v.args)} for k, v in spec.space.items()},
           "include": spec.include, "num_samples": spec.num_samples, "metrics": spec.metrics, "modes": spec.modes,
           "scheduler": spec.scheduler, "seed": spec.seed}
    if spec.from_trials:  # absent when empty: older sweeps' fingerprints stay valid
        doc["from_trials"] = spec.from_trials
    if spec.dtype != "float32":  # likewise absent at its default
        doc["dtype"] = spec.dtype
    return json.loads(_canonical(doc))


def fingerprint(spec: "Spec", version: int = FINGERPRINT_VERSION) -> str:
    """sha256 of the canonical JSON of :func:`resolved`."""
    return hashlib.sha256(_canonical(resolved(spec, version)).encode()).hexdigest()


def stored_fingerprint(spec: "Spec") -> dict[str, Any]:
    """What ``sweep.json`` keeps under ``resolved``: the fingerprint, the resolved spec and their version."""
    return {"fingerprint": fingerprint(spec), "spec": resolved(spec), "version": FINGERPRINT_VERSION}


def changes_since(stored: dict[str, Any] | None, spec: "Spec", allowed: tuple[str, ...] = ()) -> list[str]:
    """How ``spec`` differs from the one a sweep stored (:func:`stored_fingerprint`; nothing for a sweep that
    stored none), compared in the stored form's version; keys in ``allowed`` (what an extension may grow) are
    left out."""
    if not stored:
        return []
    version = stored.get("version", 1)
    if not allowed and stored.get("fingerprint") == fingerprint(spec, version):
        return []
    old, new = stored.get("spec") or {}, resolved(spec, version)
    old, new = ({k: v for k, v in doc.items() if k not in allowed} for doc in (old, new))
    if old == new:
        return []
    return changes(old, new) or ["the resolved spec (its fingerprint) differs"]


def _canonical(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=list)


_UNSET = object()


def changes(old: dict, new: dict) -> list[str]:
    """``key: old -> new`` for each key of two :func:`resolved` documents that differs (one level into mappings:
    ``config.lr: 0.1 -> 0.2``)."""
    def show(v):
        return "(unset)" if v is _UNSET else json.dumps(v, sort_keys=True)

    out = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key, _UNSET), new.get(key, _UNSET)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}.{k}: {show(a.get(k, _UNSET))} -> {show(b.get(k, _UNSET))}"
                    for k in sorted(a.keys() | b.keys()) if a.get(k, _UNSET) != b.get(k, _UNSET)]
        else:
            out.append(f"{key}: {show(a)} -> {show(b)}")
    return out
