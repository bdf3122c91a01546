"""The built-in SNMP profiles: IF-MIB, MikroTik, Ubiquiti airMAX and UniFi, Cambium ePMP.

OIDs are checked against the vendors' MIB files: see docs/snmp-oids.md for each object
and where it is defined. Pure.
"""

from __future__ import annotations

from agent.probes.snmp import Reading
from agent.profiles.model import (
    IF_MIB_COLUMNS,
    IF_MIB_SCALARS,
    DeviceState,
    Profile,
    clients_by_ssid,
    interfaces,
    mac_of_index,
    number,
    text,
    uptime,
)

# MIKROTIK-MIB, under mtXRouterOs 1.3.6.1.4.1.14988.1.1
MT_AP_SSID = "1.3.6.1.4.1.14988.1.1.1.3.1.4"  # mtxrWlApSsid, index mtxrWlApIndex (= ifIndex)
MT_AP_CLIENTS = "1.3.6.1.4.1.14988.1.1.1.3.1.6"  # mtxrWlApClientCount: Counter32, used as gauge
MT_RTAB_STRENGTH = "1.3.6.1.4.1.14988.1.1.1.2.1.3"  # mtxrWlRtabStrength, index MAC.ifIndex
MT_RTAB_COUNT = "1.3.6.1.4.1.14988.1.1.1.4.0"  # mtxrWlRtabEntryCount
MT_CAPSMAN_COUNT = "1.3.6.1.4.1.14988.1.1.1.6.0"  # mtxrWlCMRtabEntryCount
# mtxrHotspotActiveUserServerID: holds no personal data; walked only to count the rows
# (the table's name, IP and MAC columns are never read).
MT_HOTSPOT_SERVER = "1.3.6.1.4.1.14988.1.1.5.1.1.2"
MT_DHCP_LEASES = "1.3.6.1.4.1.14988.1.1.6.1.0"  # mtxrDHCPLeaseCount

# UBNT-AirMAX-MIB ubntWlStatTable, index ubntWlStatIndex; airOS has no ifXTable, so its
# interfaces come from the 32-bit ifTable (the IF-MIB fallback below).
UBNT_WL_SSID = "1.3.6.1.4.1.41112.1.4.5.1.2"
UBNT_WL_STA_COUNT = "1.3.6.1.4.1.41112.1.4.5.1.15"
# UBNT-UniFi-MIB unifiVapTable, index VAP number
UNIFI_VAP_ESSID = "1.3.6.1.4.1.41112.1.6.1.2.1.6"
UNIFI_VAP_STATIONS = "1.3.6.1.4.1.41112.1.6.1.2.1.8"
# CAMBIUM ePMP
EPMP_CONNECTED_STAS = "1.3.6.1.4.1.17713.21.1.2.10.0"  # cambiumAPConnectedSTACount
EPMP_SSID = "1.3.6.1.4.1.17713.21.1.1.11.0"  # cambiumEffectiveSSID


def _if_mib(reading: Reading) -> DeviceState:
    return DeviceState(uptime_seconds=uptime(reading), interfaces=interfaces(reading))


# --- MikroTik -----------------------------------------------------------------------


def _mikrotik(reading: Reading) -> DeviceState:
    col, sc = reading.columns, reading.scalars
    stations = col.get(MT_RTAB_STRENGTH, {})
    ids = tuple(m for m in (mac_of_index(i) for i in stations) if m is not None)
    return DeviceState(
        uptime_seconds=uptime(reading),
        interfaces=interfaces(reading),
        wifi_clients=clients_by_ssid(col.get(MT_AP_SSID, {}), col.get(MT_AP_CLIENTS, {})),
        hotspot_users=len(col.get(MT_HOTSPOT_SERVER, {})),
        dhcp_leases=number(sc.get(MT_DHCP_LEASES)),
        capsman_clients=number(sc.get(MT_CAPSMAN_COUNT)),
        client_ids=ids,
    )


def _airmax(reading: Reading) -> DeviceState:
    col = reading.columns
    return DeviceState(
        uptime_seconds=uptime(reading),
        interfaces=interfaces(reading),
        wifi_clients=clients_by_ssid(col.get(UBNT_WL_SSID, {}), col.get(UBNT_WL_STA_COUNT, {})),
    )


def _unifi(reading: Reading) -> DeviceState:
    col = reading.columns
    return DeviceState(
        uptime_seconds=uptime(reading),
        interfaces=interfaces(reading),
        wifi_clients=clients_by_ssid(col.get(UNIFI_VAP_ESSID, {}), col.get(UNIFI_VAP_STATIONS, {})),
    )


def _epmp(reading: Reading) -> DeviceState:
    sc = reading.scalars
    clients = number(sc.get(EPMP_CONNECTED_STAS))
    ssid = text(sc.get(EPMP_SSID))
    return DeviceState(
        uptime_seconds=uptime(reading),
        interfaces=interfaces(reading),
        wifi_clients={ssid: clients or 0} if clients is not None or ssid else {},
    )


BUILTIN: dict[str, Profile] = {
    "if_mib": Profile("if_mib", IF_MIB_SCALARS, IF_MIB_COLUMNS, _if_mib),
    "mikrotik": Profile(
        "mikrotik",
        (*IF_MIB_SCALARS, MT_RTAB_COUNT, MT_CAPSMAN_COUNT, MT_DHCP_LEASES),
        (*IF_MIB_COLUMNS, MT_AP_SSID, MT_AP_CLIENTS, MT_RTAB_STRENGTH, MT_HOTSPOT_SERVER),
        _mikrotik,
    ),
    "ubiquiti_airmax": Profile(
        "ubiquiti_airmax",
        IF_MIB_SCALARS,
        (*IF_MIB_COLUMNS, UBNT_WL_SSID, UBNT_WL_STA_COUNT),
        _airmax,
    ),
    "ubiquiti_unifi": Profile(
        "ubiquiti_unifi",
        IF_MIB_SCALARS,
        (*IF_MIB_COLUMNS, UNIFI_VAP_ESSID, UNIFI_VAP_STATIONS),
        _unifi,
    ),
    "cambium_epmp": Profile(
        "cambium_epmp", (*IF_MIB_SCALARS, EPMP_CONNECTED_STAS, EPMP_SSID), IF_MIB_COLUMNS, _epmp
    ),
}
