"""The NOC page in a real browser: Debian's Chromium, headless, driven by Playwright,
against a kipu-collector process with 60 sites over three projects.

Chromium is the system's (`/usr/bin/chromium`); Playwright never downloads one. Each
browser starts with a fresh profile. The run leaves a screenshot of the page at
test-artifacts/noc-page.png.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, sync_playwright

from collector.auth import TokenStore
from collector.liveness import Liveness
from collector.web.model import fold
from collector.web.viewers import hash_password
from tests.collector.pushing import post_write
from tests.collector.test_web_fleet import SILENT_FOR, FleetSite, fleet, inventory_yaml, pushes
from tests.collector_process import ROOT, CollectorProcess

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    # As root, Chromium's sandbox cannot start; the page is our own, on loopback.
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = ROOT / "test-artifacts" / "noc-page.png"
VIEWERS = {"jefe": ("jefe-todo", ["*"]), "ana": ("ana-junin", ["junin"])}
TIMEOUT_MS = 20_000


@dataclass
class Noc:
    url: str
    sites: list[FleetSite]

    def by_state(self, state: str) -> list[FleetSite]:
        return [site for site in self.sites if site.state == state]


@pytest.fixture(scope="module")
def noc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Noc]:
    """A collector process whose sites are in their planned states: reporting sites
    pushed their day and their present, silent ones pushed 15 minutes ago."""
    assert CHROMIUM.exists(), "Debian's chromium package is needed (apt-get install chromium)"
    directory = tmp_path_factory.mktemp("browser")
    sites = fleet(60)
    viewers = ["viewers:"]
    for name, (password, projects) in VIEWERS.items():
        listed = ", ".join(f'"{p}"' for p in projects)
        encoded = hash_password(password, n=1024)
        viewers.append(f'  - {{name: {name}, password_hash: "{encoded}", projects: [{listed}]}}')
    (directory / "sites.yaml").write_text(inventory_yaml(sites), encoding="utf-8")
    config = directory / "collector.yaml"
    # Sites stay reporting for the whole module's run, however slow the machine.
    config.write_text(
        "inventory: sites.yaml\nstate_dir: state\nsilent_after: 10m\n" + "\n".join(viewers)
    )
    state = directory / "state"
    tokens = TokenStore(state).issue_many([s.site_id for s in sites if s.state == "reporting"])
    liveness = Liveness(state, 600)
    for site in sites:
        if site.state == "silent":
            liveness.pushed(site.site_id, time.time() - SILENT_FOR)
    liveness.save(force=True)
    with CollectorProcess(config, directory / "collector.log") as process:
        now_ms = int(time.time() * 1000)
        for site in sites:
            if site.state == "reporting":
                for body in pushes(site, now_ms):
                    status, text = post_write(process.write_url, tokens[site.site_id], body)
                    assert status == 204, text
        yield Noc(process.url, sites)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@contextmanager
def browser(
    playwright: Playwright, profile: Path, viewer: str | None, **options: Any
) -> Iterator[BrowserContext]:
    """Chromium with a fresh profile, signed in as `viewer` (HTTP Basic)."""
    credentials = None
    if viewer is not None:
        credentials = {"username": viewer, "password": VIEWERS[viewer][0]}
    context = playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=str(CHROMIUM),
        args=CHROMIUM_ARGS,
        headless=True,
        http_credentials=credentials,  # type: ignore[arg-type]
        locale=options.pop("locale", "es-PE"),
        viewport={"width": 1400, "height": 1000},
        **options,
    )
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context
    finally:
        context.close()


def listed(page: Page) -> list[str]:
    """Site ids of the rows of the page."""
    return [
        str(href).removeprefix("/sites/").split("?")[0]
        for href in page.locator(".tree tbody tr td:first-child a").evaluate_all(
            "links => links.map(a => a.getAttribute('href'))"
        )
    ]


def test_the_page_shows_sites_in_every_state(
    noc: Noc, playwright: Playwright, tmp_path: Path
) -> None:
    with browser(playwright, tmp_path / "profile", "jefe") as context:
        page = context.new_page()
        response = page.goto(noc.url + "/")
        assert response is not None
        assert response.status == 200
        assert sorted(listed(page)) == sorted(site.site_id for site in noc.sites)
        for state in ("reporting", "silent", "never_seen"):
            rows = page.locator(f"tr.r-{state}")
            assert rows.count() == len(noc.by_state(state))
        # The state says itself in words, not only by colour.
        assert page.locator("tr.r-silent .st").first.inner_text() == "silencioso"
        assert page.locator("svg circle").count() == sum(
            1 for s in noc.sites if s.latitude is not None
        )
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000


def test_the_state_filter_and_the_search_narrow_the_list(
    noc: Noc, playwright: Playwright, tmp_path: Path
) -> None:
    with browser(playwright, tmp_path / "profile", "jefe") as context:
        page = context.new_page()
        page.goto(noc.url + "/")
        # A state link of the summary.
        page.locator(".summary a.silent").click()
        page.wait_for_url("**/?state=silent")
        assert sorted(listed(page)) == sorted(s.site_id for s in noc.by_state("silent"))
        # The form: a state and a search without accents nor capitals.
        page.goto(noc.url + "/")
        accented = next(s for s in noc.by_state("reporting") if not s.site_name.isascii())
        word = next(w for w in accented.site_name.split() if not w.isascii())
        page.select_option("select[name=state]", "reporting")
        page.fill("input[name=q]", fold(word).upper())
        page.press("input[name=q]", "Enter")
        page.wait_for_url("**/?q=*")
        expected = {s.site_id for s in noc.by_state("reporting") if fold(word) in fold(s.site_name)}
        assert set(listed(page)) == expected
        assert page.input_value("input[name=q]") == fold(word).upper()


def test_the_language_switch_changes_the_text(
    noc: Noc, playwright: Playwright, tmp_path: Path
) -> None:
    with browser(playwright, tmp_path / "profile", "jefe") as context:
        page = context.new_page()
        page.goto(noc.url + "/?project=junin")
        assert page.get_attribute("html", "lang") == "es"
        assert page.locator("form button").inner_text() == "Filtrar"
        page.get_by_role("link", name="English").click()
        page.wait_for_url("**lang=en*")
        assert page.get_attribute("html", "lang") == "en"
        assert page.locator("form button").inner_text() == "Filter"
        assert page.locator("label", has_text="Search").count() == 1
        assert {s.split("-")[0] for s in listed(page)} == {"jun"}  # the filter is kept
        # Following a site keeps the language.
        page.locator(".tree tbody a").first.click()
        page.wait_for_url("**/sites/*")
        assert page.get_attribute("html", "lang") == "en"
        assert page.get_by_text("Latest values").count() == 1


def test_a_scoped_viewer_never_sees_another_project(
    noc: Noc, playwright: Playwright, tmp_path: Path
) -> None:
    mine = {s.site_id for s in noc.sites if s.project == "junin"}
    others = [s for s in noc.sites if s.project != "junin"]
    with browser(playwright, tmp_path / "profile", "ana") as context:
        page = context.new_page()
        page.goto(noc.url + "/")
        assert set(listed(page)) == mine
        html = page.content()
        for site in others:
            assert site.site_id not in html
        assert "huanuco" not in html
        assert "cusco" not in html
        response = page.goto(noc.url + f"/sites/{others[0].site_id}")
        assert response is not None
        assert response.status == 404
        api = context.request.get(noc.url + "/api/v1/sites")
        assert api.status == 200
        assert {s["site_id"] for s in api.json()["sites"]} == mine
        rollups = context.request.get(noc.url + "/api/v1/rollups")
        assert {r["project"] for r in rollups.json()["rollups"]} == {"junin"}
        other = context.request.get(noc.url + f"/api/v1/sites/{others[0].site_id}")
        assert other.status == 404


def test_wrong_credentials_are_refused(noc: Noc, playwright: Playwright, tmp_path: Path) -> None:
    with browser(playwright, tmp_path / "profile", None) as context:
        answer = context.request.get(noc.url + "/api/v1/sites")
        assert answer.status == 401
        assert answer.headers["www-authenticate"] == 'Basic realm="kipu"'
        wrong = context.request.get(
            noc.url + "/",
            headers={"Authorization": "Basic YW5hOm5vcGU="},  # ana:nope
        )
        assert wrong.status == 401
        assert "ana-junin" not in json.dumps(dict(wrong.headers))


def test_the_page_works_without_javascript(
    noc: Noc, playwright: Playwright, tmp_path: Path
) -> None:
    with browser(
        playwright, tmp_path / "profile", "jefe", java_script_enabled=False, locale="en-GB"
    ) as context:
        page = context.new_page()
        page.goto(noc.url + "/")
        assert page.get_attribute("html", "lang") == "en"
        page.select_option("select[name=type]", "health")
        page.click("form button")
        page.wait_for_url("**type=health*")
        assert set(listed(page)) == {s.site_id for s in noc.sites if s.institution_type == "health"}
        # Without JavaScript the page reloads itself through its meta refresh.
        refresh = page.locator("noscript").first.inner_html()
        assert 'http-equiv="refresh"' in refresh
