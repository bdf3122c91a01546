"""Write every dashboard's JSON next to this file, or check that the committed JSON is
what the code generates.

    python -m dashboards.build            # regenerate dashboards/*.json
    python -m dashboards.build --check    # exit 1 naming every stale or missing file
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from . import fleet, noc, project_region, site

FOLDER = Path(__file__).resolve().parent

#: File name -> the function building that dashboard. The file name is the uid.
DASHBOARDS: dict[str, Callable[[], db.Dashboard]] = {
    f"{noc.UID}.json": noc.dashboard,
    f"{project_region.UID}.json": project_region.dashboard,
    f"{site.UID}.json": site.dashboard,
    f"{fleet.UID}.json": fleet.dashboard,
}

#: Grafana's own annotation layer (alerts and manual annotations). The SDK's model has
#: no `builtIn` field, so it is added to the encoded JSON.
BUILT_IN_ANNOTATIONS = {
    "builtIn": 1,
    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
    "enable": True,
    "hide": True,
    "iconColor": "rgba(0, 211, 255, 1)",
    "name": "Annotations & Alerts",
    "type": "dashboard",
}


def _number_panels(encoded: dict[str, Any]) -> None:
    """Give every panel and row a stable id, in reading order (Grafana needs them unique)."""
    next_id = 1
    for panel in encoded.get("panels", []):
        panel["id"] = next_id
        next_id += 1
        for inner in panel.get("panels", []):
            inner["id"] = next_id
            next_id += 1


def encode(dashboard: db.Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (plain dicts and lists)."""
    encoded: dict[str, Any] = json.loads(json.dumps(dashboard.build(), cls=JSONEncoder))
    _number_panels(encoded)
    encoded["annotations"] = {"list": [BUILT_IN_ANNOTATIONS]}
    return encoded


def render(dashboard: db.Dashboard) -> str:
    """The dashboard's JSON file content: stable key order, UTF-8, a final newline."""
    return json.dumps(encode(dashboard), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def generated() -> dict[str, str]:
    """File name -> content, for every dashboard."""
    return {name: render(build()) for name, build in DASHBOARDS.items()}


def stale(folder: Path = FOLDER) -> list[str]:
    """Names of the dashboard files in `folder` that differ from the code's, or are missing."""
    problems = []
    for name, content in generated().items():
        path = folder / name
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            problems.append(name)
    return problems


def write(folder: Path = FOLDER) -> list[str]:
    """Write every dashboard into `folder`; the names of the files that changed."""
    changed = []
    for name, content in generated().items():
        path = folder / name
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
            changed.append(name)
    return changed


def main(argv: Sequence[str] | None = None, folder: Path = FOLDER) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dashboards.build", description="Generate kipu's Grafana dashboards."
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if a committed dashboard differs from the code's",
    )
    args = parser.parse_args(argv)
    if args.check:
        problems = stale(folder)
        for name in problems:
            print(f"dashboards/{name} is stale: run python -m dashboards.build", file=sys.stderr)
        return 1 if problems else 0
    for name in write(folder):
        print(f"wrote dashboards/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
