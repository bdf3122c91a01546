"""Durations and sizes as written in configuration files: ``15s``, ``1h30m``, ``64MiB``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal


@dataclass(frozen=True)
class Unit:
    kind: Literal["duration", "size"]


Duration = Annotated[float, Unit("duration")]
"""Seconds, written in the file as ``500ms``, ``15s``, ``5m``, ``1h30m``."""

Size = Annotated[int, Unit("size")]
"""Bytes, written in the file as ``64MiB``, ``4GiB``, ``512KiB``, ``100MB``."""

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h|d))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_SIZE_UNITS = {
    "B": 1,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
    "kB": 1000,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
}
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB|kB|KB|MB|GB|TB)$")
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$"
SIZE_PATTERN = r"^[0-9]+(\.[0-9]+)?\s*(B|KiB|MiB|GiB|TiB|kB|KB|MB|GB|TB)$"


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``1m30s``; ValueError when it is not one."""
    if not _DURATION_RE.match(text):
        raise ValueError(f"{text!r} is not a duration (write e.g. 500ms, 15s, 5m, 1h)")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(text))


def parse_size(text: str) -> int:
    """Bytes in a size such as ``256MiB``; ValueError when it is not one."""
    match = _SIZE_RE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size (write e.g. 64MiB, 4GiB, 512KiB)")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def format_duration(seconds: float) -> str:
    """The shortest duration text that parses back to `seconds` (to the millisecond)."""
    ms = round(seconds * 1000)
    if ms % 1000:
        return f"{ms}ms"
    s = ms // 1000
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s and s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"
