"""Reading the committed dashboards as Grafana would: their variables and every panel's
targets, and Grafana's variable substitution in a query."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "dashboards"

_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


@dataclass(frozen=True)
class Target:
    """One query of one panel."""

    dashboard: str
    panel: str
    ref: str
    expr: str
    instant: bool

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref}"


def dashboards() -> dict[str, dict[str, Any]]:
    """File name -> the committed dashboard JSON."""
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(FOLDER.glob("*.json"))
    }


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that is not a row, including those inside collapsed rows."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def targets(dashboard: Mapping[str, Any]) -> Iterator[Target]:
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield Target(
                dashboard=str(dashboard["uid"]),
                panel=str(panel["title"]),
                ref=str(target["refId"]),
                expr=str(target["expr"]),
                instant=bool(target.get("instant", False)),
            )


def variables(dashboard: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Variable name -> its definition."""
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """`expr` with `$name` and `${name}` replaced from `values`; an unknown name raises."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"no value for ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(value, expr)


def used_variables(expr: str) -> set[str]:
    """The names of the variables `expr` refers to."""
    return {m.group(1) or m.group(2) for m in _VARIABLE.finditer(expr)}
