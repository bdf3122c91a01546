"""Profiles turn readings into device state; custom profiles load from YAML. Pure."""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path

import pytest

from agent.probes.snmp import Reading, Value
from agent.profiles import builtin as p
from agent.profiles import model
from agent.profiles.custom import PRIVACY_DROPPED, index_label, label_text, load_profile
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


MAC = bytes.fromhex("3c286d0a1122")


@pytest.mark.parametrize(
    "value",
    [
        # A MAC as raw octets: not UTF-8, not printable, or printable but not a word.
        MAC,
        bytes.fromhex("daa1193c770e"),
        bytes.fromhex("001ec2a4b5c6"),  # leading NUL: the length still tells
        bytes.fromhex("daa1193c770e0000"),  # NUL-padded
        b"AB:1 -",
        b"WiFi 1",
        # IPv4 and IPv6 as raw octets (InetAddress), and 4 bytes with no letter.
        bytes([10, 5, 50, 23]),
        b"1234",
        ipaddress.IPv6Address("fd00:5e:88::23").packed,
        b"\xff\xfe\xfd",
        # A MAC in every common notation, alone or inside other text.
        "3c:28:6d:0a:11:22",
        "3C:28:6D:0A:11:22",
        "3c-28-6d-0a-11-22",
        "3c:28:6d:a:11:22",
        "3c28.6d0a.1122",
        "3C28.6D0A.1122",
        "3c28-6d0a-1122",
        "3C 28 6D 0A 11 22",
        "3c.28.6d.0a.11.22",
        "3c_28_6d_0a_11_22",
        "3c286d0a1122",
        "3C286D0A1122",
        "android-3c286d0a1122",
        "Station 3c:28:6d:0a:11:22 (on wlan0)",
        b"3c:28:6d:0a:11:22",
        "3c:28:6d:ff:fe:0a:11:22",  # EUI-64
        "60.40.109.10.17.34",  # as a table index
        # IPv4, alone, inside text, as an index (ifIndex + address) or a host name.
        "192.168.88.23",
        b"192.168.88.23",
        "2.192.168.88.23",
        "host 10.5.50.23 (lease)",
        "ip-192-168-88-23",
        "1.3.6.1.4.1.14988",  # an OID value: dotted, 4+ parts
        # IPv6 in its notations.
        "fd00:5e:88::23",
        "FD00:005E:0088:0000:0000:0000:0000:0023",
        "fe80::1%wlan0",
        "::ffff:192.168.88.23",
        "[2001:db8::1]:161",
        "::1",
        # Numbers long enough to be a MAC, and text that is not printable.
        66_232_426_156_322,
        "wlan\t1",
        "WiFi\u200bGratis",
    ],
)
def test_label_values_that_could_hold_an_address_are_refused(value: bytes | str | int) -> None:
    assert label_text(value) is None


@pytest.mark.parametrize(
    ("value", "label"),
    [
        (b"ether1", "ether1"),  # 6 bytes, but a plain word
        (b"eth0", "eth0"),  # 4 bytes, a plain word
        (b"wlan0", "wlan0"),
        (b"sfp-sfpplus1", "sfp-sfpplus1"),
        (b"WiFi-Gratis\x00\x00", "WiFi-Gratis"),
        (b"WiFi Gratis Plaza", "WiFi Gratis Plaza"),
        ("Estación".encode(), "Estación"),
        ("Estación", "Estación"),
        (b"RED-JUNIN-PTMP-07", "RED-JUNIN-PTMP-07"),
        (b"IE-30012-Docentes", "IE-30012-Docentes"),
        (b"radio 5GHz", "radio 5GHz"),
        (b"ether1.101", "ether1.101"),
        ("1", "1"),
        ("2.1", "2.1"),
        (36, "36"),
        (b"", ""),
        (None, ""),
    ],
)
def test_legitimate_label_values_are_kept(value: bytes | str | int | None, label: str) -> None:
    assert label_text(value) == label


def test_every_textual_ip_address_is_refused() -> None:
    rng = random.Random(20240615)
    for _ in range(500):
        v4 = ipaddress.IPv4Address(rng.getrandbits(32))
        v6 = ipaddress.IPv6Address(rng.getrandbits(128) >> rng.choice((0, 64, 112)))
        for form in (str(v4), str(v6), v6.exploded, str(v6).upper(), f"::ffff:{v4}"):
            assert label_text(form) is None, form


@pytest.mark.parametrize(
    ("index", "part", "label"),
    [
        ("1", None, "1"),
        ("2.1", None, "2.1"),
        ("2.1", 1, "1"),
        ("1.2.3", 5, ""),
        ("2.192.168.88.23", None, None),  # ifIndex + IPv4
        ("2.192.168.88.23", 0, None),  # even the ifIndex: the row is keyed by an address
        ("60.40.109.10.17.34.5", 6, None),  # MAC + ifIndex
        ("1.2.3.4", 0, None),
    ],
)
def test_index_labels(index: str, part: int | None, label: str | None) -> None:
    assert index_label(index, part) == label


def test_custom_profile_drops_and_counts_every_address_label(tmp_path: Path) -> None:
    name_col, clients_col, ssid_col = (
        "1.3.6.1.4.1.9999.1.2",
        "1.3.6.1.4.1.9999.2.3",
        "1.3.6.1.4.1.9999.2.2",
    )
    profile = load_profile(
        write(
            tmp_path,
            "if_mib: false\n"
            "metrics:\n"
            "  - name: kipu_test_bytes_total\n"
            "    oid: 1.3.6.1.4.1.9999.1.3\n"
            "    type: counter\n"
            f"    labels: [{{name: row}}, {{name: who, oid: {name_col}}}]\n"
            "  - name: kipu_test_chain_signal_dbm\n"
            "    oid: 1.3.6.1.4.1.9999.3.2\n"
            "    labels: [{name: radio, index_part: 0}, {name: chain, index_part: 1}]\n"
            f"wifi: {{clients: {clients_col}, ssid: {ssid_col}}}\n",
        )
    )
    names: dict[str, Value] = {
        "1": b"ether1",
        "2": "Estación".encode(),
        "3": MAC,
        "4": b"3c28.6d0a.1122",
        "5": b"3C 28 6D 0A 11 22",
        "6": b"fd00:5e:88::23",
        "7": "10.5.50.23",  # IpAddress, as the SNMP client gives it
    }
    state = profile.extract(
        Reading(
            "r",
            0.01,
            None,
            {},
            {
                "1.3.6.1.4.1.9999.1.3": dict.fromkeys(names, 100),
                name_col: names,
                "1.3.6.1.4.1.9999.3.2": {"1.1": -60, "1.2": -62, "2.192.168.88.23": -70},
                ssid_col: {"1": b"WiFi Gratis Plaza", "2": MAC},
                clients_col: {"1": 12, "2": 3},
            },
        )
    )
    kept = {(s.name, s.labels) for s in state.custom if s.name != PRIVACY_DROPPED}
    assert kept == {
        ("kipu_test_bytes_total", (("row", "1"), ("who", "ether1"))),
        ("kipu_test_bytes_total", (("row", "2"), ("who", "Estación"))),
        ("kipu_test_chain_signal_dbm", (("radio", "1"), ("chain", "1"))),
        ("kipu_test_chain_signal_dbm", (("radio", "1"), ("chain", "2"))),
    }
    # 5 address names, the row keyed by ifIndex + IPv4, and the SSID that is a MAC.
    assert sum(1 for s in state.custom if s.name == PRIVACY_DROPPED) == 7
    assert state.wifi_clients == {"WiFi Gratis Plaza": 12}


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
