"""One config schema for every package: a `*Config` dataclass's fields, types and defaults.

    cfg = build(FusionConfig, {"fuser": "average"}, "configs/demo.yaml: fusion")

Unknown keys and bad values raise one-line errors that name where they are and what was expected:

    configs/demo.yaml: fusion.fuserr: unknown key (expected one of: fuser, fallback, device, ...)

A dataclass's own `__post_init__` check raises ValueError("key: what is wrong"); `build` prefixes it
with `where`. Nested dataclass fields are sub-sections. `text=True` parses strings into the field's
type (URL query options: "3" -> 3, "0" -> False).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal


class ConfigError(ValueError):
    """A config value is invalid; the one-line message names the file or place and the key."""


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:      # Literal["auto"] -> 'auto'
        return " or ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")


def _from_text(value: str, tp: Any) -> Any:
    """'3' -> 3 for an int field, '0' -> False for a bool field; unparseable text stays text."""
    try:
        if tp is bool and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        if tp is int:
            return int(value)
        if tp is float:
            return float(value)
    except ValueError:
        pass
    return value


def _coerce(value: Any, tp: Any, where: str, error: type[Exception], text: bool) -> Any:
    """Check/convert one value against a field annotation; raise `error` naming `where`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where, error, text)
            except error as e:
                errors.append(e)
        raise errors[0] if len(errors) == 1 else error(f"{where}: {value!r} is not a valid value "
                                                       f"(expected {' or '.join(_type_name(a) for a in args)})")
    if text and isinstance(value, str) and tp in (bool, int, float):
        value = _from_text(value, tp)
    if origin is Literal:
        if value not in args:
            raise error(f"{where}: {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise error(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise error(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise error(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise error(f"{where}: expected a string, got {value!r}")
        return value
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise error(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise error(f"{where}: expected a list of {len(args)} items, got {value!r}")
            return tuple(_coerce(v, a, f"{where}[{i}]", error, text) for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{where}[{i}]", error, text) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple or tp is tuple else out
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise error(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return build(tp, value, where, error=error, text=text)
    return value


def field_names(cls: type) -> list[str]:
    """The keys a config section of `cls` may have, in declaration order."""
    return [f.name for f in dataclasses.fields(cls) if f.init]


def build(cls: type, data: Any, where: str, *, error: type[Exception] = ConfigError, text: bool = False) -> Any:
    """`cls(**data)` with every key and value checked. `where` prefixes errors
    ("configs/demo.yaml: fusion"); a ValueError raised by the dataclass itself is expected to
    start with the key name ("tolerance_ms: must be > 0"). `error` is the exception type raised."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise error(f"{where}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = field_names(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise error(f"{where}.{key}: unknown key (expected one of: {', '.join(names)})")
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}", error, text)
    try:
        return cls(**kwargs)
    except error:
        raise
    except (ValueError, TypeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        key = msg.split(":", 1)[0].strip()
        sep = "." if key in names else ": "
        raise error(f"{where}{sep}{msg}") from None


def to_dict(obj: Any) -> dict:
    """Field name -> value; a nested config dataclass (a sub-section) becomes a dict too."""
    return {f.name: to_dict(v) if dataclasses.is_dataclass(v := getattr(obj, f.name)) else v
            for f in dataclasses.fields(obj)}
