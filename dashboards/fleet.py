"""Fleet health: the agents' spools, pushes and clocks, and the collector's ingest,
refusals, forward queue and event loop."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as dm

from .common import (
    PROJECT,
    SITE,
    new_dashboard,
    query,
    row,
    stat_panel,
    table_panel,
    thresholds,
    timeseries_panel,
    unit_override,
)

UID = "kipu-fleet"

#: Draws a series on the right-hand axis.
RIGHT_AXIS = dm.DynamicConfigValue(id_val="custom.axisPlacement", value="right")


def dashboard() -> db.Dashboard:
    """The fleet health dashboard."""
    spool = timeseries_panel(
        "Spool size",
        "Bytes each agent holds in its spool, not yet acknowledged by the collector"
        " (kipu_spool_bytes): it grows while a site cannot push.",
        [query(f"kipu_spool_bytes{{{SITE}}}", "{{site_id}}")],
        unit="bytes",
    )
    spool_drops = timeseries_panel(
        "Spool drops",
        "Samples dropped from full spools (kipu_spool_dropped_samples_total): measurements"
        " lost for good.",
        [
            query(
                "sum by (site_id) (increase(kipu_spool_dropped_samples_total"
                f"{{{SITE}}}[$__rate_interval]))",
                "{{site_id}}",
            )
        ],
        unit="none",
        bars=True,
    )
    pushes = timeseries_panel(
        "Push results",
        "Pushes per second by answer (kipu_push_requests_total): ok, retry (5xx, 429,"
        " network errors, blocked answers), rejected (the receiver refused the data).",
        [
            query(
                f"sum by (result) (rate(kipu_push_requests_total{{{SITE}}}[$__rate_interval]))",
                "{{result}}",
            )
        ],
        unit="reqps",
        stacked=True,
    )
    blocked = stat_panel(
        "Pushes blocked",
        "Agents whose pushes the receiver refuses with 401, 403, 404 or 407"
        " (kipu_push_blocked): a token not issued, revoked or mistyped. They keep their"
        " data and retry.",
        [query(f"sum(kipu_push_blocked{{{SITE}}})", "blocked", instant=True)],
        unit="none",
        width=6,
        height=8,
        colours=thresholds((None, "green"), (1, "red")),
    )
    clocks = timeseries_panel(
        "Clock offsets",
        "Each agent's clock minus the collector's (kipu_agent_clock_offset_seconds).",
        [query(f"kipu_agent_clock_offset_seconds{{{SITE}}}", "{{site_id}}")],
        unit="s",
    )
    agents = table_panel(
        "Agents",
        "Each agent's version (kipu_agent_build_info) and the seconds since its last"
        " acknowledged push (kipu_push_last_success_timestamp_seconds).",
        [
            query(
                f"max by (site_id, project, region, version) (kipu_agent_build_info{{{SITE}}})",
                instant=True,
                table_format=True,
            ),
            query(
                "time() - max by (site_id, project, region)"
                f" (kipu_push_last_success_timestamp_seconds{{{SITE}}})",
                ref="B",
                instant=True,
                table_format=True,
            ),
        ],
        hidden=("Time", "Value #A"),
        renames={"Value #B": "last push"},
        order=("site_id", "project", "region", "version", "last push"),
        sort_by="last push",
        width=18,
        site_links=True,
    ).override_by_name("last push", unit_override("s"))

    received = timeseries_panel(
        "Samples received",
        "Samples per second the collector accepted, per project"
        " (kipu_collector_samples_received_total).",
        [
            query(
                "sum by (project) (rate(kipu_collector_samples_received_total"
                f"{{{PROJECT}}}[$__rate_interval]))",
                "{{project}}",
            )
        ],
        unit="short",
    )
    rejected = timeseries_panel(
        "Requests refused",
        "Pushes the collector refused per second, by reason"
        " (kipu_collector_requests_rejected_total): unauthorized, too_large, rate_limit,"
        " busy, queue_full...",
        [
            query(
                "sum by (instance, reason) (rate(kipu_collector_requests_rejected_total"
                "[$__rate_interval]))",
                "{{instance}} {{reason}}",
            )
        ],
        unit="reqps",
    )
    queue = timeseries_panel(
        "Forward queue",
        "Bytes waiting in the collector's forward queue for the store"
        " (kipu_collector_forward_queue_bytes): it grows while the store is down or slow.",
        [query("kipu_collector_forward_queue_bytes", "{{instance}}")],
        unit="bytes",
    )
    forward = timeseries_panel(
        "Forward requests",
        "Requests to the store per second by result (kipu_collector_forward_requests_total).",
        [
            query(
                "sum by (instance, result) (rate(kipu_collector_forward_requests_total"
                "[$__rate_interval]))",
                "{{instance}} {{result}}",
            )
        ],
        unit="reqps",
    )
    loop = timeseries_panel(
        "Event loop",
        "How late the collector's event loop wakes up (kipu_collector_loop_lag_seconds,"
        " left) and how busy its thread is (kipu_collector_loop_load_ratio, right). While"
        " the lag is over 20 ms or the load over 70 %, backlog pushes are deferred.",
        [
            query("kipu_collector_loop_lag_seconds", "{{instance}} lag"),
            query("kipu_collector_loop_load_ratio", "{{instance}} load", ref="B"),
        ],
        unit="s",
    ).override_by_regexp(
        ".* load",
        [*unit_override("percentunit"), RIGHT_AXIS],
    )
    latency = timeseries_panel(
        "Write latency p90",
        "90th percentile of the write endpoint's request duration"
        " (kipu_collector_request_duration_seconds).",
        [
            query(
                "histogram_quantile(0.9, sum by (instance, le)"
                " (rate(kipu_collector_request_duration_seconds_bucket"
                "[$__rate_interval])))",
                "{{instance}}",
            )
        ],
        unit="s",
    )
    return (
        new_dashboard(
            UID,
            "kipu: fleet health",
            "The agents' spools, pushes and clocks; the collector's ingest, refusals,"
            " forward queue and event loop.",
            sites=True,
            tags=["fleet"],
        )
        .with_row(row("Agents"))
        .with_panel(spool)
        .with_panel(spool_drops)
        .with_panel(pushes)
        .with_panel(clocks)
        .with_panel(blocked)
        .with_panel(agents)
        .with_row(row("Collector"))
        .with_panel(received)
        .with_panel(rejected)
        .with_panel(queue)
        .with_panel(forward)
        .with_panel(loop)
        .with_panel(latency)
    )
