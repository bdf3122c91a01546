"""Profiles turn readings into device state; custom profiles load from YAML. Pure."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.probes.snmp import Reading
from agent.profiles import builtin as p
from agent.profiles import model
from agent.profiles.custom import PRIVACY_DROPPED, load_profile, looks_like_address
from kipu.config import ConfigError


def cols(mapping: dict[str, dict[str, object]]) -> Reading:
    return Reading("dev", 0.01, None, {model.SYS_UPTIME: 123456}, mapping)  # type: ignore[arg-type]


def test_if_mib_prefers_64_bit_counters_and_if_name() -> None:
    state = p.BUILTIN["if_mib"].extract(
        cols(
            {
                model.IF_NAME: {"1": b"ether1", "2": b""},
                model.IF_DESCR: {"1": b"ether1 desc", "2": b"wlan1"},
                model.IF_HC_IN_OCTETS: {"1": 10**12},
                model.IF_HC_OUT_OCTETS: {"1": 5 * 10**11},
                model.IF_IN_OCTETS: {"1": 1, "2": 4_000_000_000},
                model.IF_OUT_OCTETS: {"1": 2, "2": 3_000_000_000},
                model.IF_OPER_STATUS: {"1": 1, "2": 2},
                model.IF_HIGH_SPEED: {"1": 1000, "2": 0},
                model.IF_SPEED: {"1": 4294967295, "2": 54_000_000},
            }
        )
    )
    assert state.uptime_seconds == 1234.56
    one, two = state.interfaces
    assert (one.name, one.rx_bytes, one.tx_bytes, one.counter_bits) == (
        "ether1",
        10**12,
        5 * 10**11,
        64,
    )
    assert one.up is True
    assert one.speed_bytes == 125_000_000
    assert (two.name, two.rx_bytes, two.counter_bits, two.up) == ("wlan1", 4_000_000_000, 32, False)
    assert two.speed_bytes == 54_000_000 / 8


def test_mikrotik_clients_per_ssid_hotspot_and_station_ids() -> None:
    state = p.BUILTIN["mikrotik"].extract(
        Reading(
            "mt",
            0.01,
            None,
            {model.SYS_UPTIME: 100, p.MT_DHCP_LEASES: 21, p.MT_CAPSMAN_COUNT: 0},
            {
                p.MT_AP_SSID: {"5": b"WiFi-Gratis-Plaza", "6": b"IE-30012-Docentes"},
                p.MT_AP_CLIENTS: {"5": 14, "6": 3},
                p.MT_RTAB_STRENGTH: {"164.195.240.17.34.51.5": -61, "164.195.240.17.34.52.6": -70},
                p.MT_HOTSPOT_SERVER: {str(i): 100 for i in range(9)},
            },
        )
    )
    assert state.wifi_clients == {"WiFi-Gratis-Plaza": 14, "IE-30012-Docentes": 3}
    assert state.hotspot_users == 9
    assert state.dhcp_leases == 21
    assert state.capsman_clients == 0
    assert state.client_ids == (bytes.fromhex("a4c3f0112233"), bytes.fromhex("a4c3f0112234"))


def test_ssid_with_zero_clients_is_kept() -> None:
    state = p.BUILTIN["ubiquiti_unifi"].extract(
        cols(
            {
                p.UNIFI_VAP_ESSID: {"1": b"WiFi-Gratis", "2": b"Posta"},
                p.UNIFI_VAP_STATIONS: {"1": 4, "2": 0},
            }
        )
    )
    assert state.wifi_clients == {"WiFi-Gratis": 4, "Posta": 0}


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("a4:c3:f0:11:22:33", True),
        ("A4-C3-F0-11-22-33", True),
        ("a4c3f0112233", True),
        ("192.168.88.23", True),
        ("fe80::1", True),
        ("164.195.240.17.34.51.5", True),
        ("wlan1", False),
        ("3", False),
        ("1.2", False),
        ("WiFi-Gratis", False),
    ],
)
def test_address_detection(value: str, address: bool) -> None:
    assert looks_like_address(value) is address


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "radio.yaml"
    path.write_text(text)
    return path


def test_custom_profile(tmp_path: Path) -> None:
    profile = load_profile(
        write(
            tmp_path,
            "if_mib: false\n"
            "metrics:\n"
            "  - name: kipu_radio_signal_dbm\n"
            "    oid: 1.3.6.1.4.1.9999.1.5\n"
            "    help: Signal.\n"
            "    scale: 0.1\n"
            "    labels:\n"
            "      - {name: radio}\n"
            "      - {name: ssid, oid: 1.3.6.1.4.1.9999.1.2}\n"
            "  - name: kipu_radio_station_signal_dbm\n"
            "    oid: 1.3.6.1.4.1.9999.2.3\n"
            "    labels: [{name: station}]\n"
            "  - name: kipu_radio_resets_total\n"
            "    oid: 1.3.6.1.4.1.9999.3.0\n"
            "    type: counter\n"
            "wifi: {clients: 1.3.6.1.4.1.9999.1.7, ssid: 1.3.6.1.4.1.9999.1.2}\n",
        )
    )
    assert profile.scalars == ("1.3.6.1.4.1.9999.3.0",)
    assert set(profile.columns) == {
        "1.3.6.1.4.1.9999.1.5",
        "1.3.6.1.4.1.9999.1.2",
        "1.3.6.1.4.1.9999.2.3",
        "1.3.6.1.4.1.9999.1.7",
    }
    state = profile.extract(
        Reading(
            "r",
            0.01,
            None,
            {"1.3.6.1.4.1.9999.3.0": 7},
            {
                "1.3.6.1.4.1.9999.1.5": {"1": -612, "2": b"-700"},
                "1.3.6.1.4.1.9999.1.2": {"1": b"WiFi-Gratis", "2": b"Posta"},
                "1.3.6.1.4.1.9999.1.7": {"1": 5, "2": 0},
                # A station table indexed by MAC: never exported.
                "1.3.6.1.4.1.9999.2.3": {"164.195.240.17.34.51": -60},
            },
        )
    )
    samples = {(s.name, s.labels): s.value for s in state.custom}
    assert samples[
        ("kipu_radio_signal_dbm", (("radio", "1"), ("ssid", "WiFi-Gratis")))
    ] == pytest.approx(-61.2)
    assert samples[("kipu_radio_signal_dbm", (("radio", "2"), ("ssid", "Posta")))] == pytest.approx(
        -70.0
    )
    assert samples[("kipu_radio_resets_total", ())] == 7
    assert (PRIVACY_DROPPED, ()) in samples
    assert not any("164.195" in v for s in state.custom for _, v in s.labels)
    assert state.wifi_clients == {"WiFi-Gratis": 5, "Posta": 0}
    assert state.interfaces == ()


def test_custom_profile_errors_name_file_line_and_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "metrics:\n"
        "  - name: bad name\n"
        "    oid: 1.3.6.x\n"
        "  - name: kipu_x\n"
        "    oid: 1.3.6.1.0\n"
        "    type: counter\n"
        "    labels: [{name: device}]\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_profile(path)
    found = {(pr.line, pr.key) for pr in caught.value.problems}
    assert (2, "metrics.0.name") in found
    assert (3, "metrics.0.oid") in found
    assert (4, "metrics.1.name") in found  # a counter must end in _total
    assert (7, "metrics.1.labels") in found  # a scalar has no row
    assert all(pr.file == str(path) for pr in caught.value.problems)
