"""HTTP of the NOC page and the read API: routes, viewers' credentials, answers.

Every handler takes the collector's site views on the event loop (cheap, frozen), then
builds and renders the answer in a worker thread, so a 600-site page does not hold up
the pushes. The time spent there is in a `Server-Timing` header.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

from aiohttp import web

from collector.config import CollectorConfig, Maintenance
from collector.inventory import INSTITUTION_TYPES, Inventory
from collector.liveness import STATES
from collector.rollup import rollups
from collector.snapshots import History, SiteView
from collector.ubigeo import districts
from collector.web import model
from collector.web.i18n import LANGUAGES, load_catalogues, negotiate
from collector.web.model import FilterError, Filters, Scope
from collector.web.render import Renderer
from collector.web.viewers import REALM, Gate
from kipu.version import __version__

REFRESH = 30  # seconds between reloads of the page
ROLLUP_FILTERS = ("project", "region", "type")


class Source(Protocol):
    """What the web part reads of the collector (`collector.app.Collector`)."""

    @property
    def config(self) -> CollectorConfig: ...

    def clock(self) -> float: ...

    def site_views(self) -> tuple[SiteView, ...]: ...

    def history(self, site_id: str) -> History | None: ...

    @property
    def inventory(self) -> Inventory: ...

    @property
    def maintenance(self) -> Maintenance: ...

    async def save_ledger(self) -> None: ...


@dataclass(frozen=True)
class Assets:
    """What the pages need from files: compiled templates and catalogues, the map's
    backdrop. Read once per process."""

    renderer: Renderer
    backdrop: str


@functools.cache
def load_assets() -> Assets:
    """Read templates, catalogues and districts (blocking: call from a worker thread)."""
    renderer = Renderer(load_catalogues(), globals_={"version": __version__})
    capitals = ((d.latitude, d.longitude) for d in districts().values())
    return Assets(renderer, model.backdrop(capitals))


@dataclass
class WebState:
    source: Source
    gate: Gate = field(default_factory=Gate)
    assets: Assets | None = None


WEB = web.AppKey("kipu_web", WebState)


def install(app: web.Application, source: Source) -> None:
    """Add the NOC page (`/`, `/sites/{id}`) and the read API to `app`."""
    app[WEB] = WebState(source)
    app.router.add_get("/", _index)
    app.router.add_get("/sites/{site_id}", _site)
    app.router.add_get("/api/v1/sites", _api_sites)
    app.router.add_get("/api/v1/sites/{site_id}", _api_site)
    app.router.add_get("/api/v1/rollups", _api_rollups)
    app.router.add_get("/api/v1/reports/sla", _api_report_sla)
    app.router.add_get("/api/v1/reports/panel", _api_report_panel)
    app.cleanup_ctx.append(_load)


async def _load(app: web.Application) -> AsyncIterator[None]:
    app[WEB].assets = await asyncio.to_thread(load_assets)
    yield


# -- who asks, in which language


async def _scope(request: web.Request) -> Scope | None:
    """The asker's scope; None for missing or wrong credentials (then 401)."""
    state = request.app[WEB]
    viewers = state.source.config.viewers
    if viewers is None:
        return Scope()
    viewer = await state.gate.viewer(request.headers.get("Authorization"), viewers)
    if viewer is None:
        return None
    return Scope.of(viewer.name, viewer.projects)


@dataclass(frozen=True)
class _Language:
    code: str
    explicit: bool
    """Chosen with ?lang= (then every link keeps it)."""


def _language(request: web.Request) -> tuple[_Language, FilterError | None]:
    negotiated = _Language(negotiate(request.headers.get("Accept-Language")), False)
    chosen = request.query.getall("lang", [])
    if not chosen:
        return negotiated, None
    value = chosen[-1].strip()
    if value not in LANGUAGES:
        return negotiated, FilterError("lang", value, LANGUAGES)
    return _Language(value, True), None


# -- the page


def _assets(request: web.Request) -> Assets:
    assets = request.app[WEB].assets
    assert assets is not None, "the app's startup loads the assets"
    return assets


async def _html(
    request: web.Request,
    status: int,
    build: Callable[[], tuple[str, dict[str, Any]]],
    language: _Language,
    scope: Scope | None,
) -> web.Response:
    """Render `build()`'s template and context in a worker thread."""
    renderer = _assets(request).renderer
    pairs = list(request.query.items())
    common = {
        "link": _linker(pairs, language),
        "lang_query": f"?lang={language.code}" if language.explicit else "",
        "lang_explicit": language.explicit,
        "scope": scope or Scope(),
        "refresh": REFRESH if status == 200 else None,
    }

    def render() -> tuple[str, float]:
        started = time.perf_counter()
        template, context = build()
        text = renderer.render(template, language.code, **common, **context)
        return text, time.perf_counter() - started

    text, seconds = await asyncio.to_thread(render)
    response = web.Response(status=status, text=text, content_type="text/html")
    response.headers["Content-Language"] = language.code
    return _finish(request, response, seconds)


def _finish(request: web.Request, response: web.Response, seconds: float) -> web.Response:
    response.headers["Server-Timing"] = f"render;dur={seconds * 1000:.2f}"
    # What a viewer sees depends on who asks: no shared cache may keep it.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Vary"] = "Accept-Language, Authorization"
    if "gzip" in request.headers.get("Accept-Encoding", "").lower():
        # Chosen outright: aiohttp would pick deflate first from "gzip, deflate, br".
        response.enable_compression(web.ContentCoding.gzip)
    return response


def _linker(pairs: Sequence[tuple[str, str]], language: _Language) -> Callable[..., str]:
    """`link(path, keep=True, **changes)`: a URL keeping the query's filters (unless
    keep is false) and the chosen language, with `changes` (None or "" removes)."""

    def link(path: str = "/", keep: bool = True, **changes: str | None) -> str:
        kept = [
            (name, value)
            for name, value in pairs
            if value and name not in changes and name != "lang" and keep
        ]
        if language.explicit and "lang" not in changes:
            kept.append(("lang", language.code))
        kept.extend((name, value) for name, value in changes.items() if value)
        query = urlencode(kept)
        return path + ("?" + query if query else "")

    return link


async def _page_error(
    request: web.Request,
    status: int,
    language: _Language,
    scope: Scope | None = None,
    error: FilterError | None = None,
) -> web.Response:
    def build() -> tuple[str, dict[str, Any]]:
        return "error.html", {"status": status, "error": error, "max_query": model.MAX_QUERY}

    return await _html(request, status, build, language, scope)


async def _page_scope(request: web.Request, language: _Language) -> Scope | web.Response:
    scope = await _scope(request)
    if scope is not None:
        return scope
    response = await _page_error(request, 401, language)
    response.headers["WWW-Authenticate"] = REALM
    return response


async def _index(request: web.Request) -> web.Response:
    language, bad_language = _language(request)
    scope = await _page_scope(request, language)
    if isinstance(scope, web.Response):
        return scope
    if bad_language is not None:
        return await _page_error(request, 400, language, scope, bad_language)
    source = request.app[WEB].source
    views = scope.views(source.site_views())
    now = source.clock()
    try:
        filters = model.parse_filters(request.query.items(), views, ignored=("lang",))
    except FilterError as err:
        return await _page_error(request, 400, language, scope, err)
    backdrop = _assets(request).backdrop

    def build() -> tuple[str, dict[str, Any]]:
        return "index.html", _index_context(views, filters, now, backdrop)

    return await _html(request, 200, build, language, scope)


def _index_context(
    views: list[SiteView], filters: Filters, now: float, backdrop: str
) -> dict[str, Any]:
    listed = filters.apply(views)
    return {
        "filters": filters,
        "groups": model.tree(listed, now),
        "listed": len(listed),
        "total": len(views),
        # The state links show what each state would list with the other filters.
        "state_counts": model.state_counts(
            view for view in views if filters.matches(view, ignore_state=True)
        ),
        "map": model.site_map(listed),
        "backdrop": backdrop,
        "states": STATES,
        "projects": sorted({view.site.project for view in views}),
        "regions": sorted({view.site.region for view in views}, key=model.fold),
        "types": INSTITUTION_TYPES,
        "now": model.rfc3339(now),
    }


def _find(views: Sequence[SiteView], site_id: str) -> SiteView | None:
    if not model.is_site_id(site_id):
        return None
    return next((view for view in views if view.site.site_id == site_id), None)


async def _site(request: web.Request) -> web.Response:
    language, bad_language = _language(request)
    scope = await _page_scope(request, language)
    if isinstance(scope, web.Response):
        return scope
    if bad_language is not None:
        return await _page_error(request, 400, language, scope, bad_language)
    unknown = [name for name in request.query if name != "lang"]
    if unknown:
        error = FilterError(unknown[0], request.query[unknown[0]], ("lang",), "parameter")
        return await _page_error(request, 400, language, scope, error)
    source = request.app[WEB].source
    site_id = request.match_info["site_id"]
    view = _find(scope.views(source.site_views()), site_id)
    if view is None:
        return await _page_error(request, 404, language, scope)
    history = source.history(site_id)
    now = source.clock()

    def build() -> tuple[str, dict[str, Any]]:
        return "site.html", {"detail": model.site_detail(view, history, now)}

    return await _html(request, 200, build, language, scope)


# -- the API


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _api_scope(request: web.Request) -> Scope | web.Response:
    scope = await _scope(request)
    if scope is not None:
        return scope
    response = _json_error(401, "a viewer's name and password are required (HTTP Basic)")
    response.headers["WWW-Authenticate"] = REALM
    return response


async def _json(request: web.Request, build: Callable[[], object]) -> web.Response:
    def encode() -> tuple[str, float]:
        started = time.perf_counter()
        text = json.dumps(build(), ensure_ascii=False, separators=(",", ":"))
        return text, time.perf_counter() - started

    text, seconds = await asyncio.to_thread(encode)
    response = web.Response(text=text, content_type="application/json")
    return _finish(request, response, seconds)


async def _api_sites(request: web.Request) -> web.Response:
    scope = await _api_scope(request)
    if isinstance(scope, web.Response):
        return scope
    views = scope.views(request.app[WEB].source.site_views())
    try:
        filters = model.parse_filters(request.query.items(), views)
    except FilterError as err:
        return _json_error(400, err.message)

    def build() -> object:
        listed = filters.apply(views)
        return {
            "sites": [model.site_object(view) for view in listed],
            "counts": model.state_counts(listed),
        }

    return await _json(request, build)


async def _api_site(request: web.Request) -> web.Response:
    scope = await _api_scope(request)
    if isinstance(scope, web.Response):
        return scope
    if request.query:
        name = next(iter(request.query))
        return _json_error(400, FilterError(name, "", (), "parameter").message)
    source = request.app[WEB].source
    site_id = request.match_info["site_id"]
    view = _find(scope.views(source.site_views()), site_id)
    if view is None:
        return _json_error(404, f"no site {site_id!r}")
    history = source.history(site_id)

    def build() -> object:
        found = model.site_object(view)
        found["history"] = None if history is None else model.history_object(history)
        return found

    return await _json(request, build)


async def _api_rollups(request: web.Request) -> web.Response:
    scope = await _api_scope(request)
    if isinstance(scope, web.Response):
        return scope
    views = scope.views(request.app[WEB].source.site_views())
    try:
        filters = model.parse_filters(request.query.items(), views, allowed=ROLLUP_FILTERS)
    except FilterError as err:
        return _json_error(400, err.message)

    def build() -> object:
        return {"rollups": [model.rollup_object(r) for r in rollups(filters.apply(views))]}

    return await _json(request, build)


# -- reports (collector.reports: computed from the ledger in a worker thread)

SLA_PARAMETERS = ("month", "project", "format", "lang")
# WeasyPrint needs about 30 MB and 2-3 s per 100 institutions (BENCHMARKS.md): larger
# PDFs are made by the command line, outside the collector's process.
PDF_MAX_SITES = 2000
PANEL_PARAMETERS = ("from", "to")


def _report_query(request: web.Request, allowed: Sequence[str]) -> dict[str, str] | web.Response:
    for name in request.query:
        if name not in allowed:
            return _json_error(400, FilterError(name, "", allowed, "parameter").message)
    return {name: request.query.getall(name)[-1].strip() for name in request.query}


def _download(
    request: web.Request, body: bytes, content_type: str, name: str, seconds: float
) -> web.Response:
    response = web.Response(body=body, content_type=content_type)
    if content_type.startswith("text/"):
        response.charset = "utf-8"
    response.headers["Content-Disposition"] = f'inline; filename="{name}"'
    return _finish(request, response, seconds)


async def _report_request(
    request: web.Request, allowed: Sequence[str]
) -> tuple[Scope, dict[str, str]] | web.Response:
    """The viewer's scope and the report's parameters, with the ledger saved first (the
    report reads it from disk); or the answer refusing the request."""
    scope = await _api_scope(request)
    if isinstance(scope, web.Response):
        return scope
    query = _report_query(request, allowed)
    if isinstance(query, web.Response):
        return query
    await request.app[WEB].source.save_ledger()
    return scope, query


async def _build(build: Callable[[], bytes]) -> tuple[bytes, float] | web.Response:
    """`build` run in a worker thread: its body and the seconds it took, or a 400."""
    from collector import reports  # noqa: PLC0415 - the reports load on first use

    started = time.perf_counter()
    try:
        body = await asyncio.to_thread(build)
    except reports.ReportError as err:
        return _json_error(400, str(err))
    return body, time.perf_counter() - started


async def _api_report_sla(request: web.Request) -> web.Response:
    from collector import reports  # noqa: PLC0415 - the reports load on first use
    from collector.reports import render, sla  # noqa: PLC0415

    asked = await _report_request(request, SLA_PARAMETERS)
    if isinstance(asked, web.Response):
        return asked
    scope, query = asked
    month, project = query.get("month", ""), query.get("project") or None
    kind = query.get("format", "csv")
    if kind not in reports.FORMATS:
        return _json_error(400, FilterError("format", kind, reports.FORMATS).message)
    language, bad_language = _language(request)
    if bad_language is not None:
        return _json_error(400, bad_language.message)
    if project is not None and not scope.sees(project):
        return _json_error(400, f"project: no project {project!r} in the inventory")
    source = request.app[WEB].source
    config, inventory, maintenance = source.config, source.inventory, source.maintenance

    def build() -> bytes:
        report = reports.sla_report(
            config, inventory, maintenance, month, project=project, allowed=scope.projects
        )
        if kind == "csv":
            return sla.to_csv(report.rows).encode()
        if kind == "pdf" and len(report.rows) > PDF_MAX_SITES:
            raise reports.ReportError(
                f"format: a PDF of {len(report.rows)} institutions is too large to make "
                f"here (at most {PDF_MAX_SITES}): ask for one project, or for CSV or HTML "
                "(the command line makes any size)"
            )
        document = render.html(report, language.code)
        return document.encode() if kind == "html" else render.pdf(document)

    built = await _build(build)
    if isinstance(built, web.Response):
        return built
    body, seconds = built
    name = f"sla-{month}{'-' + project if project else ''}.{kind}"
    content_type = {"csv": "text/csv", "html": "text/html", "pdf": "application/pdf"}[kind]
    response = _download(request, body, content_type, name, seconds)
    if kind != "csv":
        response.headers["Content-Language"] = language.code
    return response


async def _api_report_panel(request: web.Request) -> web.Response:
    from collector import reports  # noqa: PLC0415 - the reports load on first use
    from collector.reports import panel  # noqa: PLC0415

    asked = await _report_request(request, PANEL_PARAMETERS)
    if isinstance(asked, web.Response):
        return asked
    scope, query = asked
    source = request.app[WEB].source
    config, inventory, maintenance = source.config, source.inventory, source.maintenance
    first, last = query.get("from", ""), query.get("to", "")

    def build() -> bytes:
        cells = reports.panel_report(
            config, inventory, maintenance, first, last, allowed=scope.projects
        )
        return panel.to_csv(cells).encode()

    built = await _build(build)
    if isinstance(built, web.Response):
        return built
    body, seconds = built
    return _download(request, body, "text/csv", f"panel-{first}-{last}.csv", seconds)
