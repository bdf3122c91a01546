"""Rollups per project, region, province and institution type, computed by hand beside."""

from __future__ import annotations

import dataclasses

import pytest

from collector.rollup import quantile, rollups
from collector.snapshots import Latest, RollupKey, SiteView
from tests.collector.test_ingest import SITE


def view(site_id: str, state: str, latest: Latest, institution_type: str = "school") -> SiteView:
    return SiteView(
        dataclasses.replace(SITE, site_id=site_id, institution_type=institution_type),
        state,  # type: ignore[arg-type]
        None,
        latest,
    )


def test_quantiles_interpolate_between_ranks() -> None:
    assert quantile([3.0], 0.5) == 3.0
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert quantile([10.0, 20.0, 30.0, 40.0, 50.0], 0.9) == pytest.approx(46.0)


def test_rollups_count_and_sum_the_reporting_sites() -> None:
    views = [
        view(
            "a",
            "reporting",
            Latest(True, False, {"pop": 0.010}, {"pop": 0.0}, 10, {"receive": 1e6}),
        ),
        view(
            "b",
            "reporting",
            Latest(False, True, {"pop": 0.030, "internet": 0.6}, {"pop": 0.5}, 4, {}),
        ),
        view("c", "reporting", Latest(True, False, {"pop": 0.020}, {"pop": 0.1}, None, {})),
        view("d", "silent", Latest(False, False, {"pop": 9.0}, {"pop": 1.0}, 99, {})),
        view("e", "never_seen", Latest()),
        view("f", "reporting", Latest(None), institution_type="health"),
    ]
    health, school = rollups(views)  # sorted by key: health before school
    assert school.key == RollupKey("junin", "Junín", "Concepción", "school")
    assert school.sites == {"reporting": 3, "silent": 1, "never_seen": 1}
    assert (school.link_up_sites, school.link_down_sites, school.power_cut_sites) == (2, 1, 1)
    assert school.wifi_clients == 14  # the silent site's 99 are not current
    assert school.traffic_bps == {"receive": 1e6, "transmit": 0.0}
    assert school.rtt_seconds["pop"] == {"0.5": pytest.approx(0.020), "0.9": pytest.approx(0.028)}
    assert school.rtt_seconds["internet"] == {"0.5": 0.6, "0.9": 0.6}
    assert school.loss_ratio == {"pop": pytest.approx(0.2)}
    assert health.sites == {"reporting": 1, "silent": 0, "never_seen": 0}
    assert (health.link_up_sites, health.link_down_sites) == (0, 0)  # not known yet
