"""Reading a spec file, with the spec files it extends merged in (``extends:``, as in Hydra's config composition).

A smoke spec is its paper spec made small, not a copy::

    extends: registration-table1.yaml   # the base: a path relative to the folder of the file that says it
    name: registration-table1-smoke     # never inherited (default: this file's stem)
    config:
      dataset: embedded                 # merged into the base's config key by key
      windows: null                     # null removes the base's value: the spec's default applies
    resources: {cpus: 1, gpus: 0}       # merged too: workers stays the base's

The merge rules, applied from the root of the chain down to the file that was named:

* ``extends`` names one spec file, resolved against the folder of the file that holds it (or absolute). The base
  may itself extend another; a chain that comes back to a file already in it is an error naming the files.
* Mappings merge key by key, recursively. Lists and scalars are replaced whole (a child's ``search.include`` is
  the whole list of extra trials).
* A key set to null in the child is removed from the result, so the spec's default applies: the way to unset a
  value the base sets (``search: {space: {sample_rate: null}}`` stops searching a field the base searches).
* ``name`` is never inherited: every spec names its own sweep folder, by its ``name`` or else its file stem.
* ``extends`` itself is not a key of the result.

``--set`` overrides apply to the merged mapping (:func:`sweeplab.spec.load`), so the fingerprint that guards
``sweeplab resume`` covers the whole chain. Nothing here knows what a spec's keys mean: problems (a missing or
broken file in the chain, a cycle) are raised as :class:`SpecFileError`, which ``load`` reports as a spec error.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

EXTENDS = "extends"


class SpecFileError(Exception):
    """A spec file, or a file in its ``extends`` chain, that cannot be read; ``problems`` names the file."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def read(path: str | Path) -> dict[str, Any]:
    """The raw spec mapping of ``path`` with its bases merged in, ``extends`` and the bases' ``name`` dropped.
    A spec that extends nothing comes back exactly as its YAML reads."""
    return read_chain(path)[0]


def chain(path: str | Path) -> list[Path]:
    """The files a spec is read from: ``path`` first, then its base, the base's base, and so on."""
    return read_chain(path)[1]


def read_chain(path: str | Path) -> tuple[dict[str, Any], list[Path]]:
    """(:func:`read`, :func:`chain`) from one reading of each file."""
    files: list[Path] = []
    return _read(Path(path), (), files), files


def merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """``child`` over ``base`` (neither is modified): mappings merged key by key, anything else replaced whole, a
    null in ``child`` removing the key."""
    out = copy.deepcopy(base)
    for key, value in child.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read(path: Path, seen: tuple[Path, ...], files: list[Path]) -> dict[str, Any]:
    doc = _mapping(path, seen)
    files.append(path)
    ref = doc.pop(EXTENDS, None)
    if ref is None:
        return doc
    base = _read(_base_path(path, ref, seen), (*seen, path), files)
    base.pop("name", None)
    return merge(base, doc)


def _mapping(path: Path, seen: tuple[Path, ...] | list[Path]) -> dict[str, Any]:
    """The YAML mapping in ``path``; ``seen`` are the files that led to it (empty for the file that was named)."""
    by = f" (extended by {seen[-1]})" if seen else ""
    where = f"{path}{by}: " if seen else ""
    if path.is_dir():
        raise SpecFileError([f"{path}{by} is a folder, not a spec file (a sweep's folder is given to status, results, "
                             "plot and compact; run and resume take its spec)"])
    if not path.is_file():
        raise SpecFileError([f"spec file not found: {path}{by}"])
    try:
        with path.open() as stream:  # the parser's messages then name the file and line
            doc = yaml.safe_load(stream)
    except yaml.YAMLError as exc:
        raise SpecFileError([f"{where}not valid YAML: {exc}"]) from None
    if not isinstance(doc, dict):
        raise SpecFileError([f"{where}the spec must be a mapping of keys to values"])
    return doc


def _base_path(path: Path, ref: Any, seen: tuple[Path, ...] | list[Path]) -> Path:
    """The file ``extends: ref`` in ``path`` names; a cycle is an error that lists the chain."""
    if not isinstance(ref, str) or not ref.strip():
        raise SpecFileError([f"{path}: extends: expected the path of one spec file, got {ref!r}"])
    base = path.parent / Path(ref).expanduser()
    files = [*seen, path]
    if any(base.resolve() == f.resolve() for f in files):
        raise SpecFileError([f"{path}: extends: a cycle: {' -> '.join(map(str, [*files, base]))}"])
    return base
