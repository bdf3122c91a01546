"""Reports: monthly SLA per institution and the department-by-month panel.

Both are computed from the ledger in `state_dir` (`collector.ledger`), the inventory,
the SLA rules and the maintenance windows; no Prometheus. The functions here block
(file reads, CPU): the collector calls them from a worker thread, the CLI directly.
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection
from dataclasses import dataclass

from collector.config import CollectorConfig, Maintenance, MaintenanceWindow
from collector.inventory import Inventory, Site
from collector.ledger import Reader, month_bounds
from collector.reports import panel, sla

MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
FORMATS = ("csv", "html", "pdf")


class ReportError(ValueError):
    """A request for a report that cannot be made (bad month, unknown project)."""


def check_month(text: str, name: str = "month") -> str:
    """`text` if it is a month as YYYY-MM; ReportError otherwise."""
    if not MONTH.match(text):
        raise ReportError(f"{name}: {text!r} is not a month (write YYYY-MM, e.g. 2026-10)")
    return text


def _sites(
    inventory: Inventory, project: str | None, allowed: Collection[str] | None
) -> list[Site]:
    if project is not None and project not in inventory.projects():
        raise ReportError(f"project: no project {project!r} in the inventory")
    if project is not None and allowed is not None and project not in allowed:
        raise ReportError(f"project: no project {project!r} in the inventory")
    return [
        site
        for site in inventory.sites.values()
        if (project is None or site.project == project)
        and (allowed is None or site.project in allowed)
    ]


@dataclass(frozen=True)
class SlaReport:
    """A month's SLA rows and what they were made from."""

    month: str
    timezone: str
    start: float
    end: float
    project: str | None
    rows: list[sla.Row]
    windows: tuple[MaintenanceWindow, ...]  # those that touch a listed site's period
    generated: float


def sla_report(
    config: CollectorConfig,
    inventory: Inventory,
    maintenance: Maintenance,
    month: str,
    *,
    project: str | None = None,
    allowed: Collection[str] | None = None,
) -> SlaReport:
    """The SLA report of `month` (YYYY-MM) for `project` (every project when None)
    among the `allowed` projects (all when None)."""
    check_month(month)
    sites = _sites(inventory, project, allowed)
    start, end = month_bounds(month, config.timezone)
    reader = Reader(config.state_dir, start, end, {s.site_id for s in sites})
    windows = [w for w in maintenance.windows if w.end_seconds > start and w.start_seconds < end]
    rows = sla.rows(sites, reader.sites(), start, end, config.timezone, config.sla, windows)
    used = tuple(
        w
        for w in windows
        if any(
            w.selects(r.site) and w.end_seconds > r.figures.start and w.start_seconds < end
            for r in rows
        )
    )
    return SlaReport(month, config.timezone, start, end, project, rows, used, time.time())


def panel_report(
    config: CollectorConfig,
    inventory: Inventory,
    maintenance: Maintenance,
    first: str,
    last: str,
    *,
    allowed: Collection[str] | None = None,
) -> list[panel.Cell]:
    """The panel's rows from month `first` to `last` (YYYY-MM, both included)."""
    check_month(first, "from")
    check_month(last, "to")
    if last < first:
        raise ReportError(f"to: {last} is before from: {first}")
    months = panel.month_range(first, last)
    if len(months) > 120:
        raise ReportError("from, to: at most 120 months at once")
    sites = _sites(inventory, None, allowed)
    wanted = {s.site_id for s in sites}
    found: list[panel.Cell] = []
    for month in months:
        start, end = month_bounds(month, config.timezone)
        reader = Reader(config.state_dir, start, end, wanted)
        found += panel.cells(
            sites,
            reader.sites(),
            reader.first_seen,
            month,
            start,
            end,
            config.timezone,
            config.sla,
            maintenance.windows,
        )
    return found
