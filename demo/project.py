"""The demo's regional project: about sixty institutions of Junín, generated from INEI's
districts (real ubigeos, the district capitals' coordinates), seeded so every run is alike.

Each site has an institution type, an access technology with the latency, jitter and loss
DESIGN.md §7 gives for it, and an upstream node (one per province, a VSAT teleport for the
satellite sites of the jungle)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from collector.ubigeo import District, districts

DEPARTMENT = "12"  # Junín
PROJECT = "junin"


@dataclass(frozen=True)
class Link:
    """How an access technology behaves: seconds to the POP, more to the internet."""

    delay: float
    jitter: float
    loss: float
    internet_extra: float


LINKS: dict[str, Link] = {
    "fibre": Link(0.004, 0.001, 0.0, 0.010),
    "microwave": Link(0.008, 0.002, 0.001, 0.012),
    "radio": Link(0.018, 0.006, 0.005, 0.012),
    "4g": Link(0.045, 0.012, 0.01, 0.010),
    "satellite": Link(0.580, 0.020, 0.01, 0.030),
}

# Province -> (sites, the access technologies its sites use, weighted by repetition).
PROVINCES: dict[str, tuple[int, tuple[str, ...]]] = {
    "Huancayo": (12, ("fibre", "fibre", "microwave", "microwave", "4g")),
    "Concepción": (10, ("microwave", "microwave", "radio", "4g")),
    "Jauja": (10, ("fibre", "microwave", "radio", "4g")),
    "Chanchamayo": (8, ("microwave", "radio", "4g", "satellite")),
    "Satipo": (10, ("radio", "4g", "satellite", "satellite")),
    "Tarma": (6, ("fibre", "microwave", "4g")),
    "Chupaca": (4, ("microwave", "radio")),
}
TYPES = ("school",) * 11 + ("health",) * 7 + ("police", "plaza_wifi")
TELEPORT = "teleport-vsat"


@dataclass(frozen=True)
class DemoSite:
    site_id: str
    site_name: str
    district: District
    institution_type: str
    institution_code: str
    upstream_node: str
    access_tech: str
    latitude: float
    longitude: float

    @property
    def link(self) -> Link:
        return LINKS[self.access_tech]

    def inventory_row(self) -> dict[str, object]:
        return {
            "site_id": self.site_id,
            "site_name": self.site_name,
            "project": PROJECT,
            "ubigeo": self.district.ubigeo,
            "institution_type": self.institution_type,
            "institution_code": self.institution_code,
            "upstream_node": self.upstream_node,
            "access_tech": self.access_tech,
            "latitude": self.latitude,
            "longitude": self.longitude,
        }


def _name(kind: str, district: District, n: int) -> str:
    place = district.district
    return {
        "school": f"IE N° {30000 + n * 7} {place}",
        "health": f"Puesto de Salud {place}",
        "police": f"Comisaría {place}",
        "plaza_wifi": f"Plaza de {place} (WiFi)",
    }[kind]


def _code(kind: str, rng: random.Random) -> str:
    if kind == "school":
        return f"{rng.randrange(200000, 1700000):07d}"  # MINEDU código modular
    if kind == "health":
        return f"{rng.randrange(1000, 30000):08d}"  # RENIPRESS código único
    return ""


def generate(about: int = 60, seed: int = 7) -> list[DemoSite]:
    """The project's sites (``about`` that many: every province keeps two), the same
    for the same arguments."""
    rng = random.Random(seed)
    by_province: dict[str, list[District]] = {}
    for d in districts().values():
        if d.department_code == DEPARTMENT and d.latitude is not None:
            by_province.setdefault(d.province, []).append(d)
    sites: list[DemoSite] = []
    for province, (full, techs) in PROVINCES.items():
        count = max(2, round(full * about / 60))
        places = sorted(by_province[province], key=lambda d: d.ubigeo)
        node = "nodo-" + province.lower().replace("ó", "o").replace(" ", "-")
        for k in range(count):
            district = places[k % len(places)]
            kind = TYPES[rng.randrange(len(TYPES))]
            tech = techs[rng.randrange(len(techs))]
            n = len(sites) + 1
            assert district.latitude is not None
            assert district.longitude is not None
            sites.append(
                DemoSite(
                    site_id=f"jun-{n:04d}",
                    site_name=_name(kind, district, n),
                    district=district,
                    institution_type=kind,
                    institution_code=_code(kind, rng),
                    upstream_node=TELEPORT if tech == "satellite" else node,
                    access_tech=tech,
                    # Spread around the district capital, so the map shows each point.
                    latitude=round(district.latitude + rng.uniform(-0.03, 0.03), 5),
                    longitude=round(district.longitude + rng.uniform(-0.03, 0.03), 5),
                )
            )
    return sites
