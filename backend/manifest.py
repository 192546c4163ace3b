"""Reading a job's manifest back from disk: every field checked before the job is used.

A manifest is only ever written by the backend, but a disk, an operator or an older release can
leave one that is not what this release expects. Each is read with a size bound, parsed, and
checked field by field against the dataclass it describes, so a damaged one is refused with the
reason instead of failing somewhere later.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import types
import typing
from pathlib import Path

from .errors import BackendError

MAX_MANIFEST_BYTES = 2**20
"""A manifest holds a job's fields and a few hundred checksums: a few KiB."""


class DamagedManifest(BackendError):
    """A manifest that cannot be used; the message says why."""


def read_manifest(path: Path) -> dict:
    """The JSON map in `path`, or DamagedManifest."""
    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise DamagedManifest(f"{path.name} is {size} bytes; a manifest is at most {MAX_MANIFEST_BYTES}")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DamagedManifest(f"it has no {path.name}") from None
    except RecursionError:
        raise DamagedManifest(f"{path.name} is nested too deeply to be a manifest") from None
    except (OSError, ValueError) as error:
        raise DamagedManifest(f"{path.name} cannot be read: {error}") from None
    if not isinstance(data, dict):
        raise DamagedManifest(f"{path.name} holds a {type(data).__name__}, not a map of fields")
    return data


def build(cls: type, data: dict):
    """An instance of the dataclass `cls` from `data`, each field checked against its declared
    type (bool is not a number, a number is finite, an enum's text is one of its values, read as
    its member); DamagedManifest names the first bad field."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields), key=str)
    if unknown:
        raise DamagedManifest(f"unknown field {str(unknown[0])[:40]!r}")
    for name, spec in fields.items():
        if name not in data:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise DamagedManifest(f"field {name!r} is missing")
            continue
        if not _is_kind(data[name], hints[name]):
            raise DamagedManifest(f"field {name!r} is {_shown(data[name])}, not {_kind_name(hints[name])}")
    return cls(**{name: _as_kind(value, hints[name]) for name, value in data.items()})


def _as_kind(value, kind):
    return kind(value) if isinstance(kind, enum.EnumMeta) else value


def _is_kind(value, kind) -> bool:
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        return any(_is_kind(value, option) for option in typing.get_args(kind))
    if kind is type(None):
        return value is None
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return any(value == member.value and type(value) is type(member.value) for member in kind)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, typing.get_origin(kind) or kind)


def _kind_name(kind) -> str:
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return "one of " + ", ".join(str(member.value) for member in kind)
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        return " or ".join(_kind_name(option) for option in typing.get_args(kind))
    names = {
        float: "a finite number",
        int: "an integer",
        bool: "true or false",
        str: "text",
        dict: "a map",
        list: "a list",
        type(None): "null",
    }
    return names.get(kind, getattr(kind, "__name__", str(kind)))


def _shown(value) -> str:
    text = json.dumps(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."
