"""Task configuration dataclasses: one source of truth for defaults, valid values and docs.

A task declares its config as a frozen dataclass whose fields are made with :func:`param`::

    @dataclass(frozen=True)
    class CompressionConfig:
        gamma: float = param(10000.0, "rate weight in eq. (1)", low=0.0)
        quantization: str = param("fixed-step", "Section 4 case", choices=("fixed-step", "learned-step"))
        k: int = param(10, "k-means clusters", low=2, when={"method": "kmeans"})

Sweep validation, ``describe``, the Parquet columns and the README table are all derived from these fields.

Conditional parameters: ``when`` names the choices of other fields under which a field applies (every condition
must hold; a condition on a field that itself does not apply fails). A field that does not apply to a trial is
null in its rows, marked in ``describe``, and never sampled by a random/TPE search (as ConfigSpace's conditions
and Optuna's define-by-run spaces do). A spec may still fix it for every trial (e.g. training settings beside the
anchors of a grid): it is then simply not used where it does not apply.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any

_SCALARS = (bool, int, float, str)


def param(default: Any, doc: str, *, choices: tuple | None = None, low: float | None = None,
          high: float | None = None, when: dict[str, Any] | None = None, allow_empty: bool = False,
          multiple_of: int | None = None, folder: bool = False) -> Any:
    """A config field with its documentation and valid values (``low``/``high`` are inclusive bounds).

    ``when``: ``{other_field: value or tuple of values}``, the conditions under which this field applies.
    ``allow_empty``: for a tuple field, whether an empty tuple is a valid value (by default it is refused: an empty
    list of betas or qualities evaluates nothing).
    ``multiple_of``: an int field (or each item of a tuple of ints) must be a multiple of this.
    ``folder``: a str field that, when not empty, must name an existing folder (``~`` expanded). Checked wherever
    a value is coerced, so a spec naming a missing folder is refused at spec load, before any trial starts (on a
    cluster the folder must be on a filesystem shared with the launching machine)."""
    cond = {k: tuple(v) if isinstance(v, (tuple, list)) else (v,) for k, v in (when or {}).items()}
    meta = {"doc": doc, "choices": tuple(choices) if choices is not None else None, "low": low, "high": high,
            "when": cond, "allow_empty": allow_empty, "multiple_of": multiple_of, "folder": folder}
    if isinstance(default, (list, dict, set)):
        raise TypeError("config defaults must be immutable: use a tuple")
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    name: str
    type: type
    default: Any
    doc: str
    choices: tuple | None
    low: float | None
    high: float | None
    item_type: type | None = None  # for tuple fields: the element type
    when: dict[str, tuple] = dataclasses.field(default_factory=dict)  # conditions under which the field applies
    allow_empty: bool = False  # for tuple fields: whether () is a valid value
    multiple_of: int | None = None  # int fields (or tuple items): the value must be a multiple of this
    folder: bool = False  # str fields: a non-empty value must name an existing folder

    def condition(self) -> str:
        """``method=kmeans`` style text of :attr:`when` (empty when the field always applies)."""
        return " and ".join(f"{k}={'|'.join(map(str, v))}" for k, v in self.when.items())

    def rule(self) -> str:
        """The valid values in words, for ``describe``: the choices, the range, ``multiple of 16``, ``existing
        folder`` (empty when any value of the type is valid)."""
        parts = [" | ".join(map(str, self.choices))] if self.choices else []
        if self.low is not None or self.high is not None:
            parts.append(f"[{'' if self.low is None else self.low}, {'' if self.high is None else self.high}]")
        if self.multiple_of:
            parts.append(f"multiple of {self.multiple_of}")
        if self.folder:
            parts.append("existing folder")
        return ", ".join(parts)


def fields(config_cls: type) -> dict[str, FieldInfo]:
    """The documented fields of a config dataclass, in declaration order."""
    hints = typing.get_type_hints(config_cls)
    out = {}
    for f in dataclasses.fields(config_cls):
        tp, item = _resolve(hints[f.name])
        out[f.name] = FieldInfo(f.name, tp, f.default, f.metadata.get("doc", ""), f.metadata.get("choices"),
                                f.metadata.get("low"), f.metadata.get("high"), item, f.metadata.get("when", {}),
                                f.metadata.get("allow_empty", False), f.metadata.get("multiple_of"),
                                f.metadata.get("folder", False))
    for info in out.values():
        for other, allowed in info.when.items():
            if other not in out or other == info.name:
                raise TypeError(f"{config_cls.__name__}.{info.name}: condition on unknown field {other!r}")
            if out[other].choices is not None and (bad := set(allowed) - set(out[other].choices)):
                raise TypeError(f"{config_cls.__name__}.{info.name}: condition {other} in {sorted(bad)} names "
                                f"values that are not choices of {other}")
    return out


def active(config_cls: type, values: dict[str, Any]) -> dict[str, bool]:
    """Which fields apply given ``values`` (missing names take their defaults); conditions chain: a field whose
    condition names a field that does not apply does not apply either."""
    infos = fields(config_cls)
    full = {name: values.get(name, info.default) for name, info in infos.items()}
    memo: dict[str, bool] = {}

    def applies(name: str, seen: tuple = ()) -> bool:
        if name not in memo:
            if name in seen:
                raise TypeError(f"{config_cls.__name__}: conditions form a cycle through {name!r}")
            memo[name] = all(applies(other, seen + (name,)) and full[other] in allowed
                             for other, allowed in infos[name].when.items())
        return memo[name]
    return {name: applies(name) for name in infos}


def _resolve(tp: Any) -> tuple[type, type | None]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):  # Optional[X] -> X (None allowed separately)
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _resolve(args[0])
    if origin is tuple:
        args = typing.get_args(tp)
        return tuple, (args[0] if args else None)
    return tp, None


def coerce(info: FieldInfo, value: Any) -> Any:
    """Convert ``value`` to the field's type, or raise ValueError with a readable reason."""
    if value is None:
        if info.default is None:
            return None
        raise ValueError(f"{info.name}: may not be null")
    if info.type is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{info.name}: expected a list, got {value!r}")
        if not value and not info.allow_empty:
            raise ValueError(f"{info.name}: empty list (give at least one value)")
        item = FieldInfo(info.name, info.item_type or str, None, "", None, info.low, info.high, folder=info.folder)
        out = tuple(coerce(item, v) for v in value)
        if info.multiple_of and any(isinstance(v, int) and v % info.multiple_of for v in out):
            raise ValueError(f"{info.name}: {list(out)}: every value must be a multiple of {info.multiple_of}")
        return out
    if info.type is bool:
        if isinstance(value, bool):
            out = value
        elif isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            out = value.lower() in ("true", "yes", "1")
        else:
            raise ValueError(f"{info.name}: expected true or false, got {value!r}")
    elif info.type is int:
        bad = isinstance(value, float) and not value.is_integer()
        out = _number(info, value, int, "an integer", bad)
    elif info.type is float:
        out = _number(info, value, float, "a number", False)
        if not math.isfinite(out):
            raise ValueError(f"{info.name}: expected a finite number, got {value!r}")
    elif info.type is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ValueError(f"{info.name}: expected a string, got {value!r}")
        out = str(value)
    else:
        out = value
    if info.choices is not None and out not in info.choices:
        raise ValueError(f"{info.name}: {out!r} is not one of {list(info.choices)}")
    if info.low is not None and isinstance(out, (int, float)) and out < info.low:
        raise ValueError(f"{info.name}: {out!r} is below the minimum {info.low}")
    if info.high is not None and isinstance(out, (int, float)) and out > info.high:
        raise ValueError(f"{info.name}: {out!r} is above the maximum {info.high}")
    if info.multiple_of and isinstance(out, int) and out % info.multiple_of:
        raise ValueError(f"{info.name}: {out!r} is not a multiple of {info.multiple_of}")
    if info.folder and out and not Path(out).expanduser().is_dir():
        raise ValueError(f"{info.name}: folder not found: {out}")
    return out


def _number(info: FieldInfo, value: Any, kind: type, label: str, bad: bool) -> Any:
    if bad or isinstance(value, bool):
        raise ValueError(f"{info.name}: expected {label}, got {value!r}")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{info.name}: expected {label}, got {value!r}") from None


def build(config_cls: type, values: dict[str, Any]) -> Any:
    """Build a config from a dict, collecting every problem into one ValueError."""
    infos = fields(config_cls)
    errors, kwargs = [], {}
    for key, value in values.items():
        if key not in infos:
            errors.append(f"unknown config key {key!r} (valid: {', '.join(infos)})")
            continue
        try:
            kwargs[key] = coerce(infos[key], value)
        except ValueError as exc:
            errors.append(str(exc))
    if errors:
        raise ValueError("\n".join(errors))
    cfg = config_cls(**kwargs)
    check = getattr(cfg, "check", None)  # optional cross-field validation, returns a list of messages
    if check is not None and (problems := check()):
        raise ValueError("\n".join(problems))
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}


def scalar_columns(cfg: Any) -> dict[str, Any]:
    """Config values as Parquet-friendly scalars (tuples become comma-joined strings); a field that does not apply
    to this config (``when``) is None."""
    values = to_dict(cfg)
    applies = active(type(cfg), values)
    return {k: None if not applies[k] else (",".join(map(str, v)) if isinstance(v, tuple) else v)
            for k, v in values.items()}
