"""The SLA report as HTML (Spanish or English) and as PDF made from that HTML.

HTML through the NOC page's renderer (Jinja2) with the `reports` message catalogues;
PDF through WeasyPrint (imported only for a PDF: it is in the `collector` extra, the
agent never needs it), which lays out the same HTML with Debian's Pango.
"""

from __future__ import annotations

import datetime
import functools
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.reports import SlaReport
from collector.reports.sla import FORMULA, Row, csv_values
from collector.web.i18n import LANGUAGES, load_catalogues
from collector.web.render import Renderer
from kipu.version import __version__

TEMPLATE_DIR = Path(__file__).parent / "templates"
DOMAIN = "reports"


@functools.cache
def renderer() -> Renderer:
    """Templates and catalogues, read once per process (blocking)."""
    return Renderer(load_catalogues(domain=DOMAIN), TEMPLATE_DIR, {"version": __version__})


@dataclass(frozen=True)
class Group:
    """A summary line: a project, or a region within it."""

    project: str
    region: str | None
    sites: int
    below: int
    meeting: int
    unmeasured: int
    availability: str  # as the CSV writes it, "" when nothing was measured


def _summary(rows: list[Row]) -> list[Group]:
    keys: dict[tuple[str, str | None], list[Row]] = {}
    for row in rows:
        keys.setdefault((row.site.project, None), []).append(row)
        keys.setdefault((row.site.project, row.site.region), []).append(row)
    groups = []
    for (project, region), members in sorted(keys.items(), key=lambda k: (k[0][0], k[0][1] or "")):
        up = sum(r.figures.up for r in members if r.availability is not None)
        measured = sum(r.figures.measured(r.rule) for r in members if r.availability is not None)
        groups.append(
            Group(
                project,
                region,
                len(members),
                sum(1 for r in members if r.meets_target is False),
                sum(1 for r in members if r.meets_target is True),
                sum(1 for r in members if r.meets_target is None),
                f"{100 * up / measured:.3f}" if measured > 1e-6 else "",
            )
        )
    return groups


def _order(rows: Iterable[Row]) -> list[Row]:
    """Below target first (worst first), then those without a verdict, then the rest."""

    def key(row: Row) -> tuple[int, float, str]:
        rank = {False: 0, None: 1, True: 2}[row.meets_target]
        return rank, row.availability if row.availability is not None else 0.0, row.site.site_id

    return sorted(rows, key=key)


def html(report: SlaReport, language: str) -> str:
    """The report as a standalone HTML document in `language` (es or en)."""
    if language not in LANGUAGES:
        raise ValueError(f"language {language!r}: {', '.join(LANGUAGES)}")
    zone = zoneinfo.ZoneInfo(report.timezone)

    def local(seconds: float) -> str:
        return datetime.datetime.fromtimestamp(seconds, zone).strftime("%Y-%m-%d %H:%M")

    ordered = _order(report.rows)
    context: dict[str, Any] = {
        "report": report,
        "rows": [(row, csv_values(row)) for row in ordered],
        "summary": _summary(report.rows),
        "formula": FORMULA,
        "local": local,
        "generated": local(report.generated),
    }
    return renderer().render("sla.html", language, **context)


def pdf(document: str) -> bytes:
    """The PDF of an HTML report (blocking: CPU, fonts)."""
    import weasyprint  # noqa: PLC0415 - only for PDF

    return bytes(weasyprint.HTML(string=document).write_pdf())
