"""NOC overview: which sites report, where they are, the worst links, and the projects
and regions below their availability target."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import geomap
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import geomap as gm

from .common import (
    AVAILABILITY_COLOURS,
    DATASOURCE,
    PROJECT,
    REGION,
    new_dashboard,
    query,
    row,
    stat_panel,
    table_panel,
    thresholds,
    timeseries_panel,
    unit_override,
    value_mapping,
)

UID = "kipu-noc-overview"

STATE_COLOURS = {"reporting": "green", "silent": "red", "never_seen": "text"}

#: Every inventoried site with its coordinates and a state value for the map:
#: 2 reporting, 1 silent (pushed once, not within silent_after), 0 never seen.
SITE_STATES = f"""\
max by (site_id, site_name, project, region, province, institution_type, access_tech,
        latitude, longitude) (kipu_site_info{{{REGION}}})
* on (site_id) group_left ()
(
    (
        max by (site_id) (kipu_site_reporting)
      + max by (site_id) (kipu_site_last_push_timestamp_seconds > bool 0)
    )
  or
    max by (site_id) (kipu_site_reporting)
)"""

#: Joins a per-site series with the site's name and access technology.
WITH_NAME = (
    " * on (site_id) group_left (site_name, access_tech)"
    " max by (site_id, site_name, access_tech) (kipu_site_info)"
)

#: The availability target of each project (deploy/prometheus/rules/kipu-thresholds.yml).
TARGET = "max by (project) (kipu:threshold_availability_ratio)"


def _colour(name: str, colour: str) -> tuple[str, list[dm.DynamicConfigValue]]:
    return name, [
        dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": colour})
    ]


def _site_map() -> geomap.Panel:
    markers = (
        cb.MapLayerOptions()
        .type("markers")
        .name("Sites")
        .location(
            cb.FrameGeometrySource()
            .mode(cm.FrameGeometrySourceMode.COORDS)
            .latitude("latitude")
            .longitude("longitude")
        )
        .config(
            {
                "showLegend": True,
                "style": {
                    "color": {"field": "state", "fixed": "dark-green"},
                    "opacity": 0.8,
                    "size": {"fixed": 7},
                    "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
                    "text": {"field": "site_name", "mode": "field"},
                    "textConfig": {"fontSize": 10, "offsetY": -12},
                },
            }
        )
        .tooltip(True)
    )
    return (
        geomap.Panel()
        .title("Sites")
        .description(
            "Every inventoried site at its latitude and longitude (kipu_site_info), coloured"
            " by state: green reporting, red silent, grey never seen. Sites without"
            " coordinates are not drawn."
        )
        .datasource(DATASOURCE)
        .with_target(query(SITE_STATES, instant=True, table_format=True))
        .span(14)
        .height(16)
        .view(geomap.MapViewConfig().id("coords").lat(-9).lon(-75).zoom(5))
        .controls(geomap.ControlsOptions().show_zoom(True).mouse_wheel_zoom(True))
        .basemap(cb.MapLayerOptions().type("default").name("Basemap"))
        .layers([markers])
        .tooltip(geomap.TooltipOptions().mode(gm.TooltipMode.DETAILS))
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="convertFieldType",
                options={
                    "conversions": [
                        {"targetField": "latitude", "destinationType": "number"},
                        {"targetField": "longitude", "destinationType": "number"},
                    ]
                },
            )
        )
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="organize",
                options={"excludeByName": {"Time": True}, "renameByName": {"Value": "state"}},
            )
        )
        .thresholds(thresholds((None, "text"), (1, "red"), (2, "green")))
        .mappings(
            value_mapping(
                {
                    "0": ("never seen", "text"),
                    "1": ("silent", "red"),
                    "2": ("reporting", "green"),
                }
            )
        )
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
    )


def dashboard() -> db.Dashboard:
    """The NOC overview dashboard."""
    states = stat_panel(
        "Sites by state",
        "Inventoried sites per state (kipu_sites): reporting (pushed within the collector's"
        " silent_after), silent, never seen.",
        [query(f"sum by (state) (kipu_sites{{{REGION}}})", "{{state}}", instant=True)],
        unit="none",
        width=12,
        height=5,
    )
    for name, colour in STATE_COLOURS.items():
        states = states.override_by_name(*_colour(name, colour))
    problems = stat_panel(
        "Links down, power cuts",
        "Among reporting sites: links down now, and power cuts suspected (offline seconds"
        " grew within the last hour), from the collector's live rollups.",
        [
            query(f"sum(kipu_rollup_link_down_sites{{{REGION}}})", "links down", instant=True),
            query(
                f"sum(kipu_rollup_power_cut_sites{{{REGION}}})",
                "power cuts",
                ref="B",
                instant=True,
            ),
        ],
        unit="none",
        width=12,
        height=5,
        colours=thresholds((None, "green"), (1, "red")),
    )
    over_time = timeseries_panel(
        "Sites by state over time",
        "kipu_sites per state over time.",
        [query(f"sum by (state) (kipu_sites{{{REGION}}})", "{{state}}")],
        unit="none",
        width=10,
        height=16,
        stacked=True,
    )
    for name, colour in STATE_COLOURS.items():
        over_time = over_time.override_by_name(*_colour(name, colour))

    worst = table_panel(
        "Worst links",
        "The 15 site/role pairs with the most loss and the 15 with the highest mean RTT over"
        " the last 5 minutes (site_role:kipu_probe_loss:ratio_5m,"
        " site_role:kipu_probe_rtt_seconds:mean_5m), worst loss first.",
        [
            query(
                f"topk(15, site_role:kipu_probe_loss:ratio_5m{{{REGION}}}){WITH_NAME}",
                instant=True,
                table_format=True,
            ),
            query(
                f"topk(15, site_role:kipu_probe_rtt_seconds:mean_5m{{{REGION}}}){WITH_NAME}",
                ref="B",
                instant=True,
                table_format=True,
            ),
        ],
        renames={"Value #A": "loss", "Value #B": "mean RTT"},
        order=("site_id", "site_name", "role", "loss", "mean RTT", "access_tech", "region"),
        sort_by="loss",
        width=24,
        height=9,
        site_links=True,
    )
    worst = worst.override_by_name("loss", unit_override("percentunit"))
    worst = worst.override_by_name("mean RTT", unit_override("s"))

    projects_below = table_panel(
        "Projects below target",
        "Projects whose availability over the last 24 hours"
        " (project:kipu_link_availability:ratio_24h) is below their target"
        " (kipu:threshold_availability_ratio, deploy/prometheus/rules/kipu-thresholds.yml).",
        [
            query(
                f"project:kipu_link_availability:ratio_24h{{{PROJECT}}}"
                f" < on (project) group_left () {TARGET}",
                instant=True,
                table_format=True,
            )
        ],
        renames={"Value": "availability 24 h"},
        sort_by="availability 24 h",
        descending=False,
        unit="percentunit",
        width=12,
    )
    regions_below = table_panel(
        "Regions below target",
        "Regions whose availability over the last 24 hours"
        " (project_region:kipu_link_availability:ratio_24h) is below their project's target.",
        [
            query(
                f"project_region:kipu_link_availability:ratio_24h{{{REGION}}}"
                f" < on (project) group_left () {TARGET}",
                instant=True,
                table_format=True,
            )
        ],
        renames={"Value": "availability 24 h"},
        sort_by="availability 24 h",
        descending=False,
        unit="percentunit",
        width=12,
    )
    availability = timeseries_panel(
        "Availability per project (last hour)",
        "Up seconds over the hour before each point (project:kipu_link_availability:ratio_1h),"
        " against the project's target.",
        [
            query(f"project:kipu_link_availability:ratio_1h{{{PROJECT}}}", "{{project}}"),
            query(
                f"{TARGET} and on (project) project:kipu_link_availability:ratio_1h{{{PROJECT}}}",
                "{{project}} target",
                ref="B",
            ),
        ],
        unit="percentunit",
        width=24,
    ).thresholds(AVAILABILITY_COLOURS)

    return (
        new_dashboard(
            UID,
            "kipu: NOC overview",
            "Every site of the selected projects and regions: states, map, worst links,"
            " projects and regions below target.",
            sites=False,
            tags=["noc"],
        )
        .with_row(row("Sites"))
        .with_panel(states)
        .with_panel(problems)
        .with_panel(_site_map())
        .with_panel(over_time)
        .with_row(row("Links"))
        .with_panel(worst)
        .with_row(row("Availability"))
        .with_panel(projects_below)
        .with_panel(regions_below)
        .with_panel(availability)
    )
