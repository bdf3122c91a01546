"""The collector's memory of each site: latest values and the 24-hour steps. Pure."""

from __future__ import annotations

import math

import pytest

from collector.memory import STEP, STEPS, SiteMemory
from kipu.remote_write.codec import STALE_NAN, Series, encode_samples, normalise_labels

NOW = 1_800_000_000.0  # a multiple of the 5-minute step


def s(name: str, **labels: str) -> Series:
    return normalise_labels({"__name__": name, "site_id": "a", **labels})


def push(memory: SiteMemory, at: float, values: dict[Series, float], site: str = "a") -> None:
    stamp = int(at * 1000)
    memory.observe(
        site, [(labels, encode_samples([(stamp, v)])) for labels, v in values.items()], at
    )


def probes(
    rtt_sum: float,
    count: float,
    sent: float,
    received: float,
    *,
    role: str = "pop",
    target: str = "t",
) -> dict[Series, float]:
    labels = {"target": target, "role": role}
    return {
        s("kipu_probe_rtt_seconds_sum", **labels): rtt_sum,
        s("kipu_probe_rtt_seconds_count", **labels): count,
        s("kipu_probe_packets_sent_total", **labels): sent,
        s("kipu_probe_packets_received_total", **labels): received,
    }


def test_latest_link_wifi_and_traffic() -> None:
    memory = SiteMemory()
    wifi = {
        s("kipu_wifi_clients", device="ap1", ssid="Plaza"): 14.0,
        s("kipu_wifi_clients", device="ap1", ssid="Docentes"): 3.0,
        s("kipu_wifi_clients", device="ap2", ssid="Plaza"): 5.0,
    }
    rx = s("kipu_interface_receive_bytes_total", device="r", interface="ether1")
    rx_lan = s("kipu_interface_receive_bytes_total", device="r", interface="ether2")
    push(memory, NOW, {s("kipu_link_up"): 1.0, rx: 1_000_000, rx_lan: 0, **wifi})
    # 15 s later: ether1 received 1.5 MB (800 kbit/s), ether2 150 kB.
    push(memory, NOW + 15, {s("kipu_link_up"): 0.0, rx: 2_500_000, rx_lan: 150_000, **wifi})
    latest = memory.latest("a", NOW + 15)
    assert latest.link_up is False
    assert latest.wifi_clients == 22
    assert latest.traffic_bps == {"receive": pytest.approx(800_000.0)}  # the busiest one
    assert latest.updated == NOW + 15
    assert memory.latest("unknown", NOW).link_up is None


def test_rtt_and_loss_per_role_over_five_minutes() -> None:
    memory = SiteMemory()
    push(memory, NOW, probes(0.0, 0, 0, 0) | probes(0.0, 0, 0, 0, role="internet", target="i"))
    # 60 probes to the pop at 20 ms, 2 lost; 60 to the internet at 60 ms, none lost.
    push(
        memory,
        NOW + 60,
        probes(58 * 0.020, 58, 60, 58)
        | probes(60 * 0.060, 60, 60, 60, role="internet", target="i"),
    )
    latest = memory.latest("a", NOW + 60)
    assert latest.rtt_seconds == {"pop": pytest.approx(0.020), "internet": pytest.approx(0.060)}
    assert latest.loss_ratio == {"pop": pytest.approx(2 / 60), "internet": 0.0}
    # Ten minutes on, only the last five count: 300 probes at 40 ms, none lost.
    push(memory, NOW + 360, probes(58 * 0.020 + 300 * 0.1, 358, 360, 358))
    push(memory, NOW + 660, probes(58 * 0.020 + 300 * 0.1 + 300 * 0.04, 658, 660, 658))
    assert memory.latest("a", NOW + 660).rtt_seconds["pop"] == pytest.approx(0.040)
    assert memory.latest("a", NOW + 660).loss_ratio["pop"] == 0.0


def test_an_agent_restart_resets_the_window() -> None:
    memory = SiteMemory()
    push(memory, NOW, probes(10.0, 500, 500, 500))
    push(memory, NOW + 30, probes(0.1, 5, 5, 5))  # counters began again
    assert "pop" not in memory.latest("a", NOW + 30).rtt_seconds
    push(memory, NOW + 60, probes(0.3, 15, 15, 15))
    assert memory.latest("a", NOW + 60).rtt_seconds["pop"] == pytest.approx(0.02)


def test_a_late_backlog_does_not_overwrite_the_present() -> None:
    memory = SiteMemory()
    push(memory, NOW, {s("kipu_link_up"): 1.0})
    push(memory, NOW - 3600, {s("kipu_link_up"): 0.0})  # an hour old, arriving now
    assert memory.latest("a", NOW).link_up is True


def test_a_power_cut_shows_for_an_hour() -> None:
    memory = SiteMemory()
    offline = s("kipu_agent_offline_seconds_total")
    push(memory, NOW, {offline: 100.0})
    assert not memory.latest("a", NOW).power_cut
    push(memory, NOW + 5400, {offline: 5400.0})  # back after 1.5 h without power
    assert memory.latest("a", NOW + 5400).power_cut
    push(memory, NOW + 5415, {offline: 5400.0})
    assert memory.latest("a", NOW + 5415).power_cut  # still suspected
    assert not memory.latest("a", NOW + 5400 + 3601).power_cut


def test_stale_series_leave_the_latest_values() -> None:
    memory = SiteMemory()
    clients = s("kipu_wifi_clients", device="ap1", ssid="Plaza")
    push(memory, NOW, {clients: 9.0})
    push(memory, NOW + 15, {clients: STALE_NAN})  # the access point went silent
    assert memory.latest("a", NOW + 15).wifi_clients is None


def test_the_steps_of_the_day_backfill_included() -> None:
    memory = SiteMemory()
    assert memory.history("a", NOW) is None
    for minute in range(10):  # ten minutes of pushes: two steps
        at = NOW - 600 + minute * 60
        push(memory, at, {s("kipu_link_up"): 1.0 if minute < 5 or minute == 9 else 0.0})
        push(
            memory,
            at,
            {s("kipu_wifi_clients", device="ap", ssid="x"): float(minute)}
            | probes(minute * 60 * 0.05, minute * 60, minute * 60, minute * 57),
        )
    history = memory.history("a", NOW)
    assert history is not None
    assert history.points == STEPS
    assert history.step == STEP
    assert history.end == NOW + STEP
    last_two = slice(-3, -1)  # the step that is now has no data yet
    assert history.link_up[last_two] == (1.0, 0.2)
    assert history.wifi_clients[last_two] == (2.0, 7.0)
    assert history.rtt_seconds[-2] == pytest.approx(0.05)
    assert history.loss_ratio[-2] == pytest.approx(3 / 60)
    assert history.link_up[-1] is None
    assert history.link_up[0] is None
    # A backlog from five hours ago lands in its own step.
    push(memory, NOW - 5 * 3600, {s("kipu_link_up"): 0.0})
    history = memory.history("a", NOW)
    assert history is not None
    assert history.link_up[-1 - 5 * 12] == 0.0
    assert math.isclose(sum(v for v in history.link_up if v is not None), 1.2 + 0.0)
