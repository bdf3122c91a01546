"""What the page and the API show, without HTTP: filters, scope, tree, map, sparklines,
JSON objects. Pure functions, no event loop."""

from __future__ import annotations

import datetime
import json
import math

import pytest

from collector.inventory import Site
from collector.liveness import SiteState
from collector.snapshots import History, Latest, SiteView
from collector.web.model import (
    MAP_LATITUDES,
    MAP_LONGITUDES,
    Ago,
    FilterError,
    Scope,
    ago,
    backdrop,
    fold,
    history_object,
    is_site_id,
    map_size,
    parse_filters,
    preferred_role,
    project_point,
    rfc3339,
    row,
    site_map,
    site_object,
    sparkline,
    tree,
)


def site(
    site_id: str,
    *,
    name: str = "IE 1",
    project: str = "junin",
    region: str = "Junín",
    province: str = "Concepción",
    kind: str = "school",
    latitude: float | None = -11.9,
    longitude: float | None = -75.3,
    code: str = "",
) -> Site:
    return Site(
        site_id=site_id,
        site_name=name,
        project=project,
        region=region,
        province=province,
        district="Comas",
        ubigeo="120206",
        institution_type=kind,
        institution_code=code,
        upstream_node="nodo-1",
        access_tech="microwave",
        latitude=latitude,
        longitude=longitude,
    )


def view(
    found: Site, state: SiteState = "reporting", last: float | None = 1000.0, **latest: object
) -> SiteView:
    return SiteView(found, state, None if state == "never_seen" else last, Latest(**latest))  # type: ignore[arg-type]


VIEWS = [
    view(site("jun-1", name="IE Señor de Muruhuay", code="0123456")),
    view(site("jun-2", name="Puesto de Salud Comas", kind="health"), "silent"),
    view(
        site("hco-1", name="PS Monzón", project="huanuco", region="Huánuco", province="Huamalíes"),
        "never_seen",
    ),
    view(site("cus-1", name="Comisaría Ñuñoa", project="cusco", region="Cusco", kind="police")),
]


def test_fold_drops_accents_and_case() -> None:
    assert fold("Monzón ÑUÑOA Huánuco") == "monzon nunoa huanuco"


@pytest.mark.parametrize(
    ("text", "valid"),
    [("jun-0001", True), ("a.b_c-1", True), ("JUN-1", False), ("-a", False), ("", False)],
)
def test_site_ids(text: str, valid: bool) -> None:
    assert is_site_id(text) is valid


def ids(views: list[SiteView]) -> list[str]:
    return [v.site.site_id for v in views]


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([], ["jun-1", "jun-2", "hco-1", "cus-1"]),
        ([("state", ""), ("q", "  "), ("project", "")], ["jun-1", "jun-2", "hco-1", "cus-1"]),
        ([("state", "silent"), ("state", "never_seen")], ["jun-2", "hco-1"]),
        ([("project", "junin"), ("type", "health")], ["jun-2"]),
        ([("region", "huanuco")], ["hco-1"]),
        ([("region", "Huánuco")], ["hco-1"]),
        ([("q", "MONZON")], ["hco-1"]),
        ([("q", "ñuñoa")], ["cus-1"]),
        ([("q", "0123456")], ["jun-1"]),
        ([("q", "120206")], ["jun-1", "jun-2", "hco-1", "cus-1"]),
        ([("q", "HCO-")], ["hco-1"]),
    ],
)
def test_filters(pairs: list[tuple[str, str]], expected: list[str]) -> None:
    assert ids(parse_filters(pairs, VIEWS).apply(VIEWS)) == expected


@pytest.mark.parametrize(
    ("pairs", "parameter", "kind", "known"),
    [
        ([("state", "up")], "state", "value", ("reporting", "silent", "never_seen")),
        ([("project", "lima")], "project", "value", ("cusco", "huanuco", "junin")),
        ([("region", "Lima")], "region", "value", ("Cusco", "Huánuco", "Junín")),
        (
            [("type", "bank")],
            "type",
            "value",
            ("school", "health", "police", "plaza_wifi", "other"),
        ),
        ([("sort", "name")], "sort", "parameter", ("state", "project", "region", "type", "q")),
        ([("q", "x" * 101)], "q", "length", ()),
    ],
)
def test_refused_filters_say_why(
    pairs: list[tuple[str, str]], parameter: str, kind: str, known: tuple[str, ...]
) -> None:
    with pytest.raises(FilterError) as caught:
        parse_filters(pairs, VIEWS)
    assert (caught.value.parameter, caught.value.kind, caught.value.known) == (
        parameter,
        kind,
        known,
    )
    assert parameter in caught.value.message


def test_a_scope_hides_other_projects_even_as_filter_values() -> None:
    scope = Scope.of("ana", ["junin"])
    visible = scope.views(VIEWS)
    assert ids(visible) == ["jun-1", "jun-2"]
    with pytest.raises(FilterError) as caught:
        parse_filters([("project", "huanuco")], visible)
    assert caught.value.known == ("junin",)
    with pytest.raises(FilterError):
        parse_filters([("region", "Huánuco")], visible)
    assert Scope.of("jefe", ["*"]).projects is None
    assert ids(Scope.of("jefe", ["junin", "*"]).views(VIEWS)) == ids(VIEWS)
    assert ids(Scope().views(VIEWS)) == ids(VIEWS)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (-5, Ago(0, "s")),
        (0, Ago(0, "s")),
        (59.9, Ago(59, "s")),
        (60, Ago(1, "min")),
        (3599, Ago(59, "min")),
        (3600, Ago(1, "h")),
        (47 * 3600, Ago(47, "h")),
        (48 * 3600, Ago(2, "d")),
    ],
)
def test_ago(seconds: float, expected: Ago) -> None:
    assert ago(seconds) == expected


def test_the_latency_shown_is_the_pop_s_else_the_nearest_role() -> None:
    assert preferred_role({"internet": 1, "pop": 2}) == "pop"
    assert preferred_role({"gateway": 1, "internet": 2}) == "internet"
    assert preferred_role({"zeta": 1, "alpha": 2}) == "alpha"
    assert preferred_role({}) is None
    shown = row(view(site("x"), rtt_seconds={"pop": 0.0231}, loss_ratio={"pop": 0.015}), now=1180.0)
    assert shown.latency_ms == pytest.approx(23.1)
    assert shown.loss_percent == pytest.approx(1.5)
    assert shown.role == "pop"
    assert shown.ago == Ago(3, "min")
    assert shown.last_push == "1970-01-01T00:16:40Z"


def test_the_tree_counts_every_state_at_every_level_and_puts_problems_first() -> None:
    views = [
        *VIEWS,
        view(site("jun-3", name="A school", province="Huancayo")),
        view(site("jun-4", name="B school"), "never_seen"),
    ]
    projects = tree(views, now=1000.0)
    assert [p.name for p in projects] == ["cusco", "huanuco", "junin"]
    junin = projects[2]
    assert junin.counts == {"reporting": 2, "silent": 1, "never_seen": 1}
    (region,) = junin.children
    assert region.counts == junin.counts
    assert [p.name for p in region.children] == ["Concepción", "Huancayo"]
    concepcion = region.children[0]
    assert concepcion.counts == {"reporting": 1, "silent": 1, "never_seen": 1}
    assert [r.site.site_id for r in concepcion.rows] == ["jun-2", "jun-4", "jun-1"]
    assert sum(p.total for p in projects) == len(views)


def test_the_map_places_what_is_inside_peru_and_lists_the_rest() -> None:
    assert project_point(MAP_LATITUDES[1], MAP_LONGITUDES[0]) == (0.0, 0.0)
    width, height = map_size()
    assert project_point(MAP_LATITUDES[0], MAP_LONGITUDES[1]) == (width, height)
    assert project_point(-20.0, -75.0) is None
    views = [
        view(site("a", latitude=None, longitude=None)),
        view(site("b", latitude=40.4, longitude=-3.7)),  # Madrid, a typo
        view(site("c", latitude=-12.05, longitude=-77.03), "silent"),
        view(site("d", latitude=-12.0, longitude=-77.0)),
    ]
    found = site_map(views)
    assert [s.site_id for s in found.unplaced] == ["a", "b"]
    # Problems are drawn last, on top.
    assert [(d.site_id, d.state) for d in found.dots] == [("d", "reporting"), ("c", "silent")]


def test_the_backdrop_is_one_dot_per_cell() -> None:
    path = backdrop([(-12.0, -77.0), (-12.01, -77.01), (None, None), (5.0, -77.0), (-9.0, -75)])
    assert path.count("M") == 2


def test_a_sparkline_breaks_at_gaps_and_keeps_lone_points() -> None:
    line = sparkline([1.0, 2.0, None, 4.0, None, None, 2.0, 1.0, float("nan")], height=10)
    assert line.path == "M0 7.5L1 5.0M3 0.0h1M6 5.0L7 7.5"
    assert (line.top, line.last, line.points, line.width) == (4.0, 1.0, 5, 9.0)
    assert sparkline([0.001, 0.002], floor=5, scale=100).top == 5
    assert sparkline([50.0], top=100, height=10).path == "M0 5.0h1"
    assert sparkline([None, None]).path == ""


def test_a_site_object_has_the_design_s_names_and_valid_json() -> None:
    found = site_object(
        view(
            site("jun-1"),
            link_up=True,
            rtt_seconds={"pop": math.nan, "internet": 0.03},
            updated=1000.0,
        )
    )
    assert list(found)[:13] == [
        "site_id",
        "site_name",
        "project",
        "region",
        "province",
        "district",
        "ubigeo",
        "institution_type",
        "institution_code",
        "upstream_node",
        "access_tech",
        "latitude",
        "longitude",
    ]
    latest = found["latest"]
    assert isinstance(latest, dict)
    assert latest["rtt_seconds"] == {"internet": 0.03, "pop": None}
    json.dumps(found, allow_nan=False)
    history = History(300.0, 600.0, (None, 0.1), (0.0, math.inf), (1.0, None), (None, 3.0))
    document = history_object(history)
    assert document["loss_ratio"] == [0.0, None]
    assert (document["start"], document["end"]) == ("1970-01-01T00:00:00Z", rfc3339(600.0))
    json.dumps(document, allow_nan=False)


def test_rfc3339_is_utc_with_z() -> None:
    stamp = datetime.datetime(2026, 3, 1, 12, 0, 5, tzinfo=datetime.UTC).timestamp()
    assert rfc3339(stamp) == "2026-03-01T12:00:05Z"
    assert rfc3339(None) is None
