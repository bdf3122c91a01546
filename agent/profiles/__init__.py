"""SNMP profiles: which OIDs to read from a kind of device and what they mean.

`model` holds the types and the IF-MIB reading every profile shares, `builtin` the
vendor profiles, `custom` the YAML profiles an operator writes.
"""

from __future__ import annotations

from pathlib import Path

from agent.profiles.builtin import BUILTIN
from agent.profiles.custom import PRIVACY_DROPPED, load_profile
from agent.profiles.model import DeviceState, Interface, Profile

__all__ = [
    "BUILTIN",
    "PRIVACY_DROPPED",
    "DeviceState",
    "Interface",
    "Profile",
    "builtin_or_file",
]


def builtin_or_file(name: str, base: Path | None = None) -> Profile:
    """A built-in profile by name, or a custom one loaded from a .yaml file."""
    if name in BUILTIN:
        return BUILTIN[name]
    path = Path(name)
    if base is not None and not path.is_absolute():
        path = base / path
    return load_profile(path)
