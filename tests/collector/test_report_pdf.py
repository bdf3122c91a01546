"""The SLA report as HTML and PDF: both languages, every message translated, the PDF's
pages drawn (pdftoppm) and not blank, and its numbers those of the CSV (pdftotext)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from jinja2.ext import babel_extract
from PIL import Image

from collector.reports.render import DOMAIN, TEMPLATE_DIR
from collector.web.i18n import LANGUAGES, LOCALE_DIR
from tests.collector.test_reports import (
    LIMITS,
    MAINTENANCE,
    MAINTENANCE_KEY,
    SITES,
    get,
    hco_0007,
    jun_0001,
    jun_0002,
    jun_0003,
    push,
)
from tests.collector.test_reports import body as month_body
from tests.collector_process import CollectorProcess, issue_token, write_collector
from tests.support.fixtures import need

PLACEHOLDER = re.compile(r"%\([a-z_]+\)[.0-9]*[sdf]|%%")
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def tool(name: str) -> str:
    path = shutil.which(name)
    need(name, None if path else f"{name} is not installed (Debian: poppler-utils)")
    assert path is not None
    return path


@pytest.fixture(scope="module")
def noc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    tmp_path = tmp_path_factory.mktemp("noc")
    (tmp_path / "maintenance.yaml").write_text(MAINTENANCE)
    sla = "sla: {projects: {junin: {target_percent: 98.5}}}\n"
    config = write_collector(tmp_path, LIMITS + MAINTENANCE_KEY + sla, sites=SITES)
    tokens = {s: issue_token(config, s) for s in ("jun-0001", "jun-0002", "jun-0003", "hco-0007")}
    collector = CollectorProcess(config, tmp_path / "collector.log")
    try:
        collector.start()
        month = range(745)
        for site_id, counters in (
            ("jun-0001", jun_0001),
            ("jun-0002", jun_0002),
            ("jun-0003", jun_0003),
            ("hco-0007", hco_0007),
        ):
            push(collector, tokens[site_id], month_body(counters, month, site_id == "jun-0001"))
        yield collector
    finally:
        collector.stop()


def fetch(collector: CollectorProcess, kind: str, language: str) -> tuple[bytes, str]:
    url = f"{collector.url}/api/v1/reports/sla?month=2026-10&format={kind}&lang={language}"
    status, data, content_type = get(url)
    assert status == 200, data
    return data, content_type


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_pdf_draws_its_pages_with_the_numbers_of_the_csv(
    noc: CollectorProcess, language: str, tmp_path: Path
) -> None:
    pdftoppm, pdftotext = tool("pdftoppm"), tool("pdftotext")
    csv_data, _ = fetch(noc, "csv", language)
    document, content_type = fetch(noc, "pdf", language)
    assert content_type == "application/pdf"
    assert document.startswith(b"%PDF-")
    pdf = tmp_path / "sla.pdf"
    pdf.write_bytes(document)

    subprocess.run([pdftoppm, "-png", "-r", "40", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page*.png"))
    assert pages
    inked = []
    for page in pages:
        with Image.open(page) as image:
            grey = image.convert("L")
            histogram = grey.histogram()
            inked.append(sum(histogram[:128]))  # dark pixels: text and rules
    assert max(inked) > 500, inked

    text = subprocess.run(
        [pdftotext, "-layout", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    rows = [line.split(",") for line in csv_data.decode().splitlines()[1:]]
    assert len(rows) == 5
    for row in rows:
        site_id = row[0]
        (line,) = [
            line
            for line in text.splitlines()
            if line.strip().startswith(site_id) and row[1] in line
        ]
        # period, up, down, power off, maintenance, unknown, availability, target, outages
        expected = [v for v in (*row[10:16], row[16] or None, row[18], row[17]) if v is not None]
        shown = [word for word in line.split() if NUMBER.match(word)]
        assert shown[-len(expected) :] == expected, line


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_html_lists_institutions_below_target_first_with_their_outages(
    noc: CollectorProcess, language: str
) -> None:
    data, content_type = fetch(noc, "html", language)
    assert content_type.startswith("text/html")
    page = data.decode()
    assert f'<html lang="{language}">' in page
    order = re.findall(r'data-site="([a-z0-9-]+)"', page)
    # Below target, worst first (jun-0004 0 %, jun-0003 97.396, hco-0007 98.656), then
    # those meeting it.
    assert order == ["jun-0004", "jun-0003", "hco-0007", "jun-0002", "jun-0001"]
    title = {"es": "Informe de disponibilidad 2026-10", "en": "Availability report 2026-10"}
    assert title[language] in page
    assert "availability_percent = 100 * up / (period - maintenance - excluded)" in page
    # jun-0001 was down from 2026-10-05 04:00 to 06:00 outside the window.
    assert "2026-10-05 04:00 \u2013 2026-10-05 06:00 (120 min)" in page
    # The windows that touched a listed site's period, with their reasons; not those
    # before jun-0003's service or outside the month.
    windows = re.findall(
        r"<tr><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td></tr>", page
    )
    assert windows == [("jun-0001", "2026-10-05 06:00", "2026-10-05 08:00", "cambio de radio")]


# -- the catalogues of the report


def extracted() -> dict[str, tuple[str, ...]]:
    messages: dict[str, tuple[str, ...]] = {}
    with (TEMPLATE_DIR / "sla.html").open("rb") as source:
        for _, _, message, _ in babel_extract(
            source, ("_", "gettext", "ngettext"), [], {"extensions": "jinja2.ext.i18n"}
        ):
            for text in message if isinstance(message, tuple) else (message,):
                if text:
                    messages[text] = tuple(sorted(PLACEHOLDER.findall(text)))
    return messages


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_message_of_the_report_is_translated(language: str) -> None:
    used = extracted()
    path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    with path.open("rb") as po:
        catalogue = {str(m.id): str(m.string) for m in read_po(po, locale=language) if m.id}
    assert sorted(set(used) - set(catalogue)) == [], "missing from the catalogue"
    assert sorted(set(catalogue) - set(used)) == [], "no longer used: remove it"
    for msgid, placeholders in used.items():
        assert catalogue[msgid], msgid
        assert tuple(sorted(PLACEHOLDER.findall(catalogue[msgid]))) == placeholders, msgid


def test_the_report_template_holds_no_text_outside_the_catalogues() -> None:
    source = (TEMPLATE_DIR / "sla.html").read_text("utf-8")
    source = re.sub(r"{%.*?%}|{{.*?}}|{#.*?#}", " ", source, flags=re.S)
    source = re.sub(r"<(style|script)\b.*?</\1>", " ", source, flags=re.S)
    text = re.sub(r"<[^>]*>", " ", source)
    assert re.fullmatch("[\\s\u2014\u00b7:,()\u2013;%]*", text), text.split()
