"""The demo's SNMP devices: one UniFi access point per site, simulated by snmpsim.

Each site's recording answers what kipu's `ubiquiti_unifi` profile reads (IF-MIB and the
UniFi VAP table). Its WiFi clients follow a daily curve: snmpsim's `numeric` variation
computes `offset - scale * sin(2 pi t / 1 day)` from the wall clock, which peaks at 13:00
in Lima (UTC-5) and is lowest at 01:00. Traffic counters grow at a steady rate.
"""

from __future__ import annotations

import math
from pathlib import Path

from demo.project import DemoSite

DAY_RATE = 2 * math.pi / 86400
PEAK_CLIENTS = {"school": 30, "health": 12, "police": 6, "plaza_wifi": 60, "other": 10}

SYS = "1.3.6.1.2.1.1"
IF = "1.3.6.1.2.1.2.2.1"
IFX = "1.3.6.1.2.1.31.1.1.1"
VAP = "1.3.6.1.4.1.41112.1.6.1.2.1"


def community(site: DemoSite) -> str:
    return f"ap-{site.site_id}"


def recording(site: DemoSite) -> str:
    """The .snmprec text of the site's access point (lines in OID order)."""
    half = PEAK_CLIENTS.get(site.institution_type, 10) / 2
    down, up = 60_000 + int(half) * 4_000, 12_000 + int(half) * 800  # bytes/s
    records = [
        (f"{SYS}.1.0", "4", "UAP-AC-Lite 6.5.62.14788"),
        (f"{SYS}.2.0", "6", "1.3.6.1.4.1.8072.3.2.10"),
        (f"{SYS}.3.0", "67:numeric", "initial=1000000,rate=100"),
        (f"{SYS}.5.0", "4", f"{site.site_id}-ap"),
        (f"{IF}.1.1", "2", "1"),
        (f"{IF}.1.2", "2", "2"),
        (f"{IF}.2.1", "4", "eth0"),
        (f"{IF}.2.2", "4", "ath0"),
        (f"{IF}.5.1", "66", "1000000000"),
        (f"{IF}.5.2", "66", "0"),
        (f"{IF}.8.1", "2", "1"),
        (f"{IF}.8.2", "2", "1"),
        (f"{IF}.10.1", "65:numeric", f"rate={down},wrap=1"),
        (f"{IF}.10.2", "65:numeric", f"rate={up},wrap=1"),
        (f"{IF}.16.1", "65:numeric", f"rate={up},wrap=1"),
        (f"{IF}.16.2", "65:numeric", f"rate={down},wrap=1"),
        (f"{IFX}.1.1", "4", "eth0"),
        (f"{IFX}.1.2", "4", "ath0"),
        (f"{IFX}.6.1", "70:numeric", f"rate={down}"),
        (f"{IFX}.6.2", "70:numeric", f"rate={up}"),
        (f"{IFX}.10.1", "70:numeric", f"rate={up}"),
        (f"{IFX}.10.2", "70:numeric", f"rate={down}"),
        (f"{IFX}.15.1", "66", "1000"),
        (f"{IFX}.15.2", "66", "0"),
        (f"{VAP}.6.1", "4", "WIFI-GRATIS-PERU"),
        (
            f"{VAP}.8.1",
            "66:numeric",
            f"function=sin,atime=1,rate={DAY_RATE:.10f},scale={-half},offset={half},min=0",
        ),
    ]
    return "".join(f"{oid}|{tag}|{value}\n" for oid, tag, value in records)


def write_recordings(folder: Path, sites: list[DemoSite]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for site in sites:
        (folder / f"{community(site)}.snmprec").write_text(recording(site))
    return folder
