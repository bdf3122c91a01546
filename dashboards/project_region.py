"""Project and region drill-down: availability per region, province and institution type,
latency and loss per target role, WiFi use and traffic."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import table

from .common import (
    AVAILABILITY_COLOURS,
    PROJECT,
    REGION,
    new_dashboard,
    query,
    row,
    table_panel,
    timeseries_panel,
    unit_override,
)

UID = "kipu-project-region"

WINDOWS = (("1h", "1 h"), ("24h", "24 h"), ("30d", "30 d"))


def _windows_table(
    title: str, description: str, level: str, selector: str, width: int = 12
) -> table.Panel:
    """Availability of `level` over the three windows, one column each."""
    targets = [
        query(
            f"{level}:kipu_link_availability:ratio_{window}{{{selector}}}",
            ref=ref,
            instant=True,
            table_format=True,
        )
        for ref, (window, _) in zip("ABC", WINDOWS, strict=True)
    ]
    renames = {f"Value #{ref}": label for ref, (_, label) in zip("ABC", WINDOWS, strict=True)}
    return table_panel(
        title,
        description,
        targets,
        renames=renames,
        sort_by="24 h",
        descending=False,
        unit="percentunit",
        width=width,
    ).thresholds(AVAILABILITY_COLOURS)


def dashboard() -> db.Dashboard:
    """The project and region drill-down dashboard."""
    regions = _windows_table(
        "Availability per region",
        "Up seconds over each window's seconds, all sites of the region pooled"
        " (project_region:kipu_link_availability:ratio_1h, _24h, _30d). Time a site did not"
        " account for (no data) counts as not up.",
        "project_region",
        REGION,
    )
    types = _windows_table(
        "Availability per institution type",
        "The same per project and institution type"
        " (project_institution_type:kipu_link_availability:ratio_*); not filtered by region.",
        "project_institution_type",
        PROJECT,
    )
    provinces = table_panel(
        "Availability per province (24 h)",
        "The mean of the province's sites' availability over the last 24 hours"
        " (site:kipu_link_availability:ratio_24h), and how many sites it has.",
        [
            query(
                "avg by (project, region, province)"
                f" (site:kipu_link_availability:ratio_24h{{{REGION}}})",
                instant=True,
                table_format=True,
            ),
            query(
                "count by (project, region, province)"
                f" (site:kipu_link_availability:ratio_24h{{{REGION}}})",
                ref="B",
                instant=True,
                table_format=True,
            ),
        ],
        renames={"Value #A": "availability 24 h", "Value #B": "sites"},
        sort_by="availability 24 h",
        descending=False,
        width=12,
    ).override_by_name("availability 24 h", unit_override("percentunit"))
    worst_sites = table_panel(
        "Least available sites (24 h)",
        "The 20 sites with the lowest availability over the last 24 hours"
        " (site:kipu_link_availability:ratio_24h); a click opens the site.",
        [
            query(
                f"bottomk(20, site:kipu_link_availability:ratio_24h{{{REGION}}})",
                instant=True,
                table_format=True,
            )
        ],
        hidden=("Time", "project", "district", "institution_code", "upstream_node"),
        renames={"Value": "availability 24 h"},
        order=("site_id", "site_name", "availability 24 h", "institution_type", "access_tech"),
        sort_by="availability 24 h",
        descending=False,
        unit="percentunit",
        width=12,
        site_links=True,
    ).thresholds(AVAILABILITY_COLOURS)
    over_time = timeseries_panel(
        "Availability per region (last hour)",
        "project_region:kipu_link_availability:ratio_1h over time.",
        [
            query(
                f"project_region:kipu_link_availability:ratio_1h{{{REGION}}}",
                "{{project}} {{region}}",
            )
        ],
        unit="percentunit",
        width=12,
    )
    states = timeseries_panel(
        "Sites by state per region",
        "Inventoried sites per region and state (kipu_sites).",
        [
            query(
                f"sum by (project, region, state) (kipu_sites{{{REGION}}})",
                "{{region}} {{state}}",
            )
        ],
        unit="none",
        width=12,
    )
    rtt = timeseries_panel(
        "RTT p90 per role",
        "90th percentile of the probes' RTT over the last 5 minutes, all sites of the region"
        " per target role (project_region_role:kipu_probe_rtt_seconds:p90_5m).",
        [
            query(
                f"project_region_role:kipu_probe_rtt_seconds:p90_5m{{{REGION}}}",
                "{{region}} {{role}}",
            )
        ],
        unit="s",
    )
    loss = timeseries_panel(
        "Loss per role",
        "Probes lost over the last 5 minutes per region and target role"
        " (project_region_role:kipu_probe_loss:ratio_5m).",
        [
            query(
                f"project_region_role:kipu_probe_loss:ratio_5m{{{REGION}}}",
                "{{region}} {{role}}",
            )
        ],
        unit="percentunit",
    )
    problems = timeseries_panel(
        "Links down and power cuts",
        "Reporting sites with the link down, and with a power cut suspected, per region"
        " (the collector's rollups).",
        [
            query(
                f"sum by (project, region) (kipu_rollup_link_down_sites{{{REGION}}})",
                "{{region}} links down",
            ),
            query(
                f"sum by (project, region) (kipu_rollup_power_cut_sites{{{REGION}}})",
                "{{region}} power cuts",
                ref="B",
            ),
        ],
        unit="none",
        width=24,
        height=6,
    )
    wifi = timeseries_panel(
        "WiFi clients",
        "Clients on the sites' access points, summed per region"
        " (project_region:kipu_wifi_clients:sum).",
        [query(f"project_region:kipu_wifi_clients:sum{{{REGION}}}", "{{region}}")],
        unit="none",
    )
    traffic = timeseries_panel(
        "Traffic",
        "Interface traffic of the sites' devices, summed per region and direction"
        " (project_region:kipu_interface_bits:rate5m).",
        [
            query(
                f"project_region:kipu_interface_bits:rate5m{{{REGION}}}",
                "{{region}} {{direction}}",
            )
        ],
        unit="bps",
    )
    return (
        new_dashboard(
            UID,
            "kipu: project and region",
            "Drill-down into the selected projects and regions: availability per region,"
            " province and institution type, latency and loss per role, WiFi and traffic.",
            sites=False,
            tags=["project"],
        )
        .with_row(row("Availability"))
        .with_panel(regions)
        .with_panel(types)
        .with_panel(provinces)
        .with_panel(worst_sites)
        .with_panel(over_time)
        .with_panel(states)
        .with_row(row("Latency and loss"))
        .with_panel(rtt)
        .with_panel(loss)
        .with_panel(problems)
        .with_row(row("WiFi and traffic"))
        .with_panel(wifi)
        .with_panel(traffic)
    )
