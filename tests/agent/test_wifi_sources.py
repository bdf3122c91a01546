"""Local WiFi sources: iw station dumps and dnsmasq leases (pure parsing)."""

from __future__ import annotations

from agent.probes.wifi import parse_leases, parse_station_dump

# Recorded from `iw dev wlan0 station dump` on an OpenWrt access point (MACs altered).
STATION_DUMP = """\
Station 3c:28:6d:0a:11:22 (on wlan0)
\tinactive time:\t1230 ms
\trx bytes:\t182739
\trx packets:\t1422
\ttx bytes:\t918273
\tsignal:  \t-61 [-63, -65] dBm
\ttx bitrate:\t72.2 MBit/s MCS 7 short GI
\tauthorized:\tyes
\tassociated at [boottime]:\t8123.123s
Station f4:0f:24:33:44:55 (on wlan0)
\tinactive time:\t40 ms
\tsignal:  \t-72 dBm
\tauthorized:\tyes
"""

LEASES = """\
1795400000 3c:28:6d:0a:11:22 192.168.88.23 android-1a2b *
0 f4:0f:24:33:44:55 192.168.88.40 * 01:f4:0f:24:33:44:55
1795300000 00:11:22:33:44:66 192.168.88.41 old-laptop *
duid 00:01:00:01:2a:3b:4c:5d:00:11:22:33:44:55
garbage line
"""


def test_station_dump() -> None:
    stations = parse_station_dump(STATION_DUMP)
    assert stations == (bytes.fromhex("3c286d0a1122"), bytes.fromhex("f40f24334455"))
    assert parse_station_dump("") == ()


def test_leases_skip_expired_duid_and_garbage() -> None:
    clients = parse_leases(LEASES, now=1795350000)
    assert clients == (bytes.fromhex("3c286d0a1122"), bytes.fromhex("f40f24334455"))
