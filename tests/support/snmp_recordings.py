"""The snmpsim recordings in ``tests/snmp_data``, built from code (stdlib only).

Each ``build_*`` function returns the text of one ``.snmprec`` file; ``python -m
tests.support.snmp_recordings`` rewrites them all, and a test checks that the files on
disk still match. Writing them from code keeps 48-interface routers reviewable and the
numbers consistent (a 32-bit counter is its 64-bit counter modulo 2**32, the client
counts equal the rows of the registration table, and so on).

The vendor OIDs follow the MIB files cited in ``docs/snmp-oids.md``. Client MAC
addresses are locally administered (randomised, as phones use on public WiFi) and IP
addresses are private: nothing here identifies a real person or device.

Format: one ``OID|TAG|VALUE`` line per object, sorted by OID. Tags: 2 Integer32,
4 OCTET STRING (``4x`` hex), 6 OBJECT IDENTIFIER, 64 IpAddress, 65 Counter32,
66 Gauge32, 67 TimeTicks, 70 Counter64. ``TAG:numeric`` with ``initial=…,rate=…`` is
snmpsim's numeric variation: the value grows by ``rate`` per second from the responder's
start.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "BUILDERS",
    "COUNTER32",
    "COUNTER64",
    "DATA_DIR",
    "GAUGE32",
    "HEX",
    "INTEGER",
    "IPADDRESS",
    "OCTETS",
    "OID",
    "PRIVACY_CHAINS",
    "PRIVACY_CHAIN_ROWS",
    "PRIVACY_CLIENTS",
    "PRIVACY_NAMES",
    "PRIVACY_NAME_ROWS",
    "PRIVACY_SSIDS",
    "PRIVACY_STATIONS",
    "PRIVACY_STATIONS_ROWS",
    "SCENARIO_BUILDERS",
    "TIMETICKS",
    "Interface",
    "Recording",
    "build_all",
    "build_privacy",
    "oid_key",
    "privacy_ips",
    "privacy_macs",
]

DATA_DIR = Path(__file__).resolve().parents[1] / "snmp_data"

INTEGER = "2"
OCTETS = "4"
HEX = "4x"
OID = "6"
IPADDRESS = "64"
COUNTER32 = "65"
GAUGE32 = "66"
TIMETICKS = "67"
COUNTER64 = "70"

WRAP32 = 2**32

# SNMPv2-MIB system group and IF-MIB tables (RFC 3418, RFC 2863).
SYSTEM = "1.3.6.1.2.1.1"
IF_NUMBER = "1.3.6.1.2.1.2.1.0"
IF_ENTRY = "1.3.6.1.2.1.2.2.1"
IFX_ENTRY = "1.3.6.1.2.1.31.1.1.1"

# Vendor subtrees (see docs/snmp-oids.md for the MIB files).
MTXR = "1.3.6.1.4.1.14988.1.1"  # MIKROTIK-MIB mtXRouterOs
UBNT_AIRMAX = "1.3.6.1.4.1.41112.1.4"  # UBNT-AirMAX-MIB ubntAirMAX
UBNT_UNIFI = "1.3.6.1.4.1.41112.1.6"  # UBNT-UniFi-MIB ubntUniFi
CAMBIUM_PMP = "1.3.6.1.4.1.17713.21"  # CAMBIUM-PMP80211-MIB pmpMibTree

SYSOBJECTID_MIKROTIK = "1.3.6.1.4.1.14988.1"
SYSOBJECTID_NET_SNMP_LINUX = "1.3.6.1.4.1.8072.3.2.10"
SYSOBJECTID_UCD_SNMP_LINUX = "1.3.6.1.4.1.2021.250.10"
SYSOBJECTID_AIROS = "1.3.6.1.4.1.10002.1"
SYSOBJECTID_EPMP = "1.3.6.1.4.1.17713.21"

# IANAifType values used below.
IFTYPE_OTHER = 1
IFTYPE_ETHERNET = 6
IFTYPE_LOOPBACK = 24
IFTYPE_80211 = 71
IFTYPE_L2VLAN = 135
IFTYPE_BRIDGE = 209


def oid_key(oid: str) -> tuple[int, ...]:
    """Sort key putting OIDs in SNMP (numeric, lexicographic) order."""
    return tuple(int(part) for part in oid.strip(".").split("."))


def mac_hex(mac: str) -> str:
    return mac.replace(":", "").upper()


def mac_index(mac: str) -> str:
    """A MacAddress as table index: six sub-identifiers, no length (fixed SIZE(6))."""
    return ".".join(str(int(part, 16)) for part in mac.split(":"))


class Recording:
    """OID -> (tag, value) lines of one simulated device."""

    def __init__(self) -> None:
        self._records: dict[str, tuple[str, str]] = {}

    def add(self, oid: str, tag: str, value: object) -> None:
        if oid in self._records:
            raise ValueError(f"duplicate OID {oid}")
        text = str(value)
        if "\n" in text or "|" in tag:
            raise ValueError(f"unrepresentable record {oid}|{tag}|{text!r}")
        self._records[oid] = (tag, text)

    def numeric(self, oid: str, tag: str, initial: int, rate: float, *, wrap: bool) -> None:
        """A value growing by ``rate`` per second (snmpsim's numeric variation)."""
        spec = f"initial={initial},rate={rate:g}"
        if wrap:
            spec += ",wrap=1"
        self.add(oid, f"{tag}:numeric", spec)

    def text(self) -> str:
        lines = (
            f"{oid}|{tag}|{value}\n"
            for oid, (tag, value) in sorted(self._records.items(), key=lambda kv: oid_key(kv[0]))
        )
        return "".join(lines)


@dataclass(frozen=True)
class Interface:
    """One row of ifTable (and ifXTable). Octet counters are the 64-bit totals."""

    index: int
    name: str
    iftype: int = IFTYPE_ETHERNET
    speed_mbps: int = 1000
    mac: str | None = None
    mtu: int = 1500
    admin_up: bool = True
    oper_up: bool = True
    in_octets: int = 0
    out_octets: int = 0
    alias: str = ""
    descr: str | None = None
    last_change: int = 0
    #: Bytes per second the counters grow by (numeric variation); ``None``: static.
    in_rate: float | None = None
    out_rate: float | None = None
    extra: Mapping[str, int] = field(default_factory=dict)

    @property
    def oper_status(self) -> int:
        return 1 if self.oper_up else 2


def _packets(octets: int, size: int) -> int:
    return octets // size


def add_system(
    rec: Recording,
    *,
    descr: str,
    object_id: str,
    uptime: int,
    name: str,
    location: str,
    contact: str = "noc@example.pe",
    services: int = 78,
    uptime_grows: bool = True,
) -> None:
    """SNMPv2-MIB system group; ``uptime`` in hundredths of a second."""
    rec.add(f"{SYSTEM}.1.0", OCTETS, descr)
    rec.add(f"{SYSTEM}.2.0", OID, object_id)
    if uptime_grows:
        rec.numeric(f"{SYSTEM}.3.0", TIMETICKS, uptime, 100, wrap=False)
    else:
        rec.add(f"{SYSTEM}.3.0", TIMETICKS, uptime)
    rec.add(f"{SYSTEM}.4.0", OCTETS, contact)
    rec.add(f"{SYSTEM}.5.0", OCTETS, name)
    rec.add(f"{SYSTEM}.6.0", OCTETS, location)
    rec.add(f"{SYSTEM}.7.0", INTEGER, services)


def _counter(
    rec: Recording, oid: str, tag: str, total: int, rate: float | None, *, bits: int
) -> None:
    value = total % WRAP32 if bits == 32 else total
    if rate is None:
        rec.add(oid, tag, value)
        return
    if bits == 32 and (WRAP32 - value) / rate < 3600:
        raise ValueError(f"{oid}: a growing 32-bit counter should not wrap within an hour")
    rec.numeric(oid, tag, value, rate, wrap=bits == 32)


def add_interfaces(rec: Recording, interfaces: Iterable[Interface], *, hc: bool = True) -> None:
    """ifNumber, every ifTable column and, when ``hc``, every ifXTable column."""
    rows = sorted(interfaces, key=lambda i: i.index)
    rec.add(IF_NUMBER, INTEGER, len(rows))
    for i in rows:
        n = i.index
        in_pkts_rate = None if i.in_rate is None else i.in_rate / 700
        out_pkts_rate = None if i.out_rate is None else i.out_rate / 700
        in_ucast, out_ucast = _packets(i.in_octets, 700), _packets(i.out_octets, 700)
        rec.add(f"{IF_ENTRY}.1.{n}", INTEGER, n)
        rec.add(f"{IF_ENTRY}.2.{n}", OCTETS, i.descr if i.descr is not None else i.name)
        rec.add(f"{IF_ENTRY}.3.{n}", INTEGER, i.iftype)
        rec.add(f"{IF_ENTRY}.4.{n}", INTEGER, i.mtu)
        rec.add(f"{IF_ENTRY}.5.{n}", GAUGE32, min(i.speed_mbps * 1_000_000, WRAP32 - 1))
        if i.mac is None:
            rec.add(f"{IF_ENTRY}.6.{n}", OCTETS, "")
        else:
            rec.add(f"{IF_ENTRY}.6.{n}", HEX, mac_hex(i.mac))
        rec.add(f"{IF_ENTRY}.7.{n}", INTEGER, 1 if i.admin_up else 2)
        rec.add(f"{IF_ENTRY}.8.{n}", INTEGER, i.oper_status)
        rec.add(f"{IF_ENTRY}.9.{n}", TIMETICKS, i.last_change)
        _counter(rec, f"{IF_ENTRY}.10.{n}", COUNTER32, i.in_octets, i.in_rate, bits=32)
        _counter(rec, f"{IF_ENTRY}.11.{n}", COUNTER32, in_ucast, in_pkts_rate, bits=32)
        rec.add(f"{IF_ENTRY}.12.{n}", COUNTER32, in_ucast // 50 % WRAP32)
        rec.add(f"{IF_ENTRY}.13.{n}", COUNTER32, i.extra.get("in_discards", 0))
        rec.add(f"{IF_ENTRY}.14.{n}", COUNTER32, i.extra.get("in_errors", 0))
        rec.add(f"{IF_ENTRY}.15.{n}", COUNTER32, 0)
        _counter(rec, f"{IF_ENTRY}.16.{n}", COUNTER32, i.out_octets, i.out_rate, bits=32)
        _counter(rec, f"{IF_ENTRY}.17.{n}", COUNTER32, out_ucast, out_pkts_rate, bits=32)
        rec.add(f"{IF_ENTRY}.18.{n}", COUNTER32, out_ucast // 80 % WRAP32)
        rec.add(f"{IF_ENTRY}.19.{n}", COUNTER32, i.extra.get("out_discards", 0))
        rec.add(f"{IF_ENTRY}.20.{n}", COUNTER32, i.extra.get("out_errors", 0))
        rec.add(f"{IF_ENTRY}.21.{n}", GAUGE32, 0)
        rec.add(f"{IF_ENTRY}.22.{n}", OID, "0.0")
        if not hc:
            continue
        rec.add(f"{IFX_ENTRY}.1.{n}", OCTETS, i.name)
        rec.add(f"{IFX_ENTRY}.2.{n}", COUNTER32, in_ucast // 60 % WRAP32)
        rec.add(f"{IFX_ENTRY}.3.{n}", COUNTER32, in_ucast // 40 % WRAP32)
        rec.add(f"{IFX_ENTRY}.4.{n}", COUNTER32, out_ucast // 90 % WRAP32)
        rec.add(f"{IFX_ENTRY}.5.{n}", COUNTER32, out_ucast // 120 % WRAP32)
        _counter(rec, f"{IFX_ENTRY}.6.{n}", COUNTER64, i.in_octets, i.in_rate, bits=64)
        _counter(rec, f"{IFX_ENTRY}.7.{n}", COUNTER64, in_ucast, in_pkts_rate, bits=64)
        rec.add(f"{IFX_ENTRY}.8.{n}", COUNTER64, in_ucast // 60)
        rec.add(f"{IFX_ENTRY}.9.{n}", COUNTER64, in_ucast // 40)
        _counter(rec, f"{IFX_ENTRY}.10.{n}", COUNTER64, i.out_octets, i.out_rate, bits=64)
        _counter(rec, f"{IFX_ENTRY}.11.{n}", COUNTER64, out_ucast, out_pkts_rate, bits=64)
        rec.add(f"{IFX_ENTRY}.12.{n}", COUNTER64, out_ucast // 90)
        rec.add(f"{IFX_ENTRY}.13.{n}", COUNTER64, out_ucast // 120)
        rec.add(f"{IFX_ENTRY}.14.{n}", INTEGER, 1 if i.iftype != IFTYPE_L2VLAN else 2)
        rec.add(f"{IFX_ENTRY}.15.{n}", GAUGE32, i.speed_mbps)
        rec.add(f"{IFX_ENTRY}.16.{n}", INTEGER, 2)
        physical = i.iftype in (IFTYPE_ETHERNET, IFTYPE_80211) and i.mac is not None
        rec.add(f"{IFX_ENTRY}.17.{n}", INTEGER, 1 if physical else 2)
        rec.add(f"{IFX_ENTRY}.18.{n}", OCTETS, i.alias)
        rec.add(f"{IFX_ENTRY}.19.{n}", TIMETICKS, 0)


# ------------------------------------------------------------------ MikroTik hAP ac2

#: Stations on wlan1 (open hotspot SSID) and wlan2 (WPA2 staff SSID):
#: (MAC, signal dBm, tx rate Mbps, rx rate Mbps, uptime seconds).
MIKROTIK_WLAN1_CLIENTS = [
    ("DA:A1:19:3C:77:0E", -61, 72, 65, 1843),
    ("5E:02:B7:41:9A:C3", -67, 58, 52, 926),
    ("A6:3F:88:0D:12:7B", -72, 39, 26, 3371),
    ("E2:91:5C:60:4B:A8", -58, 72, 72, 412),
    ("3A:6D:E4:27:F0:19", -75, 26, 19, 5218),
    ("76:C8:02:9E:35:D4", -64, 65, 58, 155),
    ("B2:14:7A:D9:63:5F", -70, 43, 39, 2764),
    ("1E:8B:C5:72:0A:E6", -80, 13, 6, 97),
    ("CA:57:31:BE:84:20", -66, 58, 52, 1180),
    ("4A:E0:96:13:C7:3D", -69, 52, 43, 664),
    ("F6:2C:4D:88:B1:07", -73, 39, 29, 3905),
    ("8E:75:1F:A4:5E:92", -62, 72, 65, 238),
    ("26:B9:E8:5A:0C:F1", -77, 19, 13, 1502),
    ("62:0D:73:C1:E6:4A", -68, 52, 46, 847),
]
MIKROTIK_WLAN2_CLIENTS = [
    ("AE:41:D2:07:9B:66", -55, 433, 390, 14230),
    ("12:F8:3B:6C:A5:0D", -63, 292, 260, 9120),
    ("9A:26:C0:E1:48:B3", -71, 117, 87, 31),
]
#: Hotspot sessions: (RouterOS internal index, IP, position in MIKROTIK_WLAN1_CLIENTS,
#: connected seconds, bytes in, bytes out).
MIKROTIK_HOTSPOT = [
    (1185, "10.5.50.23", 0, 1790, 48_311_204, 5_126_887),
    (1187, "10.5.50.31", 1, 901, 12_905_331, 1_877_402),
    (1190, "10.5.50.44", 2, 3310, 210_448_907, 9_355_120),
    (1191, "10.5.50.52", 3, 380, 3_118_045, 640_271),
    (1194, "10.5.50.57", 4, 5160, 387_220_651, 14_090_388),
    (1196, "10.5.50.63", 6, 2701, 95_630_872, 7_211_935),
    (1201, "10.5.50.78", 8, 1144, 22_470_193, 2_906_511),
    (1203, "10.5.50.81", 9, 630, 8_761_320, 1_302_884),
    (1204, "10.5.50.90", 10, 3842, 156_092_447, 8_822_070),
]
MIKROTIK_DHCP_LEASES = 21


def build_mikrotik() -> str:
    """MikroTik hAP ac2 (RouterOS 6.49) at a school: free WiFi hotspot plus a staff SSID."""
    rec = Recording()
    add_system(
        rec,
        descr="RouterOS RBD52G-5HacD2HnD",
        object_id=SYSOBJECTID_MIKROTIK,
        uptime=123_456_700,
        name="jun-0123-router",
        location="IE 30012 Racracalla, Concepcion, Junin",
    )
    base = "6C:3B:6B:3C:5E:"
    interfaces = [
        Interface(1, "ether1", mac=base + "11", in_octets=1_843_926_112_804,
                  out_octets=312_550_781_442, in_rate=312_500, out_rate=62_500,
                  alias="WAN RDNFO nodo-concepcion"),
        Interface(2, "ether2", speed_mbps=100, mac=base + "12", in_octets=86_112_043_925,
                  out_octets=401_774_218_306, in_rate=20_000, out_rate=90_000,
                  alias="laboratorio"),
        Interface(3, "ether3", speed_mbps=0, mac=base + "13", oper_up=False),
        Interface(4, "ether4", speed_mbps=0, mac=base + "14", oper_up=False),
        Interface(5, "ether5", speed_mbps=100, mac=base + "15", in_octets=2_944_310_877,
                  out_octets=19_207_556_130, in_rate=1_500, out_rate=6_000,
                  alias="camara"),
        Interface(6, "wlan1", iftype=IFTYPE_80211, speed_mbps=144, mac=base + "16",
                  in_octets=412_905_117_046, out_octets=1_690_334_508_217,
                  in_rate=45_000, out_rate=210_000),
        Interface(7, "wlan2", iftype=IFTYPE_80211, speed_mbps=866, mac=base + "17",
                  in_octets=37_220_919_385, out_octets=128_604_771_950,
                  in_rate=6_000, out_rate=25_000),
    ]  # fmt: skip
    add_interfaces(rec, interfaces)

    wireless = f"{MTXR}.1"
    ap = f"{wireless}.3.1"  # mtxrWlApEntry, indexed by the interface's ifIndex
    aps = [
        (6, "WiFi-Gratis-Plaza", base + "16", MIKROTIK_WLAN1_CLIENTS, 14, 2437,
         "2437/20-Ce/gn", -108, 74),
        (7, "IE-30012-Docentes", base + "17", MIKROTIK_WLAN2_CLIENTS, 2, 5180,
         "5180/20/ac", -102, 91),
    ]  # fmt: skip
    for if_index, ssid, bssid, clients, auth, freq, band, noise, ccq in aps:
        rec.add(f"{ap}.2.{if_index}", GAUGE32, 130_000_000)
        rec.add(f"{ap}.3.{if_index}", GAUGE32, 117_000_000)
        rec.add(f"{ap}.4.{if_index}", OCTETS, ssid)
        rec.add(f"{ap}.5.{if_index}", HEX, mac_hex(bssid))
        rec.add(f"{ap}.6.{if_index}", COUNTER32, len(clients))
        rec.add(f"{ap}.7.{if_index}", INTEGER, freq)
        rec.add(f"{ap}.8.{if_index}", OCTETS, band)
        rec.add(f"{ap}.9.{if_index}", INTEGER, noise)
        rec.add(f"{ap}.10.{if_index}", COUNTER32, ccq)
        rec.add(f"{ap}.11.{if_index}", COUNTER32, auth)

    rtab = f"{wireless}.2.1"  # mtxrWlRtabEntry, indexed by station MAC + ifIndex
    stations = [(6, c) for c in MIKROTIK_WLAN1_CLIENTS] + [(7, c) for c in MIKROTIK_WLAN2_CLIENTS]
    for if_index, (mac, signal, tx, rx, uptime) in stations:
        idx = f"{mac_index(mac)}.{if_index}"
        rec.add(f"{rtab}.3.{idx}", INTEGER, signal)
        rec.add(f"{rtab}.4.{idx}", COUNTER32, uptime * 9_100)
        rec.add(f"{rtab}.5.{idx}", COUNTER32, uptime * 1_700)
        rec.add(f"{rtab}.6.{idx}", COUNTER32, uptime * 9)
        rec.add(f"{rtab}.7.{idx}", COUNTER32, uptime * 5)
        rec.add(f"{rtab}.8.{idx}", GAUGE32, tx * 1_000_000)
        rec.add(f"{rtab}.9.{idx}", GAUGE32, rx * 1_000_000)
        rec.add(f"{rtab}.10.{idx}", OCTETS, "")
        rec.add(f"{rtab}.11.{idx}", TIMETICKS, uptime * 100)
        rec.add(f"{rtab}.12.{idx}", INTEGER, signal + 104)
        rec.add(f"{rtab}.20.{idx}", OCTETS, "")
    rec.add(f"{wireless}.4.0", GAUGE32, len(stations))  # mtxrWlRtabEntryCount
    rec.add(f"{wireless}.6.0", GAUGE32, 0)  # mtxrWlCMRtabEntryCount (no CAPsMAN)

    users = f"{MTXR}.5.1.1"  # mtxrHotspotActiveUsersTableEntry
    for index, ip, client, connected, bytes_in, bytes_out in MIKROTIK_HOTSPOT:
        mac = MIKROTIK_WLAN1_CLIENTS[client][0]
        rec.add(f"{users}.2.{index}", INTEGER, 1)
        rec.add(f"{users}.3.{index}", OCTETS, f"T-{mac}")
        rec.add(f"{users}.4.{index}", OCTETS, "")
        rec.add(f"{users}.5.{index}", IPADDRESS, ip)
        rec.add(f"{users}.6.{index}", HEX, mac_hex(mac))
        rec.add(f"{users}.7.{index}", INTEGER, connected)
        rec.add(f"{users}.8.{index}", INTEGER, 0)
        rec.add(f"{users}.12.{index}", COUNTER64, bytes_in)
        rec.add(f"{users}.13.{index}", COUNTER64, bytes_out)
        rec.add(f"{users}.14.{index}", COUNTER64, bytes_in // 900)
        rec.add(f"{users}.15.{index}", COUNTER64, bytes_out // 300)
    rec.add(f"{MTXR}.6.1.0", GAUGE32, MIKROTIK_DHCP_LEASES)  # mtxrDHCPLeaseCount
    return rec.text()


# ---------------------------------------------------------- 24-port switch + 2 uplinks

SWITCH24_DOWN = {9, 10, 17, 18, 19, 20, 24, 26}
SWITCH24_ADMIN_DOWN = {23}
SWITCH24_FAST = {5, 6, 7, 8, 13, 14}  # 100 Mbps devices (cameras, printers, old PCs)


def build_switch24() -> str:
    """MikroTik CRS326-24G-2S+: 24 copper ports and 2 SFP+ uplinks, some ports down."""
    rec = Recording()
    add_system(
        rec,
        descr="RouterOS CRS326-24G-2S+",
        object_id=SYSOBJECTID_MIKROTIK,
        uptime=2_587_412_300,
        name="jun-0123-sw01",
        location="IE 30012 Racracalla, rack sala de computo",
        services=2,
    )
    interfaces = []
    for n in range(1, 27):
        name = f"ether{n}" if n <= 24 else f"sfp-sfpplus{n - 24}"
        admin_up = n not in SWITCH24_ADMIN_DOWN
        up = admin_up and n not in SWITCH24_DOWN
        if not up:
            speed = 0
        elif n > 24:
            speed = 10_000
        elif n in SWITCH24_FAST:
            speed = 100
        else:
            speed = 1000
        # Deterministic, varied totals; the uplink carries everything.
        in_octets = 7_340_032 * n**4 + 191_000_000 * n if n not in SWITCH24_ADMIN_DOWN else 0
        out_octets = 3 * in_octets + 58_000_000 * n
        if n == 25:
            in_octets, out_octets = 2_119_503_477_208, 9_876_304_112_655
        interfaces.append(
            Interface(
                n,
                name,
                speed_mbps=speed,
                mac=f"6C:3B:6B:91:4A:{n:02X}",
                mtu=1500,
                admin_up=admin_up,
                oper_up=up,
                in_octets=in_octets,
                out_octets=out_octets,
                alias={1: "router", 2: "AP-patio", 3: "direccion", 25: "uplink-router"}.get(n, ""),
                last_change=0 if up else 1_204_500 + 6_100 * n,
                extra={"in_errors": 3 if n == 14 else 0, "out_discards": 12 if n == 25 else 0},
            )
        )
    add_interfaces(rec, interfaces)
    return rec.text()


# ----------------------------------------------------------------- 48-interface router


def build_router48() -> str:
    """A Debian Linux aggregation router (net-snmp) with exactly 48 interfaces.

    lo, eth0..eth7 and 39 VLAN sub-interfaces eth1.101..eth1.139 (one per school).
    Used by the benchmark against snmp_exporter's if_mib module.
    """
    rec = Recording()
    add_system(
        rec,
        descr="Linux agg-concepcion-01 5.10.0-28-amd64 #1 SMP Debian 5.10.209-2 x86_64",
        object_id=SYSOBJECTID_NET_SNMP_LINUX,
        uptime=904_512_377,
        name="agg-concepcion-01",
        location="Nodo Concepcion, Junin",
        services=72,
    )
    interfaces = [
        Interface(1, "lo", iftype=IFTYPE_LOOPBACK, speed_mbps=10, mtu=65536,
                  in_octets=88_410_223, out_octets=88_410_223),
    ]  # fmt: skip
    for n in range(8):
        up = n not in (6, 7)
        interfaces.append(
            Interface(
                2 + n,
                f"eth{n}",
                speed_mbps=(10_000 if n < 2 else 1000) if up else 0,
                mac=f"3C:EC:EF:0A:71:{0x40 + n:02X}",
                oper_up=up,
                in_octets=(9_912_447_301_553 // (n + 1)) if up else 0,
                out_octets=(4_301_889_120_447 // (n + 1)) if up else 0,
                alias={0: "uplink RDNFO", 1: "trunk radios"}.get(n, ""),
            )
        )
    for v in range(39):
        vlan = 101 + v
        interfaces.append(
            Interface(
                10 + v,
                f"eth1.{vlan}",
                iftype=IFTYPE_L2VLAN,
                speed_mbps=10_000,
                mac="3C:EC:EF:0A:71:41",
                in_octets=1_000_000_000 + 48_112_903_117 * (v % 7 + 1) + 7_777 * v,
                out_octets=2_000_000_000 + 181_405_227_002 * (v % 5 + 1) + 3_331 * v,
                alias=f"jun-{v + 1:04d}",
            )
        )
    if len(interfaces) != 48:
        raise AssertionError(f"router48 has {len(interfaces)} interfaces")
    add_interfaces(rec, interfaces)
    return rec.text()


# ------------------------------------------------------------------------ UniFi AP

#: (unifiVapIndex, ifIndex, VAP name, radio, ESSID, stations, channel, usage)
UNIFI_VAPS = [
    (1, 5, "ath0", "ng", "WiFi-Gratis", 11, 6, "guest"),
    (2, 6, "ath1", "ng", "Posta-Salud", 2, 6, "user"),
    (3, 7, "ath2", "na", "WiFi-Gratis", 6, 44, "guest"),
    (4, 8, "ath3", "na", "Posta-Salud", 1, 44, "user"),
]


def build_unifi() -> str:
    """UniFi AP AC Lite at a health post: 2 radios x 2 SSIDs (4 VAPs)."""
    rec = Recording()
    add_system(
        rec,
        descr="UAP-AC-Lite 6.5.62.14788",
        object_id=SYSOBJECTID_NET_SNMP_LINUX,
        uptime=61_203_400,
        name="jun-0177-ap-posta",
        location="Puesto de Salud Chupaca, Junin",
        services=72,
    )
    base = "74:83:C2:5A:0B:"
    interfaces = [
        Interface(1, "lo", iftype=IFTYPE_LOOPBACK, speed_mbps=10, mtu=65536,
                  in_octets=1_204_773, out_octets=1_204_773),
        Interface(2, "eth0", mac=base + "10", in_octets=96_774_310_225,
                  out_octets=21_904_556_871),
        Interface(3, "wifi0", iftype=IFTYPE_OTHER, speed_mbps=0, mac=base + "11", mtu=2290),
        Interface(4, "wifi1", iftype=IFTYPE_OTHER, speed_mbps=0, mac=base + "12", mtu=2290),
    ]  # fmt: skip
    for _, if_index, name, radio, _, stations, _, _ in UNIFI_VAPS:
        mac_last = 0x11 if radio == "ng" else 0x12
        interfaces.append(
            Interface(
                if_index,
                name,
                speed_mbps=0,
                mac=f"7A:83:C2:5A:0B:{mac_last + 0x20 * (if_index - 4):02X}",
                in_octets=1_300_000_000 * stations + 7_211 * if_index,
                out_octets=9_800_000_000 * stations + 3_337 * if_index,
            )
        )
    interfaces.append(
        Interface(9, "br0", iftype=IFTYPE_ETHERNET, speed_mbps=0, mac=base + "10",
                  in_octets=54_118_023_992, out_octets=90_553_710_402)
    )  # fmt: skip
    add_interfaces(rec, interfaces)

    radios = f"{UBNT_UNIFI}.1.1.1"  # unifiRadioEntry
    for index, name, radio, cu_total in ((1, "wifi0", "ng", 43), (2, "wifi1", "na", 17)):
        rec.add(f"{radios}.2.{index}", OCTETS, name)
        rec.add(f"{radios}.3.{index}", OCTETS, radio)
        rec.add(f"{radios}.4.{index}", COUNTER32, 18_204_331 * index)
        rec.add(f"{radios}.5.{index}", COUNTER32, 40_119_876 * index)
        rec.add(f"{radios}.6.{index}", INTEGER, cu_total)
        rec.add(f"{radios}.7.{index}", INTEGER, cu_total // 3)
        rec.add(f"{radios}.8.{index}", INTEGER, cu_total // 4)
        rec.add(f"{radios}.9.{index}", INTEGER, 6 if radio == "ng" else 2)
    vaps = f"{UBNT_UNIFI}.1.2.1"  # unifiVapEntry
    for index, if_index, name, radio, essid, stations, channel, usage in UNIFI_VAPS:
        mac_last = 0x11 if radio == "ng" else 0x12
        rec.add(f"{vaps}.2.{index}", HEX, f"7A83C25A0B{mac_last + 0x20 * (if_index - 4):02X}")
        rec.add(f"{vaps}.3.{index}", INTEGER, 88 if radio == "ng" else 96)
        rec.add(f"{vaps}.4.{index}", INTEGER, channel)
        rec.add(f"{vaps}.5.{index}", INTEGER, 0 if radio == "ng" else 1)
        rec.add(f"{vaps}.6.{index}", OCTETS, essid)
        rec.add(f"{vaps}.7.{index}", OCTETS, name)
        rec.add(f"{vaps}.8.{index}", INTEGER, stations)
        rec.add(f"{vaps}.9.{index}", OCTETS, radio)
        rec.add(f"{vaps}.10.{index}", COUNTER32, (1_300_000_000 * stations) % WRAP32)
        rec.add(f"{vaps}.15.{index}", COUNTER32, 1_857_000 * stations)
        rec.add(f"{vaps}.16.{index}", COUNTER32, (9_800_000_000 * stations) % WRAP32)
        rec.add(f"{vaps}.19.{index}", COUNTER32, 7_001_000 * stations)
        rec.add(f"{vaps}.21.{index}", INTEGER, 20 if radio == "ng" else 23)
        rec.add(f"{vaps}.22.{index}", INTEGER, 1)
        rec.add(f"{vaps}.23.{index}", OCTETS, usage)
    system = f"{UBNT_UNIFI}.3"
    rec.add(f"{system}.1.0", IPADDRESS, "10.21.177.2")
    rec.add(f"{system}.2.0", INTEGER, 2)
    rec.add(f"{system}.3.0", OCTETS, "UAP-AC-Lite")
    rec.add(f"{system}.4.0", OCTETS, "eth0")
    rec.add(f"{system}.5.0", COUNTER32, 612_034)
    rec.add(f"{system}.6.0", OCTETS, "6.5.62.14788")
    return rec.text()


# --------------------------------------------------------------------- airMAX AP

#: Subscriber radios (CPEs at schools): (MAC, name, signal dBm, distance m, CCQ %,
#: last IP, tx/rx rate kbps).
AIRMAX_STATIONS = [
    ("78:8A:20:10:A3:51", "IE-30012-Racracalla", -58, 2_450, 97, "10.21.7.11", 240_000),
    ("78:8A:20:10:B7:0C", "PS-Chupaca-Alta", -63, 4_120, 94, "10.21.7.12", 216_000),
    ("78:8A:20:11:04:9E", "IE-30415-Huayao", -66, 6_880, 90, "10.21.7.13", 180_000),
    ("78:8A:20:11:2A:63", "IE-31102-Ahuac", -71, 9_310, 82, "10.21.7.14", 120_000),
    ("78:8A:20:11:5D:F0", "CPNP-Sicaya", -69, 7_540, 88, "10.21.7.15", 150_000),
    ("78:8A:20:11:8C:27", "IE-30034-Matahuasi", -74, 11_020, 76, "10.21.7.16", 81_000),
]


def build_airmax() -> str:
    """Ubiquiti Rocket 5AC Prism (airOS 8) as PtMP access point with 6 stations.

    airOS answers ifTable only (32-bit counters, no ifXTable), as in LibreNMS's airOS 8
    recording (tests/snmpsim/airos_airos8.snmprec).
    """
    rec = Recording()
    add_system(
        rec,
        descr="Linux 2.6.32.71 #1 Tue Mar 29 10:12:41 EEST 2022 mips",
        object_id=SYSOBJECTID_AIROS,
        uptime=318_220_500,
        name="ptmp-concepcion-sector2",
        location="Cerro Piedra Parada, Concepcion",
        contact="noc@example.pe",
        services=2,
    )
    base = "78:8A:20:6A:20:"
    interfaces = [
        Interface(1, "lo", iftype=IFTYPE_LOOPBACK, speed_mbps=0, mtu=16436,
                  in_octets=2_204_118, out_octets=2_204_118),
        Interface(2, "eth0", speed_mbps=1000, mac=base + "A0", in_octets=2_873_400_112,
                  out_octets=1_442_810_937),
        Interface(3, "wifi0", iftype=IFTYPE_OTHER, speed_mbps=0, mtu=2286),
        Interface(4, "ath0", mac=base + "A1", speed_mbps=0, in_octets=1_327_559_024,
                  out_octets=2_698_113_458),
        Interface(5, "br0", mac=base + "A0", speed_mbps=0, in_octets=905_776_310,
                  out_octets=3_914_006_221),
    ]  # fmt: skip
    add_interfaces(rec, interfaces, hc=False)

    radio = f"{UBNT_AIRMAX}.1.1"  # ubntRadioEntry, index 1
    rec.add(f"{radio}.2.1", INTEGER, 2)  # ap(2)
    rec.add(f"{radio}.3.1", INTEGER, 604)
    rec.add(f"{radio}.4.1", INTEGER, 5745)
    rec.add(f"{radio}.5.1", INTEGER, 2)
    rec.add(f"{radio}.6.1", INTEGER, 22)
    rec.add(f"{radio}.7.1", INTEGER, 12_000)
    rec.add(f"{radio}.8.1", INTEGER, 3)
    rec.add(f"{radio}.9.1", OCTETS, "AM-5AC21-60 - 21 dBi")
    airmax = f"{UBNT_AIRMAX}.6.1"  # ubntAirMaxEntry, index 1
    rec.add(f"{airmax}.2.1", INTEGER, 1)
    rec.add(f"{airmax}.3.1", INTEGER, 87)
    rec.add(f"{airmax}.4.1", INTEGER, 71)
    rec.add(f"{airmax}.7.1", INTEGER, 412)
    wlstat = f"{UBNT_AIRMAX}.5.1"  # ubntWlStatEntry, index 1
    rec.add(f"{wlstat}.2.1", OCTETS, "RED-JUNIN-PTMP-07")
    rec.add(f"{wlstat}.3.1", INTEGER, 2)
    rec.add(f"{wlstat}.4.1", HEX, mac_hex(base + "A1"))
    rec.add(f"{wlstat}.5.1", INTEGER, -62)
    rec.add(f"{wlstat}.6.1", INTEGER, 34)
    rec.add(f"{wlstat}.7.1", INTEGER, 88)
    rec.add(f"{wlstat}.8.1", INTEGER, -96)
    rec.add(f"{wlstat}.9.1", INTEGER, 216_000_000)
    rec.add(f"{wlstat}.10.1", INTEGER, 180_000_000)
    rec.add(f"{wlstat}.11.1", OCTETS, "WPA2")
    rec.add(f"{wlstat}.12.1", INTEGER, 1)
    rec.add(f"{wlstat}.13.1", INTEGER, 2)
    rec.add(f"{wlstat}.14.1", INTEGER, 40)
    rec.add(f"{wlstat}.15.1", GAUGE32, len(AIRMAX_STATIONS))
    sta = f"{UBNT_AIRMAX}.7.1"  # ubntStaEntry, indexed by ubntWlStatIndex + station MAC
    for n, (mac, name, signal, distance, ccq, ip, rate) in enumerate(AIRMAX_STATIONS):
        idx = f"1.{mac_index(mac)}"
        rec.add(f"{sta}.2.{idx}", OCTETS, name)
        rec.add(f"{sta}.3.{idx}", INTEGER, signal)
        rec.add(f"{sta}.4.{idx}", INTEGER, -96)
        rec.add(f"{sta}.5.{idx}", INTEGER, distance)
        rec.add(f"{sta}.6.{idx}", INTEGER, ccq)
        rec.add(f"{sta}.7.{idx}", INTEGER, 1)
        rec.add(f"{sta}.8.{idx}", INTEGER, ccq - 4)
        rec.add(f"{sta}.9.{idx}", INTEGER, ccq - 19)
        rec.add(f"{sta}.10.{idx}", IPADDRESS, ip)
        rec.add(f"{sta}.11.{idx}", INTEGER, rate)
        rec.add(f"{sta}.12.{idx}", INTEGER, rate * 5 // 6)
        rec.add(f"{sta}.13.{idx}", COUNTER64, 48_330_129_775 + 9_104_557_210 * n)
        rec.add(f"{sta}.14.{idx}", COUNTER64, 7_120_448_301 + 1_227_009_114 * n)
        rec.add(f"{sta}.15.{idx}", TIMETICKS, 318_000_000 - 45_000_000 * n)
    return rec.text()


# -------------------------------------------------------------------- Cambium ePMP

EPMP_CONNECTED_STA = 8


def build_epmp() -> str:
    """Cambium ePMP 1000 access point (TDD) with 8 connected subscriber modules."""
    rec = Recording()
    add_system(
        rec,
        descr="Cambium ePMP 1000",
        object_id=SYSOBJECTID_EPMP,
        uptime=188_733_900,
        name="epmp-huancayo-norte-ap3",
        location="Torre Huancayo Norte",
        services=2,
    )
    base = "00:04:56:A1:3F:"
    interfaces = [
        Interface(1, "lo", iftype=IFTYPE_LOOPBACK, speed_mbps=0, mtu=16436,
                  in_octets=3_310_221, out_octets=3_310_221),
        Interface(2, "eth0", speed_mbps=1000, mac=base + "70",
                  in_octets=1_207_339_004_118, out_octets=311_902_475_660),
        Interface(3, "ath0", iftype=IFTYPE_80211, speed_mbps=0, mac=base + "71",
                  in_octets=309_114_776_034, out_octets=1_198_450_223_871),
        Interface(4, "br0", iftype=IFTYPE_BRIDGE, speed_mbps=0, mac=base + "70",
                  in_octets=2_771_903_512, out_octets=1_044_302_187),
    ]  # fmt: skip
    add_interfaces(rec, interfaces)
    general = f"{CAMBIUM_PMP}.1.1"  # cambiumGeneralStatus
    rec.add(f"{general}.1.0", OCTETS, "4.6.2")
    rec.add(f"{general}.2.0", INTEGER, 0)
    rec.add(f"{general}.3.0", OCTETS, "11/14/2025:09:41:07")
    rec.add(f"{general}.4.0", OCTETS, "0021:20:15:39")
    rec.add(f"{general}.5.0", OCTETS, base + "71")
    rec.add(f"{general}.8.0", OCTETS, "PE")
    rec.add(f"{general}.11.0", OCTETS, "RED-JUNIN-EPMP-03")
    rec.add(f"{general}.13.0", OCTETS, "epmp-huancayo-norte-ap3")
    rec.add(f"{general}.15.0", OCTETS, base + "70")
    rec.add(f"{general}.33.0", INTEGER, 1)
    rec.add(f"{CAMBIUM_PMP}.1.2.10.0", INTEGER, EPMP_CONNECTED_STA)
    return rec.text()


# ------------------------------------------------------------ 32-bit-only legacy CPE

LEGACY32_IN_OCTETS = 4_294_960_000  # 7,296 bytes below the 32-bit wrap
LEGACY32_WLAN_IN_OCTETS = 4_294_967_000


def build_legacy32() -> str:
    """An old embedded Linux CPE with ucd-snmp: MIB-II ifTable only, 32-bit counters.

    Static values, so a test decides when a counter wraps or the uptime goes back
    (``SnmpSim.set_values``).
    """
    rec = Recording()
    add_system(
        rec,
        descr="Linux cpe-legacy 2.4.30 #1 Tue Oct 10 18:22:13 PET 2006 mips",
        object_id=SYSOBJECTID_UCD_SNMP_LINUX,
        uptime=8_640_000,
        name="jun-0301-cpe",
        location="IE 31540 Pucara",
        uptime_grows=False,
    )
    interfaces = [
        Interface(1, "lo", iftype=IFTYPE_LOOPBACK, speed_mbps=10, mtu=16436,
                  in_octets=51_220, out_octets=51_220),
        Interface(2, "eth0", speed_mbps=100, mac="00:90:4C:7E:21:02",
                  in_octets=LEGACY32_IN_OCTETS, out_octets=3_865_470_566),
        Interface(3, "eth1", speed_mbps=100, mac="00:90:4C:7E:21:03",
                  in_octets=1_073_741_824, out_octets=2_147_483_648),
        Interface(4, "wlan0", iftype=IFTYPE_80211, speed_mbps=54, mac="00:90:4C:7E:21:04",
                  in_octets=LEGACY32_WLAN_IN_OCTETS, out_octets=12_884_901),
    ]  # fmt: skip
    add_interfaces(rec, interfaces, hc=False)
    return rec.text()


# ----------------------------------------------- client addresses in every notation

PRIVACY_BASE = "1.3.6.1.4.1.32473.1"  # RFC 5612: the enterprise number for documentation
PRIVACY_NAMES = f"{PRIVACY_BASE}.1.1"  # rows named by a text column
PRIVACY_CLIENTS = f"{PRIVACY_BASE}.2.1"  # rows indexed by ifIndex + client address
PRIVACY_STATIONS = f"{PRIVACY_BASE}.3.1"  # rows indexed by client MAC + ifIndex
PRIVACY_CHAINS = f"{PRIVACY_BASE}.4.1"  # rows indexed by radio.chain
PRIVACY_SSIDS = f"{PRIVACY_BASE}.5.1"  # clients per SSID

#: Rows of the name table: (name as (tag, value), bytes counted). The names hold client
#: addresses in the notations devices write them in, and a few legitimate names.
PRIVACY_NAME_ROWS: list[tuple[tuple[str, str], int]] = [
    ((OCTETS, "ether1"), 1_000),
    ((OCTETS, "WiFi Gratis Plaza"), 2_000),
    ((HEX, "Estación".encode().hex().upper()), 3_000),
    ((OCTETS, "sfp-sfpplus1"), 4_000),
    ((HEX, "6E3C910DA427"), 5),  # MAC 6E:3C:91:0D:A4:27 as raw octets (not UTF-8)
    ((HEX, "4A6F2D727A26"), 6),  # MAC 4A:6F:2D:72:7A:26 as raw octets, printable "Jo-rz&"
    ((OCTETS, "8a51.c27e.19b4"), 7),  # Cisco
    ((OCTETS, "D6 08 4F E3 72 9C"), 8),  # space-separated hex
    ((OCTETS, "1a:c7:63:b8:05:e1"), 9),
    ((OCTETS, "F2-94-2D-51-CE-68"), 10),
    ((OCTETS, "4EB07A16D385"), 11),  # bare hex
    ((OCTETS, "android-32e59b440f7a"), 12),  # a DHCP host name
    ((OCTETS, "fd00:5e:88::c1a7"), 13),
    ((OCTETS, "10.5.50.23"), 14),
    ((HEX, "0A05321F"), 15),  # 10.5.50.31 as raw octets
]
#: Client addresses (IPv4 or IPv6) keying the client table, each on ifIndex 2.
PRIVACY_CLIENT_ADDRESSES = ["192.168.88.23", "192.168.88.40", "fd00:5e:88::23"]
#: Stations keying the station table (MAC + ifIndex 2) with their signal.
PRIVACY_STATIONS_ROWS = [("5A:1D:E8:73:B6:02", -61), ("BE:62:04:C9:3F:D1", -70),
                         ("9E:F3:57:2A:80:4C", -77)]  # fmt: skip
#: Signal per radio.chain.
PRIVACY_CHAIN_ROWS = {"1.1": -58, "1.2": -60, "2.1": -66}
#: SSIDs as (tag, value) with their clients; the last "SSID" is a MAC as raw octets.
PRIVACY_SSID_ROWS = [((OCTETS, "WiFi Gratis Plaza"), 12),
                     ((HEX, "Estación".encode().hex().upper()), 3),
                     ((HEX, "C628D1956BE0"), 1)]  # fmt: skip


def privacy_macs() -> list[bytes]:
    """Every client MAC address in the privacy recording."""
    texts = ["6E:3C:91:0D:A4:27", "4A:6F:2D:72:7A:26", "8A:51:C2:7E:19:B4",
             "D6:08:4F:E3:72:9C", "1A:C7:63:B8:05:E1", "F2:94:2D:51:CE:68",
             "4E:B0:7A:16:D3:85", "32:E5:9B:44:0F:7A", "C6:28:D1:95:6B:E0",
             *(mac for mac, _ in PRIVACY_STATIONS_ROWS)]  # fmt: skip
    return [bytes.fromhex(mac.replace(":", "")) for mac in texts]


def privacy_ips() -> list[str]:
    """Every client IP address in the privacy recording."""
    return ["10.5.50.23", "10.5.50.31", "fd00:5e:88::c1a7", *PRIVACY_CLIENT_ADDRESSES]


def _address_index(address: str) -> str:
    packed = ipaddress.ip_address(address).packed
    octets = ".".join(str(b) for b in packed)
    return octets if len(packed) == 4 else f"{len(packed)}.{octets}"


def build_privacy() -> str:
    """A made-up WiFi controller whose tables hold client addresses in every notation.

    For the privacy tests of custom profiles: labels taken from these rows must never
    show an address. Rows are named, indexed by ifIndex + IPv4 (``2.192.168.88.23``) or
    + IPv6 (``2.16.253.0...``), or by MAC + ifIndex, beside legitimate rows.
    """
    rec = Recording()
    add_system(
        rec,
        descr="kipu privacy test device",
        object_id=f"{PRIVACY_BASE}.0",
        uptime=360_000,
        name="jun-0999-wlc",
        location="Plaza de Armas",
    )
    add_interfaces(rec, [Interface(1, "ether1", in_octets=1_000, out_octets=2_000),
                         Interface(2, "wlan1", iftype=IFTYPE_80211, in_octets=3_000,
                                   out_octets=4_000)])  # fmt: skip
    for row, ((tag, name), counted) in enumerate(PRIVACY_NAME_ROWS, 1):
        rec.add(f"{PRIVACY_NAMES}.2.{row}", tag, name)
        rec.add(f"{PRIVACY_NAMES}.3.{row}", COUNTER64, counted)
    for n, address in enumerate(PRIVACY_CLIENT_ADDRESSES, 1):
        index = f"2.{_address_index(address)}"
        packed = ipaddress.ip_address(address).packed
        rec.add(f"{PRIVACY_CLIENTS}.2.{index}", COUNTER64, n * 1_000_000)
        if len(packed) == 4:
            rec.add(f"{PRIVACY_CLIENTS}.3.{index}", IPADDRESS, address)
        rec.add(f"{PRIVACY_CLIENTS}.4.{index}", HEX, packed.hex().upper())  # InetAddress
    for mac, signal in PRIVACY_STATIONS_ROWS:
        rec.add(f"{PRIVACY_STATIONS}.2.{mac_index(mac)}.2", INTEGER, signal)
    for index, signal in PRIVACY_CHAIN_ROWS.items():
        rec.add(f"{PRIVACY_CHAINS}.2.{index}", INTEGER, signal)
    for row, ((tag, ssid), clients) in enumerate(PRIVACY_SSID_ROWS, 1):
        rec.add(f"{PRIVACY_SSIDS}.2.{row}", tag, ssid)
        rec.add(f"{PRIVACY_SSIDS}.3.{row}", GAUGE32, clients)
    return rec.text()


BUILDERS: dict[str, Callable[[], str]] = {
    "mikrotik": build_mikrotik,
    "switch24": build_switch24,
    "router48": build_router48,
    "unifi": build_unifi,
    "airmax": build_airmax,
    "epmp": build_epmp,
    "legacy32": build_legacy32,
}


#: Recordings of one test's scenario rather than of a device model: written by main()
#: too, but outside BUILDERS, which names the device models (tests.support.snmp.RECORDINGS).
SCENARIO_BUILDERS: dict[str, Callable[[], str]] = {"privacy": build_privacy}


def build_all() -> dict[str, str]:
    """Community name -> recording text, for every device model in tests/snmp_data."""
    return {name: build() for name, build in BUILDERS.items()}


def main() -> int:
    DATA_DIR.mkdir(exist_ok=True)
    scenarios = {name: build() for name, build in SCENARIO_BUILDERS.items()}
    for name, text in (build_all() | scenarios).items():
        path = DATA_DIR / f"{name}.snmprec"
        path.write_text(text, encoding="iso-8859-1")
        print(f"wrote {path} ({text.count(chr(10))} records)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
