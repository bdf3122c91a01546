"""The availability ledger (pure parts and its files) and the SLA arithmetic, checked
exactly against hand-computed values."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from collector.config import MaintenanceWindow, Sla, SlaOverride, SlaRule
from collector.ledger import (
    ABSENT,
    LEDGER_DIR,
    POINT_BYTES,
    Ledger,
    Point,
    Reader,
    compact,
    merge,
    month_bounds,
    months_between,
    pack,
    unpack,
)
from collector.reports.sla import figures, union
from kipu.remote_write.codec import Series, encode_samples, normalise_labels

H = 3600.0
NOW = 1_800_000_000.0  # 2027-01-15: every October point below is of a finished hour
START, END = month_bounds("2026-10", "America/Lima")


def series(name: str, samples: list[tuple[float, float]], **labels: str) -> tuple[Series, bytes]:
    """A watched series as the ingest hands it over: labels and a sample run."""
    run = encode_samples([(round(t * 1000), v) for t, v in samples])
    return normalise_labels({"__name__": name, **labels}), run


def points_of(state_dir: Path, site_id: str = "s") -> list[Point]:
    """The site's points of October 2026 as the reports read them."""
    return dict(Reader(state_dir, START, END).sites()).get(site_id, [])


def comparable(points: list[Point]) -> list[tuple[float | None, ...]]:
    """Points with None for NaN (NaN equals nothing, not even itself)."""
    return [tuple(None if math.isnan(v) else v for v in point) for point in points]


def link(
    t: float, up: float, down: float = 0.0, off: float = 0.0, outages: float = 0.0
) -> list[tuple[Series, bytes]]:
    return [
        series("kipu_link_up_seconds_total", [(t, up)]),
        series("kipu_link_down_seconds_total", [(t, down)]),
        series("kipu_agent_offline_seconds_total", [(t, off)]),
        series("kipu_link_outages_total", [(t, outages)]),
    ]


def test_october_in_lima_is_744_hours_from_five_in_the_morning_utc() -> None:
    assert END - START == 744 * H
    assert START == 1_790_830_800  # 2026-10-01T05:00:00Z
    assert months_between(START, END) == ["2026-10", "2026-11"]


def test_points_merge_group_by_group_the_later_sample_winning() -> None:
    hour = 500_000
    a: Point = (hour, 1000, ABSENT, 5000, 1.0, 2.0, 3.0, 0.0, math.nan, 10.0)
    b: Point = (hour, 2000, 7000, 4000, 5.0, 6.0, math.nan, 1.0, 42.0, 99.0)
    merged = merge(a, b)
    assert merged[:4] == (hour, 2000, 7000, 5000)
    assert merged[4:6] == (5.0, 6.0)
    assert math.isnan(merged[6])
    assert merged[8:] == (42.0, 10.0)
    assert merge(b, a)[:4] == merged[:4]
    # At the same instant, a counter one lacks comes from the other.
    c: Point = (hour, 2000, ABSENT, ABSENT, math.nan, math.nan, 7.0, math.nan, math.nan, math.nan)
    assert merge(b, c)[4:8] == (5.0, 6.0, 7.0, 1.0)
    with pytest.raises(ValueError, match="different hours"):
        merge(a, (hour + 1, *a[1:]))


def test_a_point_takes_56_bytes_and_survives_packing() -> None:
    point: Point = (500_000, 3_599_999, ABSENT, 0, 1e9, 2.5, 0.0, 3.0, 17.0, 12345678901.0)
    data = pack([point])
    assert len(data) == POINT_BYTES == 56
    assert list(unpack(data)) == [point]


def test_the_last_sample_of_each_hour_is_kept_and_backfill_fills_its_hour(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    ledger.load()
    t0 = START + 10 * H
    for minute in (0, 20, 40):  # three samples in one hour: the 40th minute's stays
        ledger.observe("s", link(t0 + minute * 60, up=minute * 60.0), NOW)
    ledger.observe("s", link(t0 + 5 * H, up=5 * H), NOW)
    ledger.save(NOW)
    points = points_of(tmp_path)
    assert [(p[0] * H + p[1] / 1000 - t0, p[4]) for p in points] == [
        (2400.0, 2400.0),
        (5 * H, 5 * H),
    ]
    # A backfilled sample in an hour with no point fills it; an earlier one in a kept
    # hour changes nothing.
    ledger.observe("s", link(t0 + 2 * H + 30, up=2 * H) + link(t0 + 60, up=60.0), NOW)
    ledger.save(NOW)
    points = points_of(tmp_path)
    assert [p[4] for p in points] == [2400.0, 2 * H, 5 * H]


def test_wifi_and_traffic_are_summed_over_series_at_the_same_instant(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    t = START + 3 * H
    ledger.observe(
        "s",
        [
            series("kipu_wifi_unique_clients", [(t, 7.0)], device="ap1"),
            series("kipu_wifi_unique_clients", [(t, 5.0)], device="ap2"),
            series("kipu_interface_receive_bytes_total", [(t, 100.0)], interface="wan"),
            series("kipu_interface_transmit_bytes_total", [(t, 50.0)], interface="wan"),
            series("kipu_wifi_clients", [(t, 99.0)]),  # not the ledger's
        ],
        NOW,
    )
    ledger.save(NOW)
    (point,) = points_of(tmp_path)
    assert point[1] == ABSENT
    assert point[8] == 12.0
    assert point[9] == 150.0
    assert ledger.first_seen == {"s": round(t * 1000)}


def test_the_open_hour_is_kept_in_open_bin_and_goes_to_the_journal_when_over(
    tmp_path: Path,
) -> None:
    now = START + 100 * H + 1800
    ledger = Ledger(tmp_path)
    ledger.observe("s", link(now - 10, up=1.0), now)
    ledger.save(now)
    journals = sorted((tmp_path / LEDGER_DIR).glob("*.journal"))
    assert journals == []
    assert (tmp_path / LEDGER_DIR / "open.bin").exists()
    assert [p[4] for p in points_of(tmp_path)] == [1.0]
    again = Ledger(tmp_path)  # a restart reads the open hour back
    again.load()
    again.save(now + H)
    assert sorted(p.name for p in (tmp_path / LEDGER_DIR).glob("*.journal")) == ["2026-10.journal"]
    assert [p[4] for p in points_of(tmp_path)] == [1.0]


def test_a_torn_chunk_at_the_end_is_cut_when_the_ledger_starts(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    ledger.observe("s", link(START + H, up=1.0), NOW)
    ledger.save(NOW)
    journal = tmp_path / LEDGER_DIR / "2026-10.journal"
    whole = journal.stat().st_size
    ledger.observe("s", link(START + 2 * H, up=2.0), NOW)
    ledger.save(NOW)
    os.truncate(journal, journal.stat().st_size - 3)  # the crash cut the second chunk
    assert [p[4] for p in points_of(tmp_path)] == [1.0]
    Ledger(tmp_path).load()
    assert journal.stat().st_size == whole
    ledger.observe("s", link(START + 3 * H, up=3.0), NOW)
    ledger.save(NOW)
    assert [p[4] for p in points_of(tmp_path)] == [1.0, 3.0]


def test_months_past_the_retention_are_removed(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path, retention_months=2)
    ledger.observe("s", link(START + H, up=1.0), START + 40 * 86400)
    ledger.save(START + 40 * 86400)  # November: October is within two months
    assert (tmp_path / LEDGER_DIR / "2026-10.journal").exists()
    ledger.save(START + 70 * 86400)  # December: it is not
    assert not (tmp_path / LEDGER_DIR / "2026-10.journal").exists()


def test_the_nearest_point_before_the_month_closes_the_gap_into_it(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    ledger.observe("s", link(START - 2 * H, up=0.0), NOW)  # September's last point
    ledger.observe("s", link(START + 2 * H, up=4 * H), NOW)
    ledger.save(NOW)
    points = points_of(tmp_path)
    own = figures(points, START, END, [])
    assert own.up == 2 * H  # half of the four hours' growth lies in October
    assert own.unknown == 742 * H


# -- the arithmetic


def pt(hours: float, up: float, down: float = 0.0, off: float = 0.0, outages: float = 0.0) -> Point:
    t = START + hours * H
    hour, offset = divmod(round(t * 1000), 3_600_000)
    return (hour, offset, ABSENT, ABSENT, up * H, down * H, off * H, outages, math.nan, math.nan)


def hourly(first: int, last: int, up0: float, down0: float = 0.0, off0: float = 0.0) -> list[Point]:
    return [pt(h, up0 + (h - first), down0, off0) for h in range(first, last + 1)]


def test_time_between_points_without_growth_is_unknown_never_up() -> None:
    points = [pt(0, 0), pt(10, 10), pt(20, 10), pt(744, 734)]
    own = figures(points, START, END, [])
    assert (own.up, own.down, own.power_off, own.unknown) == (734 * H, 0.0, 0.0, 10 * H)
    assert own.availability(SlaRule()) == pytest.approx(100 * 734 / 744)
    assert own.availability(SlaRule(unknown_as="excluded")) == 100.0


def test_a_power_cut_without_samples_is_power_off_and_excluded_when_the_rule_says() -> None:
    # Samples stop at hour 200; at hour 206 the agent has counted 5.5 h offline and
    # 0.5 h up since its restart.
    points = [*hourly(0, 200, 0), pt(206, 200.5, 0, 5.5), *hourly(207, 744, 201.5, 0, 5.5)]
    own = figures(points, START, END, [])
    assert own.power_off == pytest.approx(5.5 * H)
    assert own.up == pytest.approx(738.5 * H)
    assert own.unknown == pytest.approx(0.0)
    assert own.availability(SlaRule()) == pytest.approx(100.0)
    assert own.availability(SlaRule(exclude_power_cuts=False)) == pytest.approx(100 * 738.5 / 744)


def test_a_counter_reset_counts_the_new_value_as_growth() -> None:
    points = [*hourly(0, 400, 0), pt(410, 1), *hourly(411, 744, 2)]
    own = figures(points, START, END, [])
    assert own.up == pytest.approx(735 * H)
    assert own.unknown == pytest.approx(9 * H)


def test_maintenance_takes_its_time_whatever_it_was_and_the_rest_is_counted_outside() -> None:
    # Down from hour 100 to 103; a window from 102 to 104 covers part of the outage.
    points = [
        *hourly(0, 100, 0),
        pt(101, 100, 1, outages=1),
        pt(102, 100, 2, outages=1),
        pt(103, 100, 3, outages=1),
        *[pt(h, h - 3, 3, outages=1) for h in range(104, 745)],
    ]
    window = [(START + 102 * H, START + 104 * H)]
    own = figures(points, START, END, window)
    assert (own.up, own.down, own.maintenance, own.unknown) == (740 * H, 2 * H, 2 * H, 0.0)
    assert own.outages == 1
    assert [(o.start - START, o.end - START, o.down) for o in own.episodes] == [
        (100 * H, 102 * H, 2 * H)
    ]
    assert own.availability(SlaRule()) == pytest.approx(100 * 740 / 742)
    # An outage wholly inside a window is not counted.
    assert figures(points, START, END, [(START + 100 * H, START + 104 * H)]).outages == 0


def test_a_sample_on_the_boundary_closes_the_month() -> None:
    points = [pt(-1, 0), pt(0, 1), pt(744, 745), pt(745, 746)]
    own = figures(points, START, END, [])
    assert own.up == 744 * H
    assert own.unknown == 0.0


def test_nothing_left_to_measure_gives_no_availability() -> None:
    own = figures([], START, END, [])
    assert own.unknown == 744 * H
    assert own.availability(SlaRule()) == 0.0
    assert own.availability(SlaRule(unknown_as="excluded")) is None
    assert figures([], START, END, [(START - H, END + H)]).availability(SlaRule()) is None


def test_counters_adding_up_to_more_than_the_gap_are_scaled_to_it() -> None:
    own = figures([pt(0, 0), pt(1, 1.5, 0.5)], START, START + H, [])
    assert own.up == pytest.approx(0.75 * H)
    assert own.down == pytest.approx(0.25 * H)


def test_windows_merge_and_select_by_one_key() -> None:
    assert union([(5, 7), (1, 3), (2, 4), (7, 8)]) == [(1, 4), (5, 8)]
    window = MaintenanceWindow(
        start="2026-10-10T02:00:00-05:00", end="2026-10-10T06:00:00-05:00", project="junin"
    )
    assert window.end_seconds - window.start_seconds == 4 * H
    assert list(window.problems()) == []
    both = MaintenanceWindow(start=window.start, end=window.end, project="a", region="b")
    assert [key for key, _ in both.problems()] == ["site_id"]
    backwards = MaintenanceWindow(start=window.end, end=window.start, site_id="x")
    assert [key for key, _ in backwards.problems()] == ["end"]


def test_project_rules_override_the_default() -> None:
    sla = Sla(SlaRule(99.0, True, "down"), {"junin": SlaOverride(target_percent=98.5)})
    assert sla.rule("junin") == SlaRule(98.5, True, "down")
    assert sla.rule("huanuco") == SlaRule(99.0, True, "down")


def test_compaction_keeps_every_point_and_backfill_after_it_still_counts(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    ledger.load()
    for h in range(-30, 760, 1):  # September's end to November's start, hour by hour
        for site in ("a", "b"):
            ledger.observe(site, link(START + h * H + 30, up=h * H + 1), NOW)
        if h % 100 == 0:
            ledger.save(NOW)
    ledger.save(NOW)
    before = {site: comparable(points_of(tmp_path, site)) for site in ("a", "b")}
    assert len(before["a"]) == 745 + 2  # the month's hours and one neighbour either side
    journal = tmp_path / LEDGER_DIR / "2026-10.journal"
    assert compact(journal) == journal.stat().st_size
    assert {site: comparable(points_of(tmp_path, site)) for site in ("a", "b")} == before
    # A later sample of a compacted hour, and a new site, after the compaction.
    ledger.observe("a", link(START + 5 * H + 60, up=7.0), NOW)
    ledger.observe("c", link(START + 9 * H, up=1.0), NOW)
    ledger.save(NOW)
    after = comparable(points_of(tmp_path, "a"))
    assert [p[4] for p in after if p[0] == before["a"][6][0]] == [7.0]
    assert points_of(tmp_path, "c")[0][4] == 1.0
    compact(journal)
    assert comparable(points_of(tmp_path, "a")) == after
    assert {site for site, _ in Reader(tmp_path, START, END).sites()} == {"a", "b", "c"}


def test_a_month_that_is_over_is_compacted_an_hour_after_its_last_append(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    ledger.observe("s", link(START + H, up=1.0), NOW)
    ledger.save(END + 100)
    assert ledger.compactions == 0
    ledger.save(END + 100 + 3600)
    assert ledger.compactions == 1
    assert [p[4] for p in points_of(tmp_path)] == [1.0]
    restarted = Ledger(tmp_path)
    restarted.load()  # nothing left in the tail: no compaction again
    restarted.save(END + 2 * 3600 * 24)
    assert restarted.compactions == 0


def test_samples_far_ahead_of_the_clock_or_past_the_retention_are_left_out(
    tmp_path: Path,
) -> None:
    ledger = Ledger(tmp_path)
    now = START + 10 * H
    ledger.observe("s", link(now + 2 * H, up=1.0), now)  # a clock two hours ahead
    ledger.observe("s", link(now - 800 * 86400, up=1.0), now)  # 1970-style clocks
    ledger.observe("s", link(now + 30 * 60, up=2.0), now)  # within the slack
    ledger.save(now)
    assert [p[4] for p in points_of(tmp_path)] == [2.0]
    assert sorted(p.name for p in (tmp_path / LEDGER_DIR).iterdir()) == [
        "first-seen.json",
        "open.bin",
    ]
