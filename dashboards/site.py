"""Site detail: the RTT distribution over time, loss, availability, link state, power cuts,
WiFi use, traffic and the site's SNMP devices."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import heatmap, statetimeline
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import heatmap as hm

from .common import (
    AVAILABILITY_COLOURS,
    DATASOURCE,
    SITE,
    legend,
    new_dashboard,
    query,
    row,
    stat_panel,
    table_panel,
    thresholds,
    timeseries_panel,
    value_mapping,
)

UID = "kipu-site"

UP_DOWN = value_mapping({"0": ("down", "red"), "1": ("up", "green")})
PER_TARGET = "site_id, target, role"


def _state_timeline(
    title: str, description: str, expr: str, legend_format: str
) -> statetimeline.Panel:
    return (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(query(expr, legend_format))
        .span(12)
        .height(8)
        .show_value(cm.VisibilityMode.NEVER)
        .merge_values(True)
        .row_height(0.8)
        .legend(legend())
        .mappings(UP_DOWN)
        .thresholds(thresholds((None, "red"), (1, "green")))
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
    )


def _rtt_heatmap() -> heatmap.Panel:
    return (
        heatmap.Panel()
        .title("RTT distribution")
        .description(
            "How the probes' round-trip times spread over time, from the RTT histogram's"
            " buckets (kipu_probe_rtt_seconds_bucket, 0.5 ms to 8 s), all targets of the"
            " selected sites together: a darker cell holds more probes."
        )
        .datasource(DATASOURCE)
        .with_target(
            query(
                f"sum by (le) (rate(kipu_probe_rtt_seconds_bucket{{{SITE}}}[$__rate_interval]))",
                "{{le}}",
                heatmap_format=True,
            )
        )
        .span(12)
        .height(8)
        .calculate(False)
        .rows_frame(heatmap.RowsHeatmapOptions().layout(cm.HeatmapCellLayout.LE))
        .color(
            heatmap.HeatmapColorOptions()
            .mode(hm.HeatmapColorMode.SCHEME)
            .scheme("Oranges")
            .scale(hm.HeatmapColorScale.EXPONENTIAL)
            .exponent(0.5)
            .fill("dark-orange")
            .steps(64)
            .reverse(False)
        )
        .y_axis(heatmap.YAxisConfig().unit("s").decimals(0))
        .cell_gap(1)
        .show_tooltip()
        .show_y_histogram()
        .show_legend()
    )


def dashboard() -> db.Dashboard:
    """The site detail dashboard."""
    inventory = table_panel(
        "Site",
        "The site's inventory entry (kipu_site_info).",
        [query(f"kipu_site_info{{{SITE}}}", instant=True, table_format=True)],
        hidden=("Time", "Value", "__name__", "job", "instance"),
        order=(
            "site_id",
            "site_name",
            "institution_type",
            "institution_code",
            "project",
            "region",
            "province",
            "district",
            "ubigeo",
            "upstream_node",
            "access_tech",
        ),
        width=24,
        height=5,
    )
    link = stat_panel(
        "Link",
        "Whether the site's link is up now (kipu_link_up, by the agent's up_when rule).",
        [query(f"max by (site_id) (kipu_link_up{{{SITE}}})", "{{site_id}}", instant=True)],
        unit="none",
        colours=thresholds((None, "red"), (1, "green")),
        mappings=UP_DOWN,
    )
    reporting = stat_panel(
        "Reporting",
        "Whether the site pushed within the collector's silent_after, and how long ago.",
        [
            query(
                f"max by (site_id) (kipu_site_reporting{{{SITE}}})",
                "{{site_id}}",
                instant=True,
            ),
        ],
        unit="none",
        colours=thresholds((None, "red"), (1, "green")),
        mappings=value_mapping({"0": ("silent", "red"), "1": ("reporting", "green")}),
    )
    last_push = stat_panel(
        "Last push",
        "Seconds since the collector last accepted a push from the site"
        " (kipu_site_last_push_timestamp_seconds).",
        [
            query(
                f"time() - max by (site_id) (kipu_site_last_push_timestamp_seconds{{{SITE}}})",
                "{{site_id}}",
                instant=True,
            )
        ],
        unit="s",
        colours=thresholds((None, "green"), (90, "orange"), (900, "red")),
        decimals=0,
    )
    availability = stat_panel(
        "Availability",
        "Up seconds over the window's seconds (site:kipu_link_availability:ratio_1h, _24h,"
        " _30d); time without data counts as not up, so a new site starts low.",
        [
            query(
                f"site:kipu_link_availability:ratio_{window}{{{SITE}}}",
                f"{{{{site_id}}}} {label}",
                ref=ref,
                instant=True,
            )
            for ref, window, label in (
                ("A", "1h", "1 h"),
                ("B", "24h", "24 h"),
                ("C", "30d", "30 d"),
            )
        ],
        unit="percentunit",
        colours=AVAILABILITY_COLOURS,
        decimals=2,
    )
    mean_rtt = timeseries_panel(
        "Mean RTT per target",
        "Mean round-trip time of each probe target (kipu_probe_rtt_seconds sum over count).",
        [
            query(
                f"sum by ({PER_TARGET}) (rate(kipu_probe_rtt_seconds_sum{{{SITE}}}"
                "[$__rate_interval]))\n/\n"
                f"sum by ({PER_TARGET}) (rate(kipu_probe_rtt_seconds_count{{{SITE}}}"
                "[$__rate_interval]))",
                "{{site_id}} {{target}} ({{role}})",
            )
        ],
        unit="s",
    )
    loss = timeseries_panel(
        "Loss per target",
        "Share of echo requests without an answer in time"
        " (1 - received / sent, kipu_probe_packets_*_total).",
        [
            query(
                "1 - (\n"
                f"sum by ({PER_TARGET}) (rate(kipu_probe_packets_received_total{{{SITE}}}"
                "[$__rate_interval]))\n/\n"
                f"sum by ({PER_TARGET}) (rate(kipu_probe_packets_sent_total{{{SITE}}}"
                "[$__rate_interval]))\n)",
                "{{site_id}} {{target}} ({{role}})",
            )
        ],
        unit="percentunit",
    ).min(0)
    jitter = timeseries_panel(
        "Jitter per target",
        "RFC 3550 smoothed jitter of each probe target (kipu_probe_jitter_seconds).",
        [query(f"kipu_probe_jitter_seconds{{{SITE}}}", "{{site_id}} {{target}} ({{role}})")],
        unit="s",
    )
    link_state = _state_timeline(
        "Link state",
        "When the link was up and down (kipu_link_up).",
        f"max by (site_id) (kipu_link_up{{{SITE}}})",
        "{{site_id}}",
    )
    availability_over_time = timeseries_panel(
        "Availability (last hour)",
        "site:kipu_link_availability:ratio_1h over time.",
        [query(f"site:kipu_link_availability:ratio_1h{{{SITE}}}", "{{site_id}}")],
        unit="percentunit",
    ).thresholds(AVAILABILITY_COLOURS)
    outages = stat_panel(
        "Outages",
        "Link outages in the dashboard's time range (kipu_link_outages_total).",
        [
            query(
                f"max by (site_id) (increase(kipu_link_outages_total{{{SITE}}}[$__range]))",
                "{{site_id}}",
                instant=True,
            )
        ],
        unit="none",
        width=6,
        colours=thresholds((None, "green"), (1, "orange"), (5, "red")),
        decimals=0,
    )
    power_cuts = stat_panel(
        "Time off (power cuts)",
        "Seconds the agent was off in the dashboard's time range: the gap since its last"
        " heartbeat, counted when it starts again (kipu_agent_offline_seconds_total). Time"
        " off with the boot time moving is a power cut; link down time without it is a"
        " link cut.",
        [
            query(
                "max by (site_id) (increase(kipu_agent_offline_seconds_total"
                f"{{{SITE}}}[$__range]))",
                "{{site_id}}",
                instant=True,
            )
        ],
        unit="s",
        width=6,
        colours=thresholds((None, "green"), (1, "orange"), (3600, "red")),
        decimals=0,
    )
    reboots = stat_panel(
        "Reboots",
        "Times the site's box booted in the dashboard's time range"
        " (changes of kipu_host_boot_time_seconds).",
        [
            query(
                f"max by (site_id) (changes(kipu_host_boot_time_seconds{{{SITE}}}[$__range]))",
                "{{site_id}}",
                instant=True,
            )
        ],
        unit="none",
        width=6,
        colours=thresholds((None, "green"), (1, "orange")),
        decimals=0,
    )
    off_over_time = timeseries_panel(
        "Time off per interval",
        "Seconds off added in each interval (increase of kipu_agent_offline_seconds_total):"
        " the bar appears when the agent starts again after the cut.",
        [
            query(
                "max by (site_id) (increase(kipu_agent_offline_seconds_total"
                f"{{{SITE}}}[$__rate_interval]))",
                "{{site_id}}",
            )
        ],
        unit="s",
        width=6,
        height=4,
        bars=True,
    )
    wifi = timeseries_panel(
        "WiFi clients per SSID",
        "Clients associated per SSID on the site's access points (kipu_wifi_clients).",
        [
            query(
                f"sum by (site_id, device, ssid) (kipu_wifi_clients{{{SITE}}})",
                "{{site_id}} {{device}} {{ssid}}",
            )
        ],
        unit="none",
    )
    wifi_more = timeseries_panel(
        "Hotspot users, DHCP leases, distinct clients today",
        "Hotspot sessions (kipu_wifi_hotspot_users), DHCP leases (kipu_dhcp_leases) and"
        " distinct clients since local midnight (kipu_wifi_unique_clients, from a keyed"
        " hash: no client address is ever stored).",
        [
            query(f"kipu_wifi_hotspot_users{{{SITE}}}", "{{site_id}} {{device}} hotspot"),
            query(f"kipu_dhcp_leases{{{SITE}}}", "{{site_id}} {{device}} leases", ref="B"),
            query(
                f"kipu_wifi_unique_clients{{{SITE}}}",
                "{{site_id}} {{device}} distinct today",
                ref="C",
            ),
        ],
        unit="none",
    )
    traffic = timeseries_panel(
        "Traffic per interface",
        "Bits per second received and transmitted on each interface of the site's devices"
        " (kipu_interface_*_bytes_total; transmit drawn below zero).",
        [
            query(
                f"rate(kipu_interface_receive_bytes_total{{{SITE}}}[$__rate_interval]) * 8",
                "{{site_id}} {{device}} {{interface}} in",
            ),
            query(
                f"-rate(kipu_interface_transmit_bytes_total{{{SITE}}}[$__rate_interval]) * 8",
                "{{site_id}} {{device}} {{interface}} out",
                ref="B",
            ),
        ],
        unit="bps",
        width=24,
        height=9,
    )
    snmp_up = _state_timeline(
        "SNMP devices",
        "Whether each SNMP device answered its last poll (kipu_snmp_up).",
        f"kipu_snmp_up{{{SITE}}}",
        "{{site_id}} {{device}}",
    )
    interfaces_up = _state_timeline(
        "Interfaces",
        "Operational state of each interface of the site's devices (kipu_interface_up).",
        f"kipu_interface_up{{{SITE}}}",
        "{{site_id}} {{device}} {{interface}}",
    )
    return (
        new_dashboard(
            UID,
            "kipu: site",
            "One site (or a few): latency distribution, loss, availability, link state,"
            " power cuts, WiFi use, traffic and SNMP devices.",
            sites=True,
            tags=["site"],
        )
        .with_panel(inventory)
        .with_panel(link)
        .with_panel(reporting)
        .with_panel(last_push)
        .with_panel(availability)
        .with_row(row("Latency and loss"))
        .with_panel(_rtt_heatmap())
        .with_panel(mean_rtt)
        .with_panel(loss)
        .with_panel(jitter)
        .with_row(row("Availability and power"))
        .with_panel(link_state)
        .with_panel(availability_over_time)
        .with_panel(outages)
        .with_panel(power_cuts)
        .with_panel(reboots)
        .with_panel(off_over_time)
        .with_row(row("WiFi and traffic"))
        .with_panel(wifi)
        .with_panel(wifi_more)
        .with_panel(traffic)
        .with_row(row("Devices"))
        .with_panel(snmp_up)
        .with_panel(interfaces_up)
    )
